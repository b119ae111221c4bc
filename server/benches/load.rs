//! The load tool: runs the real `moat` binary and measures it from outside, printing figures with a
//! progress display. It never fails on a timing.
//!
//! 1. memory per idle subscribed connection (server RSS growth / connections), with the connections
//!    spread over 127.x.y.2 source addresses (20k per address); and per connection once each has
//!    taken the initial snapshot of the demo's company-a (a twentieth as many connections);
//! 2. fan-out at 1k and 10k subscribers of one channel: frame deliveries per server CPU-second
//!    (from /proc), and push → last subscriber latency p50/p99;
//! 3. durable diffs per second: 32 writers pushing through group commit, spread over 1, 4 and 32
//!    tenants (each tenant its own database; the slowest tenant's rate shows none is starved),
//!    against one transaction per diff (`max_batch = 1`);
//! 4. many tenants: 1,000 tenant databases with one connected client each (200 in quick mode):
//!    server memory and open files.
//! 5. stalled clients: 200 subscribers that stop reading beside 1,000 healthy ones: the kernel send
//!    queues and RSS the server holds for them, whether they are cut, and the healthy ones' p99
//!    against a run without them.
//! 6. a restart under 10k connected clients (2k in quick mode) that reconnect with the client
//!    engine's jittered backoff: the stop's close frames, and how the clients come back.
//!
//! 7. a cluster: a nats-server and three nodes with 5,000 subscribers of one channel each (15,000
//!    sockets; 500 each in quick mode): deliveries per server CPU-second over the three nodes, NATS's
//!    CPU per node delivery, beside one node holding all of them.
//!
//! 8. beside the peers: the same subscribers, messages and readers against Moat and against Node's
//!    `ws`, Socket.IO and uWebSockets as plain broadcast servers (`benches/peers`), 1k and 10k
//!    subscribers: deliveries per server CPU-second, p99, memory per connection, and the ratios.
//!
//! `cargo bench -p moat-server --bench load [-- --quick | --full]`: `--quick` uses 2k connections and
//! 1k subscribers (for CI), the default 10k, `--full` 19k (the most one process's 20k file descriptors
//! allow); `--only memory|snapshot|fanout|durable|tenants|stalled|reconnect|cluster|peers` runs one
//! part. `MOAT_BIN=path` runs that `moat` binary instead of this build's (to compare two builds).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use moat_server::auth::{Auth, Claims, now_secs};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

const SECRET: &str = "load-test-secret-0123456789abcdef";
type Ws = WebSocketStream<tokio::net::TcpStream>;

struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with `tenants` (empty ones, each its own database).
    /// `channel_buffer`: frames a subscriber may fall behind (the server's default is 1,024; each
    /// channel preallocates that many slots).
    fn start(max_batch: usize, tenants: &[String], channel_buffer: usize) -> Server {
        Server::start_with(max_batch, false, tenants, channel_buffer)
    }

    /// `demo`: the demo's tenants (company-a and company-b, thousands of rows each).
    fn start_with(max_batch: usize, demo: bool, tenants: &[String], channel_buffer: usize) -> Server {
        // The lean clients do not answer pings: no ping deadline in these runs.
        Server::start_limits(max_batch, demo, tenants, channel_buffer, "ping_interval_ms = 0\n")
    }

    /// `extra`: more `[limits]` lines.
    fn start_limits(
        max_batch: usize,
        demo: bool,
        tenants: &[String],
        channel_buffer: usize,
        extra: &str,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let base = sqlite_ext::Schema::demo();
        for (i, t) in tenants.iter().enumerate() {
            moat_server::tenants::create(&data, t, &base, None).unwrap();
            if tenants.len() > 50 && i % 50 == 49 {
                progress("creating tenant databases", i + 1, tenants.len());
            }
        }
        let config = dir.path().join("moat.toml");
        std::fs::write(
            &config,
            format!(
                "[limits]\nmax_batch = {max_batch}\nchannel_buffer = {channel_buffer}\nmax_inflight_pushes = 4096\n{extra}"
            ),
        )
        .unwrap();
        let (child, addr) = Server::spawn(&config, &data, demo, "127.0.0.1:0");
        Server { child, addr, _dir: dir }
    }

    fn spawn(
        config: &std::path::Path,
        data: &std::path::Path,
        demo: bool,
        listen: &str,
    ) -> (Child, SocketAddr) {
        Server::spawn_args(config, data, if demo { &["--demo"][..] } else { &[] }, listen)
    }

    /// `moat serve` with `args` added.
    fn spawn_args(
        config: &std::path::Path,
        data: &std::path::Path,
        args: &[&str],
        listen: &str,
    ) -> (Child, SocketAddr) {
        let bin = std::env::var_os("MOAT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_moat").into());
        let mut child = Command::new(bin)
            .args(["serve", "--listen", listen, "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(args)
            .env("MOAT_HS256_SECRET", SECRET)
            .env("MOAT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the moat binary runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap().parse().unwrap();
        (child, addr)
    }

    /// Stops the server with SIGTERM (every client gets 1001); returns how long it took to exit.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        started.elapsed()
    }

    /// Starts it again on the same address and data.
    fn start_again(&mut self) {
        let dir = self._dir.path();
        let (child, _) =
            Server::spawn(&dir.join("moat.toml"), &dir.join("data"), false, &self.addr.to_string());
        self.child = child;
    }

    fn rss_kb(&self) -> u64 {
        proc_field(self.child.id(), "VmRSS:")
    }

    /// User + system CPU time of the server process, in seconds, and the kernel's softirq threads'
    /// ([`softirq_secs`]).
    fn cpu_secs(&self) -> f64 {
        cpu_secs_of(self.child.id()) + softirq_secs()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn token(user: &str, tenant: &str) -> String {
    let now = now_secs();
    Auth::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(&Claims {
            sub: user.into(),
            tenant: tenant.into(),
            role: "admin".into(),
            exp: now + 7200,
            iat: now,
        })
        .unwrap()
}

/// Connects (from `next_source`), says hello and waits for the end of the
/// (empty) snapshot.
async fn subscriber(addr: SocketAddr, n: usize, tenant: &str) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(next_source()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = client_async(format!("ws://{addr}/sync"), stream).await.unwrap();
    let hello = json!({"type": "hello", "protocol": 1, "token": token(&format!("u{n}"), tenant), "client_id": format!("c{n}")});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("subscriber {n} lost its connection")
        };
        if t.contains("\"synced\"") {
            return ws;
        }
    }
}

