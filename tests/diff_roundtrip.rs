//! Property test: a changeset that SQLite's session extension produced, encoded as a JSON diff, sent
//! through JSON text and decoded, gives back the very same bytes; and applying the decoded diff to a
//! copy of the starting database reproduces the end state exactly. And `merge`, which applies a
//! diff that goes in cleanly without SQLite's changeset machinery, gives what the full merge through
//! `sqlite3changeset_apply` gives, conflicts or not.

use proptest::prelude::*;
use rusqlite::Connection;
use rusqlite::session::Session;
use sqlite_ext::{Diff, MergeReport, Schema, Value, merge, merge_by_changeset};

const SCHEMA: &str = "
CREATE TABLE a (id TEXT PRIMARY KEY NOT NULL, i INTEGER, r REAL, t TEXT, b BLOB, x ANY) STRICT;
CREATE TABLE b (k1 INTEGER NOT NULL, k2 TEXT NOT NULL, v ANY, PRIMARY KEY (k2, k1)) STRICT;
CREATE TABLE c (id BLOB PRIMARY KEY NOT NULL, n INTEGER NOT NULL) STRICT;
CREATE TABLE d (id INTEGER PRIMARY KEY, v TEXT) STRICT;
";

fn real() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_filter("SQLite stores NaN as NULL", |r| !r.is_nan()).prop_map(Value::Real),
        Just(Value::Real(f64::INFINITY)),
        Just(Value::Real(-0.0)),
        Just(Value::Real(0.1 + 0.2)),
    ]
}

fn int() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        (-3i64..3).prop_map(Value::Integer),
        Just(Value::Integer(9_007_199_254_740_992)),
        Just(Value::Integer(-9_007_199_254_740_991)),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from("")),
        "[a-c]{0,3}".prop_map(Value::from),
        any::<String>().prop_map(Value::from)
    ]
}

fn blob() -> impl Strategy<Value = Value> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob)
}

fn nullable<S: Strategy<Value = Value> + 'static>(s: S) -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(Value::Null), 4 => s].boxed()
}

fn any_value() -> BoxedStrategy<Value> {
    prop_oneof![Just(Value::Null), int(), real(), text(), blob()].boxed()
}

/// One statement against the database, with its values.
#[derive(Debug, Clone)]
enum Op {
    UpsertA(u8, [Value; 5]),
    UpdateA(u8, usize, Value),
    DeleteA(u8),
    UpsertB(i64, u8, Value),
    DeleteB(i64, u8),
    UpsertC(u8, Value),
    DeleteC(u8),
    UpsertD(i64, Value),
}

fn a_values() -> impl Strategy<Value = [Value; 5]> {
    (nullable(int()), nullable(real()), nullable(text()), nullable(blob()), any_value())
        .prop_map(|(i, r, t, b, x)| [i, r, t, b, x])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, a_values()).prop_map(|(k, v)| Op::UpsertA(k, v)),
        (0u8..6, a_values(), 0usize..5).prop_map(|(k, v, c)| Op::UpdateA(k, c, v[c].clone())),
        (0u8..6).prop_map(Op::DeleteA),
        (0i64..3, 0u8..3, any_value()).prop_map(|(k1, k2, v)| Op::UpsertB(k1, k2, v)),
        (0i64..3, 0u8..3).prop_map(|(k1, k2)| Op::DeleteB(k1, k2)),
        (0u8..4, int()).prop_map(|(k, n)| Op::UpsertC(k, n)),
        (0u8..4).prop_map(Op::DeleteC),
        (prop_oneof![Just(i64::MIN), Just(i64::MAX), -2i64..4], nullable(text()))
            .prop_map(|(k, v)| Op::UpsertD(k, v)),
    ]
}

fn run(conn: &Connection, op: &Op) {
    const A_COLS: [&str; 5] = ["i", "r", "t", "b", "x"];
    let key = |k: u8| format!("key-{k}");
    let r = match op {
        Op::UpsertA(k, v) => conn.execute(
            "INSERT OR REPLACE INTO a (id, i, r, t, b, x) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![key(*k), v[0], v[1], v[2], v[3], v[4]],
        ),
        Op::UpdateA(k, c, v) => conn.execute(
            &format!("UPDATE a SET {} = ?2 WHERE id = ?1", A_COLS[*c]),
            rusqlite::params![key(*k), v],
        ),
        Op::DeleteA(k) => conn.execute("DELETE FROM a WHERE id = ?1", [key(*k)]),
        Op::UpsertB(k1, k2, v) => conn.execute(
            "INSERT OR REPLACE INTO b (k1, k2, v) VALUES (?1, ?2, ?3)",
            rusqlite::params![k1, key(*k2), v],
        ),
        Op::DeleteB(k1, k2) => {
            conn.execute("DELETE FROM b WHERE k1 = ?1 AND k2 = ?2", rusqlite::params![k1, key(*k2)])
        }
        Op::UpsertC(k, n) => conn.execute(
            "INSERT OR REPLACE INTO c (id, n) VALUES (?1, ?2)",
            rusqlite::params![vec![*k, 0xff], n],
        ),
        Op::DeleteC(k) => conn.execute("DELETE FROM c WHERE id = ?1", [vec![*k, 0xff]]),
        Op::UpsertD(k, v) => {
            conn.execute("INSERT OR REPLACE INTO d (id, v) VALUES (?1, ?2)", rusqlite::params![k, v])
        }
    };
    r.expect("generated statements fit the schema");
}

