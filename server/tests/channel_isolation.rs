//! Channel isolation: Company-B never receives a byte of Company-A's rows, and a technician never
//! receives a column the rules hide from technicians, in snapshots, live diffs or conflict alerts.

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer, token, update};

fn text_of(frames: &[Value]) -> String {
    frames.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_b_never_sees_company_a_and_technicians_never_see_hidden_columns() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut bella = Client::connect(&url, &token("bella", "company-b", "admin"), json!({})).await;
    let (_, b_snapshot) = bella.until("synced").await;
    let mut tom = Client::connect(&url, &token("tom", "company-a", "technician"), json!({})).await;
    let (_, t_snapshot) = tom.until("synced").await;
    let mut alice = Client::connect(&url, &token("alice", "company-a", "admin"), json!({})).await;
    let (_, a_snapshot) = alice.until("synced").await;

    // Snapshots: each tenant only its own rows; the technician gets the hidden column as NULL.
    assert!(text_of(&a_snapshot).contains("thin margin"), "admins see internal notes");
    assert!(!text_of(&t_snapshot).contains("thin margin"), "{}", text_of(&t_snapshot));
    assert!(t_snapshot.iter().any(|f| f.to_string().contains("\"internal_notes\":{\"new\":null}")));
    // The same as rows (`snapshot_rows`, what the Moat clients accept): NULL where the column is hidden.
    let rows_hello = json!({"type": "hello", "protocol": 1, "token": token("tom", "company-a", "technician"),
                            "client_id": "tom-rows", "accept": ["snapshot_rows"]});
    let mut tom_rows = Client::hello(&url, rows_hello).await;
    let (_, r_snapshot) = tom_rows.until("synced").await;
    assert!(!text_of(&r_snapshot).contains("thin margin"), "{}", text_of(&r_snapshot));
    let jobs = r_snapshot
        .iter()
        .filter(|f| f["type"] == "snapshot_rows")
        .flat_map(|f| f["tables"].as_array().unwrap().iter().filter(|g| g["table"] == "jobs"))
        .collect::<Vec<_>>();
    assert!(!jobs.is_empty() && r_snapshot.iter().all(|f| f["type"] != "snapshot"));
    for g in jobs {
        let at = g["columns"].as_array().unwrap().iter().position(|c| c == "internal_notes").unwrap();
        assert!(g["rows"].as_array().unwrap().iter().all(|r| r[at].is_null()), "{g}");
    }
    let b_text = text_of(&b_snapshot);
    assert!(
        b_text.contains("job-b1") && !b_text.contains("company-a") && !b_text.contains("job-a"),
        "{b_text}"
    );

    // Live: company-a edits, including a hidden column; a technician's view drops it.
    alice
        .push("a-1", update("jobs", "job-a1", "internal_notes", json!("thin margin"), json!("secret")))
        .await;
    alice.until("ack").await;
    alice
        .push(
            "a-2",
            json!({"changes": [{"table": "jobs", "op": "update", "pk": {"id": "job-a2"},
                "cols": {"status": {"old": "open", "new": "scheduled"}, "internal_notes": {"old": null, "new": "also secret"}}}]}),
        )
        .await;
    alice.until("ack").await;
    alice
        .push(
            "a-3",
            json!({"changes": [{"table": "customers", "op": "insert", "pk": {"id": "cust-a-new"},
                "cols": {"tenant_id": {"new": "company-a"}, "name": {"new": "Maple Dental"}, "phone": {"new": null},
                         "email": {"new": null}, "address": {"new": null}}}]}),
        )
        .await;
    alice.until("ack").await;

    let t_live = tom.settle().await;
    let t_text = text_of(&t_live);
    assert_eq!(t_live.len(), 2, "the hidden-only edit is not sent at all: {t_text}");
    assert!(t_text.contains("scheduled") && !t_text.contains("secret"), "{t_text}");
    assert!(t_text.contains("Maple Dental"));

    let b_live = bella.settle().await;
    assert!(b_live.is_empty(), "company-b received {}", text_of(&b_live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_alert_does_not_leak_hidden_columns() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut alice = Client::connect(&url, &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let mut tom = Client::connect(&url, &token("tom", "company-a", "technician"), json!({})).await;
    tom.until("synced").await;

    alice.push("a-1", update("jobs", "job-a1", "status", json!("open"), json!("on_hold"))).await;
    alice.until("ack").await;
    tom.push("t-1", update("jobs", "job-a1", "status", json!("open"), json!("done"))).await;
    let (ack, _) = tom.until("ack").await;
    let c = &ack["conflicts"][0];
    assert_eq!(
        c["columns"][0],
        json!({"column": "status", "base": "open", "theirs": "on_hold", "mine": "done"})
    );
    assert!(!ack.to_string().contains("thin margin"));
}
