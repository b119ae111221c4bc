//! Hostile tenants, from the protocol alone, against a real server. Company-a and company-b hold the
//! very same keys with different data; every column of company-a's rows carries a marker string
//! (hidden ones included). Company-b's admin and technician drive every client message at
//! company-a's keys, routing values, hidden and read-only columns, and replay company-a's mutation
//! ids under the same `sub`; every byte of every frame they receive is scanned for company-a's
//! markers. The oracle: "this key exists in another tenant" and "this key exists nowhere" get the
//! same answer.

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer, db_value_in, token, update};

/// Company-a's marker; it must never reach a company-b client.
const MARK_A: &str = "MARKA";
const MARK_B: &str = "MARKB";

/// The same keys in both tenants, every text column marked with the tenant's marker; `only-<t>-1`
/// exists only in that tenant.
fn seed(tenant: &str, mark: &str) -> String {
    let t = tenant.chars().last().unwrap();
    format!(
        "INSERT INTO customers (id, tenant_id, name, phone, email, address) VALUES
           ('cust-1', '{tenant}', '{mark} name', '{mark} phone', '{mark}@mail', '{mark} street');
         INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, internal_notes, line_items,
                           assignee, customer_id, scheduled_date) VALUES
           ('job-1', '{tenant}', '{mark} title', '{mark}-status', 4242, '{mark} notes', '{mark} internal',
            '[\"{mark} item\"]', '{mark} assignee', 'cust-1', '{mark}-date'),
           ('only-{t}-1', '{tenant}', '{mark} only title', 'open', 1, '{mark} only notes', '{mark} only internal',
            '[]', NULL, NULL, NULL);
         INSERT INTO inventory_items (id, tenant_id, sku, name, quantity, location) VALUES
           ('inv-1', '{tenant}', '{mark}-sku', '{mark} part', 7, '{mark} van');
         INSERT INTO object_metadata (id, tenant_id, object_type, table_name, label, label_plural, title_field)
           VALUES ('jobs', '{tenant}', 'jobs', 'jobs', '{mark} Job', '{mark} Jobs', 'title');"
    )
}

fn insert_job(id: &str, tenant: &str) -> Value {
    json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": id},
        "cols": {"tenant_id": {"new": tenant}, "title": {"new": "b's own"}, "status": {"new": "open"},
                 "price_cents": {"new": 1}, "notes": {"new": null}, "internal_notes": {"new": null},
                 "line_items": {"new": "[]"}, "assignee": {"new": null}, "customer_id": {"new": null},
                 "scheduled_date": {"new": null}}}]})
}

fn insert_item(id: &str, tenant: &str) -> Value {
    json!({"changes": [{"table": "inventory_items", "op": "insert", "pk": {"id": id},
        "cols": {"tenant_id": {"new": tenant}, "sku": {"new": "S"}, "name": {"new": "b's part"},
                 "quantity": {"new": 1}, "location": {"new": null}}}]})
}

fn delete_job(id: &str, title: &str) -> Value {
    json!({"changes": [{"table": "jobs", "op": "delete", "pk": {"id": id},
        "cols": {"tenant_id": {"old": "company-b"}, "title": {"old": title}}}]})
}

/// The answer to a push, with the key's own spelling replaced (to compare two answers).
async fn answer(c: &mut Client, id: &str, diff: Value) -> Value {
    c.push(id, diff).await;
    loop {
        let v = c.recv().await;
        if v["mutation_id"] == id {
            return v;
        }
    }
}

