//! Shared by the server's integration tests: a real server on 127.0.0.1 (port 0) over a real SQLite
//! file, and a WebSocket client that speaks the protocol.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moat_server::auth::{Auth, Claims, now_secs};
use moat_server::{Config, Server, Store};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const SECRET: &str = "integration-test-secret-0123456789";

/// A small data set for company-a: two jobs and one metadata row.
pub const SEED_A: &str = "
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, internal_notes)
VALUES ('job-a1', 'company-a', 'Fix boiler', 'open', 10000, 'call first', 'thin margin'),
       ('job-a2', 'company-a', 'Inspect AC', 'open', 5000, NULL, NULL);
INSERT INTO object_metadata (id, tenant_id, object_type, table_name, label, label_plural, title_field)
VALUES ('company-a:jobs', 'company-a', 'jobs', 'jobs', 'Job', 'Jobs', 'title');
";

/// The same for company-b, in its own database.
pub const SEED_B: &str = "
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, internal_notes)
VALUES ('job-b1', 'company-b', 'Replace pump', 'open', 20000, 'gate code 12', 'VIP'),
       ('job-b2', 'company-b', 'Service furnace', 'open', 7000, NULL, NULL);
INSERT INTO object_metadata (id, tenant_id, object_type, table_name, label, label_plural, title_field)
VALUES ('company-b:jobs', 'company-b', 'jobs', 'jobs', 'Work order', 'Work orders', 'title');
";

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// company-a's database.
    pub store: Arc<Store>,
    /// company-b's database.
    pub store_b: Arc<Store>,
    pub metrics: Arc<moat_server::metrics::Metrics>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<moat_server::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data: dir.path().join("data"),
            web_root: dir.path().join("no-web"),
            ..Config::default()
        };
        config.auth.hs256_secret = Some(SECRET.into());
        tweak(&mut config);
        let seed = !config.demo;
        if seed {
            let base = config.base_schema().unwrap();
            for t in ["company-a", "company-b"] {
                if !moat_server::tenants::tenant_path(&config.data, t).exists() {
                    moat_server::tenants::create(&config.data, t, &base, None).unwrap();
                }
            }
        }
        let server = Server::open(&config).unwrap();
        let store = server.tenant("company-a").await.unwrap();
        let store_b = server.tenant("company-b").await.unwrap();
        let metrics = Arc::clone(server.metrics());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        let s = TestServer { addr, store, store_b, metrics, dir, stop: Some(stop), task: Some(task) };
        if seed {
            s.store.exec(SEED_A).await.unwrap();
            s.store_b.exec(SEED_B).await.unwrap();
        }
        s
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        }
    }
}

pub fn token(user: &str, tenant: &str, role: &str) -> String {
    token_exp(user, tenant, role, 3600)
}

pub fn token_exp(user: &str, tenant: &str, role: &str, ttl: i64) -> String {
    let now = now_secs();
    Auth::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(&Claims {
            sub: user.into(),
            tenant: tenant.into(),
            role: role.into(),
            exp: (now as i64 + ttl) as u64,
            iat: now,
        })
        .unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub cursor: i64,
    /// Rows received by snapshot or diff, as JSON changes, in arrival order.
    pub received: Vec<Value>,
    /// The welcome frame.
    pub welcome: Value,
    /// Every text frame received, as sent (for scanning every byte a client got).
    pub frames: Vec<String>,
}

pub async fn raw(url: &str) -> Ws {
    connect_async(url).await.unwrap().0
}

impl Client {
    /// Connects, says hello, and consumes the welcome and the initial sync (snapshot or catch-up up to
    /// the newest version the server reports).
    pub async fn connect(url: &str, token: &str, cursors: Value) -> Client {
        Client::over(raw(url).await, token, cursors).await
    }

    /// As `connect`, over a socket already open (TLS, say).
    pub async fn over(ws: Ws, token: &str, cursors: Value) -> Client {
        let hello = json!({"type": "hello", "protocol": 1, "token": token, "client_id": "test-client", "cursors": cursors});
        Client::with_hello(ws, hello).await
    }

