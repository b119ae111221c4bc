//! Cluster mode, end to end: a real `nats-server` with JetStream and three real `moat serve --cluster`
//! nodes on 127.0.0.1 sharing one data directory; real WebSocket clients.
//!
//! - clients of one tenant on node 1 and node 3 see each other's edits live (latency printed beside
//!   two clients on one node);
//! - the tenant, owned by node 2, takes pushes through node 1: each acknowledged once, durable, and a
//!   replay is answered from the stored outcome;
//! - kill -9 a node that does not own the tenant: its client reconnects to another node from its
//!   cursor and converges, no acknowledged write lost;
//! - `moat node drain` the owner while clients on the other nodes write: writes pause (printed) and
//!   go on on the new owner, 0 lost, 0 applied twice;
//! - a frame larger than NATS's largest message passes between nodes in pieces, and so does a push
//!   that large through a node that does not own the tenant.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Client, MOAT, Moat, moat, token};
use tokio_tungstenite::tungstenite::Message;

/// The `nats-server` binary (Debian's package puts it in /usr/sbin).
fn nats_server() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/local/bin"]) {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("nats-server is not installed: run scripts/setup (Debian package nats-server)");
}

/// A real NATS server with JetStream, stopped when dropped.
struct Nats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        Nats::start_with("")
    }

    /// With these lines of nats-server configuration.
    fn start_with(config: &str) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&conf)
            .arg("-sd")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, url: format!("nats://127.0.0.1:{port}"), _dir: dir }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(data: &Path, nats: &Nats, name: &str) -> Moat {
    Moat::serve(data, &["--cluster", &nats.url, "--node", name], &[])
}

/// `moat node ARGS --cluster URL`: its standard output.
fn moat_node(nats: &Nats, args: &[&str]) -> String {
    let out = Command::new(MOAT).arg("node").args(args).args(["--cluster", &nats.url]).output().unwrap();
    assert!(out.status.success(), "moat node {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn insert(prefix: &str, i: usize) -> Value {
    json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": format!("{prefix}-{i:05}")},
        "cols": {"tenant_id": {"new": "company-a"}, "sku": {"new": format!("SKU-{i}")}, "name": {"new": "Part"},
                 "quantity": {"new": i}, "location": {"new": null}}}]})
}

fn rows(data: &Path, like: &str) -> i64 {
    let db = moat_server::tenants::tenant_path(data, "company-a");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT count(*) FROM inventory_items WHERE id LIKE ?1", [like], |r| r.get(0)).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Push → the other client's diff, one at a time: the latencies.
async fn ping_pong(from: &mut Client, to: &mut Client, prefix: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i:05}");
        let took = Instant::now();
        from.push(&format!("{prefix}-m{i}"), insert(prefix, i)).await;
        loop {
            let v = to.recv().await;
            if v["type"] == "diff" && v["diff"]["changes"][0]["pk"]["id"] == id.as_str() {
                break;
            }
        }
        out.push(took.elapsed());
        from.until("ack").await;
    }
    out
}

