//! Golden fixtures for the session messages: one real session (hello, snapshot, push, conflict,
//! reject, revoke, error, ping) is recorded and each kind of frame compared with
//! `tests/fixtures/wire/session/<type>.json`. `MOAT_BLESS=1` rewrites them after an intended change;
//! `docs/protocol.md` shows the same examples.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use support::{Client, TestServer, token, update};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/wire/session")
}

fn check(name: &str, v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap();
    let path = dir().join(format!("{name}.json"));
    if std::env::var_os("MOAT_BLESS").is_some() {
        std::fs::write(&path, format!("{text}\n")).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(stored.trim_end(), text, "{name} changed; bless it if that was intended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_message() {
    let server = TestServer::start_with(|c| c.limits.snapshot_chunk_rows = 1).await;
    let mut frames: BTreeMap<String, Value> = BTreeMap::new();
    let mut keep = |v: &Value| {
        frames.entry(v["type"].as_str().unwrap().to_owned()).or_insert_with(|| v.clone());
    };

    let tok = token("tom", "company-a", "technician");
    let device = json!({"app_version": "2.1.0", "platform": "ios", "pending": 2, "oldest_pending_ms": 5400,
                        "rejected": 0, "conflicts": 0});
    let hello = json!({"type": "hello", "protocol": 1, "token": "<JWT>", "client_id": "3f9c2a7be01d44a1c8e5f0b2",
                       "cursors": {"company-a/admin": 41}, "schema": sqlite_ext::Schema::demo().fingerprint(),
                       "device": device, "accept": ["snapshot_rows"]});
    let mut real_hello = hello.clone();
    real_hello["token"] = json!(tok);
    let mut tom = Client::hello(&server.url(), real_hello).await;
    keep(&tom.welcome);
    let (synced, before) = tom.until("synced").await;
    for f in &before {
        keep(f);
    }
    keep(&synced);

    let alice_hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                             "client_id": "77d0e5a1c3b94f2e8a6d1b09", "cursors": {}});
    // Alice's client takes snapshot chunks as diffs (it does not accept `snapshot_rows`).
    let mut alice = Client::hello(&server.url(), alice_hello).await;
    alice.until("synced").await.1.iter().for_each(&mut keep);
    alice.push("alice-1", update("jobs", "job-a1", "status", json!("open"), json!("on_hold"))).await;
    alice.until("ack").await;

    let push = json!({"type": "push", "mutation_id": "3f9c2a7be01d44a1c8e5f0b2-17",
                      "diff": update("jobs", "job-a1", "status", json!("open"), json!("done"))});
    tom.send(push.clone()).await;
    let (ack, between) = tom.until("ack").await;
    between.iter().for_each(&mut keep);
    keep(&ack);
    tom.push("3f9c2a7be01d44a1c8e5f0b2-18", update("jobs", "job-a1", "price_cents", json!(10000), json!(1)))
        .await;
    keep(&tom.until("reject").await.0);
    tom.send(json!({"type": "teleport"})).await;
    keep(&tom.until("error").await.0);
    let ping = json!({"type": "ping", "id": 7});
    tom.send(ping.clone()).await;
    keep(&tom.until("pong").await.0);

    let report = json!({"type": "report", "device": {"app_version": "2.1.0", "platform": "ios", "pending": 0,
        "rejected": 1, "conflicts": 0, "last_error": "the server sent a frame this app cannot use"}});
    tom.send(report.clone()).await;
    tom.settle().await;
    let list_devices = json!({"type": "list_devices"});
    alice.send(list_devices.clone()).await;
    let mut devices = alice.until("devices").await.0;
    // Times vary from run to run: the fixture shows one.
    for d in devices["devices"].as_array_mut().unwrap() {
        d["last_seen_ms"] = json!(1_796_226_301_000_u64);
    }
    keep(&devices);

    let history = json!({"type": "history", "table": "jobs", "id": "job-a1"});
    tom.send(history.clone()).await;
    let mut answer = tom.until("history").await.0;
    for (n, e) in answer["entries"].as_array_mut().unwrap().iter_mut().enumerate() {
        e["at_ms"] = json!(1_796_226_301_000_u64 - 60_000 * n as u64);
    }
    keep(&answer);

    let customize = json!({"type": "customize", "id": "c-1", "request": {"action": "versions"}});
    alice.send(customize.clone()).await;
    keep(&alice.until("customized").await.0);

    for (name, v) in [
        ("customize", &customize),
        ("hello", &hello),
        ("push", &push),
        ("ping", &ping),
        ("report", &report),
        ("list_devices", &list_devices),
        ("history_request", &history),
    ] {
        check(name, v);
    }
    for name in [
        "welcome",
        "synced",
        "snapshot_begin",
        "snapshot",
        "snapshot_rows",
        "snapshot_end",
        "revoke",
        "diff",
        "ack",
        "reject",
        "error",
        "pong",
        "devices",
        "history",
        "customized",
    ] {
        let v = frames.get(name).unwrap_or_else(|| panic!("no {name} frame was seen: {:?}", frames.keys()));
        check(name, v);
    }
}