/// A minimal RFC 6455 client for the many subscribers: the handshake by hand, then frames read with
/// a plain header parse (server frames are unmasked), so the load generator spends as little of the
/// shared two cores as a client can, leaving them to the server being measured.
struct Lean {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Lean {
    async fn connect(addr: SocketAddr, n: usize, tenant: &str) -> Lean {
        Lean::try_connect(addr, n, tenant).await.expect("the server takes the connection")
    }

    /// Connects, says hello and waits for `synced`; an error if any step fails (the server is down).
    async fn try_connect(addr: SocketAddr, n: usize, tenant: &str) -> std::io::Result<Lean> {
        let mut lean = Lean::handshake(addr, "/sync").await?;
        let hello = json!({"type": "hello", "protocol": 1, "token": token(&format!("u{n}"), tenant), "client_id": format!("c{n}")});
        lean.send_text(&hello.to_string()).await?;
        loop {
            match lean.next_text().await {
                Some(t) if t.contains("\"synced\"") => return Ok(lean),
                Some(_) => {}
                None => return Err(refused("closed before synced")),
            }
        }
    }

    /// A subscriber of a peer's broadcast server (`ws`, `socketio`, `uws`: `benches/peers`).
    async fn connect_peer(addr: SocketAddr, kind: &str) -> Lean {
        let path = if kind == "socketio" { "/socket.io/?EIO=4&transport=websocket" } else { "/" };
        let mut lean = Lean::handshake(addr, path).await.expect("the peer takes the connection");
        if kind == "socketio" {
            // Engine.IO's open packet, then Socket.IO's connect to the main namespace.
            let open = lean.next_text().await.expect("an open packet");
            assert!(open.starts_with('0'), "{open}");
            lean.send_text("40").await.unwrap();
            while !lean.next_text().await.expect("a connect packet").starts_with("40") {}
        }
        lean
    }

    /// The TCP connection (from `next_source`) and the WebSocket upgrade of `path`.
    async fn handshake(addr: SocketAddr, path: &str) -> std::io::Result<Lean> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let socket = TcpSocket::new_v4()?;
        socket.bind(next_source())?;
        let mut stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut stream = tokio::io::BufReader::with_capacity(512, stream);
        let mut line = String::new();
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            if line == "\r\n" {
                return Ok(Lean { stream });
            }
            if line.is_empty() {
                return Err(refused("handshake refused"));
            }
        }
    }

    /// Sends a text frame.
    async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.get_mut().write_all(&client_frame(text.as_bytes())).await
    }

    /// The next text frame's payload; `None` once the connection ends.
    async fn next_text(&mut self) -> Option<String> {
        use tokio::io::AsyncReadExt;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await.ok()?;
            let len = match head[1] & 0x7f {
                126 => self.stream.read_u16().await.ok()? as usize,
                127 => self.stream.read_u64().await.ok()? as usize,
                n => n as usize,
            };
            let mut payload = vec![0; len];
            self.stream.read_exact(&mut payload).await.ok()?;
            match head[0] & 0x0f {
                1 => return String::from_utf8(payload).ok(),
                8 => return None,
                _ => {}
            }
        }
    }
}

fn refused(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, what.to_owned())
}

/// A client's text frame: FIN + text, masked with the key 0 (so the payload is unchanged).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// A source address for the next connection: 20k connections per address, and a /24 of its own
/// per run, so that neither one run's many connections nor the previous run's sockets still in
/// TIME_WAIT exhaust the ephemeral ports of one address.
fn next_source() -> SocketAddr {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let run = 1 + (std::process::id() % 200) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, run, (n / 20_000) as u8, 2)), 0)
}

fn progress(label: &str, done: usize, total: usize) {
    print!("\r      {label}: {done}/{total}");
    let _ = std::io::stdout().flush();
}

async fn connect_many(addr: SocketAddr, total: usize, tenant: &'static str) -> Vec<Lean> {
    connect_many_with(total, move |n| Lean::connect(addr, n, tenant)).await
}