/// A client that keeps writing through disconnections, as the real clients do: what is not
/// acknowledged is sent again (on the next socket, or after a retryable error), and the server's
/// idempotency makes each mutation count once.
struct Writer {
    token: String,
    prefix: String,
    total: usize,
    /// Acks per mutation id (each must be 1... or more only for replays of acknowledged ones).
    acks: HashMap<String, usize>,
    cursor: i64,
    channel: String,
    /// The longest time between two acks, and when the last came.
    longest_gap: Duration,
    last_ack: Option<Instant>,
    reconnects: usize,
    /// Acknowledged so far, for a test to watch from outside.
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Writer {
    fn new(tenant_token: String, prefix: &str, total: usize) -> Writer {
        Writer {
            token: tenant_token,
            prefix: prefix.into(),
            total,
            acks: HashMap::new(),
            cursor: 0,
            channel: String::new(),
            longest_gap: Duration::ZERO,
            last_ack: None,
            reconnects: 0,
            progress: Default::default(),
        }
    }

    /// Writes all of its mutations in a task of its own; what it has acknowledged so far, and the task.
    fn spawn(mut self, urls: Vec<String>, window: usize) -> (Progress, tokio::task::JoinHandle<Writer>) {
        let progress = Progress(std::sync::Arc::clone(&self.progress));
        let total = self.total;
        (
            progress,
            tokio::spawn(async move {
                self.run(&urls, total, window).await;
                self
            }),
        )
    }

    fn done(&self) -> bool {
        self.acks.len() == self.total
    }

    /// Writes until `until_acks` mutations are acknowledged (or all of them), on `urls` in turn:
    /// when a socket closes it reconnects to the next one that answers, from its cursor.
    async fn run(&mut self, urls: &[String], until_acks: usize, window: usize) {
        let mut at = 0;
        while self.acks.len() < until_acks.min(self.total) {
            let url = &urls[at % urls.len()];
            let Ok(Ok((mut ws, _))) =
                tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url)).await
            else {
                at += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let cursors =
                if self.channel.is_empty() { json!({}) } else { json!({ &self.channel: self.cursor }) };
            let hello = json!({"type": "hello", "protocol": 1, "token": self.token,
                "client_id": format!("writer-{}", self.prefix), "cursors": cursors});
            if ws.send(Message::text(hello.to_string())).await.is_err() {
                at += 1;
                continue;
            }
            let mut pending: HashSet<usize> = HashSet::new();
            let mut next = 0;
            let mut retry_at: Option<Instant> = None;
            loop {
                if self.acks.len() >= until_acks.min(self.total) {
                    return;
                }
                if retry_at.is_none_or(|t| Instant::now() >= t) {
                    retry_at = None;
                    while pending.len() < window && next < self.total {
                        let id = format!("{}-m{next}", self.prefix);
                        if !self.acks.contains_key(&id) {
                            let push = json!({"type": "push", "mutation_id": id, "diff": insert(&self.prefix, next)});
                            if ws.send(Message::text(push.to_string())).await.is_err() {
                                break;
                            }
                            pending.insert(next);
                        }
                        next += 1;
                    }
                }
                let frame = match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                    Err(_) => {
                        if pending.is_empty() && next >= self.total {
                            next = 0; // everything sent once: send again what is still not acknowledged
                        }
                        continue;
                    }
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(_))) => continue,
                };
                let v: Value = serde_json::from_str(&frame).unwrap();
                let index = |v: &Value| -> usize {
                    v["mutation_id"].as_str().unwrap().rsplit("-m").next().unwrap().parse().unwrap()
                };
                match v["type"].as_str().unwrap() {
                    "welcome" => self.channel = v["channels"][0].as_str().unwrap().to_owned(),
                    "ack" => {
                        pending.remove(&index(&v));
                        *self.acks.entry(v["mutation_id"].as_str().unwrap().to_owned()).or_default() += 1;
                        self.progress.store(self.acks.len(), std::sync::atomic::Ordering::Relaxed);
                        let now = Instant::now();
                        if let Some(last) = self.last_ack {
                            self.longest_gap = self.longest_gap.max(now - last);
                        }
                        self.last_ack = Some(now);
                    }
                    "error" if v["retry"] == true && v["mutation_id"].is_string() => {
                        pending.remove(&index(&v));
                        next = next.min(index(&v));
                        retry_at = Some(Instant::now() + Duration::from_millis(100));
                    }
                    "reject" | "error" => panic!("{v}"),
                    "diff" => self.cursor = v["version"].as_i64().unwrap(),
                    "synced" | "snapshot_end" => self.cursor = v["version"].as_i64().unwrap(),
                    _ => {}
                }
            }
            self.reconnects += 1;
            at += 1;
        }
    }
}

