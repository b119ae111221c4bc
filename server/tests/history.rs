//! A record's history (`history`): who changed it, when and which fields, from the server's own
//! record of every commit, answered only from what the asking user may see: a record of another
//! tenant or one that does not exist has no history (the same empty answer), and a column hidden from
//! the role is never named.

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer, token, update};

async fn history(c: &mut Client, table: &str, id: &str) -> Vec<Value> {
    c.send(json!({"type": "history", "table": table, "id": id})).await;
    let (answer, _) = c.until("history").await;
    assert_eq!((answer["table"].as_str(), answer["id"].as_str()), (Some(table), Some(id)));
    answer["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_history_names_who_changed_what_and_only_what_the_user_may_see() {
    let server = TestServer::start().await;
    let mut alice = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let mut tom = Client::connect(&server.url(), &token("tom", "company-a", "technician"), json!({})).await;
    tom.until("synced").await;

    alice
        .push("a-1", update("jobs", "job-a2", "internal_notes", json!(null), json!("check the invoice")))
        .await;
    alice.until("ack").await;
    tom.push("t-1", update("jobs", "job-a2", "notes", json!(null), json!("dog in the yard"))).await;
    tom.until("ack").await;

    let seen_by_alice = history(&mut alice, "jobs", "job-a2").await;
    let who: Vec<(&str, &str)> =
        seen_by_alice.iter().map(|e| (e["user"].as_str().unwrap(), e["op"].as_str().unwrap())).collect();
    assert_eq!(who, [("tom", "update"), ("alice", "update"), ("", "insert")], "newest first");
    assert_eq!(seen_by_alice[0]["columns"], json!(["notes"]));
    assert_eq!(seen_by_alice[1]["columns"], json!(["internal_notes"]));
    assert!(seen_by_alice[0]["at_ms"].as_i64().unwrap() >= seen_by_alice[1]["at_ms"].as_i64().unwrap());
    assert!(seen_by_alice[0]["version"].as_i64().unwrap() > seen_by_alice[1]["version"].as_i64().unwrap());

    // The technician does not see internal notes: the change to them is not listed at all, and the
    // insert does not name the column.
    let seen_by_tom = history(&mut tom, "jobs", "job-a2").await;
    let who: Vec<&str> = seen_by_tom.iter().map(|e| e["user"].as_str().unwrap()).collect();
    assert_eq!(who, ["tom", ""]);
    assert!(!seen_by_tom[1]["columns"].as_array().unwrap().contains(&json!("internal_notes")));

    // Another tenant's record and a record that never existed: the same empty answer.
    assert_eq!(history(&mut tom, "jobs", "job-b1").await, Vec::<Value>::new());
    assert_eq!(history(&mut tom, "jobs", "job-zz").await, Vec::<Value>::new());
    // Not a table of the schema: an error to the sender, the session goes on.
    tom.send(json!({"type": "history", "table": "moat_history", "id": "x"})).await;
    let (err, _) = tom.until("error").await;
    assert_eq!(err["code"], "protocol");
    assert_eq!(history(&mut tom, "jobs", "job-a1").await.len(), 1);
}
