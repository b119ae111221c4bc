//! Durability: the real `moat` binary takes a stream of pushes and is killed with SIGKILL mid-way.
//! After a restart on the same file, every acknowledged write is there, and replaying every push
//! (acknowledged or not) applies each exactly once.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;
use support::{Client, SECRET, token};

fn start(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(db)
        .env("MOAT_HS256_SECRET", SECRET)
        .env("MOAT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr =
        line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line}"));
    (child, format!("ws://{addr}/sync"))
}

fn insert(i: usize) -> serde_json::Value {
    json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": format!("inv-{i:05}")},
        "cols": {"tenant_id": {"new": "company-a"}, "sku": {"new": format!("SKU-{i}")}, "name": {"new": "Part"},
                 "quantity": {"new": i}, "location": {"new": null}}}]})
}

/// Pushes every mutation with at most `window` waiting for acks, reading while it writes, until
/// `stop_after` acks; returns the acknowledged ids.
async fn push_all(c: &mut Client, window: usize, stop_after: usize) -> Vec<String> {
    let (mut next, mut acked) = (0, Vec::new());
    while acked.len() < stop_after {
        while next < PUSHES && next - acked.len() < window {
            c.push(&format!("m-{next}"), insert(next)).await;
            next += 1;
        }
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => acked.push(v["mutation_id"].as_str().unwrap().to_owned()),
            Some("reject" | "error") => panic!("{v}"),
            _ => {}
        }
    }
    acked
}

const PUSHES: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let made = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["tenant", "create", "company-a", "--data"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(made.success());
    let db = moat_server::tenants::tenant_path(&data, "company-a");
    let tok = token("alice", "company-a", "admin");

    let (mut child, url) = start(&data);
    let mut c = Client::connect(&url, &tok, json!({})).await;
    c.until("synced").await;
    let acked = push_all(&mut c, 256, PUSHES / 3).await;
    child.kill().unwrap(); // SIGKILL: no shutdown path runs
    child.wait().unwrap();

    let (mut child, url) = start(&data);
    let mut c = Client::connect(&url, &tok, json!({})).await;
    c.until("synced").await;
    let present: std::collections::HashSet<String> =
        c.received.iter().map(|ch| ch["pk"]["id"].as_str().unwrap().to_owned()).collect();
    for id in &acked {
        let n: usize = id[2..].parse().unwrap();
        assert!(present.contains(&format!("inv-{n:05}")), "acknowledged {id} was lost");
    }
    println!("acknowledged before the kill: {}, rows after restart: {}", acked.len(), present.len());

    // Replaying everything: what was applied is acknowledged again, not applied twice.
    let acked = push_all(&mut c, 256, PUSHES).await;
    assert_eq!(acked.len(), PUSHES);
    let rows = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM inventory_items", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(rows as usize, PUSHES, "each push applied exactly once");
    child.kill().unwrap();
    child.wait().unwrap();
}