/// How many mutations a spawned writer has had acknowledged.
struct Progress(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Progress {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn reaches(&self, n: usize) {
        while self.get() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, Nats) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    moat(&["tenant", "create", "company-a"], &data);
    moat(&["tenant", "create", "company-b"], &data);
    (dir, data, Nats::start())
}

fn lease_of(nats: &Nats, tenant: &str) -> Option<String> {
    moat_node(nats, &["leases"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{tenant}\t")).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_client_and_forwards_to_the_owner() {
    let (_dir, data, nats) = setup();
    let (n1, n2, n3) = (node(&data, &nats, "n1"), node(&data, &nats, "n2"), node(&data, &nats, "n3"));
    let tok = token("alice", "company-a", "admin");

    // The first client of the tenant is on node 2: node 2 takes its lease.
    let mut on2 = Client::connect(&n2.url(), &tok, json!({})).await;
    on2.until("synced").await;
    assert_eq!(lease_of(&nats, "company-a").as_deref(), Some("n2"));
    let mut on1 = Client::connect(&n1.url(), &tok, json!({})).await;
    on1.until("synced").await;
    let mut on3 = Client::connect(&n3.url(), &tok, json!({})).await;
    on3.until("synced").await;

    // Live between two nodes that do not own the tenant, both ways; beside two clients of the owner.
    let mut across = ping_pong(&mut on1, &mut on3, "a13", 40).await;
    across.extend(ping_pong(&mut on3, &mut on1, "a31", 40).await);
    let mut second = Client::connect(&n2.url(), &tok, json!({})).await;
    second.until("synced").await;
    let mut single = ping_pong(&mut on2, &mut second, "s22", 80).await;
    println!(
        "push -> other client's diff: across nodes 1 and 3 (owner node 2) p50 {:.2} ms p99 {:.2} ms; \
         both on the owner p50 {:.2} ms p99 {:.2} ms",
        ms(percentile(&mut across, 0.5)),
        ms(percentile(&mut across, 0.99)),
        ms(percentile(&mut single, 0.5)),
        ms(percentile(&mut single, 0.99)),
    );
    // The owner's own client saw the edits made through nodes 1 and 3 too.
    on2.settle().await;
    let seen: HashSet<&str> = on2.received.iter().filter_map(|c| c["pk"]["id"].as_str()).collect();
    assert!(seen.contains("a13-00039") && seen.contains("a31-00039"), "the owner's client missed edits");

    // Pushes through node 1: each acknowledged once, durable on the owner's file.
    let before = rows(&data, "f1-%");
    let mut w = Writer::new(tok.clone(), "f1", 300);
    w.run(&[n1.url()], 300, 64).await;
    assert!(w.acks.values().all(|&n| n == 1), "a push was acknowledged twice");
    assert_eq!((before, rows(&data, "f1-%")), (0, 300));
    // A replay through node 3 is answered from the stored outcome, not applied again.
    let mut c = Client::connect(&n3.url(), &tok, json!({})).await;
    c.until("synced").await;
    c.push("f1-m7", insert("f1", 7)).await;
    let (ack, _) = c.until("ack").await;
    assert_eq!(ack["mutation_id"], "f1-m7");
    assert_eq!(rows(&data, "f1-%"), 300);

    // History and a refused write of a technician go through the owner and read like a single node's.
    c.send(json!({"type": "history", "table": "inventory_items", "id": "f1-00007"})).await;
    let (h, _) = c.until("history").await;
    assert_eq!(h["entries"].as_array().unwrap().len(), 1, "{h}");
    c.send(json!({"type": "customize", "id": "v1", "request": {"action": "versions"}})).await;
    let (v, _) = c.until("customized").await;
    assert_eq!(v["answer"]["result"], "versions", "{v}");
    assert!(v["answer"]["roles"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
    let mut tech = Client::connect(&n1.url(), &token("tom", "company-a", "technician"), json!({})).await;
    tech.until("synced").await;
    tech.send(json!({"type": "list_devices"})).await;
    let (e, _) = tech.until("error").await;
    assert_eq!(e["code"], "forbidden", "{e}");

    // Another tenant is its own: its first client's node takes it, and it sees none of company-a.
    let mut b = Client::connect(&n3.url(), &token("bella", "company-b", "admin"), json!({})).await;
    b.until("synced").await;
    assert!(b.received.is_empty());
    assert_eq!(lease_of(&nats, "company-b").as_deref(), Some("n3"));

    // Per-node metrics.
    let (_, metrics) = support::get(n1.addr.parse().unwrap(), "/metrics").await;
    let figure = |m: &str, name: &str| -> i64 {
        m.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap().parse().unwrap()
    };
    assert!(figure(&metrics, "moat_cluster_pushes_forwarded_total") >= 340, "{metrics}");
    assert!(figure(&metrics, "moat_cluster_frames_in_total") > 0);
    let (_, owner) = support::get(n2.addr.parse().unwrap(), "/metrics").await;
    assert_eq!(figure(&owner, "moat_cluster_leases"), 1);
    assert!(figure(&owner, "moat_cluster_requests_served_total") > 300);
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_that_does_not_own_the_tenant_loses_nothing() {
    let (_dir, data, nats) = setup();
    let (n1, n2, n3) = (node(&data, &nats, "n1"), node(&data, &nats, "n2"), node(&data, &nats, "n3"));
    let tok = token("alice", "company-a", "admin");
    let mut owner_client = Client::connect(&n2.url(), &tok, json!({})).await;
    owner_client.until("synced").await;
    // A client of node 3 that will catch up from its cursor after the writes (through the owner).
    let mut watcher = Client::connect(&n3.url(), &tok, json!({})).await;
    watcher.until("synced").await;
    let (channel, cursor) = (watcher.welcome["channels"][0].as_str().unwrap().to_owned(), watcher.cursor);
    drop(watcher);

    // A client writes through node 1; node 1 is killed (SIGKILL) in the middle. The client reconnects
    // to node 3 from its cursor and sends again what was not acknowledged.
    let total = 2000;
    let (progress, writing) = Writer::new(tok.clone(), "k", total).spawn(vec![n1.url(), n3.url()], 128);
    progress.reaches(600).await;
    let mut n1 = n1;
    n1.child.kill().unwrap();
    n1.child.wait().unwrap();
    let acked_at_kill = progress.get();
    let w = writing.await.unwrap();
    assert!(w.reconnects >= 1, "the client's socket to node 1 did not break");
    assert!(w.done());
    assert_eq!(rows(&data, "k-%"), total as i64, "each push applied exactly once");
    let acked_before: Vec<&String> = w.acks.keys().collect();
    // Every acknowledged write is there, and the client on node 3 converged on all of them.
    let mut watcher = Client::connect(&n3.url(), &tok, json!({ channel: cursor })).await;
    let (_, frames) = watcher.until("synced").await;
    assert!(frames.iter().all(|f| f["type"] == "diff"), "a catch-up, not a snapshot");
    let seen: HashSet<String> =
        watcher.received.iter().map(|c| c["pk"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen.len(), total);
    for id in &acked_before {
        let n: usize = id.rsplit("-m").next().unwrap().parse().unwrap();
        assert!(seen.contains(&format!("k-{n:05}")), "acknowledged {id} was lost");
    }
    println!(
        "kill -9 of a non-owner after {} acks: 0 of them lost, {} rows after, {} reconnect(s)",
        acked_at_kill,
        rows(&data, "k-%"),
        w.reconnects
    );
    drop((n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_owner_pauses_writes_briefly_and_loses_none() {
    let (_dir, data, nats) = setup();
    let (n1, n2, n3) = (node(&data, &nats, "n1"), node(&data, &nats, "n2"), node(&data, &nats, "n3"));
    let tok = token("alice", "company-a", "admin");
    let mut first = Client::connect(&n2.url(), &tok, json!({})).await;
    first.until("synced").await;
    assert_eq!(lease_of(&nats, "company-a").as_deref(), Some("n2"));

    let total = 1500;
    let (_, a) = Writer::new(tok.clone(), "d1", total).spawn(vec![n1.url()], 32);
    let (_, b) = Writer::new(tok.clone(), "d3", total).spawn(vec![n3.url()], 32);
    // Once writes flow, drain the owner.
    while rows(&data, "d%") < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nats_url = nats.url.clone();
    let drained = tokio::task::spawn_blocking(move || {
        let out = Command::new(MOAT).args(["node", "drain", "n2", "--cluster", &nats_url]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let owner = lease_of(&nats, "company-a");
    assert!(matches!(owner.as_deref(), Some("n1" | "n3")), "after the drain: {owner:?}");
    assert_eq!(rows(&data, "d1-%"), total as i64, "0 lost, 0 applied twice (node 1's client)");
    assert_eq!(rows(&data, "d3-%"), total as i64, "0 lost, 0 applied twice (node 3's client)");
    for w in [&a, &b] {
        assert!(w.done());
    }
    println!(
        "drain of the owner: {}writes paused at most {:.0} ms (node 1's client) and {:.0} ms (node 3's), \
         {} + {} reconnects; now owned by {}",
        drained.lines().next().map(|l| format!("{l}; ")).unwrap_or_default(),
        ms(a.longest_gap),
        ms(b.longest_gap),
        a.reconnects,
        b.reconnects,
        owner.unwrap()
    );
    // The drained node takes nothing again; its clients are served from the new owner.
    let mut late = Client::connect(&n2.url(), &tok, json!({})).await;
    late.until("synced").await;
    assert_ne!(lease_of(&nats, "company-a").as_deref(), Some("n2"));
    drop((n1, n2, n3));
}

/// Three nodes with 3-second leases, so that a test waits for one to run out in seconds.
fn short_lease_nodes(dir: &Path, data: &Path, nats: &Nats) -> (Moat, Moat, Moat) {
    let config = dir.join("moat.toml");
    std::fs::write(&config, "[cluster]\nlease_secs = 3\n").unwrap();
    let config = config.to_str().unwrap();
    let start =
        |name: &str| Moat::serve(data, &["--config", config, "--cluster", &nats.url, "--node", name], &[]);
    (start("n1"), start("n2"), start("n3"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_stalls_past_its_lease_stops_writing_and_another_node_takes_over() {
    let (dir, data, nats) = setup();
    let (n1, n2, n3) = short_lease_nodes(dir.path(), &data, &nats);
    let tok = token("alice", "company-a", "admin");
    let mut first = Client::connect(&n2.url(), &tok, json!({})).await;
    first.until("synced").await;
    assert_eq!(lease_of(&nats, "company-a").as_deref(), Some("n2"));

    let total = 1200;
    let (progress, writing) = Writer::new(tok.clone(), "s", total).spawn(vec![n1.url()], 32);
    progress.reaches(300).await;
    // The owner stalls (SIGSTOP) for longer than its lease: it can neither renew nor answer.
    n2.signal(libc::SIGSTOP);
    let stalled = Instant::now();
    let acked_at_stall = progress.get();
    // Another node takes the lease once it ran out, and writes go on; the stalled node still holds
    // the tenant's file lock, so the new owner waits for it to let go (below).
    let deadline = Instant::now() + Duration::from_secs(20);
    let taken = loop {
        match lease_of(&nats, "company-a") {
            Some(n) if n != "n2" => break n,
            _ => {
                assert!(Instant::now() < deadline, "nobody took the lease");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let lease_ran_out = stalled.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // It wakes up: its deadline has passed, so it commits nothing more; it finds its lease gone and
    // lets the tenant go (closing the file), and the new owner opens it.
    n2.signal(libc::SIGCONT);
    let stall = stalled.elapsed();
    let w = writing.await.unwrap();
    assert!(w.done());
    assert_eq!(rows(&data, "s-%"), total as i64, "0 lost, 0 applied twice");
    assert!(w.acks.values().all(|&n| n == 1), "a push was acknowledged twice");
    let (_, metrics) = support::get(n2.addr.parse().unwrap(), "/metrics").await;
    assert!(metrics.contains("\nmoat_cluster_leases 0\n"), "the stalled node still holds the lease");
    // Its own client was told to reconnect (the tenant moved).
    let (code, reason) = first.closed().await;
    assert_eq!(code, 1012, "{reason}");
    println!(
        "owner stalled after {acked_at_stall} acks: {taken} took the lease {:.1} s after the stall (3 s \
         leases); writes paused {:.1} s in all (the stall lasted {:.1} s)",
        lease_ran_out.as_secs_f64(),
        w.longest_gap.as_secs_f64(),
        stall.as_secs_f64()
    );
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_pauses_writes_for_a_lease_and_other_nodes_resync() {
    let (dir, data, nats) = setup();
    let (n1, n2, n3) = short_lease_nodes(dir.path(), &data, &nats);
    let tok = token("alice", "company-a", "admin");
    let mut first = Client::connect(&n2.url(), &tok, json!({})).await;
    first.until("synced").await;
    // A client of node 3 that only reads.
    let mut reader = Client::connect(&n3.url(), &tok, json!({})).await;
    reader.until("synced").await;
    let (channel, cursor) = (reader.welcome["channels"][0].as_str().unwrap().to_owned(), reader.cursor);

    // Fewer pushes than the channel buffer: the reader, not reading meanwhile, is not cut off as slow.
    let total = 800;
    let (progress, writing) = Writer::new(tok.clone(), "o", total).spawn(vec![n1.url()], 32);
    progress.reaches(300).await;
    let mut n2 = n2;
    n2.child.kill().unwrap(); // SIGKILL: no drain, the lease is left to run out
    n2.child.wait().unwrap();
    let killed = Instant::now();
    let w = writing.await.unwrap();
    assert_eq!(rows(&data, "o-%"), total as i64, "0 lost, 0 applied twice");
    let owner = lease_of(&nats, "company-a");
    assert!(matches!(owner.as_deref(), Some("n1" | "n3")), "{owner:?}");
    // The reader's node heard of the new owner: the reader reconnects from its cursor and has every
    // row, including any the dead owner committed but did not publish.
    let (code, _) = reader.closed().await;
    assert_eq!(code, 1012);
    let mut again = Client::connect(&n3.url(), &tok, json!({ &channel: cursor })).await;
    let (_, frames) = again.until("synced").await;
    assert!(frames.iter().all(|f| f["type"] == "diff"), "a catch-up, not a snapshot");
    let seen: HashSet<&str> = again.received.iter().filter_map(|c| c["pk"]["id"].as_str()).collect();
    assert_eq!(seen.len(), total, "the reader on node 3 converged");
    println!(
        "owner killed after {} acks: writes paused {:.1} s (3 s leases), now owned by {}; the writer finished {:.1} s after the kill",
        300,
        w.longest_gap.as_secs_f64(),
        owner.unwrap(),
        killed.elapsed().as_secs_f64()
    );
    drop((n1, n3));
}

/// `POST path` with a bearer token to a node; the whole HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migration_asked_of_any_node_is_run_by_the_owner() {
    let (_dir, data, nats) = setup();
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/migrations");
    let migrations = migrations.to_str().unwrap();
    let start = |name: &str| {
        Moat::serve(&data, &["--cluster", &nats.url, "--node", name, "--migrations", migrations], &[])
    };
    let (n1, n2, n3) = (start("n1"), start("n2"), start("n3"));
    let tok = token("alice", "company-a", "admin");
    let mut on2 = Client::connect(&n2.url(), &tok, json!({})).await;
    on2.until("synced").await;
    let mut on3 = Client::connect(&n3.url(), &tok, json!({})).await;
    on3.until("synced").await;
    let (channel, cursor) = (on3.welcome["channels"][0].as_str().unwrap().to_owned(), on3.cursor);

    // Asked of node 1, run by node 2 (the owner); every node's sessions move onto the new schema.
    let answer =
        support::post(n1.addr.as_str(), "/admin/migrate?tenant=company-a", &token("ops", "*", "operator"))
            .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("0002_vehicles applied"), "{answer}");
    assert_eq!(lease_of(&nats, "company-a").as_deref(), Some("n2"));
    for c in [&mut on2, &mut on3] {
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1012, "{reason}");
    }
    let hello = json!({"type": "hello", "protocol": 1, "token": tok, "client_id": "c3",
                       "cursors": { &channel: cursor }, "schema": sqlite_ext::Schema::demo().fingerprint()});
    let mut again = Client::hello(&n3.url(), hello).await;
    let sql = again.welcome["schema"]["sql"].as_str().expect("the welcome carries the new schema").to_owned();
    assert!(sqlite_ext::Schema::from_sql(&sql).unwrap().table("vehicles").is_ok(), "{sql}");
    again.until("synced").await;
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_frames_larger_than_one_nats_message_go_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    moat(&["tenant", "create", "company-a"], &data);
    let nats = Nats::start_with("max_payload: 131072\n");
    let (n1, n2) = (node(&data, &nats, "n1"), node(&data, &nats, "n2"));
    let tok = token("alice", "company-a", "admin");
    let mut owner = Client::connect(&n2.url(), &tok, json!({})).await;
    owner.until("synced").await;
    let mut c = Client::connect(&n1.url(), &tok, json!({})).await;
    c.until("synced").await;
    let big = |id: &str, fill: char| {
        json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": id},
            "cols": {"tenant_id": {"new": "company-a"}, "sku": {"new": "SKU"}, "name": {"new": fill.to_string().repeat(300_000)},
                     "quantity": {"new": 1}, "location": {"new": null}}}]})
    };
    let name_of = |c: &Client, id: &str| {
        c.received
            .iter()
            .find(|r| r["pk"]["id"] == id)
            .map(|r| r["cols"]["name"]["new"].as_str().unwrap().to_owned())
    };
    // Through node 1 (three NATS messages to the owner): written, acknowledged, and its frame reaches
    // the owner's own client whole.
    c.push("big-1", big("big-1", 'a')).await;
    let (ack, _) = c.until("ack").await;
    assert_eq!(ack["mutation_id"], "big-1");
    while name_of(&owner, "big-1").is_none() {
        owner.recv().await;
    }
    assert_eq!(name_of(&owner, "big-1"), Some("a".repeat(300_000)));
    // On the owner it is an ordinary write, and its frame (larger than one NATS message) reaches
    // node 1's client in pieces, put back together...
    owner.push("big-2", big("big-2", 'b')).await;
    let (ack, _) = owner.until("ack").await;
    assert_eq!(ack["mutation_id"], "big-2");
    while name_of(&c, "big-2").is_none() {
        c.recv().await;
    }
    assert_eq!(name_of(&c, "big-2"), Some("b".repeat(300_000)));
    // ...and so does a relayed snapshot through node 1, with both rows whole.
    let mut fresh = Client::connect(&n1.url(), &tok, json!({})).await;
    fresh.until("synced").await;
    assert_eq!(name_of(&fresh, "big-1"), Some("a".repeat(300_000)));
    assert_eq!(name_of(&fresh, "big-2"), Some("b".repeat(300_000)));
    // Ordinary requests still go as one message each, after pieces as before.
    c.push(
        "small-1",
        json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": "small-1"},
        "cols": {"tenant_id": {"new": "company-a"}, "sku": {"new": "S"}, "name": {"new": "small"},
                 "quantity": {"new": 2}, "location": {"new": null}}}]}),
    )
    .await;
    let (ack, _) = c.until("ack").await;
    assert_eq!(ack["mutation_id"], "small-1");
    drop((n1, n2));
}
