//! Operations: `/healthz`, `/readyz`, `/metrics`, the demo sign-in, and a graceful shutdown that closes every
//! connection with "going away".

mod support;

use serde_json::json;
use support::{Client, TestServer, get, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_graceful_shutdown() {
    let mut server = TestServer::start().await;
    assert_eq!(get(server.addr, "/healthz").await.0, 200);
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;
    let (status, body) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("moat_connections 1"), "{body}");
    assert!(body.contains("moat_channels 1"));
    assert!(body.contains("moat_fanout_latency_seconds_bucket"));
    assert_eq!(get(server.addr, "/demo/users").await.0, 404, "no demo sign-in without --demo");

    server.stop().await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_offers_its_users_with_working_tokens() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    let (status, body) = get(server.addr, "/demo/users").await;
    assert_eq!(status, 200);
    let users: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // chunked transfer encoding: take the JSON between the first '[' and the last ']'
        serde_json::from_str(&body[body.find('[').unwrap()..=body.rfind(']').unwrap()]).unwrap()
    });
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 4);
    let tom = users.iter().find(|u| u["user"] == "tom").unwrap();
    assert_eq!((tom["tenant"].as_str(), tom["role"].as_str()), (Some("company-a"), Some("technician")));
    let mut c = Client::connect(&server.url(), tom["token"].as_str().unwrap(), json!({})).await;
    let (begin, _) = c.until("snapshot_begin").await;
    assert!(begin["rows"].as_u64().unwrap() > 5000, "the demo data: {begin}");
}

/// Readiness tells the truth: while a tenant's database cannot take writes (SQLITE_FULL, as on a full
/// disk: its file is capped at its current size), `/readyz` says so and the failures are counted;
/// once writes succeed again, it recovers without a restart. Liveness stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_commits_fail_and_recovers() {
    let server = TestServer::start().await;
    assert_eq!(get(server.addr, "/readyz").await, (200, "ready\n".to_owned()));
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;
    server.store.exec("PRAGMA max_page_count = 1").await.unwrap();
    let big = "x".repeat(200 * 1024);
    c.push("full-1", support::update("jobs", "job-a1", "notes", json!("call first"), json!(big))).await;
    let err = loop {
        let v = c.recv().await;
        if v["mutation_id"] == "full-1" {
            break v;
        }
    };
    assert_eq!((err["mutation_id"].as_str(), err["retry"].as_bool()), (Some("full-1"), Some(true)), "{err}");
    let (status, body) = get(server.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("company-a: its last write failed to commit"), "{body}");
    assert_eq!(get(server.addr, "/healthz").await.0, 200, "alive, not ready");
    assert!(get(server.addr, "/metrics").await.1.contains("moat_commit_failures_total 1"));
    // Space again: the next write succeeds and readiness recovers.
    server.store.exec("PRAGMA max_page_count = 1073741823").await.unwrap();
    assert_eq!(get(server.addr, "/readyz").await.0, 200);
    c.push("full-2", support::update("jobs", "job-a1", "notes", json!("call first"), json!(big))).await;
    let (ack, _) = c.until("ack").await;
    assert_eq!(ack["mutation_id"], "full-2");
}

/// Readiness probes each open tenant's database with `PRAGMA quick_check`: a damaged page (here,
/// the root page of the jobs table overwritten on disk) makes `/readyz` fail and name the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_on_a_database_that_fails_its_integrity_check() {
    let server = TestServer::start().await;
    let data = server.dir.path().join("data");
    let base = moat_server::Config::default().base_schema().unwrap();
    let seed =
        moat_server::tenants::demo_seed_for(&base, moat_server::server::DEMO_SEED, "company-a", "company-c");
    moat_server::tenants::create(&data, "company-c", &base, Some(&seed)).unwrap();
    let path = moat_server::tenants::tenant_path(&data, "company-c");
    let (root, page_size): (i64, i64) = {
        let db = rusqlite::Connection::open(&path).unwrap();
        let root =
            db.query_row("SELECT rootpage FROM sqlite_schema WHERE name = 'jobs'", [], |r| r.get(0)).unwrap();
        (root, db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap())
    };
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(((root - 1) * page_size + 8) as u64)).unwrap();
        f.write_all(&[0xA5; 64]).unwrap();
    }
    assert_eq!(get(server.addr, "/readyz").await.0, 200, "company-c is not open yet");
    // Its first client opens it.
    let mut c = Client::connect(&server.url(), &token("cleo", "company-c", "admin"), json!({})).await;
    let _ = c.ws.close(None).await;
    let (status, body) = get(server.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("company-c: the database fails its integrity check"), "{body}");
    assert!(!body.contains("company-a"), "the healthy tenant is not named: {body}");
}

/// A server that cannot take its address says so, and creates nothing.
#[test]
fn a_taken_address_is_a_listen_error_and_creates_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--demo", "--listen", &addr, "--data"])
        .arg(&data)
        .env("MOAT_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with(&format!("moat: listen: cannot listen on {addr}")), "{stderr}");
    assert!(!data.exists(), "nothing is created before the server can serve");
    assert!(!stderr.contains('\u{1b}'), "no colour escapes in a log that is not a terminal");
}

/// `MOAT_LOG_FORMAT=json`: every log line is one JSON object with its level, message and fields.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("MOAT_LOG", "info")
        .env("MOAT_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let serving = lines.iter().find(|l| l["message"] == "moat serving").expect("the start is logged");
    assert_eq!(serving["level"], "INFO");
    assert!(serving["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{serving}");
    assert!(lines.iter().any(|l| l["message"] == "shutting down: closing connections"));
}

/// The systemd unit kept in `deploy/` passes `systemd-analyze verify` without a warning (with
/// `ExecStart` pointed at the binary just built: verify checks that it exists).
#[test]
fn the_systemd_unit_verifies() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/moat.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/moat serve --config /etc/moat/moat.toml"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/moat", env!("CARGO_BIN_EXE_moat"))).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
