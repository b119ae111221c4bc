//! How fast a large server diff goes into a client replica (target: at least 50k rows/s).
//!
//! A server database gets 100,000 jobs under a session; the changeset becomes a JSON diff, as the wire
//! carries it. The benchmark then times, on a replica in a real file (WAL, synchronous = FULL):
//! decoding the JSON, applying the inserts (an initial sync), and applying a 100k-row update while
//! 200 pending local edits sit on some of those rows (a rebase). It prints figures and never fails
//! on a timing. `--quick` runs each step once instead of keeping the best of three.

use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::session::Session;
use sqlite_ext::protocol::ServerMsg;
use sqlite_ext::{Diff, Fields, Replica, RowsWriter, Schema, Value};

const ROWS: usize = 100_000;
const PENDING: usize = 200;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };
    let schema = Schema::demo();
    println!("apply_server_diff: {ROWS} rows, best of {runs} run(s)");

    step(1, "generating the server's changes under a session");
    let server = Connection::open_in_memory().unwrap();
    server.execute_batch(schema.sql()).unwrap();
    let inserts = capture(&server, &schema, |c| {
        c.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
             INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, line_items, assignee,
                               customer_id, scheduled_date)
             SELECT printf('job-%06d', i), 'company-a', 'Service heat pump ' || i, 'open', 1000 + i,
                    CASE WHEN i % 3 = 0 THEN 'Gate code 4411, dog in the yard.' END,
                    '[{{\"sku\":\"SKU-10007\",\"qty\":1,\"unit_price_cents\":4200}}]',
                    'tech-a' || (i % 4), printf('cust-a-%04d', i % 200), date('2026-09-01', '+' || (i % 90) || ' days')
             FROM n"
        ))
        .unwrap()
    });
    let updates = capture(&server, &schema, |c| {
        c.execute_batch("UPDATE jobs SET status = 'scheduled', price_cents = price_cents + 1").unwrap()
    });

    step(2, "encoding changesets as JSON diffs");
    let (insert_json, t) = best(runs, || inserts.to_json());
    report("encode", ROWS, t, Some(insert_json.len()));
    let update_json = updates.to_json();

    step(3, "decoding and checking JSON diffs against the schema");
    let (_, t) = best(runs, || Diff::from_json(&insert_json, &schema).unwrap());
    report("decode", ROWS, t, None);
    // The same diff inside a session frame, as the client engine reads it (the core's `ServerMsg`).
    let frame = format!(
        r#"{{"type":"snapshot","channel":"company-a/admin","rows_done":{ROWS},"rows":{ROWS},"diff":{insert_json}}}"#
    );
    let (_, t) = best(runs, || {
        let Ok(ServerMsg::Snapshot { diff, .. }) = ServerMsg::from_frame(&frame) else {
            panic!("a snapshot frame")
        };
        diff.decode(&schema).unwrap()
    });
    report("decode as a session frame", ROWS, t, None);
    // The same rows as a `snapshot_rows` chunk (columns named once).
    let mut writer = RowsWriter::default();
    inserts.changes.iter().for_each(|c| writer.push(c));
    let rows_json = writer.finish();
    let rows_frame = format!(
        r#"{{"type":"snapshot_rows","channel":"company-a/admin","rows_done":{ROWS},"rows":{ROWS},"tables":{rows_json}}}"#
    );
    let (_, t) = best(runs, || {
        let Ok(ServerMsg::SnapshotRows { tables, .. }) = ServerMsg::from_frame(&rows_frame) else {
            panic!("a snapshot_rows frame")
        };
        let mut rows = 0;
        sqlite_ext::read_rows(&tables.json(), &schema, &mut |_, _| {
            rows += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, ROWS);
    });
    report("read as snapshot_rows (checked, row by row)", ROWS, t, Some(rows_json.len()));

    step(4, "initial sync: 100k inserts into an empty replica file");
    let dir = tempfile::tempdir().unwrap();
    let mut best_insert = Duration::MAX;
    for run in 0..runs {
        let path = dir.path().join(format!("insert-{run}.db"));
        let mut replica = Replica::open(&path, schema.clone()).unwrap();
        let start = Instant::now();
        let diff = Diff::from_json(&insert_json, &schema).unwrap();
        replica.apply_server_diff(&diff).unwrap();
        best_insert = best_insert.min(start.elapsed());
        let n: i64 = replica.connection().query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(n as usize, ROWS);
    }
    report("apply inserts (JSON in, committed)", ROWS, best_insert, None);
    // A first sync as a client runs it: snapshot chunks of 2,000 rows, as diffs and as rows.
    for (what, as_rows) in [("snapshot chunks as diffs", false), ("snapshot chunks as rows", true)] {
        let mut best_sync = Duration::MAX;
        for run in 0..runs {
            let path = dir.path().join(format!("snapshot-{as_rows}-{run}.db"));
            let mut replica = Replica::open(&path, schema.clone()).unwrap();
            let chunks: Vec<String> = inserts
                .changes
                .chunks(2000)
                .map(|c| match as_rows {
                    true => {
                        let mut w = RowsWriter::default();
                        c.iter().for_each(|c| w.push(c));
                        w.finish()
                    }
                    false => Diff { changes: c.to_vec() }.to_json(),
                })
                .collect();
            let start = Instant::now();
            replica.begin_snapshot("c").unwrap();
            for chunk in &chunks {
                match as_rows {
                    true => drop(replica.apply_snapshot_rows(chunk).unwrap()),
                    false => replica.apply_snapshot_chunk(&Diff::from_json(chunk, &schema).unwrap()).unwrap(),
                }
            }
            replica.finish_snapshot("c", 1).unwrap();
            best_sync = best_sync.min(start.elapsed());
        }
        report(&format!("first sync, {what} (JSON in, committed)"), ROWS, best_sync, None);
    }

    step(5, "live update of 100k rows with 200 pending local edits (rebase)");
    let mut best_update = Duration::MAX;
    for run in 0..runs {
        let path = dir.path().join(format!("update-{run}.db"));
        let mut replica = Replica::open(&path, schema.clone()).unwrap();
        replica.apply_server_diff(&inserts).unwrap();
        for i in 0..PENDING {
            let pk = Fields(vec![("id".into(), Value::from(format!("job-{:06}", 1 + i * 397)))]);
            let set = Fields(vec![("notes".into(), Value::from(format!("local edit {i}")))]);
            replica.update("jobs", &pk, &set).unwrap();
        }
        let start = Instant::now();
        let diff = Diff::from_json(&update_json, &schema).unwrap();
        replica.apply_server_diff(&diff).unwrap();
        best_update = best_update.min(start.elapsed());
        let kept: i64 = replica
            .connection()
            .query_row(
                "SELECT count(*) FROM jobs WHERE notes LIKE 'local edit %' AND status = 'scheduled'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept as usize, PENDING, "every local edit survives the rebase");
    }
    report("apply updates + rebase (JSON in, committed)", ROWS, best_update, None);

    let rate = ROWS as f64 / best_insert.as_secs_f64();
    println!("\nresult: initial sync {rate:.0} rows/s (target ≥ 50000 rows/s)");
}

fn capture(conn: &Connection, schema: &Schema, f: impl FnOnce(&Connection)) -> Diff {
    let mut session = Session::new(conn).unwrap();
    session.attach::<&str>(None).unwrap();
    f(conn);
    let mut bytes = Vec::new();
    session.changeset_strm(&mut bytes).unwrap();
    Diff::from_changeset(schema, &bytes).unwrap()
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed());
        out = Some(v);
    }
    (out.expect("at least one run"), best)
}

fn step(n: usize, what: &str) {
    println!("[{n}/5] {what} ...");
}

fn report(what: &str, rows: usize, t: Duration, bytes: Option<usize>) {
    let rate = rows as f64 / t.as_secs_f64();
    let size = bytes
        .map(|b| format!(", {:.1} MB, {:.0} B/row", b as f64 / 1e6, b as f64 / rows as f64))
        .unwrap_or_default();
    println!("      {what}: {:.1} ms, {rate:.0} rows/s{size}", t.as_secs_f64() * 1e3);
}
