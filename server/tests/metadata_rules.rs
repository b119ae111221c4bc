//! The metadata's rules, enforced by the server: a push whose values break what `object_metadata`
//! says of their fields is rejected as a whole (code `invalid`), with a reason naming the object, the
//! field and the rule, and nothing of it reaches the database or another client. The same check
//! (`sqlite_ext::ui::check_diff`) runs on the client before an edit is queued.

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer, token};

fn insert_job(id: &str, cols: Value) -> Value {
    let mut all = json!({"tenant_id": "company-a", "title": "A job", "status": "open", "price_cents": 1000,
        "notes": null, "internal_notes": null, "line_items": "[]", "assignee": null, "customer_id": null,
        "scheduled_date": null});
    for (k, v) in cols.as_object().unwrap() {
        all[k] = v.clone();
    }
    let cols: serde_json::Map<String, Value> =
        all.as_object().unwrap().iter().map(|(k, v)| (k.clone(), json!({"new": v}))).collect();
    json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": id}, "cols": cols}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_that_break_the_metadata_are_rejected_with_the_field_and_the_rule() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    let tok = token("alice", "company-a", "admin");
    let mut alice = Client::connect(&server.url(), &tok, json!({})).await;
    alice.until("synced").await;
    let mut amy = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    amy.until("synced").await;

    let cases = [
        (json!({"title": ""}), "Job: Title: a value is required"),
        (json!({"status": "bogus-status"}), "Job: Status: \"bogus-status\" is not one of the choices"),
        (json!({"price_cents": -500}), "Job: Price: must be at least 0.00"),
        (json!({"line_items": "not json"}), "Job: Line items: line items must be a JSON list"),
        (json!({"line_items": "[1, 2]"}), "Job: Line items: each line item must be an object"),
        (json!({"customer_id": "cust-nope"}), "Job: Customer: \"cust-nope\" is not a record of customers"),
        (
            json!({"customer_id": "cust-b-0001"}),
            "Job: Customer: \"cust-b-0001\" is not a record of customers",
        ),
        (
            json!({"scheduled_date": "yesterday-ish"}),
            "Job: Scheduled: a date is written YYYY-MM-DD (a real day)",
        ),
        (
            json!({"scheduled_date": "2026-02-30"}),
            "Job: Scheduled: a date is written YYYY-MM-DD (a real day)",
        ),
    ];
    for (i, (cols, reason)) in cases.iter().enumerate() {
        let id = format!("job-bad-{i}");
        alice.push(&format!("bad-{i}"), insert_job(&id, cols.clone())).await;
        let (reject, _) = alice.until("reject").await;
        assert_eq!(reject["code"], "invalid", "{reject}");
        assert!(reject["reason"].as_str().unwrap().contains(reason), "{cols}: {reject}");
        let stored = support::db_value(&server, &format!("SELECT count(*) FROM jobs WHERE id = '{id}'"));
        assert_eq!(stored, rusqlite::types::Value::Integer(0));
    }
    // Updates are checked too (an insert missing a column never decodes: every column is given).
    alice
        .push("bad-y", support::update("jobs", "job-a-00001", "status", json!("open"), json!("exploded")))
        .await;
    let (reject, _) = alice.until("reject").await;
    assert_eq!(reject["code"], "invalid", "{reject}");

    // Good values pass: a real customer, a real date, line items of objects, in one push with a
    // customer it creates itself.
    let good = json!({"changes": [
        {"table": "customers", "op": "insert", "pk": {"id": "cust-a-new"}, "cols": {
            "tenant_id": {"new": "company-a"}, "name": {"new": "New Customer"}, "phone": {"new": null},
            "email": {"new": null}, "address": {"new": null}}},
        insert_job("job-good", json!({"customer_id": "cust-a-new", "scheduled_date": "2028-02-29",
            "line_items": "[{\"sku\": \"SKU-1\", \"quantity\": 2}]"}))["changes"][0].clone()
    ]});
    alice.push("good", good).await;
    let (ack, _) = alice.until("ack").await;
    assert_eq!(ack["mutation_id"], "good", "{ack}");
    // The other client saw only the good write.
    let seen = amy.settle().await;
    let ids: Vec<&str> = seen
        .iter()
        .flat_map(|f| f["diff"]["changes"].as_array().into_iter().flatten())
        .filter_map(|c| c["pk"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"job-good") && !ids.iter().any(|i| i.starts_with("job-bad")), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_clients_could_not_draw_is_refused_and_leaves_nothing_behind() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    let mut alice = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let fields = support::db_value(&server, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'");
    let rusqlite::types::Value::Text(fields) = fields else { panic!("{fields:?}") };
    let sections = support::db_value(
        &server,
        "SELECT sections FROM layout_definition WHERE id = 'company-a:jobs:detail'",
    );
    let rusqlite::types::Value::Text(sections) = sections else { panic!("{sections:?}") };
    let with_column = |c: &str| {
        let mut f: Value = serde_json::from_str(&fields).unwrap();
        f.as_array_mut().unwrap().push(json!({"name": c, "label": "Warranty", "type": "date"}));
        f.to_string()
    };
    let cases = [
        (
            support::update("object_metadata", "company-a:jobs", "fields", json!(fields), json!("not json")),
            "jobs: metadata: fields:",
        ),
        (
            support::update(
                "object_metadata",
                "company-a:jobs",
                "fields",
                json!(fields),
                json!(with_column("warranty")),
            ),
            "warranty",
        ),
        (
            support::update(
                "layout_definition",
                "company-a:jobs:detail",
                "sections",
                json!(sections),
                json!(r#"[{"id":"s","label":"S","fields":[{"field":"nope","widget":"text"}]}]"#),
            ),
            "jobs: a layout names \"nope\", which is not a field of Job",
        ),
    ];
    for (i, (diff, reason)) in cases.into_iter().enumerate() {
        alice.push(&format!("meta-{i}"), diff).await;
        let (reject, _) = alice.until("reject").await;
        assert_eq!(reject["code"], "invalid", "{reject}");
        assert!(reject["reason"].as_str().unwrap().contains(reason), "{reason}: {reject}");
    }
    assert_eq!(
        support::db_value(&server, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'"),
        rusqlite::types::Value::Text(fields.clone()),
        "nothing of a refused push stays"
    );
    // A good edit of the same rows passes.
    let relabelled = fields.replace("\"Notes\"", "\"Visit notes\"");
    alice
        .push(
            "meta-ok",
            support::update("object_metadata", "company-a:jobs", "fields", json!(fields), json!(relabelled)),
        )
        .await;
    let (ack, _) = alice.until("ack").await;
    assert_eq!(ack["conflicts"], json!([]));
}