/// `total` connections made by `connect(n)`, in waves.
async fn connect_many_with<F, C>(total: usize, connect: C) -> Vec<Lean>
where
    C: Fn(usize) -> F + Clone + Send + 'static,
    F: Future<Output = Lean> + Send + 'static,
{
    let done = Arc::new(AtomicUsize::new(0));
    let mut out = Vec::with_capacity(total);
    // In waves, so the server's accept queue is never the bottleneck being measured; 500 handshakes
    // at a time unless `MOAT_WAVE` says (what a wave frees is part of the memory per connection).
    let wave_size = std::env::var("MOAT_WAVE").ok().and_then(|w| w.parse().ok()).unwrap_or(500);
    for wave in (0..total).collect::<Vec<_>>().chunks(wave_size) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&n| {
                let (done, connect) = (Arc::clone(&done), connect.clone());
                tokio::spawn(async move {
                    let ws = connect(n).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    ws
                })
            })
            .collect();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        progress("connected", done.load(Ordering::Relaxed), total);
    }
    println!();
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn memory(connections: usize) {
    println!("[1/8] memory per idle subscribed connection ({connections} connections)");
    let server = Server::start(512, &["load-a".into(), "load-b".into()], 4096);
    // The tenant opened first (its database, caches and channel: its own cost, ~460 KB, see
    // `tenants`), so that what follows is what connections cost.
    let first = Lean::connect(server.addr, connections, "load-a").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kb();
    // `MOAT_HOLD=1`: a pause here too, to compare the server before and after (gdb's `malloc_stats`).
    if std::env::var_os("MOAT_HOLD").is_some() {
        println!("      (held 6 s with the tenant open)");
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let half = connections / 2;
    // Each reading 2.5 s after the last connection: the server gives what a wave of handshakes
    // freed back to the system a tick (≤ 1 s) after a tick with no new session.
    let settle = Duration::from_millis(2500);
    let mut sockets = connect_many(server.addr, half, "load-a").await;
    tokio::time::sleep(settle).await;
    let mid = server.rss_kb();
    sockets.extend(connect_many(server.addr, connections - half, "load-a").await);
    tokio::time::sleep(settle).await;
    let after = server.rss_kb();
    let per = |kb: u64, n: usize| kb as f64 / n as f64;
    println!(
        "      server RSS {before} kB with the tenant open → {after} kB with {connections} more connections: {:.2} KB per connection \
         (target ≤ 8 KB; #18: ≤ 2 KB); the second {} alone: {:.2} KB each",
        per(after.saturating_sub(before), connections),
        connections - half,
        per(after.saturating_sub(mid), connections - half),
    );
    // `MOAT_HOLD=1`: held 40 s more, to look at the server (heaptrack, gdb's `malloc_stats`).
    if std::env::var_os("MOAT_HOLD").is_some() {
        tokio::time::sleep(Duration::from_secs(40)).await;
    }
    drop((first, sockets));
}

/// Each publish's arrivals: how many subscribers have it and when the last one got it.
struct Arrivals {
    count: Vec<AtomicUsize>,
    last_ns: Vec<AtomicU64>,
    subscribers: usize,
    base: Instant,
    done: tokio::sync::mpsc::UnboundedSender<(usize, Instant)>,
}

impl Arrivals {
    /// Subscriber got publish `k` now; the one that completes it reports when the last arrived.
    fn arrived(&self, k: usize) {
        let Some(count) = self.count.get(k) else { return };
        self.last_ns[k].fetch_max(self.base.elapsed().as_nanos() as u64, Ordering::AcqRel);
        if count.fetch_add(1, Ordering::AcqRel) + 1 == self.subscribers {
            let last = self.base + Duration::from_nanos(self.last_ns[k].load(Ordering::Acquire));
            let _ = self.done.send((k, last));
        }
    }
}

/// Reads every subscriber's frames on plain epoll threads (mio), so that the load generator costs
/// the shared cores one read per frame and nothing else: no task, no channel message per frame.
fn receive(sockets: Vec<Lean>, threads: usize, publishes: usize) -> Readers {
    let subscribers = sockets.len();
    let (done, reports) = tokio::sync::mpsc::unbounded_channel();
    let arrivals = Arc::new(Arrivals {
        count: (0..publishes).map(|_| AtomicUsize::new(0)).collect(),
        last_ns: (0..publishes).map(|_| AtomicU64::new(0)).collect(),
        subscribers,
        base: Instant::now(),
        done,
    });
    let stop = Arc::new(AtomicBool::new(false));
    struct Sub {
        stream: mio::net::TcpStream,
        pending: Vec<u8>,
        diffs: usize,
    }
    let mut shards: Vec<Vec<Sub>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, lean) in sockets.into_iter().enumerate() {
        let pending = lean.stream.buffer().to_vec();
        let std = lean.stream.into_inner().into_std().unwrap();
        std.set_nonblocking(true).unwrap();
        shards[i % threads].push(Sub { stream: mio::net::TcpStream::from_std(std), pending, diffs: 0 });
    }
    let threads = shards
        .into_iter()
        .map(|mut subs| {
            let arrivals = Arc::clone(&arrivals);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                use std::io::Read;
                let mut poll = mio::Poll::new().unwrap();
                for (i, sub) in subs.iter_mut().enumerate() {
                    poll.registry()
                        .register(&mut sub.stream, mio::Token(i), mio::Interest::READABLE)
                        .unwrap();
                }
                let mut events = mio::Events::with_capacity(1024);
                let mut chunk = [0u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if poll.poll(&mut events, Some(Duration::from_millis(50))).is_err() {
                        continue;
                    }
                    for event in &events {
                        let sub = &mut subs[event.token().0];
                        // A short read emptied the socket's queue: no second read to hear WouldBlock
                        // (data arriving later raises a new edge).
                        while let Ok(n @ 1..) = sub.stream.read(&mut chunk) {
                            sub.pending.extend_from_slice(&chunk[..n]);
                            if n < chunk.len() {
                                break;
                            }
                        }
                        let mut at = 0;
                        while let Some((payload, opcode, used)) = server_frame(&sub.pending[at..]) {
                            if opcode == 1 && contains(payload, b"\"type\":\"diff\"") {
                                arrivals.arrived(sub.diffs);
                                sub.diffs += 1;
                            }
                            at += used;
                        }
                        sub.pending.drain(..at);
                    }
                }
            })
        })
        .collect();
    Readers { arrivals, reports, stop, threads }
}