fn state(conn: &Connection, schema: &Schema) -> Vec<(String, Vec<Vec<Value>>)> {
    moat_tests::dump(conn, schema, "")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn json_diff_gives_back_the_session_bytes(before in proptest::collection::vec(op(), 0..12),
                                              during in proptest::collection::vec(op(), 1..25)) {
        let schema = Schema::from_sql(SCHEMA).unwrap();
        let origin = Connection::open_in_memory().unwrap();
        let copy = Connection::open_in_memory().unwrap();
        for conn in [&origin, &copy] {
            conn.execute_batch(SCHEMA).unwrap();
            for op in &before {
                run(conn, op);
            }
        }

        let mut session = Session::new(&origin).unwrap();
        session.attach::<&str>(None).unwrap();
        for op in &during {
            run(&origin, op);
        }
        let mut bytes = Vec::new();
        session.changeset_strm(&mut bytes).unwrap();
        drop(session);

        let diff = Diff::from_changeset(&schema, &bytes).unwrap();
        let json = diff.to_json();
        let decoded = Diff::from_json(&json, &schema).unwrap();
        prop_assert_eq!(decoded.to_json(), json.clone(), "JSON is canonical");
        prop_assert_eq!(&decoded.to_changeset(&schema).unwrap(), &bytes, "bytes differ for {}", json);

        let report = merge(&copy, &schema, &decoded).unwrap();
        prop_assert!(report.conflicts.is_empty());
        prop_assert_eq!(state(&copy, &schema), state(&origin, &schema));
        prop_assert_eq!(report.applied.to_changeset(&schema).unwrap().len(), bytes.len());
    }
}

/// A report in an order that does not depend on how each path lists rows.
fn sorted(r: &MergeReport) -> (Vec<String>, Vec<String>) {
    let mut applied: Vec<String> =
        r.applied.changes.iter().map(|c| Diff { changes: vec![c.clone()] }.to_json()).collect();
    let mut conflicts: Vec<String> = r.conflicts.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
    applied.sort();
    conflicts.sort();
    (applied, conflicts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// A writer's diff meets a server that moved on meanwhile (or not): both ways of merging give
    /// the same applied changes, the same conflicts and the same tables.
    #[test]
    fn the_clean_path_merges_as_the_changeset_apply_does(before in proptest::collection::vec(op(), 0..12),
                                                         during in proptest::collection::vec(op(), 1..12),
                                                         meanwhile in proptest::collection::vec(op(), 0..4)) {
        let schema = Schema::from_sql(SCHEMA).unwrap();
        let writer = Connection::open_in_memory().unwrap();
        let fast = Connection::open_in_memory().unwrap();
        let full = Connection::open_in_memory().unwrap();
        for conn in [&writer, &fast, &full] {
            conn.execute_batch(SCHEMA).unwrap();
            for op in &before {
                run(conn, op);
            }
        }
        for conn in [&fast, &full] {
            for op in &meanwhile {
                run(conn, op);
            }
        }
        let mut session = Session::new(&writer).unwrap();
        session.attach::<&str>(None).unwrap();
        for op in &during {
            run(&writer, op);
        }
        let mut bytes = Vec::new();
        session.changeset_strm(&mut bytes).unwrap();
        drop(session);
        let diff = Diff::from_changeset(&schema, &bytes).unwrap();

        let a = merge(&fast, &schema, &diff);
        let b = merge_by_changeset(&full, &schema, &diff);
        match (&a, &b) {
            (Ok(a), Ok(b)) => prop_assert_eq!(sorted(a), sorted(b)),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "one way failed: {:?} / {:?}", a.as_ref().err(), b.as_ref().err()),
        }
        prop_assert_eq!(state(&fast, &schema), state(&full, &schema));
    }
}
