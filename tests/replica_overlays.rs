//! The client replica: overlays, the projection, rebase under server diffs, acks, rejects, conflict
//! resolution, and surviving a restart. Real SQLite files.

use moat_tests::{ModelServer, Outcome, fields, id};
use sqlite_ext::{Diff, Error, Replica, Resolution, Schema, Value};

const JOB: &str = "
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes)
VALUES ('job-1', 'company-a', 'Fix boiler', 'open', 10000, 'call first'),
       ('job-2', 'company-a', 'Inspect AC', 'open', 5000, NULL);
";

fn server_and_replica(dir: &std::path::Path) -> (ModelServer, Replica) {
    let server = ModelServer::new(Schema::demo(), JOB);
    let mut r = Replica::open(dir.join("client.db"), Schema::demo()).unwrap();
    r.apply_server_diff(&server.log[0]).unwrap();
    (server, r)
}

fn col(row: Option<sqlite_ext::Fields<Value>>, name: &str) -> Value {
    row.expect("row exists").get(name).cloned().unwrap()
}

/// What another client pushes through the server, as the diff every replica then receives.
fn server_edit(server: &mut ModelServer, sql: &str) -> Diff {
    server.edit(|c| {
        c.execute_batch(sql).unwrap();
    })
}

#[test]
fn a_local_write_is_a_pending_overlay_and_the_projection_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut r) = server_and_replica(dir.path());
    let m = r.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    assert_eq!(m.mutation_id, format!("{}-1", r.client_id()));
    let change = &m.diff.changes[0];
    assert_eq!(change.cols.get("status").unwrap().old, Some(Value::from("open")), "the base travels with it");

    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "status"), Value::from("done"));
    assert_eq!(col(r.server_row("jobs", &id("job-1")).unwrap(), "status"), Value::from("open"));
    assert_eq!(r.pending().unwrap(), [m]);

    let none = r.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap();
    assert_eq!(none, None, "a write that changes nothing makes no overlay");
    assert_eq!(r.pending_count().unwrap(), 1);
}

#[test]
fn a_server_diff_under_a_pending_overlay_is_rebased_and_keeps_the_local_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r) = server_and_replica(dir.path());
    r.update("jobs", &id("job-1"), &fields([("notes", "mine".into()), ("price_cents", 1i64.into())]))
        .unwrap();

    let d =
        server_edit(&mut server, "UPDATE jobs SET status = 'scheduled', price_cents = 2 WHERE id = 'job-1';");
    r.apply_server_diff(&d).unwrap();

    let row = r.row("jobs", &id("job-1")).unwrap();
    assert_eq!(col(row.clone(), "status"), Value::from("scheduled"), "the server's column arrives");
    assert_eq!(col(row.clone(), "notes"), Value::from("mine"), "the local edit stays");
    assert_eq!(col(row, "price_cents"), Value::Integer(1), "mine shows until the server decides");
    let golden = r.server_row("jobs", &id("job-1")).unwrap();
    assert_eq!(col(golden.clone(), "notes"), Value::from("call first"));
    assert_eq!(col(golden, "price_cents"), Value::Integer(2));
    assert_eq!(r.pending_count().unwrap(), 1);
}

#[test]
fn an_ack_removes_the_overlay_and_the_projection_equals_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r) = server_and_replica(dir.path());
    let m = r.update("jobs", &id("job-1"), &fields([("notes", "mine".into())])).unwrap().unwrap();
    let Outcome::Ack(conflicts) = server.push(&m) else { panic!() };
    r.apply_server_diff(server.log.last().unwrap()).unwrap();
    assert!(r.acknowledge(&m.mutation_id, &conflicts).unwrap());
    assert!(!r.acknowledge(&m.mutation_id, &conflicts).unwrap(), "a repeated ack changes nothing");
    assert_eq!(r.pending_count().unwrap(), 0);
    assert_eq!(r.row("jobs", &id("job-1")).unwrap(), r.server_row("jobs", &id("job-1")).unwrap());
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "notes"), Value::from("mine"));
}