/// The reading threads, and each publish's report once every subscriber has it.
struct Readers {
    arrivals: Arc<Arrivals>,
    reports: tokio::sync::mpsc::UnboundedReceiver<(usize, Instant)>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    /// Stops the threads; returns how many frames they counted in all.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.arrivals.count.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One whole unmasked server frame at the start of `buf`: (payload, opcode, bytes used).
fn server_frame(buf: &[u8]) -> Option<(&[u8], u8, usize)> {
    let (len, head) = match *buf.get(1)? & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(head..head + len)?;
    Some((payload, buf[0] & 0x0f, head + len))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A peer's message `i`: about the size of Moat's diff frame for `inventory_push_padded(i, 0)`, and
/// counted by the readers the same way (`"type":"diff"`); Socket.IO's as an event `m`.
fn peer_message(kind: &str, i: usize) -> String {
    let body = json!({"type": "diff", "channel": "load-b/admin", "version": i, "diff": {"changes": [{
        "table": "inventory_items", "op": "insert", "pk": {"id": format!("item-{i}")},
        "cols": {"tenant_id": {"new": "load-b"}, "sku": {"new": format!("SKU-{i}")}, "name": {"new": "Part"},
                 "quantity": {"new": i}, "location": {"new": "van-1"}}}]}});
    match kind {
        "socketio" => format!("42[\"m\",{body}]"),
        _ => body.to_string(),
    }
}

/// A push whose item name is `pad` bytes long (bigger frames fill a stalled socket sooner).
fn inventory_push_padded(i: usize, pad: usize) -> String {
    let name = if pad == 0 { "Part".to_owned() } else { "p".repeat(pad) };
    json!({"type": "push", "mutation_id": format!("w-{i}"), "diff": {"changes": [{
        "table": "inventory_items", "op": "insert", "pk": {"id": format!("item-{i}")},
        "cols": {"tenant_id": {"new": "load-b"}, "sku": {"new": format!("SKU-{i}")}, "name": {"new": name},
                 "quantity": {"new": i}, "location": {"new": "van-1"}}}]}})
    .to_string()
}

/// Memory per connection once each has taken the initial snapshot of a seeded channel (the demo's
/// company-a), and stays subscribed.
async fn memory_after_snapshot(connections: usize) {
    println!("[1/8] memory per subscribed connection after its initial snapshot ({connections} connections)");
    let server = Server::start_with(512, true, &[], 4096);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kb();
    let mut sockets = Vec::with_capacity(connections);
    for n in 0..connections {
        sockets.push(Lean::connect(server.addr, n, "company-a").await);
        if n % 50 == 0 {
            progress("synced", n + 1, connections);
        }
    }
    println!();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kb();
    let per = (after.saturating_sub(before)) as f64 / connections as f64;
    println!("      server RSS {before} kB → {after} kB: {per:.1} KB per connection after its snapshot");
    drop(sockets);
}

/// Fan-out to `subscribers` of one channel. `window` pushes are kept in flight: 1 publishes one at a
/// time (each waits until every subscriber has the one before), more keeps a steady stream going,
/// where the server may send a subscriber several frames in one write.
async fn fanout(subscribers: usize, publishes: usize, window: usize) {
    let mode =
        if window == 1 { "one push at a time".to_owned() } else { format!("{window} pushes in flight") };
    println!("[2/8] fan-out to {subscribers} subscribers of one channel, {publishes} pushes, {mode}");
    let server = Server::start(512, &["load-a".into(), "load-b".into()], 4096);
    fanout_on(&server, subscribers, publishes, window, 0).await;
}

/// The fan-out run on `server`, with frames padded by `pad` bytes; returns the p99 (ms).
async fn fanout_on(server: &Server, subscribers: usize, publishes: usize, window: usize, pad: usize) -> f64 {
    let run = Fanout {
        subscribers: &[(server.addr, subscribers)],
        writer: server.addr,
        publishes,
        window,
        pad,
        peer: None,
    };
    let figures = run.measure(|| (server.cpu_secs(), 0.0), || server.rss_kb()).await;
    figures.print(subscribers, "");
    figures.p99
}

/// One fan-out run: `subscribers` connections to each address, one writer, `publishes` pushes with
/// `window` in flight.
struct Fanout<'a> {
    subscribers: &'a [(SocketAddr, usize)],
    writer: SocketAddr,
    publishes: usize,
    window: usize,
    pad: usize,
    /// Moat, or a peer's plain broadcast server (`benches/peers`: `ws`, `socketio`, `uws`).
    peer: Option<&'static str>,
}

/// What the writer of a fan-out run writes through.
enum Publisher {
    /// A Moat session: each push is a durable write, answered by an ack.
    Moat(futures_util::stream::SplitSink<Ws, Message>),
    /// A peer's client: each message is broadcast as it is.
    Peer(tokio::io::WriteHalf<tokio::io::BufReader<tokio::net::TcpStream>>),
}

/// What a fan-out run measured.
struct FanoutFigures {
    deliveries: usize,
    wall: f64,
    cpu: f64,
    /// CPU of the other processes the run needs (NATS), in the same window.
    other_cpu: f64,
    p50: f64,
    p99: f64,
    max: f64,
    /// Server memory per subscribed connection (RSS growth while they connected).
    kb_per_connection: f64,
}

impl FanoutFigures {
    fn per_cpu_second(&self) -> f64 {
        self.deliveries as f64 / self.cpu.max(1e-9)
    }

