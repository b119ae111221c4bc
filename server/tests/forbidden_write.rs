//! Writes outside a role's rights are refused whole with a reason, and change nothing.

mod support;

use serde_json::json;
use support::{Client, TestServer, db_value, db_value_in, token, update};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_rights_are_rejected_and_change_nothing() {
    let server = TestServer::start().await;
    let mut tom = Client::connect(&server.url(), &token("tom", "company-a", "technician"), json!({})).await;
    tom.until("synced").await;

    let cases = [
        ("read-only column", update("jobs", "job-a1", "price_cents", json!(10000), json!(1))),
        ("hidden column", update("jobs", "job-a1", "internal_notes", json!("thin margin"), json!("x"))),
        ("read-only table", update("object_metadata", "company-a:jobs", "label", json!("Job"), json!("Gig"))),
        ("routing column", update("jobs", "job-a1", "tenant_id", json!("company-a"), json!("company-b"))),
        (
            "insert into another tenant",
            json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": "job-x"},
                "cols": {"tenant_id": {"new": "company-b"}, "title": {"new": "x"}, "status": {"new": "open"},
                         "price_cents": {"new": 0}, "notes": {"new": null}, "internal_notes": {"new": null},
                         "line_items": {"new": "[]"}, "assignee": {"new": null}, "customer_id": {"new": null},
                         "scheduled_date": {"new": null}}}]}),
        ),
        (
            "a delete of a record with fields the role may not write",
            json!({"changes": [{"table": "jobs", "op": "delete", "pk": {"id": "job-a2"},
                "cols": {"tenant_id": {"old": "company-a"}, "title": {"old": "Inspect AC"}, "status": {"old": "open"},
                         "price_cents": {"old": 5000}, "notes": {"old": null}, "internal_notes": {"old": null},
                         "line_items": {"old": "[]"}, "assignee": {"old": null}, "customer_id": {"old": null},
                         "scheduled_date": {"old": null}}}]}),
        ),
        (
            "one good change and one forbidden",
            json!({"changes": [
                {"table": "jobs", "op": "update", "pk": {"id": "job-a1"}, "cols": {"status": {"old": "open", "new": "done"}}},
                {"table": "jobs", "op": "update", "pk": {"id": "job-a2"}, "cols": {"price_cents": {"old": 5000, "new": 1}}}]}),
        ),
    ];
    for (i, (what, diff)) in cases.into_iter().enumerate() {
        let id = format!("t-{i}");
        tom.push(&id, diff).await;
        let (reject, _) = tom.until("reject").await;
        assert_eq!(reject["mutation_id"], id.as_str(), "{what}");
        assert_eq!(reject["code"], "forbidden", "{what}: {reject}");
        assert!(reject["reason"].as_str().unwrap().len() > 10, "{what}: a reason is given");
    }
    assert_eq!(db_value(&server, "SELECT status FROM jobs WHERE id = 'job-a1'"), "open".to_owned().into());
    assert_eq!(db_value(&server, "SELECT price_cents FROM jobs WHERE id = 'job-a2'"), 5000i64.into());
    assert_eq!(
        db_value_in(&server, "company-b", "SELECT status FROM jobs WHERE id = 'job-b1'"),
        "open".to_owned().into()
    );
    assert_eq!(db_value(&server, "SELECT count(*) FROM jobs WHERE id = 'job-x'"), 0i64.into());

    // The technician may still write what the rules allow.
    tom.push("ok", update("jobs", "job-a1", "notes", json!("call first"), json!("done, see photos"))).await;
    let (ack, _) = tom.until("ack").await;
    assert_eq!(ack["conflicts"], json!([]));
}