#[test]
fn a_rejected_write_leaves_the_projection_but_stays_visible_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut r) = server_and_replica(dir.path());
    let keep = r.update("jobs", &id("job-2"), &fields([("notes", "kept".into())])).unwrap().unwrap();
    let m = r.update("jobs", &id("job-1"), &fields([("price_cents", 1i64.into())])).unwrap().unwrap();
    assert!(r.reject(&m.mutation_id, "technicians may not change price_cents").unwrap());

    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "price_cents"), Value::Integer(10000));
    let rejected = r.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].mutation, m);
    assert_eq!(rejected[0].reason, "technicians may not change price_cents");
    assert_eq!(r.pending().unwrap(), [keep], "other pending writes are untouched");

    assert!(r.dismiss_rejected(&m.mutation_id).unwrap());
    assert!(r.rejected().unwrap().is_empty());
}

/// Two clients change the price concurrently; the second gets a conflict and resolves it.
fn conflict_on_price(dir: &std::path::Path) -> (ModelServer, Replica, i64) {
    let (mut server, mut r) = server_and_replica(dir);
    let m = r.update("jobs", &id("job-1"), &fields([("price_cents", 15000i64.into())])).unwrap().unwrap();
    let d = server_edit(&mut server, "UPDATE jobs SET price_cents = 12000 WHERE id = 'job-1';");
    r.apply_server_diff(&d).unwrap();
    let Outcome::Ack(conflicts) = server.push(&m) else { panic!() };
    assert_eq!(conflicts.len(), 1);
    r.acknowledge(&m.mutation_id, &conflicts).unwrap();
    let stored = r.conflicts().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].mutation_id, m.mutation_id);
    let c = &stored[0].conflict.columns[0];
    assert_eq!(
        (c.base.clone(), c.theirs.clone(), c.mine.clone()),
        (Some(10000i64.into()), Some(12000i64.into()), 15000i64.into())
    );
    assert_eq!(
        col(r.row("jobs", &id("job-1")).unwrap(), "price_cents"),
        Value::Integer(12000),
        "theirs until resolved"
    );
    (server, r, stored[0].id)
}

fn resolve_and_sync(server: &mut ModelServer, r: &mut Replica, conflict: i64, res: Resolution) -> Value {
    if let Some(m) = r.resolve(conflict, res).unwrap() {
        assert_eq!(
            m.diff.changes[0].cols.get("price_cents").unwrap().old,
            Some(Value::Integer(12000)),
            "a resolution is based on the server's value"
        );
        let Outcome::Ack(conflicts) = server.push(&m) else { panic!() };
        assert!(conflicts.is_empty());
        r.apply_server_diff(server.log.last().unwrap()).unwrap();
        r.acknowledge(&m.mutation_id, &conflicts).unwrap();
    }
    assert!(r.conflicts().unwrap().is_empty());
    assert_eq!(r.pending_count().unwrap(), 0);
    let on_server: Value = server
        .conn
        .query_row("SELECT price_cents FROM jobs WHERE id = 'job-1'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "price_cents"), on_server);
    on_server
}

#[test]
fn resolving_with_keep_mine_writes_mine_over_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r, k) = conflict_on_price(dir.path());
    assert_eq!(resolve_and_sync(&mut server, &mut r, k, Resolution::KeepMine), Value::Integer(15000));
}

#[test]
fn resolving_with_take_theirs_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r, k) = conflict_on_price(dir.path());
    let before = server.log.len();
    assert_eq!(resolve_and_sync(&mut server, &mut r, k, Resolution::TakeTheirs), Value::Integer(12000));
    assert_eq!(server.log.len(), before);
}

#[test]
fn resolving_with_an_edit_writes_the_new_value() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r, k) = conflict_on_price(dir.path());
    let edit = Resolution::Edit(fields([("price_cents", 13500i64.into())]));
    assert_eq!(resolve_and_sync(&mut server, &mut r, k, edit), Value::Integer(13500));
}

#[test]
fn a_conflict_on_a_deleted_row_cannot_keep_mine_and_stays_until_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut r) = server_and_replica(dir.path());
    let m = r.update("jobs", &id("job-1"), &fields([("notes", "x".into())])).unwrap().unwrap();
    let d = server_edit(&mut server, "DELETE FROM jobs WHERE id = 'job-1';");
    let Outcome::Ack(conflicts) = server.push(&m) else { panic!() };
    r.apply_server_diff(&d).unwrap();
    r.acknowledge(&m.mutation_id, &conflicts).unwrap();
    let k = r.conflicts().unwrap()[0].id;
    assert!(matches!(r.resolve(k, Resolution::KeepMine), Err(Error::NotFound(_))));
    assert_eq!(r.conflicts().unwrap().len(), 1, "the failed resolution left the conflict in place");
    assert_eq!(r.resolve(k, Resolution::TakeTheirs).unwrap(), None);
    assert!(r.conflicts().unwrap().is_empty());
}