    fn print(&self, subscribers: usize, whose: &str) {
        println!(
            "      {} deliveries in {:.2} s wall ({:.0}/s), {:.2} s {whose}server CPU: {:.0} deliveries per server CPU-second (target ≥ 250k)",
            self.deliveries,
            self.wall,
            self.deliveries as f64 / self.wall,
            self.cpu,
            self.deliveries as f64 / self.cpu.max(1e-9)
        );
        println!(
            "      push → last of {subscribers} subscribers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 50 ms; includes the durable commit)",
            self.p50, self.p99, self.max
        );
    }
}

impl Fanout<'_> {
    /// Runs it; `cpu` reads the CPU seconds the servers, and the other processes they need, used so
    /// far; `rss_kb` the servers' memory.
    async fn measure(&self, cpu: impl Fn() -> (f64, f64), rss_kb: impl Fn() -> u64) -> FanoutFigures {
        let (publishes, window) = (self.publishes, self.window);
        let rss_before = rss_kb();
        let mut sockets = Vec::new();
        for &(addr, n) in self.subscribers {
            sockets.extend(match self.peer {
                None => connect_many(addr, n, "load-b").await,
                Some(kind) => connect_many_with(n, move |_| Lean::connect_peer(addr, kind)).await,
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let kb_per_connection = rss_kb().saturating_sub(rss_before) as f64 / sockets.len().max(1) as f64;
        let mut readers = receive(sockets, 2, publishes);
        // The writer's own frames (its diffs, its acks; a peer's broadcasts) are read as they come;
        // each ack frees a slot (a peer has no acks: one message at a time).
        let slots = Arc::new(tokio::sync::Semaphore::new(window));
        let (mut write, acks) = match self.peer {
            None => {
                let (write, mut read) = subscriber(self.writer, 999_999, "load-b").await.split();
                let slots = Arc::clone(&slots);
                let acks = tokio::spawn(async move {
                    for _ in 0..publishes {
                        loop {
                            let Some(Ok(Message::Text(t))) = read.next().await else { panic!("writer lost") };
                            if t.contains("\"ack\"") {
                                break;
                            }
                        }
                        slots.add_permits(1);
                    }
                });
                (Publisher::Moat(write), acks)
            }
            Some(kind) => {
                assert_eq!(window, 1, "a peer's run publishes one message at a time");
                let (mut read, write) = tokio::io::split(Lean::connect_peer(self.writer, kind).await.stream);
                let drain = tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0; 64 * 1024];
                    while matches!(read.read(&mut buf).await, Ok(1..)) {}
                });
                slots.add_permits(publishes);
                (Publisher::Peer(write), drain)
            }
        };
        let cpu_before = cpu();
        let started = Instant::now();
        let mut sent: Vec<Instant> = Vec::with_capacity(publishes);
        let mut latencies = Vec::with_capacity(publishes);
        for i in 0..publishes {
            slots.acquire().await.unwrap().forget();
            if window == 1 {
                // One at a time: the previous push has reached every subscriber.
                while latencies.len() < i {
                    let (k, last): (usize, Instant) = readers.reports.recv().await.unwrap();
                    latencies.push((last - sent[k]).as_secs_f64() * 1e3);
                }
            }
            sent.push(Instant::now());
            match &mut write {
                Publisher::Moat(w) => {
                    w.send(Message::text(inventory_push_padded(i, self.pad))).await.unwrap()
                }
                Publisher::Peer(w) => {
                    use tokio::io::AsyncWriteExt;
                    w.write_all(&client_frame(peer_message(self.peer.unwrap(), i).as_bytes())).await.unwrap();
                }
            }
            while let Ok((k, last)) = readers.reports.try_recv() {
                latencies.push((last - sent[k]).as_secs_f64() * 1e3);
            }
            if i % 10 == 0 {
                progress("published", i + 1, publishes);
            }
        }
        while latencies.len() < publishes {
            let (k, last) = readers.reports.recv().await.unwrap();
            latencies.push((last - sent[k]).as_secs_f64() * 1e3);
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu_after = cpu();
        match write {
            Publisher::Moat(_) => acks.await.unwrap(),
            Publisher::Peer(_) => acks.abort(),
        }
        let deliveries = readers.finish();
        println!();
        latencies.sort_by(f64::total_cmp);
        FanoutFigures {
            deliveries,
            wall,
            cpu: cpu_after.0 - cpu_before.0,
            other_cpu: cpu_after.1 - cpu_before.1,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            max: *latencies.last().unwrap(),
            kb_per_connection,
        }
    }
}

/// A peer's plain broadcast server (`benches/peers/broadcast.js`, under Node), stopped when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Peer {
    fn start(kind: &str) -> Peer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/broadcast.js");
        let mut child = Command::new("node")
            .args([script, kind, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the peers (scripts/setup installs their packages)");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "the {kind} server did not start");
        Peer { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moat beside the peers in one run: the same subscribers, messages and readers against Moat (each
/// message a durable write) and against Node's `ws`, Socket.IO and uWebSockets (the C++ server
/// behind uWebSockets.js, the `uwebsockets` package's prebuilt binary) as plain broadcast servers.
async fn beside_peers(subscribers: usize, publishes: usize) {
    println!(
        "[8/8] beside the peers: {subscribers} subscribers of one channel, {publishes} messages one at a time"
    );
    let mut rows = Vec::new();
    {
        let server = Server::start(512, &["load-b".into()], 4096);
        let run = Fanout {
            subscribers: &[(server.addr, subscribers)],
            writer: server.addr,
            publishes,
            window: 1,
            pad: 0,
            peer: None,
        };
        rows.push(("Moat", run.measure(|| (server.cpu_secs(), 0.0), || server.rss_kb()).await));
    }
    for (kind, name) in [("ws", "ws"), ("socketio", "Socket.IO"), ("uws", "uWebSockets")] {
        let peer = Peer::start(kind);
        let pid = peer.child.id();
        let run = Fanout {
            subscribers: &[(peer.addr, subscribers)],
            writer: peer.addr,
            publishes,
            window: 1,
            pad: 0,
            peer: Some(kind),
        };
        let cpu = || (cpu_secs_of(pid) + softirq_secs(), 0.0);
        rows.push((name, run.measure(cpu, || proc_field(pid, "VmRSS:")).await));
    }
    println!(
        "      {:<12} {:>26} {:>16} {:>22}",
        "", "deliveries per CPU-second", "publish → last p99", "memory per connection"
    );
    for (name, f) in &rows {
        println!(
            "      {name:<12} {:>26.0} {:>13.1} ms {:>19.1} KB",
            f.per_cpu_second(),
            f.p99,
            f.kb_per_connection
        );
    }
    let rate = |who: &str| rows.iter().find(|(n, _)| *n == who).map(|(_, f)| f.per_cpu_second()).unwrap();
    println!(
        "      Moat per CPU-second: {:.2}× uWebSockets (target ≥ 1.2×), {:.2}× ws (target ≥ 2.5×), {:.2}× Socket.IO; Moat's messages are durable writes, the peers' are not",
        rate("Moat") / rate("uWebSockets"),
        rate("Moat") / rate("ws"),
        rate("Moat") / rate("Socket.IO")
    );
}

/// User + system CPU seconds of a process.
fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds of the kernel's softirq threads (`ksoftirqd/N`), counted as the server's: packet work
/// a burst of sends leaves to them (io_uring's batches do, here ~5-15% of the sends' CPU) is work done
/// for the server, though not in its own time. Counted for every server alike (a plain write per
/// socket leaves them ~none).
fn softirq_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("ksoftirqd/")))
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(cpu_secs_of)
        .sum()
}

/// The `nats-server` binary (Debian's package puts it in /usr/sbin).
fn nats_server() -> std::path::PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/bin"]) {
        let p = std::path::Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("nats-server is not installed: run scripts/setup");
}

/// The cluster: a nats-server and three `moat serve --cluster` nodes over one data directory, with
/// `per_node` subscribers of one channel on each (the writer on the first node, which owns the
/// tenant); beside one node holding as many subscribers alone.
async fn cluster_fanout(per_node: usize, publishes: usize) {
    let total = per_node * 3;
    println!(
        "[7/8] cluster: 3 nodes × {per_node} subscribers of one channel over NATS, {publishes} pushes one at a time"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    moat_server::tenants::create(&data, "load-b", &sqlite_ext::Schema::demo(), None).unwrap();
    let config = dir.path().join("moat.toml");
    std::fs::write(
        &config,
        "[limits]\nchannel_buffer = 4096\nmax_inflight_pushes = 4096\nping_interval_ms = 0\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut nats = Command::new(nats_server())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let mut nodes: Vec<(Child, SocketAddr)> = (1..=3)
        .map(|i| {
            Server::spawn_args(
                &config,
                &data,
                &["--cluster", &url, "--node", &format!("n{i}")],
                "127.0.0.1:0",
            )
        })
        .collect();
    // The writer's node takes the tenant first.
    drop(subscriber(nodes[0].1, 999_998, "load-b").await);
    let pids: Vec<u32> = nodes.iter().map(|(c, _)| c.id()).collect();
    let nats_pid = nats.id();
    let addrs: Vec<(SocketAddr, usize)> = nodes.iter().map(|(_, a)| (*a, per_node)).collect();
    let run = Fanout { subscribers: &addrs, writer: nodes[0].1, publishes, window: 1, pad: 0, peer: None };
    let cpu = || (pids.iter().map(|&p| cpu_secs_of(p)).sum::<f64>() + softirq_secs(), cpu_secs_of(nats_pid));
    let figures = run.measure(cpu, || pids.iter().map(|&p| proc_field(p, "VmRSS:")).sum()).await;
    let nats_cpu = figures.other_cpu;
    figures.print(total, "(3 nodes) ");
    // Each frame goes once to each of the two other nodes (besides the owner's watermark and its
    // lease renewals, which JetStream writes to disk, in the same window).
    let node_deliveries = publishes * 2;
    println!(
        "      NATS: {nats_cpu:.2} s CPU in the run: at most {:.0} µs per frame sent to a node, {:.3} µs per socket delivery; counting it: {:.0} deliveries per CPU-second",
        nats_cpu * 1e6 / node_deliveries as f64,
        nats_cpu * 1e6 / figures.deliveries.max(1) as f64,
        figures.deliveries as f64 / (figures.cpu + nats_cpu).max(1e-9)
    );
    for (child, _) in &mut nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = nats.kill();
    let _ = nats.wait();
    // The same subscribers on one node.
    let single = Server::start(512, &["load-b".into()], 4096);
    let run = Fanout {
        subscribers: &[(single.addr, total)],
        writer: single.addr,
        publishes,
        window: 1,
        pad: 0,
        peer: None,
    };
    let figures = run.measure(|| (single.cpu_secs(), 0.0), || single.rss_kb()).await;
    println!("      the same {total} subscribers on a single node:");
    figures.print(total, "");
}

/// Bytes in the send queues of the server's sockets to `peers` (`/proc/net/tcp`: `tx_queue` of each
/// socket whose local port is the server's and whose remote end is one of `peers`): what the kernel
/// holds for those clients.
fn server_send_queues(port: u16, peers: &std::collections::HashSet<SocketAddr>) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let addr = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes());
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_str_radix(port, 16).ok()?))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, remote) = (addr(f.get(1)?)?, addr(f.get(2)?)?);
            let tx = u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok()?;
            (local.port() == port && peers.contains(&remote)).then_some(tx)
        })
        .sum()
}