    /// Connects with this hello frame (a client id or a device report of its own).
    pub async fn hello(url: &str, hello: Value) -> Client {
        Client::with_hello(raw(url).await, hello).await
    }

    async fn with_hello(mut ws: Ws, hello: Value) -> Client {
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let mut c = Client { ws, cursor: 0, received: Vec::new(), welcome: Value::Null, frames: Vec::new() };
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        c.welcome = welcome;
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next text frame, as JSON; diffs and snapshots update `cursor` and `received`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("the connection is open")
                .expect("a good frame");
            let Message::Text(text) = msg else {
                if let Message::Close(c) = &msg {
                    panic!("closed: {c:?}");
                }
                continue;
            };
            self.frames.push(text.to_string());
            let v: Value = serde_json::from_str(&text).unwrap();
            match v["type"].as_str() {
                Some("diff") => {
                    self.cursor = v["version"].as_i64().unwrap();
                    self.received.extend(v["diff"]["changes"].as_array().unwrap().iter().cloned());
                }
                Some("snapshot") => {
                    self.received.extend(v["diff"]["changes"].as_array().unwrap().iter().cloned())
                }
                Some("snapshot_end" | "synced") => self.cursor = v["version"].as_i64().unwrap(),
                _ => {}
            }
            return v;
        }
    }

    /// Receives until a frame of type `ty`, returning it (and every frame before it, in order).
    pub async fn until(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return (v, before);
            }
            before.push(v);
        }
    }

    /// Waits until a ping is answered: every frame the server sent before is then received.
    pub async fn settle(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping", "id": 4242})).await;
        let (_, before) = self.until("pong").await;
        before
    }

    /// Pushes an update of one column of a job and returns the mutation id.
    pub async fn push(&mut self, mutation_id: &str, diff: Value) {
        self.send(json!({"type": "push", "mutation_id": mutation_id, "diff": diff})).await;
    }

    /// The close frame the server ends the connection with.
    pub async fn closed(&mut self) -> (u16, String) {
        closed(&mut self.ws).await
    }
}

pub async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("closed within 10 s") {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Err(e)) => return (1006, e.to_string()),
            Some(Ok(_)) => continue,
        }
    }
}

/// An update of one column with its base.
pub fn update(table: &str, id: &str, column: &str, old: Value, new: Value) -> Value {
    json!({"changes": [{"table": table, "op": "update", "pk": {"id": id}, "cols": {column: {"old": old, "new": new}}}]})
}

/// One value read straight from company-a's database file.
pub fn db_value(server: &TestServer, sql: &str) -> rusqlite::types::Value {
    db_value_in(server, "company-a", sql)
}

/// One value read straight from a tenant's database file.
pub fn db_value_in(server: &TestServer, tenant: &str, sql: &str) -> rusqlite::types::Value {
    let path = moat_server::tenants::tenant_path(&server.dir.path().join("data"), tenant);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One HTTP GET to the server: the status and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// One HTTP POST with a bearer token and no body: the whole response, head and body.
pub async fn post(addr: impl tokio::net::ToSocketAddrs, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The real `moat` binary, serving: `moat serve --listen 127.0.0.1:0 --data DATA` plus `args`, with the
/// test secret and quiet logs. Killed when dropped (a failed test leaves no server behind).
pub struct Moat {
    pub child: std::process::Child,
    /// `host:port` of the plain listener.
    pub addr: String,
    /// The rest of its standard output (the first line named the address).
    pub out: std::io::BufReader<std::process::ChildStdout>,
}

pub const MOAT: &str = env!("CARGO_BIN_EXE_moat");

impl Moat {
    pub fn serve(data: &std::path::Path, args: &[&str], env: &[(&str, &std::path::Path)]) -> Moat {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(MOAT);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data).args(args);
        cmd.env("MOAT_HS256_SECRET", SECRET).env("MOAT_LOG", "warn").stdout(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_owned();
        Moat { child, addr, out }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, and a clean exit.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `moat ARGS --data DATA` to completion; its standard output (it must succeed).
pub fn moat(args: &[&str], data: &std::path::Path) -> String {
    let out = std::process::Command::new(MOAT).args(args).arg("--data").arg(data).output().unwrap();
    assert!(out.status.success(), "moat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