#[test]
fn pending_writes_conflicts_and_cursors_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    let (pending, client_id) = {
        let mut server = ModelServer::new(Schema::demo(), JOB);
        let mut r = Replica::open(&path, Schema::demo()).unwrap();
        r.apply_server_diff_at("tenant:company-a", 1, &server.log[0]).unwrap();
        r.update("jobs", &id("job-1"), &fields([("notes", "offline 1".into())])).unwrap();
        r.update("jobs", &id("job-2"), &fields([("notes", "offline 2".into())])).unwrap();
        let failed = r.write(|c| {
            c.execute("UPDATE jobs SET notes = 'never' WHERE id = 'job-1'", [])?;
            Err::<(), _>(Error::Invalid("the app gave up half-way".into()))
        });
        assert!(failed.is_err());
        let _ = &mut server;
        (r.pending().unwrap(), r.client_id().to_owned())
        // dropped here without any shutdown step, as when the app is killed
    };
    let r = Replica::open(&path, Schema::demo()).unwrap();
    assert_eq!(r.client_id(), client_id);
    assert_eq!(r.pending().unwrap(), pending);
    assert_eq!(pending.len(), 2, "the failed write left nothing");
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "notes"), Value::from("offline 1"));
    assert_eq!(r.cursor("tenant:company-a").unwrap(), Some(1));
    let mut r = r;
    let next = r.update("jobs", &id("job-1"), &fields([("notes", "after".into())])).unwrap().unwrap();
    assert_eq!(next.mutation_id, format!("{client_id}-3"), "mutation ids keep counting after a restart");
}

#[test]
fn a_replica_refuses_a_file_made_for_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    drop(Replica::open(&path, Schema::demo()).unwrap());
    let other = Schema::from_sql("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL) STRICT;").unwrap();
    assert!(matches!(Replica::open(&path, other), Err(Error::Schema(_))));
}

#[test]
fn names_from_callers_are_checked_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut r) = server_and_replica(dir.path());
    assert!(matches!(
        r.update("jobs; DROP TABLE jobs", &id("job-1"), &fields([("notes", "x".into())])),
        Err(Error::UnknownTable(_))
    ));
    assert!(matches!(
        r.update("jobs", &id("job-1"), &fields([("notes\" = 1 --", "x".into())])),
        Err(Error::UnknownColumn { .. })
    ));
    assert!(matches!(
        r.update("jobs", &id("nope"), &fields([("notes", "x".into())])),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        r.update("jobs", &id("job-1"), &fields([("id", "job-9".into())])),
        Err(Error::Invalid(_))
    ));
    assert_eq!(r.pending_count().unwrap(), 0);
}

/// The rows of `ids` as a snapshot chunk of inserts (the server's log holds them as inserts).
fn chunk_of(server: &ModelServer, ids: &[&str]) -> Diff {
    let mut diff = server.log[0].clone();
    diff.changes
        .retain(|c| c.table == "jobs" && ids.iter().any(|id| c.pk.get("id") == Some(&Value::from(*id))));
    diff
}

#[test]
fn a_first_snapshot_fills_the_projection_first_and_the_golden_state_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::new(Schema::demo(), JOB);
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    r.begin_snapshot("c").unwrap();
    assert!(r.first_snapshot());
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-1"])).unwrap();
    // Shown at once; the golden state is filled at the end, in one copy.
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "status"), Value::from("open"));
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-2"])).unwrap();
    r.finish_snapshot("c", 1).unwrap();
    for key in ["job-1", "job-2"] {
        assert_eq!(r.server_row("jobs", &id(key)).unwrap(), r.row("jobs", &id(key)).unwrap(), "{key}");
    }
    assert!(r.server_row("jobs", &id("job-2")).unwrap().is_some());
    assert_eq!(r.cursor("c").unwrap(), Some(1));
}