/// Clients that stop reading: `stalled` of them subscribe beside `healthy` readers, then never read
/// again (a 4 KB receive buffer, so their windows close at once). The server must hold a bounded
/// amount for each (kernel send queue and RSS, sampled during the run) and cut them once their
/// unsent bytes stay above the bound for `send_timeout_ms`, while the healthy subscribers' latency
/// stays as it is without them.
async fn stalled_clients(healthy: usize, stalled: usize, publishes: usize) {
    const PAD: usize = 2048;
    let limits = "send_timeout_ms = 3000\nping_interval_ms = 0\n";
    println!(
        "[5/8] {stalled} stalled clients beside {healthy} healthy subscribers, {publishes} pushes of ~2 KB"
    );
    let tenants = ["load-a".to_owned(), "load-b".to_owned()];
    // RSS peaks: the healthy subscribers' share is measured alone and taken out.
    let peak_rss =
        |pid: u32, sampling: Arc<AtomicBool>, port: u16, peers: std::collections::HashSet<SocketAddr>| {
            std::thread::spawn(move || {
                let (mut queues, mut rss) = (0u64, 0u64);
                while sampling.load(Ordering::Relaxed) {
                    queues = queues.max(server_send_queues(port, &peers));
                    rss = rss.max(proc_field(pid, "VmRSS:"));
                    std::thread::sleep(Duration::from_millis(20));
                }
                (queues, rss)
            })
        };
    let (alone, rss_alone) = {
        let server = Server::start_limits(512, false, &tenants, 4096, limits);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = server.rss_kb();
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler =
            peak_rss(server.child.id(), Arc::clone(&sampling), server.addr.port(), Default::default());
        let p99 = fanout_on(&server, healthy, publishes, 16, PAD).await;
        sampling.store(false, Ordering::Relaxed);
        (p99, sampler.join().unwrap().1.saturating_sub(idle))
    };
    let server = Server::start_limits(512, false, &tenants, 4096, limits);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_kb();
    let mut stuck = Vec::with_capacity(stalled);
    for n in 0..stalled {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(next_source()).unwrap();
        let stream = socket.connect(server.addr).await.unwrap();
        let (mut ws, _) = client_async(format!("ws://{}/sync", server.addr), stream).await.unwrap();
        let hello = json!({"type": "hello", "protocol": 1, "token": token(&format!("s{n}"), "load-b"), "client_id": format!("s{n}")});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if matches!(&m, Message::Text(t) if t.contains("\"synced\"")) {
                break;
            }
        }
        stuck.push(ws);
    }
    let port = server.addr.port();
    let sampling = Arc::new(AtomicBool::new(true));
    let peers = stuck.iter().map(|ws| ws.get_ref().local_addr().unwrap()).collect();
    let sampler = peak_rss(server.child.id(), Arc::clone(&sampling), port, peers);
    let with = fanout_on(&server, healthy, publishes, 16, PAD).await;
    // The stalled clients' sends time out (3 s) once their queues are full.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut cut = 0;
    while Instant::now() < deadline {
        cut = metric(server.addr, "moat_slow_consumers_total").await;
        if cut >= stalled as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let (queues, rss) = sampler.join().unwrap();
    // The growth over the idle server, less what the healthy subscribers took in the run alone.
    let stalled_rss = rss.saturating_sub(rss_before).saturating_sub(rss_alone) as f64;
    let (queue_kb, rss_kb) = (queues as f64 / 1024.0 / stalled as f64, stalled_rss / stalled as f64);
    println!(
        "      per stalled client: {queue_kb:.0} KB of kernel send queue (peak, the stalled sockets' {:.1} MB) + {rss_kb:.0} KB of server RSS = {:.0} KB (target ≤ 256 KB)",
        queues as f64 / 1048576.0,
        queue_kb + rss_kb
    );
    println!(
        "      healthy subscribers' p99: {with:.1} ms with the stalled clients, {alone:.1} ms without ({:+.0}%); stalled clients cut: {cut} of {stalled}",
        (with / alone - 1.0) * 100.0
    );
    drop(stuck);
}

