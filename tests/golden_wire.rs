//! Golden fixtures pin the JSON of the wire format. Each fixture is produced here from real SQLite
//! session captures and compared with `tests/fixtures/wire/*.json`; each fixture file also decodes and
//! re-encodes to itself. After an intended format change, `MOAT_BLESS=1 cargo test --test golden_wire`
//! rewrites the files; review the diff and update `docs/protocol.md` with it.

use std::path::PathBuf;

use moat_tests::{ModelServer, Outcome, fields, id};
use rusqlite::session::Session;
use sqlite_ext::{Conflict, Diff, Mutation, Replica, Schema, Value};

const JOB: &str = "
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, line_items, assignee, customer_id, scheduled_date)
VALUES ('job-a-00042', 'company-a', 'Repair boiler', 'open', 18950, 'Call before arrival.',
        '[{\"sku\":\"SKU-10007\",\"qty\":1,\"unit_price_cents\":4200}]', 'tech-a1', 'cust-a-0007', '2026-11-30');
INSERT INTO inventory_items VALUES ('inv-a-0003', 'company-a', 'SKU-10021', 'Ball valve 4', 12, 'van-1');
";

const VALUES_SCHEMA: &str =
    "CREATE TABLE samples (id TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, v ANY) STRICT;";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/wire").join(name)
}

fn check(name: &str, produced: &str) {
    let path = fixture(name);
    if std::env::var_os("MOAT_BLESS").is_some() {
        std::fs::write(&path, format!("{produced}\n")).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(stored.trim_end(), produced, "{name} changed; bless it if that was intended");
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn replica() -> (ModelServer, Replica) {
    let server = ModelServer::new(Schema::demo(), JOB);
    let mut r = Replica::open_in_memory(Schema::demo()).unwrap();
    r.apply_server_diff(&server.log[0]).unwrap();
    (server, r)
}

fn update_diff(r: &mut Replica) -> Diff {
    r.update("jobs", &id("job-a-00042"), &fields([("status", "done".into()), ("notes", Value::Null)]))
        .unwrap()
        .unwrap()
        .diff
}

#[test]
fn update_insert_delete_diffs() {
    let (_, mut r) = replica();
    check("diff_update.json", &pretty(&update_diff(&mut r)));

    let row = fields([
        ("id", "cust-a-0201".into()),
        ("tenant_id", "company-a".into()),
        ("name", "Harbor Bakery".into()),
        ("phone", "+1-555-0100".into()),
        ("email", Value::Null),
        ("address", "12 Elm St".into()),
    ]);
    check("diff_insert.json", &pretty(&r.insert("customers", &row).unwrap().unwrap().diff));
    check(
        "diff_delete.json",
        &pretty(&r.delete("inventory_items", &id("inv-a-0003")).unwrap().unwrap().diff),
    );
}

#[test]
fn every_kind_of_value() {
    let schema = Schema::from_sql(VALUES_SCHEMA).unwrap();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(VALUES_SCHEMA).unwrap();
    let mut session = Session::new(&conn).unwrap();
    session.attach::<&str>(None).unwrap();
    let samples: [(&str, Value); 9] = [
        ("null", Value::Null),
        ("integer", Value::Integer(42)),
        ("integer-beyond-2^53", Value::Integer(9_007_199_254_740_993)),
        ("integer-min", Value::Integer(i64::MIN)),
        ("real", Value::Real(0.1)),
        ("real-integral", Value::Real(3.0)),
        ("real-infinite", Value::Real(f64::NEG_INFINITY)),
        ("text", Value::from("3")),
        ("blob", Value::Blob(vec![0, 1, 2, 253, 254, 255])),
    ];
    for (kind, v) in &samples {
        conn.execute("INSERT INTO samples VALUES (?1, ?1, ?2)", rusqlite::params![kind, v]).unwrap();
    }
    let mut bytes = Vec::new();
    session.changeset_strm(&mut bytes).unwrap();
    let mut diff = Diff::from_changeset(&schema, &bytes).unwrap();
    // The session's order is its hash order; sort for a readable fixture (the order is still exact:
    // the bytes are compared below in the session's order).
    assert_eq!(diff.to_changeset(&schema).unwrap(), bytes);
    diff.changes
        .sort_by_key(|c| samples.iter().position(|(k, _)| Value::from(*k) == *c.pk.get("id").unwrap()));
    check("diff_values.json", &pretty(&diff));
}

#[test]
fn mutation_and_conflict() {
    let (mut server, mut r) = replica();
    let m = Mutation { mutation_id: "3f9c2a7be01d44a1c8e5f0b2-17".into(), diff: update_diff(&mut r) };
    check("mutation.json", &pretty(&m));

    let mut other = Replica::open_in_memory(Schema::demo()).unwrap();
    other.apply_server_diff(&server.log[0]).unwrap();
    let first =
        other.update("jobs", &id("job-a-00042"), &fields([("status", "on_hold".into())])).unwrap().unwrap();
    assert!(matches!(server.push(&first), Outcome::Ack(c) if c.is_empty()));
    let Outcome::Ack(conflicts) = server.push(&m) else { panic!() };
    check("conflict.json", &pretty(&conflicts[0]));
}

#[test]
fn every_fixture_decodes_to_itself() {
    let demo = Schema::demo();
    let values = Schema::from_sql(VALUES_SCHEMA).unwrap();
    for (name, schema) in [
        ("diff_update.json", &demo),
        ("diff_insert.json", &demo),
        ("diff_delete.json", &demo),
        ("diff_values.json", &values),
    ] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        let diff = Diff::from_json(&text, schema).unwrap();
        assert_eq!(pretty(&diff), text.trim_end(), "{name}");
        let bytes = diff.to_changeset(schema).unwrap();
        assert_eq!(Diff::from_changeset(schema, &bytes).unwrap(), diff, "{name}");
    }
    let text = std::fs::read_to_string(fixture("mutation.json")).unwrap();
    let m: Mutation = serde_json::from_str(&text).unwrap();
    m.diff.validate(&demo).unwrap();
    assert_eq!(pretty(&m), text.trim_end());
    let text = std::fs::read_to_string(fixture("conflict.json")).unwrap();
    let c: Conflict = serde_json::from_str(&text).unwrap();
    assert_eq!(pretty(&c), text.trim_end());
}
