//! A replica follows the server's schema migration: new tables and columns appear, dropped ones go,
//! and the pending overlays are carried over (inserts gain the new columns) or, when they no longer
//! fit, become rejected with the reason; never dropped silently. Real SQLite files.

use moat_tests::{ModelServer, fields, id};
use sqlite_ext::{Replica, Schema, Value};

const SEED: &str = "
INSERT INTO customers (id, tenant_id, name, phone) VALUES ('cust-1', 'company-a', 'Harbor School', '555-0101');
INSERT INTO jobs (id, tenant_id, title, status, price_cents) VALUES ('job-1', 'company-a', 'Fix boiler', 'open', 100);
";

const MIGRATION: &str = "
ALTER TABLE jobs ADD COLUMN priority TEXT;
ALTER TABLE customers DROP COLUMN phone;
CREATE TABLE vehicles (id TEXT PRIMARY KEY NOT NULL, tenant_id TEXT NOT NULL, plate TEXT NOT NULL) STRICT;
";

fn columns(r: &Replica, table: &str) -> Vec<String> {
    let mut stmt = r.connection().prepare("SELECT name FROM pragma_table_info(?1)").unwrap();
    stmt.query_map([table], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn pending_overlays_are_carried_to_the_new_schema_or_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    let server = ModelServer::new(Schema::demo(), SEED);
    let mut r = Replica::open(&path, Schema::demo()).unwrap();
    r.apply_server_diff(&server.log[0]).unwrap();

    // Offline edits: one that the migration keeps, one it cannot keep, and one new row.
    let keep = r.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    let lost =
        r.update("customers", &id("cust-1"), &fields([("phone", "555-0199".into())])).unwrap().unwrap();
    let new_row = r
        .insert(
            "jobs",
            &fields([
                ("id", "job-2".into()),
                ("tenant_id", "company-a".into()),
                ("title", "Inspect AC".into()),
                ("status", "open".into()),
                ("price_cents", Value::Integer(50)),
            ]),
        )
        .unwrap()
        .unwrap();

    let new = Schema::from_sql(&format!("{}\n{MIGRATION}", Schema::demo().sql())).unwrap();
    let refused = r.migrate_schema(new.clone()).unwrap();

    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, lost.mutation_id);
    assert!(refused[0].1.contains("customers.phone was removed"), "{}", refused[0].1);
    let rejected = r.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].mutation.mutation_id, lost.mutation_id, "kept, with its reason");

    let pending: Vec<String> = r.pending().unwrap().into_iter().map(|m| m.mutation_id).collect();
    assert_eq!(pending, [keep.mutation_id.clone(), new_row.mutation_id.clone()]);
    let insert = r.pending_mutation(&new_row.mutation_id).unwrap().unwrap();
    let cols = &insert.diff.changes[0].cols;
    assert_eq!(cols.get("priority").unwrap().new, Some(Value::Null), "the insert gained the new column");

    assert!(columns(&r, "jobs").contains(&"priority".to_string()));
    assert!(columns(&r, "server_data_jobs").contains(&"priority".to_string()));
    assert!(!columns(&r, "customers").contains(&"phone".to_string()));
    assert_eq!(columns(&r, "vehicles"), ["id", "tenant_id", "plate"]);
    assert_eq!(columns(&r, "server_data_vehicles"), ["id", "tenant_id", "plate"]);
    // The projection still shows the kept edits.
    assert_eq!(r.row("jobs", &id("job-1")).unwrap().unwrap().get("status"), Some(&Value::from("done")));
    assert!(r.row("jobs", &id("job-2")).unwrap().is_some());
    drop(r);

    // The app restarts: the replica opens with the schema it was migrated to, not the built-in one.
    let r = Replica::open_latest(&path, Schema::demo()).unwrap();
    assert_eq!(r.schema().fingerprint(), new.fingerprint());
    assert_eq!(r.pending().unwrap().len(), 2);
}

#[test]
fn migrating_to_the_same_schema_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path().join("c.db"), Schema::demo()).unwrap();
    assert!(r.migrate_schema(Schema::demo()).unwrap().is_empty());
    assert_eq!(r.schema().fingerprint(), Schema::demo().fingerprint());
}
