//! Customize: an admin publishes object types, fields and layouts over the protocol (`customize`), the
//! server makes the storage they need in the same transaction as the metadata rows, and every client
//! of the tenant follows: a new field or object type reaches an open session by a reconnect (1012) and
//! a catch-up, with no fresh snapshot; a removed field's values go only after a second confirmation,
//! and then clients take a fresh copy. Versions are listed and any one can be published again. Only
//! admins customize.

mod support;

use serde_json::{Value, json};
use sqlite_ext::Schema;
use sqlite_ext::ui::customize::{self, Customization, LayoutDef, ObjectTypeDef};
use sqlite_ext::ui::{FieldKind, FieldMeta, LayoutField, LayoutSection};
use support::{Client, TestServer, token, update};

fn tenant_db(server: &TestServer) -> rusqlite::Connection {
    let path = moat_server::tenants::tenant_path(&server.dir.path().join("data"), "company-a");
    rusqlite::Connection::open(path).unwrap()
}

fn field(name: &str, label: &str, kind: FieldKind) -> FieldMeta {
    serde_json::from_value(json!({"name": name, "label": label, "type": kind})).unwrap()
}

async fn customize(c: &mut Client, request: Value) -> Value {
    c.send(json!({"type": "customize", "id": "c-1", "request": request})).await;
    let (answer, _) = c.until("customized").await;
    assert_eq!(answer["id"], "c-1");
    answer["answer"].clone()
}

async fn publish(c: &mut Client, draft: &Customization, destroy: bool) -> Value {
    customize(c, json!({"action": "publish", "customization": draft, "destroy": destroy})).await
}

/// Connects naming the schema it holds (a raw client keeps the fingerprint of its last welcome).
async fn connect(server: &TestServer, user: &str, role: &str, schema: &str, cursor: Option<i64>) -> Client {
    let cursors = match cursor {
        Some(c) => json!({format!("company-a/{role}"): c}),
        None => json!({}),
    };
    let hello = json!({"type": "hello", "protocol": 1, "token": token(user, "company-a", role),
        "client_id": format!("{user}-device"), "cursors": cursors, "schema": schema});
    Client::hello(&server.url(), hello).await
}

/// A session a publish closed (1012) comes back from its cursor, naming the schema it holds: the new
/// client and the frames of its initial sync.
async fn rejoin(
    server: &TestServer,
    mut old: Client,
    user: &str,
    role: &str,
    schema: &mut String,
) -> (Client, Vec<Value>) {
    assert_eq!(old.closed().await.0, 1012);
    let mut c = connect(server, user, role, schema, Some(old.cursor)).await;
    *schema = fingerprint(&c.welcome, schema);
    let (_, before) = c.until("synced").await;
    (c, before)
}