fn without(v: &Value, key: &str, id: &str) -> String {
    v.to_string().replace(key, "KEY").replace(id, "ID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_never_sees_another_tenants_data() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    server.store.exec(&seed("company-a", MARK_A)).await.unwrap();
    server.store_b.exec(&seed("company-b", MARK_B)).await.unwrap();
    let url = server.url();

    // Company-a's own users work as usual (and leave mutation outcomes an attacker will replay).
    let mut alice = Client::connect(&url, &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    assert!(alice.frames.iter().any(|f| f.contains(MARK_A)), "the markers are there to be leaked");
    let a1 = answer(&mut alice, "m-1", update("jobs", "job-1", "notes", json!("stale"), json!("MARKA mine")))
        .await;
    assert_eq!(a1["conflicts"][0]["columns"][0]["theirs"], "MARKA notes", "{a1}");
    let a2 = answer(&mut alice, "m-2", insert_item("only-a-2", "company-a")).await;
    assert_eq!(a2["type"], "ack");

    // Company-b's attackers: its admin under the same `sub` as company-a's, and its technician.
    let mut hello_variants = Vec::new();
    for cursors in [
        json!({}),
        json!({"company-a/admin": 0}),
        json!({"company-b/admin": 1_000_000}),
        json!({"company-a/admin": 1, "company-b/admin": -5}),
    ] {
        let mut c = Client::connect(&url, &token("alice", "company-b", "admin"), cursors).await;
        c.settle().await;
        hello_variants.push(c);
    }
    let mut bella = Client::connect(&url, &token("alice", "company-b", "admin"), json!({})).await;
    bella.until("synced").await;
    let mut tariq = Client::connect(&url, &token("tariq", "company-b", "technician"), json!({})).await;
    tariq.until("synced").await;

    // The oracle: a key only company-a has, and a key nobody has, get the same answer.
    for (table, col, old) in [("jobs", "notes", json!("x")), ("inventory_items", "quantity", json!(1))] {
        let other = answer(&mut bella, "o-1", update(table, "only-a-1", col, old.clone(), json!("y"))).await;
        let none = answer(&mut bella, "o-2", update(table, "nowhere-1", col, old.clone(), json!("y"))).await;
        assert_eq!(without(&other, "only-a-1", "o-1"), without(&none, "nowhere-1", "o-2"), "{table}");
        let other = answer(&mut tariq, "o-3", update(table, "only-a-1", col, old.clone(), json!("y"))).await;
        let none = answer(&mut tariq, "o-4", update(table, "nowhere-1", col, old, json!("y"))).await;
        assert_eq!(without(&other, "only-a-1", "o-3"), without(&none, "nowhere-1", "o-4"), "{table}");
    }
    let other = answer(&mut bella, "o-5", delete_job("only-a-1", "x")).await;
    let none = answer(&mut bella, "o-6", delete_job("nowhere-1", "x")).await;
    assert_eq!(without(&other, "only-a-1", "o-5"), without(&none, "nowhere-1", "o-6"));

    // Inserting a key company-a also uses simply creates company-b's own row.
    let created = answer(&mut bella, "i-1", insert_job("only-a-1", "company-b")).await;
    assert_eq!(
        (created["type"].as_str(), created["conflicts"].as_array().map(Vec::len)),
        (Some("ack"), Some(0))
    );
    let created = answer(&mut tariq, "i-2", insert_item("only-a-2", "company-b")).await;
    assert_eq!(created["type"], "ack", "{created}");
    assert_eq!(
        db_value_in(&server, "company-b", "SELECT title FROM jobs WHERE id = 'only-a-1'"),
        "b's own".to_owned().into()
    );
    assert_eq!(
        db_value_in(&server, "company-a", "SELECT title FROM jobs WHERE id = 'only-a-1'"),
        "MARKA only title".to_owned().into()
    );

    // Every message an attacker can send, at the other tenant's keys, routing values and columns.
    let attacks: Vec<(&str, Value)> = vec![
        ("insert a shared key", insert_job("job-1", "company-b")),
        ("insert routed to company-a", insert_job("evil-1", "company-a")),
        ("insert shared key routed to company-a", insert_job("job-1", "company-a")),
        (
            "move a row to company-a",
            update("jobs", "job-1", "tenant_id", json!("company-b"), json!("company-a")),
        ),
        ("update a shared key, stale base", update("jobs", "job-1", "title", json!("guess"), json!("x"))),
        (
            "update company-a's hidden column",
            update("jobs", "job-1", "internal_notes", json!("guess"), json!("x")),
        ),
        ("read a shared customer", update("customers", "cust-1", "phone", json!("guess"), json!("x"))),
        ("metadata of the same id", update("object_metadata", "jobs", "label", json!("guess"), json!("x"))),
        ("delete a shared key", delete_job("job-1", "guess")),
        ("delete company-a's only key", delete_job("only-a-2", "guess")),
    ];
    for (who, c) in [("admin", &mut bella), ("technician", &mut tariq)] {
        for (n, (what, diff)) in attacks.iter().enumerate() {
            let v = answer(c, &format!("{who}-{n}"), diff.clone()).await;
            assert!(matches!(v["type"].as_str(), Some("ack" | "reject")), "{who} {what}: {v}");
        }
        // Company-a's mutation ids, replayed under company-a's `sub` (bella) and another's: each is
        // company-b's own write, answered with company-b's own outcome.
        for (id, diff) in [
            ("m-1", update("jobs", "job-1", "notes", json!("stale"), json!("b"))),
            ("m-2", insert_item("b-2", "company-b")),
        ] {
            let v = answer(c, id, diff).await;
            assert_ne!(v, if id == "m-1" { a1.clone() } else { a2.clone() }, "{who} {id}");
        }
        // A burst, and frames that are not the protocol.
        for n in 0..200 {
            c.push(&format!("burst-{who}-{n}"), update("jobs", "job-1", "assignee", json!(n), json!(n + 1)))
                .await;
        }
        for bad in [
            "{",
            "[]",
            "{\"type\":\"push\"}",
            "{\"type\":\"hello\",\"protocol\":1,\"token\":\"x\",\"client_id\":\"c\"}",
            "{\"type\":\"nope\"}",
        ] {
            c.send(serde_json::from_str(bad).unwrap_or(json!(bad))).await;
        }
        c.settle().await;
    }
    // Both writes under the same `sub` and mutation id were applied, each in its own tenant.
    assert_eq!(
        db_value_in(&server, "company-a", "SELECT notes FROM jobs WHERE id = 'job-1'"),
        "MARKA notes".to_owned().into()
    );
    assert_eq!(
        db_value_in(&server, "company-a", "SELECT count(*) FROM inventory_items WHERE id = 'only-a-2'"),
        1i64.into()
    );
    assert_eq!(
        db_value_in(&server, "company-b", "SELECT count(*) FROM inventory_items WHERE id = 'b-2'"),
        1i64.into()
    );
    // Nothing of company-b's writes touched company-a's database.
    assert_eq!(
        db_value_in(&server, "company-a", "SELECT count(*) FROM jobs WHERE instr(title, 'b''s own') > 0"),
        0i64.into()
    );
    assert_eq!(db_value_in(&server, "company-a", "PRAGMA integrity_check"), "ok".to_owned().into());

    // Company-a's clients heard nothing of it either.
    alice.settle().await;
    for c in [&bella, &tariq].into_iter().chain(hello_variants.iter()) {
        for f in &c.frames {
            assert!(!f.contains(MARK_A), "company-a's data reached company-b: {f}");
        }
    }
    assert!(alice.frames.iter().all(|f| !f.contains(MARK_B)), "company-b's data reached company-a");
    assert!(bella.frames.iter().any(|f| f.contains(MARK_B)), "company-b does see its own rows");
}
