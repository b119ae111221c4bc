//! Resuming: a client that was away gets exactly the diffs after its cursor; one whose cursor the
//! log no longer covers gets a fresh snapshot; data of a channel it lost is revoked.

mod support;

use serde_json::json;
use support::{Client, TestServer, get, token, update};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_from_its_cursor() {
    let server = TestServer::start().await;
    let tok = token("alice", "company-a", "admin");
    let mut a = Client::connect(&server.url(), &tok, json!({})).await;
    a.until("synced").await;
    let cursor = a.cursor;
    drop(a);

    let mut b = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    b.until("synced").await;
    for (i, status) in ["scheduled", "in_progress", "done"].iter().enumerate() {
        let old = ["open", "scheduled", "in_progress"][i];
        b.push(&format!("b-{i}"), update("jobs", "job-a1", "status", json!(old), json!(status))).await;
        b.until("ack").await;
    }
    // Company-b writes in between: not part of company-a's channel.
    let mut bella = Client::connect(&server.url(), &token("bella", "company-b", "admin"), json!({})).await;
    bella.until("synced").await;
    bella.push("x", update("jobs", "job-b1", "status", json!("open"), json!("done"))).await;
    bella.until("ack").await;

    let mut a = Client::connect(&server.url(), &tok, json!({"company-a/admin": cursor})).await;
    let frames = a.settle().await;
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["diff", "diff", "diff", "synced"], "{frames:?}");
    let versions: Vec<i64> = frames.iter().map(|f| f["version"].as_i64().unwrap()).collect();
    // Company-b's write went to company-b's own database and log: company-a's versions do not move.
    assert_eq!((versions[0], versions[2], versions[3]), (cursor + 1, cursor + 3, cursor + 3), "{versions:?}");
    assert_eq!(frames[2]["diff"]["changes"][0]["cols"]["status"]["new"], "done");
    // Counted as they were sent: three first syncs (alice, amy, bella), one catch-up.
    let metrics = get(server.addr, "/metrics").await.1;
    assert!(metrics.contains("moat_snapshots_total 3\n"), "{metrics}");
    assert!(metrics.contains("moat_catch_ups_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_log_gets_a_fresh_snapshot() {
    let server = TestServer::start_with(|c| c.limits.log_retention = 1).await;
    let tok = token("alice", "company-a", "admin");
    let mut a = Client::connect(&server.url(), &tok, json!({})).await;
    a.until("synced").await;
    // Enough commits to pass a compaction point (every 1024 versions).
    let mut sql = String::new();
    for i in 0..1100 {
        sql.push_str(&format!("UPDATE jobs SET price_cents = {i} WHERE id = 'job-a2';"));
        server.store.exec(&sql).await.unwrap();
        sql.clear();
    }
    let mut b = Client::connect(&server.url(), &tok, json!({"company-a/admin": 1})).await;
    let (begin, _) = b.until("snapshot_begin").await;
    assert_eq!(begin["rows"], 3);
    let (end, _) = b.until("synced").await;
    assert!(end["version"].as_i64().unwrap() >= 1100);
    assert_eq!(end["version"].as_i64(), Some(b.cursor));
    assert!(b.received.iter().any(|c| c["cols"]["price_cents"]["new"] == 1099));
    let metrics = get(server.addr, "/metrics").await.1;
    assert!(metrics.contains("moat_snapshots_total 2\n"), "{metrics}");
    assert!(metrics.contains("moat_catch_ups_total 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_user_lost_is_revoked() {
    let server = TestServer::start().await;
    // Tom was an admin; his token now says technician.
    let mut tom = Client::connect(
        &server.url(),
        &token("tom", "company-a", "technician"),
        json!({"company-a/admin": 1}),
    )
    .await;
    let (revoke, _) = tom.until("revoke").await;
    assert_eq!(revoke["channel"], "company-a/admin");
    let (begin, _) = tom.until("snapshot_begin").await;
    assert_eq!(begin["channel"], "company-a/technician");
}