/// A restart under `clients` connected clients that follow the client engine's reconnection policy
/// (`sqlite_ext::sync::reconnect_delay_ms`: half to all of a backoff that starts at 500 ms and
/// doubles, spread by client id). Measures the stop (every client's 1001) and how the clients come
/// back: how long until all are synced again, the busiest second, and the attempts the down server
/// refused.
async fn reconnect_storm(clients: usize) {
    use sqlite_ext::sync::{jitter_seed, reconnect_delay_ms};
    println!("[6/8] a restart under {clients} connected clients, which reconnect with jittered backoff");
    let tenants = ["load-a".to_owned(), "load-b".to_owned()];
    let mut server = Server::start(512, &tenants, 4096);
    let addr = server.addr;
    let sockets = connect_many(addr, clients, "load-a").await;
    let started = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let (back_tx, mut back_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let refused = Arc::new(AtomicUsize::new(0));
    for (n, mut lean) in sockets.into_iter().enumerate() {
        let (closed_tx, back_tx, refused, started) =
            (closed_tx.clone(), back_tx.clone(), Arc::clone(&refused), Arc::clone(&started));
        tokio::spawn(async move {
            // Read until the server closes (its 1001), then reconnect as the engine would.
            while lean.next_text().await.is_some() {}
            let _ = closed_tx.send(started.lock().unwrap().elapsed());
            drop(lean);
            let (seed, mut backoff) = (jitter_seed(&format!("c{n}")), 500u64);
            for attempt in 0.. {
                tokio::time::sleep(Duration::from_millis(reconnect_delay_ms(backoff, seed, attempt))).await;
                match Lean::try_connect(addr, n, "load-a").await {
                    Ok(again) => {
                        let _ = back_tx.send(Instant::now());
                        // Hold it open until the run ends.
                        std::mem::forget(again);
                        return;
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        backoff = (backoff * 2).min(30_000);
                    }
                }
            }
        });
    }
    *started.lock().unwrap() = Instant::now();
    let stop_took = server.stop();
    let mut last_close = Duration::ZERO;
    for _ in 0..clients {
        last_close = last_close.max(closed_rx.recv().await.unwrap());
    }
    let down_at = Instant::now();
    server.start_again();
    let up_at = Instant::now();
    let cpu_at_start = server.cpu_secs();
    let mut arrivals = Vec::with_capacity(clients);
    while arrivals.len() < clients {
        match tokio::time::timeout(Duration::from_secs(120), back_rx.recv()).await {
            Ok(Some(at)) => arrivals.push(at),
            _ => break,
        }
        if arrivals.len() % 500 == 0 {
            progress("reconnected", arrivals.len(), clients);
        }
    }
    println!();
    let cpu = server.cpu_secs() - cpu_at_start;
    let all_back = arrivals.iter().max().map(|t| t.duration_since(up_at)).unwrap_or_default();
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for t in &arrivals {
        *per_second.entry(t.duration_since(down_at).as_secs()).or_default() += 1;
    }
    let busiest = per_second.values().max().copied().unwrap_or(0);
    println!(
        "      stop: every client had its close frame {:.0} ms after SIGTERM (process exited in {:.0} ms)",
        last_close.as_secs_f64() * 1e3,
        stop_took.as_secs_f64() * 1e3
    );
    println!(
        "      back: {} of {clients} synced again {:.1} s after the new process started; busiest second {busiest} reconnections; {} attempts refused while it was down; server RSS {} kB",
        arrivals.len(),
        all_back.as_secs_f64(),
        refused.load(Ordering::Relaxed),
        server.rss_kb()
    );
    // Each reconnection is a handshake, a token's check and a first sync (no cursor: a snapshot of
    // the channel's 512 rows).
    println!(
        "      server CPU while they came back: {cpu:.2} s, {:.0} µs per reconnection",
        cpu * 1e6 / arrivals.len().max(1) as f64
    );
}

/// One counter from the server's `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return 0 };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// The floor under fan-out on this machine: the same frame written to `subscribers` plain loopback
/// sockets by `writers` threads with nothing else (no server, no WebSocket, no scheduler), read by
/// the same epoll readers as the fan-out runs. What a server's fan-out cannot beat here. The writing
/// end is a process of its own ([`floor_writer`]), as a server is: as many sockets as the fan-out's
/// (both ends in this process would fit 9,000 in its 20,000 descriptors), and its CPU read the way a
/// server's is (the process's time and the softirq threads').
async fn floor(subscribers: usize, rounds: usize, writers: usize) {
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--floor-writer", &subscribers.to_string(), &writers.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the floor's writer starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut clients = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(next_source()).unwrap();
        clients.push(Lean { stream: tokio::io::BufReader::new(socket.connect(addr).await.unwrap()) });
    }
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "the floor's writer took every connection");
    let mut readers = receive(clients, 2, rounds);
    let mut go = child.stdin.take().unwrap();
    let mut latencies = Vec::with_capacity(rounds);
    let cpu = || cpu_secs_of(child.id()) + softirq_secs();
    let cpu_before = cpu();
    for _ in 0..rounds {
        let sent = Instant::now();
        go.write_all(b"w").unwrap();
        go.flush().unwrap();
        let (_, last) = readers.reports.recv().await.unwrap();
        latencies.push((last - sent).as_secs_f64() * 1e3);
    }
    let writer_cpu = cpu() - cpu_before;
    readers.finish();
    drop(go);
    let _ = child.wait();
    latencies.sort_by(f64::total_cmp);
    println!(
        "      floor ({writers} writer threads in a process of their own, plain sockets, no server): {:.0} writes per CPU-second (softirq threads counted); write → last of {subscribers} read: p50 {:.1} ms, p99 {:.1} ms",
        (subscribers * rounds) as f64 / writer_cpu.max(1e-9),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

/// The floor's writing end (`load --floor-writer SUBSCRIBERS WRITERS`, started by [`floor`]): prints
/// its port, takes `subscribers` connections, prints `ready`, then at each byte on its input has
/// `writers` threads write the frame to their share of the sockets, a `write` each; ends with its
/// input.
fn floor_writer(subscribers: usize, writers: usize) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let mut shards: Vec<Vec<std::net::TcpStream>> = (0..writers).map(|_| Vec::new()).collect();
    for i in 0..subscribers {
        let s = listener.accept().unwrap().0;
        s.set_nodelay(true).unwrap();
        shards[i % writers].push(s);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    // A frame like a fan-out's: a text frame header and a diff of about the same size.
    let payload =
        format!(r#"{{"channel":"t:load-b|r:admin","diff":{}, "type":"diff","version":1}}"#, "x".repeat(260));
    let mut frame = vec![0x81, 126, (payload.len() >> 8) as u8, payload.len() as u8];
    frame.extend_from_slice(payload.as_bytes());
    let frame = Arc::new(frame);
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let rounds: Vec<std::sync::mpsc::Sender<()>> = shards
        .into_iter()
        .map(|shard| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (frame, done) = (Arc::clone(&frame), done_tx.clone());
            std::thread::spawn(move || {
                while rx.recv().is_ok() {
                    for mut s in &shard {
                        s.write_all(&frame).unwrap();
                    }
                    done.send(()).unwrap();
                }
            });
            tx
        })
        .collect();
    let mut byte = [0u8];
    while matches!(std::io::stdin().read(&mut byte), Ok(1)) {
        for r in &rounds {
            r.send(()).unwrap();
        }
        for _ in &rounds {
            done.recv().unwrap();
        }
    }
}

/// Diffs per second over all writers, and over the slowest tenant (its diffs / the time its last
/// writer took), with `writers` spread round-robin over `tenants` tenants.
async fn durable(writers: usize, per_writer: usize, max_batch: usize, tenants: usize) -> (f64, f64) {
    let names: Vec<String> = (0..tenants).map(|t| format!("load-c{t}")).collect();
    // One tenant's writers share its channel and each reads the others' diffs: room for all of them.
    let server = Server::start(max_batch, &names, 65536);
    let total = writers * per_writer;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let done = Arc::clone(&done);
            let addr = server.addr;
            tokio::spawn(async move {
                // Writers of one tenant share its channel, so each also receives the others' diffs.
                let tenant: &'static str = Box::leak(format!("load-c{}", w % tenants).into_boxed_str());
                let ws = subscriber(addr, 500_000 + w, tenant).await;
                let (mut write, mut read) = ws.split();
                let sender = tokio::spawn(async move {
                    for i in 0..per_writer {
                        let push = json!({"type": "push", "mutation_id": format!("w{w}-{i}"), "diff": {"changes": [{
                            "table": "inventory_items", "op": "insert", "pk": {"id": format!("w{w}-{i}")},
                            "cols": {"tenant_id": {"new": tenant}, "sku": {"new": "S"}, "name": {"new": "Part"},
                                     "quantity": {"new": i}, "location": {"new": null}}}]}});
                        write.send(Message::text(push.to_string())).await.unwrap();
                    }
                    write
                });
                let mut acks = 0;
                while acks < per_writer {
                    let Some(Ok(Message::Text(t))) = read.next().await else { panic!("writer lost") };
                    // The tag comes first: the other writers' diffs (one tenant's writers share its
                    // channel) are told apart without parsing them, so the load generator's CPU goes
                    // to reading, not to JSON.
                    if t.starts_with(r#"{"type":"diff""#) {
                        continue;
                    }
                    let v: Value = serde_json::from_str(&t).unwrap();
                    match v["type"].as_str() {
                        Some("ack") => {
                            acks += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("error" | "reject") => panic!("writer {w}: {v}"),
                        _ => {}
                    }
                }
                drop(sender.await);
                (w % tenants, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    let progress_task = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                progress(&format!("max_batch {max_batch}: acked"), done.load(Ordering::Relaxed), total);
            }
        })
    };
    let mut finished = vec![0f64; tenants];
    for t in tasks {
        let (tenant, at) = t.await.unwrap();
        finished[tenant] = finished[tenant].max(at);
    }
    progress_task.abort();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let per_tenant = (writers / tenants * per_writer) as f64;
    let slowest = finished.iter().map(|s| per_tenant / s.max(1e-9)).fold(f64::INFINITY, f64::min);
    println!();
    (rate, slowest)
}

/// `tenants` tenant databases with one connected (snapshotted, idle) client each: what the server
/// holds in memory and in open files.
async fn many_tenants(tenants: usize) {
    println!("[4/8] {tenants} tenants, one client each");
    let names: Vec<String> = (0..tenants).map(|t| format!("t{t:05}")).collect();
    let server = Server::start(512, &names, 1024);
    let pid = server.child.id();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let (rss0, fds0) = (server.rss_kb(), fds());
    let mut sockets = Vec::with_capacity(tenants);
    for (n, name) in names.iter().enumerate() {
        // It returns after its initial sync: the tenant is open and has served a snapshot.
        sockets.push(subscriber(server.addr, n, name).await);
        if n % 50 == 49 {
            progress("connecting one client per tenant", n + 1, tenants);
        }
    }
    println!();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, fds1) = (server.rss_kb(), fds());
    println!(
        "      {tenants} tenants open with a client each: server RSS +{:.1} MB ({:.1} KB per tenant), open files {fds0} → {fds1} ({:.1} per tenant, socket included; limit 20,000)",
        (rss1 - rss0.min(rss1)) as f64 / 1024.0,
        (rss1 - rss0.min(rss1)) as f64 / tenants as f64,
        (fds1 - fds0.min(fds1)) as f64 / tenants as f64
    );
    drop(sockets);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-writer") {
        let n = |k: usize| args[i + k].parse::<usize>().expect("--floor-writer SUBSCRIBERS WRITERS");
        return floor_writer(n(1), n(2));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    // `--only memory|snapshot|fanout|durable` runs one part (for profiling one of them).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let part = |name: &str| only.is_none_or(|o| o == name);
    let (connections, big_fanout, publishes, writes) = if quick {
        (2_000, 1_000, 50, 200)
    } else if full {
        (19_000, 10_000, 200, 2_000)
    } else {
        (10_000, 10_000, 200, 1_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("moat load tool ({} mode)", if quick { "quick" } else if full { "full" } else { "default" });
        if part("memory") {
            memory(connections).await;
        }
        if part("snapshot") {
            memory_after_snapshot(connections / 20).await;
        }
        if part("fanout") {
            fanout(1_000, publishes, 1).await;
            if big_fanout != 1_000 {
                fanout(big_fanout, publishes / 2, 1).await;
            }
            // Long enough for the CPU clock (10 ms ticks) to resolve it in quick mode too.
            fanout(big_fanout, publishes.max(400), 16).await;
            floor(big_fanout, publishes / 2, 2).await;
        }
        if part("durable") {
            println!("[3/8] durable diffs per second, 32 writers × {writes} pushes each");
            let mut one = 0.0;
            for tenants in [1, 4, 32] {
                let (rate, slowest) = durable(32, writes, 512, tenants).await;
                if tenants == 1 {
                    one = rate;
                }
                println!(
                    "      {tenants:>2} tenant(s): {rate:.0} diffs/s with group commit; slowest tenant {slowest:.0} diffs/s (an even share: {:.0})",
                    rate / tenants as f64
                );
            }
            let single = durable(32, writes / 4, 1, 1).await.0;
            println!(
                "      one tenant, one transaction per diff: {single:.0} diffs/s (group commit {:.1}×) (target ≥ 20k/s)",
                one / single
            );
        }
        if part("tenants") {
            many_tenants(if quick { 200 } else { 1_000 }).await;
        }
        if part("stalled") {
            stalled_clients(1_000, if quick { 50 } else { 200 }, 400).await;
        }
        if part("reconnect") {
            reconnect_storm(connections.min(10_000)).await;
        }
        if part("cluster") {
            cluster_fanout(if quick { 500 } else { 5_000 }, if quick { 50 } else { 100 }).await;
        }
        if part("peers") {
            // At least 200 messages: the CPU clock ticks every 10 ms.
            beside_peers(1_000, publishes.max(200)).await;
            if big_fanout != 1_000 {
                beside_peers(big_fanout, publishes / 2).await;
            }
        }
    });
}