fn fingerprint(welcome: &Value, before: &str) -> String {
    welcome["schema"]["fingerprint"].as_str().unwrap_or(before).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_customizes_and_every_client_follows_without_a_fresh_copy() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    let mut alice = connect(&server, "alice", "admin", "none", None).await;
    let mut schema = fingerprint(&alice.welcome, "none");
    alice.until("synced").await;
    let mut tom = connect(&server, "tom", "technician", "none", None).await;
    tom.until("synced").await;

    // A technician may not customize, nor even list the versions.
    let refused = customize(&mut tom, json!({"action": "versions"})).await;
    assert_eq!((refused["result"].as_str(), refused["code"].as_str()), (Some("refused"), Some("forbidden")));
    let draft = customize::read(&tenant_db(&server)).unwrap();
    let refused = publish(&mut tom, &draft, false).await;
    assert_eq!(refused["code"], "forbidden");

    // Tom goes away; meanwhile a job is created (its log entry has every column of the old schema).
    let tom_cursor = tom.cursor;
    drop(tom);
    let insert = json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": "job-new"}, "cols": {
        "tenant_id": {"new": "company-a"}, "title": {"new": "Replace filter"}, "status": {"new": "open"},
        "price_cents": {"new": 1000}, "notes": {"new": null}, "internal_notes": {"new": null},
        "assignee": {"new": "tom"}, "customer_id": {"new": null}, "scheduled_date": {"new": null},
        "line_items": {"new": "[]"}}}]});
    alice.push("a-1", insert).await;
    let (ack, _) = alice.until("ack").await;
    assert!(ack["version"].is_i64(), "{ack}");

    // Nothing is published from a draft with problems; each is named in the admin's words.
    let mut bad = draft.clone();
    let jobs = bad.object_types.iter_mut().find(|t| t.object_type == "jobs").unwrap();
    jobs.fields.push(field("kind", "Kind", FieldKind::Choice));
    let mut to_nowhere = field("vehicle", "Vehicle", FieldKind::Reference);
    to_nowhere.object_type = Some("boats".into());
    jobs.fields.push(to_nowhere);
    let answer = publish(&mut alice, &bad, false).await;
    assert_eq!(answer["code"], "invalid", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(reason.contains("Kind: a choice needs at least one option"), "{reason}");
    assert!(reason.contains("Vehicle: choose the object type it refers to"), "{reason}");

    // A date field for jobs, placed in the technicians' layout.
    let mut next = draft.clone();
    let jobs = next.object_types.iter_mut().find(|t| t.object_type == "jobs").unwrap();
    jobs.fields.push(field("warranty_expires", "Warranty expires", FieldKind::Date));
    let tech = next
        .layouts
        .iter_mut()
        .find(|l| l.object_type == "jobs" && l.role.as_deref() == Some("technician"))
        .expect("the demo has a technicians' job layout");
    tech.sections[0].fields.push(LayoutField {
        field: "warranty_expires".into(),
        widget: FieldKind::Date,
        read_only: false,
        label: None,
    });
    let answer = publish(&mut alice, &next, false).await;
    assert_eq!(answer["result"], "published", "{answer}");
    assert_eq!(answer["version"], 2, "version 1 is the metadata as it was");
    let changes: Vec<&str> =
        answer["changes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(changes.contains(&"Jobs: added the field Warranty expires"), "{changes:?}");
    assert!(changes.contains(&"Jobs: changed the layout for the role technician"), "{changes:?}");
    // The admin's own session is on the old schema: it is told to reconnect.
    let (code, _) = alice.closed().await;
    assert_eq!(code, 1012);

    // Tom comes back from his cursor: the new schema, then a catch-up (the job inserted before the
    // field existed, refitted; the metadata), no snapshot.
    let mut tom = connect(&server, "tom", "technician", &schema, Some(tom_cursor)).await;
    let new_sql =
        tom.welcome["schema"]["sql"].as_str().expect("the welcome brings the new schema").to_owned();
    schema = fingerprint(&tom.welcome, &schema);
    let new_schema = Schema::from_sql(&new_sql).unwrap();
    assert!(new_schema.table("jobs").unwrap().column_index("warranty_expires").is_some());
    let (_, before) = tom.until("synced").await;
    assert!(before.iter().all(|f| f["type"] != "snapshot_begin"), "no fresh copy: {before:?}");
    for f in before.iter().filter(|f| f["type"] == "diff") {
        sqlite_ext::Diff::from_value(f["diff"].clone(), &new_schema)
            .unwrap_or_else(|e| panic!("every catch-up diff fits the new schema: {e}: {f}"));
    }
    let tables: Vec<&str> = tom.received.iter().map(|c| c["table"].as_str().unwrap()).collect();
    assert!(tables.contains(&"jobs") && tables.contains(&"layout_definition"), "{tables:?}");

    // The technician writes the new field; the metadata's rules hold for it at once.
    let ids: Vec<String> = tenant_db(&server)
        .prepare("SELECT id FROM jobs ORDER BY id LIMIT 2")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tom.push("t-1", update("jobs", &ids[0], "warranty_expires", json!(null), json!("2027-01-31"))).await;
    let (ack, _) = tom.until("ack").await;
    assert!(ack["version"].is_i64(), "{ack}");
    tom.push("t-2", update("jobs", &ids[1], "warranty_expires", json!(null), json!("yesterday-ish"))).await;
    let (reject, _) = tom.until("reject").await;
    assert!(reject["reason"].as_str().unwrap().contains("Warranty expires"), "{reject}");

    // A new object type with three fields and a layout: its table is made, it syncs, it takes writes.
    let mut alice = connect(&server, "alice", "admin", &schema, None).await;
    alice.until("synced").await;
    let mut with_vehicles = customize::read(&tenant_db(&server)).unwrap();
    with_vehicles.object_types.push(ObjectTypeDef {
        object_type: "fleet_vans".into(),
        table_name: "fleet_vans".into(),
        label: "Van".into(),
        label_plural: "Vans".into(),
        icon: Some("truck".into()),
        sort_order: 9,
        title_field: "plate".into(),
        list_columns: vec!["plate".into(), "model".into()],
        search_fields: vec!["plate".into()],
        default_sort: None,
        fields: vec![
            FieldMeta { required: true, ..field("plate", "Plate", FieldKind::Text) },
            field("model", "Model", FieldKind::Text),
            field("next_service", "Next service", FieldKind::Date),
        ],
        hidden: false,
    });
    with_vehicles.layouts.push(LayoutDef {
        object_type: "fleet_vans".into(),
        name: "detail".into(),
        role: None,
        sections: vec![LayoutSection {
            id: "van".into(),
            label: "Van".into(),
            columns: 2,
            fields: ["plate", "model", "next_service"]
                .iter()
                .map(|f| LayoutField {
                    field: (*f).into(),
                    widget: if *f == "next_service" { FieldKind::Date } else { FieldKind::Text },
                    read_only: false,
                    label: None,
                })
                .collect(),
        }],
    });
    let answer = publish(&mut alice, &with_vehicles, false).await;
    assert_eq!(answer["result"], "published", "{answer}");
    let (mut tom, before) = rejoin(&server, tom, "tom", "technician", &mut schema).await;
    assert!(before.iter().all(|f| f["type"] != "snapshot_begin"), "{before:?}");
    assert!(
        tom.received
            .iter()
            .any(|c| c["table"] == "object_metadata" && c["pk"]["id"] == "company-a:fleet_vans"),
        "the new object type's metadata reaches the technician"
    );
    let van = json!({"changes": [{"table": "fleet_vans", "op": "insert", "pk": {"id": "van-1"}, "cols": {
        "tenant_id": {"new": "company-a"}, "plate": {"new": "AB-123"}, "model": {"new": "Transit"},
        "next_service": {"new": "2027-03-01"}}}]});
    tom.push("t-3", van).await;
    let (ack, _) = tom.until("ack").await;
    assert!(ack["version"].is_i64(), "{ack}");

    assert_eq!(alice.closed().await.0, 1012);
    let mut alice = connect(&server, "alice", "admin", &schema, None).await;
    alice.until("synced").await;
    // A draft read before someone else's publish is refused, so it cannot undo that publish unseen.
    let mut stale = next.clone();
    stale.object_types[0].label_plural.push('!');
    let answer = publish(&mut alice, &stale, false).await;
    assert_eq!(answer["code"], "stale", "{answer}");
    assert!(
        customize::read(&tenant_db(&server))
            .unwrap()
            .object_types
            .iter()
            .any(|t| t.object_type == "fleet_vans")
    );

    // Removing the field that holds a value needs a second confirmation, naming what is lost.
    let without = customize::read(&tenant_db(&server)).unwrap();
    let mut without = without.clone();
    without
        .object_types
        .iter_mut()
        .find(|t| t.object_type == "jobs")
        .unwrap()
        .fields
        .retain(|f| f.name != "warranty_expires");
    for l in without.layouts.iter_mut().filter(|l| l.object_type == "jobs") {
        l.sections.iter_mut().for_each(|s| s.fields.retain(|f| f.field != "warranty_expires"));
    }
    let answer = publish(&mut alice, &without, false).await;
    assert_eq!(answer["code"], "destructive", "{answer}");
    assert_eq!(answer["lost"], json!(["Jobs: Warranty expires, 1 value"]));
    let kept: i64 =
        tenant_db(&server).query_row("SELECT count(warranty_expires) FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 1, "nothing changed");
    let answer = publish(&mut alice, &without, true).await;
    assert_eq!(answer["result"], "published", "{answer}");
    let (tom, before) = rejoin(&server, tom, "tom", "technician", &mut schema).await;
    assert!(before.iter().any(|f| f["type"] == "snapshot_begin"), "after a drop, a fresh copy");

    // The versions, newest first; a rollback publishes version 2 again (the column comes back empty).
    assert_eq!(alice.closed().await.0, 1012);
    let mut alice = connect(&server, "alice", "admin", &schema, None).await;
    alice.until("synced").await;
    let listed = customize(&mut alice, json!({"action": "versions"})).await;
    let versions: Vec<i64> =
        listed["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [4, 3, 2, 1]);
    assert_eq!(listed["versions"][0]["user"], "alice");
    assert_eq!(listed["roles"], json!(["admin", "technician"]));
    let answer = customize(&mut alice, json!({"action": "rollback", "version": 2})).await;
    assert_eq!(answer["code"], "destructive", "going back to version 2 removes the vans: {answer}");
    assert_eq!(answer["lost"], json!(["Vans: 1 record"]));
    let answer = customize(&mut alice, json!({"action": "rollback", "version": 2, "destroy": true})).await;
    assert_eq!(answer["result"], "published", "{answer}");
    assert_eq!(answer["changes"][0], "Rolled back to version 2");
    let (_, before) = rejoin(&server, tom, "tom", "technician", &mut schema).await;
    assert!(before.iter().any(|f| f["type"] == "snapshot_begin"), "the vans' table went: a fresh copy");
    let now = customize::read(&tenant_db(&server)).unwrap();
    assert_eq!(
        (now.object_types, now.layouts),
        (next.object_types.clone(), next.layouts.clone()),
        "version 2, exactly"
    );
    assert_eq!(alice.closed().await.0, 1012);
    let mut alice = connect(&server, "alice", "admin", &schema, None).await;
    alice.until("synced").await;
    let answer = customize(&mut alice, json!({"action": "rollback", "version": 99})).await;
    assert_eq!(answer["code"], "not_found");
    let answer = customize(&mut alice, json!({"action": "rollback", "version": 5})).await;
    assert_eq!(answer["code"], "unchanged", "version 5 is what is published: {answer}");
}
