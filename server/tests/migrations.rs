//! `moat migrate`: the demo's migrations apply in order with progress, a dry run changes nothing, the
//! server then runs on the new schema and hands it to clients; refused: a migration changed after it
//! was applied, a destructive one without the flag, one that fails half-way (nothing of it stays),
//! and migrating a database a running server holds. A live migration of one tenant reconnects only
//! that tenant's clients.

mod support;

use std::path::{Path, PathBuf};

use futures_util::SinkExt;
use moat_server::migrate::{self, Scope, State};
use moat_server::{Config, Server};
use serde_json::json;
use sqlite_ext::Schema;
use support::{Client, TestServer, closed, raw, token};
use tokio_tungstenite::tungstenite::Message;

fn demo_db(dir: &Path) -> Config {
    let mut config = Config { data: dir.join("data"), web_root: dir.join("no-web"), ..Config::default() };
    config.demo = true;
    config.auth.hs256_secret = Some(support::SECRET.into());
    drop(Server::open(&config).unwrap()); // creates and seeds the demo's tenants
    config
}

fn tenant_db(config: &Config, tenant: &str) -> PathBuf {
    moat_server::tenants::tenant_path(&config.data, tenant)
}

fn demo_migrations() -> Vec<migrate::Migration> {
    migrate::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/migrations")).unwrap()
}

fn columns(db: &Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)").unwrap();
    stmt.query_map([table], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn states(db: &Path, files: &[migrate::Migration]) -> Vec<State> {
    let conn = rusqlite::Connection::open(db).unwrap();
    migrate::status(&conn, files, Scope::Platform).unwrap().into_iter().map(|s| s.2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_migrations_apply_and_clients_get_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_db(dir.path());
    let db = tenant_db(&config, "company-a");
    let files = demo_migrations();
    assert_eq!(files.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["job_priority", "vehicles"]);

    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let plan = migrate::plan(&mut conn, &Schema::demo(), &files, Scope::Platform).unwrap();
    assert_eq!(plan[0].1.columns_added, ["jobs.priority"]);
    assert_eq!(plan[1].1.tables_added, ["vehicles"]);
    assert!(!columns(&db, "jobs").contains(&"priority".into()), "a dry run changes nothing");
    assert_eq!(states(&db, &files), [State::Pending, State::Pending]);

    // A running server holds the database: no migration under it.
    let running = Server::open(&config).unwrap();
    let platform = moat_server::tenants::platform_path(&config.data);
    let err = migrate::writer_lock(&platform).unwrap_err().to_string();
    assert!(err.contains("running `moat serve`"), "{err}");
    drop(running);

    let _lock = migrate::writer_lock(&platform).unwrap();
    let mut progress = Vec::new();
    let done = migrate::up(&mut conn, &Schema::demo(), &files, Scope::Platform, false, None, |l| {
        progress.push(l.to_owned())
    })
    .unwrap();
    assert_eq!(done.len(), 2);
    assert!(progress.iter().any(|l| l.starts_with("[1/2] 0001_job_priority applied")), "{progress:?}");
    assert!(progress.iter().any(|l| l.starts_with("[2/2] 0002_vehicles applied")), "{progress:?}");
    assert_eq!(states(&db, &files), [State::Applied, State::Applied]);
    assert!(
        migrate::up(&mut conn, &Schema::demo(), &files, Scope::Platform, false, None, |_| {})
            .unwrap()
            .is_empty()
    );
    // The new object type's rows are this tenant's own (a platform migration reads the tenant's name).
    let owners: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT tenant_id FROM vehicles UNION SELECT DISTINCT tenant_id FROM object_metadata",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(owners, ["company-a"]);
    drop((conn, _lock));

    // The server runs on base + migrations and hands that schema to a client that has another one.
    let server = TestServer::start_with(|c| *c = config.clone()).await;
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                       "client_id": "c1", "cursors": {"company-a/admin": 3}, "schema": Schema::demo().fingerprint()});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let mut c = Client { ws, cursor: 0, received: Vec::new(), welcome: json!(null), frames: Vec::new() };
    let welcome = c.recv().await;
    let sql = welcome["schema"]["sql"].as_str().expect("the welcome carries the new schema");
    let new = Schema::from_sql(sql).unwrap();
    assert_eq!(welcome["schema"]["fingerprint"], new.fingerprint());
    assert!(
        new.table("vehicles").is_ok()
            && new.table("jobs").unwrap().columns.iter().any(|c| c.name == "priority")
    );
    // Its old cursor predates the migration: a fresh snapshot, with the new rows and columns.
    let (_, frames) = c.until("snapshot_end").await;
    assert_eq!(frames[0]["type"], "snapshot_begin");
    assert!(c.received.iter().any(|ch| ch["table"] == "vehicles"));
    assert!(c.received.iter().any(|ch| ch["table"] == "jobs" && ch["cols"]["priority"]["new"] == "high"));
    assert!(c.received.iter().all(|ch| ch["cols"]["tenant_id"]["new"] != "company-b"));

    // A client on the new schema gets no schema in its welcome.
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                       "client_id": "c2", "cursors": {}, "schema": new.fingerprint()});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let mut c = Client { ws, cursor: 0, received: Vec::new(), welcome: json!(null), frames: Vec::new() };
    assert!(c.recv().await.get("schema").is_none());

    // An app from before the schema was named in hello cannot follow: a clear close, not bad data.
    let mut old = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                       "client_id": "c3", "cursors": {}});
    old.send(Message::text(hello.to_string())).await.unwrap();
    let (code, reason) = closed(&mut old).await;
    assert_eq!(code, 4010);
    assert!(reason.contains("too old"), "{reason}");
}

