//! A replayed push (the same mutation id, again, on the same or a new connection) is applied once
//! and answered with the first outcome.

mod support;

use serde_json::json;
use support::{Client, TestServer, db_value, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_push_is_applied_once() {
    let server = TestServer::start().await;
    let tok = token("alice", "company-a", "admin");
    let insert = json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": "inv-1"},
        "cols": {"tenant_id": {"new": "company-a"}, "sku": {"new": "SKU-1"}, "name": {"new": "Valve"},
                 "quantity": {"new": 3}, "location": {"new": "van-1"}}}]});
    let mut a = Client::connect(&server.url(), &tok, json!({})).await;
    a.until("synced").await;
    a.push("c1-7", insert.clone()).await;
    let (first, _) = a.until("ack").await;
    a.push("c1-7", insert.clone()).await;
    let (again, frames) = a.until("ack").await;
    assert_eq!(first, again);
    assert!(frames.is_empty(), "no second diff: {frames:?}");

    // After a reconnect (the client never saw the ack, say) it replays again.
    drop(a);
    let mut b = Client::connect(&server.url(), &tok, json!({"company-a/admin": first["version"]})).await;
    b.settle().await;
    b.push("c1-7", insert).await;
    let (third, _) = b.until("ack").await;
    assert_eq!(third, first);
    assert_eq!(db_value(&server, "SELECT count(*) FROM inventory_items WHERE id = 'inv-1'"), 1i64.into());
    assert_eq!(
        db_value(&server, "SELECT count(*) FROM moat_log"),
        2i64.into(),
        "the seed and the insert, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutation_ids_are_per_user() {
    let server = TestServer::start().await;
    let mut alice = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let mut amy = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    amy.until("synced").await;
    let diff = |new: &str| {
        json!({"changes": [{"table": "jobs", "op": "update", "pk": {"id": "job-a2"},
        "cols": {"notes": {"old": null, "new": new}}}]})
    };
    alice.push("same-id", diff("from alice")).await;
    alice.until("ack").await;
    amy.push(
        "same-id",
        json!({"changes": [{"table": "jobs", "op": "update", "pk": {"id": "job-a2"},
        "cols": {"status": {"old": "open", "new": "done"}}}]}),
    )
    .await;
    amy.until("ack").await;
    assert_eq!(db_value(&server, "SELECT status FROM jobs WHERE id = 'job-a2'"), "done".to_owned().into());
}