#[test]
fn an_edit_during_a_first_snapshot_is_kept_over_the_servers_row_and_its_base_is_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::new(Schema::demo(), JOB);
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    r.begin_snapshot("c").unwrap();
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-1"])).unwrap();
    // The user edits a row already shown: the golden state catches up first, so the edit's base
    // and the server's row stay the server's.
    let m = r.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    assert_eq!(m.diff.changes[0].cols.get("status").unwrap().old, Some(Value::from("open")));
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-2"])).unwrap();
    r.finish_snapshot("c", 1).unwrap();
    assert_eq!(col(r.server_row("jobs", &id("job-1")).unwrap(), "status"), Value::from("open"));
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "status"), Value::from("done"), "the edit is kept");
    assert_eq!(col(r.server_row("jobs", &id("job-2")).unwrap(), "title"), Value::from("Inspect AC"));
    assert_eq!(col(r.row("jobs", &id("job-2")).unwrap(), "title"), Value::from("Inspect AC"));
    assert_eq!(r.pending().unwrap().len(), 1);
}

#[test]
fn a_server_batch_commits_without_a_flush_and_sets_the_level_back_even_when_it_cannot_begin() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, r) = server_and_replica(dir.path());
    let level =
        |r: &Replica| -> i64 { r.connection().query_row("PRAGMA synchronous", [], |x| x.get(0)).unwrap() };
    assert_eq!(level(&r), 2, "a replica waits for the disk at every commit");
    r.begin_server_batch().unwrap();
    assert_eq!(level(&r), 1, "a batch of server data does not");
    r.end_batch().unwrap();
    assert_eq!(level(&r), 2, "and the level is set back at its end");
    // A batch that cannot begin (another connection is writing the file) leaves the level as it was.
    let other = rusqlite::Connection::open(dir.path().join("client.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    r.connection().busy_timeout(std::time::Duration::from_millis(10)).unwrap();
    assert!(r.begin_server_batch().is_err());
    assert_eq!(level(&r), 2, "the next write waits for the disk");
    other.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_first_sync_leaves_its_golden_copy_for_later_and_a_restart_or_a_change_from_the_server_keeps_it_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ModelServer::new(Schema::demo(), JOB);
    let golden = |r: &Replica| -> i64 {
        r.connection().query_row("SELECT count(*) FROM server_data_jobs", [], |x| x.get(0)).unwrap()
    };
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    r.begin_snapshot("c").unwrap();
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-1", "job-2"])).unwrap();
    r.finish_snapshot("c", 1).unwrap();
    assert!(r.golden_behind(), "the end of a first sync does not wait for the copy");
    assert_eq!(golden(&r), 0);
    assert_eq!(col(r.server_row("jobs", &id("job-2")).unwrap(), "title"), Value::from("Inspect AC"));
    drop(r);

    // A restart knows the copy is still to make.
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    assert!(r.golden_behind());
    // A slice at an idle turn, where a restart goes on from...
    assert!(r.catch_up_golden_step(1).unwrap(), "one row of two: some is left");
    assert_eq!(golden(&r), 1);
    drop(r);
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    r.catch_up_golden_step(1).unwrap();
    assert_eq!(golden(&r), 2, "the second row, not the first again");
    assert!(r.golden_behind(), "the tables after the jobs are still to look at");
    // ...and the rest before a change from the server.
    let diff = server_edit(&mut server, "UPDATE jobs SET title = 'Inspect AC unit' WHERE id = 'job-2'");
    r.apply_server_diff_at("c", 2, &diff).unwrap();
    assert!(!r.golden_behind(), "a change from the server makes the copy first");
    assert_eq!(golden(&r), 2);
    assert_eq!(col(r.server_row("jobs", &id("job-2")).unwrap(), "title"), Value::from("Inspect AC unit"));
    assert_eq!(col(r.server_row("jobs", &id("job-1")).unwrap(), "title"), Value::from("Fix boiler"));
    drop(r);
    let r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    assert!(!r.golden_behind(), "and the file says so");

    // A write after a first sync makes it too, and the edit's base is the server's row.
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path().join("client.db"), Schema::demo()).unwrap();
    r.begin_snapshot("c").unwrap();
    r.apply_snapshot_chunk(&chunk_of(&server, &["job-1"])).unwrap();
    r.finish_snapshot("c", 1).unwrap();
    r.update("jobs", &id("job-1"), &fields([("status", "done".into())])).unwrap().unwrap();
    assert!(!r.golden_behind());
    assert_eq!(col(r.server_row("jobs", &id("job-1")).unwrap(), "status"), Value::from("open"));
    assert_eq!(col(r.row("jobs", &id("job-1")).unwrap(), "status"), Value::from("done"));
}