fn write(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, sql).unwrap();
    p
}

#[test]
fn tampered_destructive_and_failing_migrations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = tenant_db(&demo_db(dir.path()), "company-a");
    let mdir = dir.path().join("migrations");
    std::fs::create_dir(&mdir).unwrap();
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let base = Schema::demo();
    let up = |conn: &mut rusqlite::Connection, allow: bool| {
        migrate::up(conn, &base, &migrate::load_dir(&mdir).unwrap(), Scope::Platform, allow, None, |_| {})
            .map(|d| d.len())
    };

    let first = write(&mdir, "0001_vip.sql", "ALTER TABLE customers ADD COLUMN vip INTEGER;\n");
    assert_eq!(up(&mut conn, false).unwrap(), 1);

    // Changed after it was applied.
    std::fs::write(&first, "ALTER TABLE customers ADD COLUMN vip TEXT;\n").unwrap();
    let err = up(&mut conn, false).unwrap_err().to_string();
    assert!(err.contains("changed after it was applied"), "{err}");
    assert_eq!(states(&db, &migrate::load_dir(&mdir).unwrap()), [State::Tampered]);
    std::fs::write(&first, "ALTER TABLE customers ADD COLUMN vip INTEGER;\n").unwrap();

    // Destructive: refused without the flag (nothing changes), applied with it.
    write(&mdir, "0002_no_phone.sql", "ALTER TABLE customers DROP COLUMN phone;\n");
    let err = up(&mut conn, false).unwrap_err().to_string();
    assert!(err.contains("would destroy data") && err.contains("customers.phone"), "{err}");
    assert!(columns(&db, "customers").contains(&"phone".into()));
    assert_eq!(states(&db, &migrate::load_dir(&mdir).unwrap()), [State::Applied, State::Pending]);
    assert_eq!(up(&mut conn, true).unwrap(), 1);
    assert!(!columns(&db, "customers").contains(&"phone".into()));

    // Fails half-way (its second statement breaks on the real rows): the first is not left applied.
    write(
        &mdir,
        "0003_half.sql",
        "ALTER TABLE customers ADD COLUMN loyalty INTEGER;\n\
         INSERT INTO customers (id, tenant_id, name) SELECT id, tenant_id, NULL FROM jobs;\n",
    );
    let err = up(&mut conn, false).unwrap_err().to_string();
    assert!(err.contains("0003_half failed") && err.contains("NOT NULL"), "{err}");
    assert!(!columns(&db, "customers").contains(&"loyalty".into()));
    let files = migrate::load_dir(&mdir).unwrap();
    assert_eq!(states(&db, &files), [State::Applied, State::Applied, State::Pending]);
    // One that does not even make a schema is refused before it touches the database.
    write(&mdir, "0003_half.sql", "INSERT INTO nowhere VALUES (1);\n");
    let err = up(&mut conn, false).unwrap_err().to_string();
    assert!(err.contains("0003_half") && err.contains("nowhere"), "{err}");

    // A new file gets the next number.
    let made = migrate::new_file(&mdir, "more_fields").unwrap();
    assert!(made.ends_with("0004_more_fields.sql"), "{}", made.display());
    assert!(migrate::new_file(&mdir, "bad name").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migration_moves_connected_clients_onto_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_db(dir.path());
    config.migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/migrations");
    let server = TestServer::start_with(|c| *c = config.clone()).await;
    let mut alice = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    alice.until("synced").await;
    let mut bella = Client::connect(&server.url(), &token("bella", "company-b", "admin"), json!({})).await;
    bella.until("synced").await;

    // Only an operator may migrate.
    let refused = support::post(server.addr, "/admin/migrate", &token("alice", "company-a", "admin")).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let ops = token("ops", "*", "operator");
    let answer = support::post(server.addr, "/admin/migrate?tenant=company-a", &ops).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("[2/2] 0002_vehicles applied"), "{answer}");

    // The connected client is closed so that it comes back onto the new schema...
    let (code, reason) = alice.closed().await;
    assert_eq!(code, 1012, "{reason}");
    // ...and company-b's client, on a tenant that was not migrated, stays connected.
    assert!(bella.settle().await.is_empty());
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                       "client_id": "c1", "cursors": {"company-a/admin": alice.cursor},
                       "schema": Schema::demo().fingerprint()});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let mut c = Client { ws, cursor: 0, received: Vec::new(), welcome: json!(null), frames: Vec::new() };
    let welcome = c.recv().await;
    let new = Schema::from_sql(welcome["schema"]["sql"].as_str().unwrap()).unwrap();
    assert!(new.table("vehicles").is_ok());
    // A live, additive migration keeps the change log: the client catches up from its cursor (the
    // migration's rows and values, earlier entries refitted to the new schema), with no fresh copy.
    let (_, frames) = c.until("synced").await;
    assert!(frames.iter().all(|f| f["type"] != "snapshot_begin"), "no re-download");
    for f in frames.iter().filter(|f| f["type"] == "diff") {
        sqlite_ext::Diff::from_value(f["diff"].clone(), &new).unwrap_or_else(|e| panic!("{e}: {f}"));
    }
    assert!(c.received.iter().any(|ch| ch["table"] == "vehicles"), "the new table's rows");
    let priority = c.received.iter().find(|ch| ch["table"] == "jobs" && ch["pk"]["id"] == "job-a-00001");
    assert_eq!(
        priority.map(|ch| ch["cols"]["priority"]["new"].clone()),
        Some(json!("normal")),
        "{priority:?}"
    );
    // Writes go on, on the new schema.
    c.push("after-1", support::update("jobs", "job-a-00001", "priority", json!("normal"), json!("low")))
        .await;
    let (ack, _) = c.until("ack").await;
    assert!(ack["conflicts"].as_array().unwrap().is_empty(), "{ack}");

    // Every tenant: company-a has nothing left to apply; company-b now migrates and reconnects.
    let answer = support::post(server.addr, "/admin/migrate", &ops).await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    assert!(body.starts_with("company-a: nothing to apply\n"), "{body}");
    assert!(body.contains("company-b: 2 migration(s) applied"), "{body}");
    assert_eq!(bella.closed().await.0, 1012);
}
