//! Field-level merge on the server: what `merge` does with each kind of concurrent edit.
//! Two replicas edit the same job from the same base; the server merges their pushes in order.

use moat_tests::{ModelServer, Outcome, fields, id};
use rusqlite::Connection;
use sqlite_ext::{ConflictKind, Diff, Error, Replica, Schema, Value, merge};

const JOB: &str = "
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, line_items)
VALUES ('job-1', 'company-a', 'Fix boiler', 'open', 10000, 'call first', '[]');
";

/// A server with one job, and two replicas that have synced it.
fn setup() -> (ModelServer, Replica, Replica) {
    let schema = Schema::demo();
    let server = ModelServer::new(schema.clone(), JOB);
    let mut a = Replica::open_in_memory(schema.clone()).unwrap();
    let mut b = Replica::open_in_memory(schema).unwrap();
    for r in [&mut a, &mut b] {
        r.apply_server_diff(&server.log[0]).unwrap();
    }
    (server, a, b)
}

fn job(server: &ModelServer, col: &str) -> Value {
    server.conn.query_row(&format!("SELECT {col} FROM jobs WHERE id = 'job-1'"), [], |r| r.get(0)).unwrap()
}

fn ack(o: Outcome) -> Vec<sqlite_ext::Conflict> {
    match o {
        Outcome::Ack(c) => c,
        Outcome::Reject(r) => panic!("rejected: {r}"),
    }
}

