//! Backups of a serving tenant, and a restore under clients that saw more than the backup holds:
//! the real binary, `moat backup` taken while a client writes, `moat restore` with the server
//! stopped. A client whose cursor is past the backup takes a fresh snapshot (not a catch-up that
//! would leave it with rows the server no longer has); one whose cursor the backup covers catches
//! up; replayed writes are applied once, those the backup holds are answered from it.

mod support;

use serde_json::{Value, json};
use support::{Client, Moat, moat, token};

fn insert(i: usize) -> Value {
    json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": format!("job-{i:03}")},
        "cols": {"tenant_id": {"new": "company-a"}, "title": {"new": format!("Job {i}")}, "status": {"new": "open"},
                 "price_cents": {"new": i}, "notes": {"new": null}, "internal_notes": {"new": null},
                 "line_items": {"new": "[]"}, "assignee": {"new": null}, "customer_id": {"new": null},
                 "scheduled_date": {"new": null}}}]})
}

/// Pushes `range` one by one, each acked before the next.
async fn write(c: &mut Client, range: std::ops::Range<usize>) -> Vec<Value> {
    let mut acks = Vec::new();
    for i in range {
        c.push(&format!("m-{i}"), insert(i)).await;
        acks.push(c.until("ack").await.0);
    }
    acks
}

fn ids(received: &[Value]) -> std::collections::BTreeSet<String> {
    received.iter().filter_map(|c| c["pk"]["id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_under_clients_ahead_of_it_resnapshots_them_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    moat(&["tenant", "create", "company-a"], &data);
    let server = Moat::serve(&data, &[], &[]);
    let tok = token("alice", "company-a", "admin");

    // A writer writes 0..60; the backup is taken from another process while it writes 30..60.
    let mut writer = Client::connect(&server.url(), &tok, json!({})).await;
    writer.until("synced").await;
    write(&mut writer, 0..30).await;
    let backup = tokio::task::spawn_blocking({
        let (data, backups) = (data.clone(), backups.clone());
        move || moat(&["backup", "--to", backups.to_str().unwrap()], &data)
    });
    write(&mut writer, 30..60).await;
    let report = backup.await.unwrap();
    assert!(report.contains("1 tenant(s)"), "{report}");
    write(&mut writer, 60..80).await;
    let channel = writer.welcome["channels"][0].as_str().unwrap().to_owned();

    // A reader that saw everything (cursor past the backup).
    let mut ahead = Client::connect(&server.url(), &tok, json!({})).await;
    ahead.until("synced").await;
    assert_eq!(ids(&ahead.received).len(), 80);
    let ahead_cursor = ahead.cursor;
    drop(ahead);
    server.stop();

    let (folder, manifest) = moat_server::backup::list(&backups).unwrap().pop().unwrap();
    let held = manifest.tenants[0].version;
    assert!((30..=60).contains(&held), "the backup holds what was committed when it ran: version {held}");
    let line = moat(&["restore", "--from", folder.to_str().unwrap()], &data);
    assert!(line.contains(&format!("company-a: restored to version {held}")), "{line}");
    let db = rusqlite::Connection::open(moat_server::tenants::tenant_path(&data, "company-a")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = db.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, held, "one job per commit, up to the backup's version");
    drop(db);

    let server = Moat::serve(&data, &[], &[]);
    // The client ahead of the backup: a fresh snapshot of what the server has, not a catch-up.
    let mut ahead = Client::connect(&server.url(), &tok, json!({ channel.clone(): ahead_cursor })).await;
    let (_, before) = ahead.until("synced").await;
    assert!(
        before.iter().any(|f| f["type"] == "snapshot_begin"),
        "a cursor from the undone history re-snapshots"
    );
    assert_eq!(ids(&ahead.received).len() as i64, held);
    // A client whose cursor the backup covers catches up from it.
    let mut behind = Client::connect(&server.url(), &tok, json!({ channel.clone(): 10 })).await;
    let (_, before) = behind.until("synced").await;
    assert!(!before.iter().any(|f| f["type"] == "snapshot_begin"), "a cursor inside the backup catches up");
    assert_eq!(ids(&behind.received).len() as i64, held - 10);

    // The writer replays every write it made (as a client whose acks were lost would): those the
    // backup holds are answered from it, the others applied now; each job exists once.
    let mut writer = Client::connect(&server.url(), &tok, json!({ channel.clone(): ahead.cursor })).await;
    writer.until("synced").await;
    let acks = write(&mut writer, 0..80).await;
    let resumed = held + moat_server::backup::RESTORE_GAP;
    for (i, ack) in acks.iter().enumerate() {
        let v = ack["version"].as_i64().unwrap();
        match (i as i64) < held {
            true => assert!(v <= held, "write {i} is in the backup: answered with its stored version, {ack}"),
            false => assert!(v > resumed, "write {i} was undone by the restore: applied again, {ack}"),
        }
    }
    behind.settle().await;
    assert_eq!(ids(&behind.received).len(), 80 - 10, "the others follow the replayed writes live");
    server.stop();
    let db = rusqlite::Connection::open(moat_server::tenants::tenant_path(&data, "company-a")).unwrap();
    let (rows, distinct): (i64, i64) = db
        .query_row("SELECT count(*), count(DISTINCT title) FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((rows, distinct), (80, 80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let b = backups.clone();
    let server = support::TestServer::start_with(move |c| {
        c.backup.dir = Some(b);
        c.backup.interval_secs = 1;
        c.backup.keep = 2;
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.metrics.backups.get() < 4 {
        assert!(std::time::Instant::now() < deadline, "four scheduled backups in 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = moat_server::backup::list(&backups).unwrap();
    assert_eq!(kept.len(), 2, "the newest two are kept");
    let names: Vec<_> = kept[1].1.tenants.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["company-a", "company-b"]);
    assert!(server.metrics.backup_last_success.get() > 0);
    assert_eq!(server.metrics.backup_failures.get(), 0);
    let copy = rusqlite::Connection::open(kept[1].0.join("tenants/company-a.db")).unwrap();
    let jobs: i64 = copy.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(jobs, 2, "the copy holds the tenant's rows");
}
