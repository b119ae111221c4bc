//! Live fan-out: a write reaches every client of its channel, in the channel's view, and the writer
//! gets its own diff before its ack.

mod support;

use serde_json::json;
use support::{Client, TestServer, token, update};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_every_client_of_the_channel_and_the_writer_gets_diff_then_ack() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut alice = Client::connect(&url, &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let mut amy = Client::connect(&url, &token("amy", "company-a", "admin"), json!({})).await;
    amy.until("synced").await;
    let mut tom = Client::connect(&url, &token("tom", "company-a", "technician"), json!({})).await;
    tom.until("synced").await;

    alice.push("m-1", update("jobs", "job-a1", "status", json!("open"), json!("done"))).await;
    let (diff, _) = alice.until("diff").await;
    let (ack, between) = alice.until("ack").await;
    assert!(between.is_empty(), "{between:?}");
    assert_eq!(ack["mutation_id"], "m-1");
    assert_eq!(ack["conflicts"], json!([]));
    assert_eq!(ack["version"], diff["version"], "the ack names the version of the diff sent before it");

    let (d, _) = amy.until("diff").await;
    assert_eq!(d, diff, "every client of the channel gets the same frame");
    let (d, _) = tom.until("diff").await;
    assert_eq!(d["channel"], "company-a/technician");
    assert_eq!(d["diff"], diff["diff"], "the technicians' channel sees the same change");
    assert_eq!(tom.cursor, diff["version"].as_i64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_encoding_per_channel_however_many_subscribers() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = Client::connect(&url, &token(&format!("u{i}"), "company-a", "admin"), json!({})).await;
        c.until("synced").await;
        clients.push(c);
    }
    let encodes = server.metrics.encodes.get();
    clients[0].push("m-1", update("jobs", "job-a2", "notes", json!(null), json!("x"))).await;
    for c in &mut clients {
        c.until("diff").await;
    }
    assert_eq!(server.metrics.encodes.get() - encodes, 1, "one channel, one encoding");
}

/// Two writers push without waiting while the server writes each of them the other's diffs from
/// the channel's fan-out and its own acks from its session: every frame arrives whole (the two
/// never interleave inside a frame), every ack comes after its own diff, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_frames_and_a_sessions_own_frames_never_interleave() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut writers = Vec::new();
    for user in ["alice", "amy", "alice", "amy"] {
        let mut c = Client::connect(&url, &token(user, "company-a", "admin"), json!({})).await;
        c.until("synced").await;
        writers.push(c);
    }
    let n = 300;
    let mut tasks = Vec::new();
    for (w, mut c) in writers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // Long values: a frame takes several socket writes' worth of bytes.
            let long = "x".repeat(3000);
            for i in 0..n {
                let diff = json!({"changes": [{"table": "jobs", "op": "insert",
                    "pk": {"id": format!("w{w}-{i}")},
                    "cols": {"tenant_id": {"new": "company-a"}, "title": {"new": format!("{long}{i}")},
                             "status": {"new": "open"}, "price_cents": {"new": i}, "notes": {"new": null},
                             "internal_notes": {"new": null}, "line_items": {"new": "[]"}, "assignee": {"new": null},
                             "customer_id": {"new": null}, "scheduled_date": {"new": null}}}]});
                c.push(&format!("w{w}-{i}"), diff).await;
            }
            let (mut acks, mut diffs) = (std::collections::HashMap::new(), 0);
            while acks.len() < n {
                let v = c.recv().await;
                match v["type"].as_str() {
                    Some("diff") => diffs += 1,
                    Some("ack") => {
                        let id = v["mutation_id"].as_str().unwrap().to_owned();
                        assert!(acks.insert(id, v["version"].as_i64().unwrap()).is_none(), "one ack each");
                        assert!(c.cursor >= v["version"].as_i64().unwrap(), "its diff came before its ack");
                    }
                    other => panic!("unexpected {other:?}: {v}"),
                }
            }
            diffs
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap() >= n, "at least its own diffs");
    }
}