#[test]
fn different_columns_of_one_row_merge_silently() {
    let (mut server, mut admin, mut tech) = setup();
    let m1 =
        admin.update("jobs", &id("job-1"), &fields([("notes", "gate code 1234".into())])).unwrap().unwrap();
    let m2 = tech
        .update("jobs", &id("job-1"), &fields([("line_items", r#"[{"sku":"SKU-1","qty":2}]"#.into())]))
        .unwrap()
        .unwrap();
    assert!(ack(server.push(&m1)).is_empty());
    assert!(ack(server.push(&m2)).is_empty());
    assert_eq!(job(&server, "notes"), Value::from("gate code 1234"));
    assert_eq!(job(&server, "line_items"), Value::from(r#"[{"sku":"SKU-1","qty":2}]"#));
}

#[test]
fn same_column_conflicts_and_the_rest_of_the_change_still_applies() {
    let (mut server, mut admin, mut tech) = setup();
    let m1 =
        admin.update("jobs", &id("job-1"), &fields([("price_cents", 12000i64.into())])).unwrap().unwrap();
    let m2 = tech
        .update("jobs", &id("job-1"), &fields([("price_cents", 15000i64.into()), ("status", "done".into())]))
        .unwrap()
        .unwrap();
    assert!(ack(server.push(&m1)).is_empty());
    let conflicts = ack(server.push(&m2));

    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!((c.kind, c.table.as_str()), (ConflictKind::Field, "jobs"));
    assert_eq!(c.pk, id("job-1"));
    assert_eq!(c.columns.len(), 1, "only the price conflicts: {c:?}");
    let col = &c.columns[0];
    assert_eq!(col.column, "price_cents");
    assert_eq!(col.base, Some(Value::Integer(10000)));
    assert_eq!(col.theirs, Some(Value::Integer(12000)));
    assert_eq!(col.mine, Value::Integer(15000));

    assert_eq!(job(&server, "price_cents"), Value::Integer(12000), "the server keeps its value");
    assert_eq!(job(&server, "status"), Value::from("done"), "the non-conflicting column applied");
    let applied = server.log.last().unwrap();
    assert_eq!(applied.changes.len(), 1);
    assert_eq!(applied.changes[0].cols.0.len(), 1, "broadcast carries only status: {}", applied.to_json());
    assert!(applied.changes[0].cols.get("status").is_some());
}

#[test]
fn same_column_set_to_the_same_value_is_not_a_conflict() {
    let (mut server, mut admin, mut tech) = setup();
    let m1 = admin.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    let m2 = tech.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    assert!(ack(server.push(&m1)).is_empty());
    assert!(ack(server.push(&m2)).is_empty());
    assert_eq!(server.log.len(), 2, "the second push changed nothing, so nothing is broadcast");
}

#[test]
fn an_update_of_a_deleted_row_is_reported_not_dropped() {
    let (mut server, mut admin, mut tech) = setup();
    let del = admin.delete("jobs", &id("job-1")).unwrap().unwrap();
    let upd = tech.update("jobs", &id("job-1"), &fields([("notes", "done".into())])).unwrap().unwrap();
    assert!(ack(server.push(&del)).is_empty());
    let conflicts = ack(server.push(&upd));
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].kind, ConflictKind::RowDeleted);
    assert_eq!(conflicts[0].columns[0].column, "notes");
    assert_eq!(conflicts[0].columns[0].theirs, None);
    assert_eq!(conflicts[0].columns[0].mine, Value::from("done"));
    let n: i64 = server.conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0, "the row stays deleted");
}

#[test]
fn a_delete_wins_over_a_concurrent_update() {
    let (mut server, mut admin, mut tech) = setup();
    let upd = tech.update("jobs", &id("job-1"), &fields([("notes", "done".into())])).unwrap().unwrap();
    let del = admin.delete("jobs", &id("job-1")).unwrap().unwrap();
    assert!(ack(server.push(&upd)).is_empty());
    assert!(ack(server.push(&del)).is_empty());
    let n: i64 = server.conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    let deleted = server.log.last().unwrap();
    assert_eq!(
        deleted.changes[0].cols.get("notes").unwrap().old,
        Some(Value::from("done")),
        "{}",
        deleted.to_json()
    );
}

#[test]
fn a_delete_of_a_row_already_gone_is_a_no_op() {
    let (mut server, mut admin, mut tech) = setup();
    let d1 = admin.delete("jobs", &id("job-1")).unwrap().unwrap();
    let d2 = tech.delete("jobs", &id("job-1")).unwrap().unwrap();
    assert!(ack(server.push(&d1)).is_empty());
    assert!(ack(server.push(&d2)).is_empty());
    assert_eq!(server.log.len(), 2);
}

#[test]
fn a_duplicate_insert_keeps_the_existing_row_and_reports_differing_columns() {
    let (mut server, mut admin, mut tech) = setup();
    let row = |title: &str| {
        fields([
            ("id", "job-2".into()),
            ("tenant_id", "company-a".into()),
            ("title", title.into()),
            ("status", "open".into()),
        ])
    };
    let same1 = admin.insert("jobs", &row("Same")).unwrap().unwrap();
    let same2 = tech.insert("jobs", &row("Same")).unwrap().unwrap();
    assert!(ack(server.push(&same1)).is_empty());
    assert!(ack(server.push(&same2)).is_empty(), "an identical insert is idempotent");

    let mut third = Replica::open_in_memory(Schema::demo()).unwrap();
    let other = third
        .insert(
            "jobs",
            &fields([("id", "job-2".into()), ("tenant_id", "company-a".into()), ("title", "Other".into())]),
        )
        .unwrap()
        .unwrap();
    let conflicts = ack(server.push(&other));
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].kind, ConflictKind::RowExists);
    let cols: Vec<&str> = conflicts[0].columns.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(cols, ["title"]);
    assert_eq!(conflicts[0].columns[0].theirs, Some(Value::from("Same")));
}

#[test]
fn a_constraint_failure_rolls_back_the_whole_diff() {
    let sql =
        "CREATE TABLE stock (id TEXT PRIMARY KEY NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0)) STRICT;";
    let schema = Schema::from_sql(sql).unwrap();
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(sql).unwrap();
    conn.execute("INSERT INTO stock VALUES ('a', 5)", []).unwrap();
    let diff = Diff::from_json(
        r#"{"changes":[
            {"table":"stock","op":"insert","pk":{"id":"b"},"cols":{"qty":{"new":1}}},
            {"table":"stock","op":"update","pk":{"id":"a"},"cols":{"qty":{"old":5,"new":-1}}}]}"#,
        &schema,
    )
    .unwrap();
    let err = merge(&conn, &schema, &diff).unwrap_err();
    assert!(
        matches!(&err, Error::Constraint { table, key, .. } if table == "stock" && key == r#"["a"]"#),
        "{err}"
    );
    assert!(err.is_permanent());
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT id, qty FROM stock ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, [("a".to_owned(), 5)], "nothing of the diff is left");
    // The connection is usable afterwards, outside any transaction.
    assert!(conn.is_autocommit());
}
