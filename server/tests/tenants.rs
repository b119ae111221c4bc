//! Tenants as databases: managed with `moat tenant` (create, list, export, delete, live and offline),
//! held to their own limits (connections, writes per second, size) without touching the others, and
//! a database of the shape before tenants had their own split into one per tenant, keeping every
//! row, the change log at its versions and every mutation outcome.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use support::{Client, TestServer, closed, db_value_in, raw, token, update};
use tokio_tungstenite::tungstenite::Message;

fn moat(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env("MOAT_HS256_SECRET", support::SECRET)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_listed_exported_and_deleted() {
    let server = TestServer::start().await;
    let data = server.dir.path().join("data");
    // Created while the server runs: served at once.
    let made = moat(&["tenant", "create", "acme", "--demo-data"], &data);
    assert!(made.status.success(), "{}", text(&made));
    let bad = moat(&["tenant", "create", "../etc"], &data);
    assert!(!bad.status.success() && text(&bad).contains("not a tenant name"), "{}", text(&bad));
    let mut ann = Client::connect(&server.url(), &token("ann", "acme", "admin"), json!({})).await;
    ann.until("synced").await;
    assert!(ann.received.len() > 5000, "the demo data, routed to acme");
    assert!(ann.received.iter().all(|c| c["cols"]["tenant_id"]["new"] == "acme"));
    // A tenant that does not exist: a clear close.
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("x", "nobody", "admin"), "client_id": "c", "cursors": {}});
    futures_util::SinkExt::send(&mut ws, Message::text(hello.to_string())).await.unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4001, "there is no tenant nobody here"));

    // Listed with its clients, through the running server; exported live.
    let url = format!("http://{}", server.addr);
    let listed = moat(&["tenant", "list", "--server", &url], &data);
    let out = text(&listed);
    let acme = out.lines().find(|l| l.starts_with("acme")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = acme.split_whitespace().collect();
    assert!(cols[1].parse::<i64>().unwrap() > 5000 && cols[4] == "1", "{acme}");
    let copy = server.dir.path().join("acme-copy.db");
    let exported = moat(&["tenant", "export", "acme", "--to", copy.to_str().unwrap()], &data);
    assert!(exported.status.success(), "{}", text(&exported));
    let n: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5000);

    // Deleting a tenant with a client connected is refused, unless forced.
    let refused = moat(&["tenant", "delete", "acme", "--server", &url], &data);
    assert!(!refused.status.success() && text(&refused).contains("1 connected client"), "{}", text(&refused));
    let forced = moat(&["tenant", "delete", "acme", "--force", "--server", &url], &data);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(ann.closed().await.0, 1012);
    assert!(!moat_server::tenants::tenant_path(&data, "acme").exists());
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("ann", "acme", "admin"), "client_id": "c", "cursors": {}});
    futures_util::SinkExt::send(&mut ws, Message::text(hello.to_string())).await.unwrap();
    assert_eq!(closed(&mut ws).await.0, 4001);
    // Offline commands need the server stopped.
    let busy = moat(&["tenant", "list"], &data);
    assert!(!busy.status.success() && text(&busy).contains("in use"), "{}", text(&busy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limits_is_told_which_and_the_others_are_untouched() {
    let server = TestServer::start_with(|c| {
        c.limits.tenant_max_connections = 2;
        c.limits.tenant_max_writes_per_second = 5;
        c.limits.tenant_max_database_mb = 1;
    })
    .await;
    let url = server.url();
    let tok = token("alice", "company-a", "admin");
    let mut a1 = Client::connect(&url, &tok, json!({})).await;
    a1.until("synced").await;
    let mut a2 = Client::connect(&url, &tok, json!({})).await;
    a2.until("synced").await;
    let mut ws = raw(&url).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": tok, "client_id": "c3", "cursors": {}});
    futures_util::SinkExt::send(&mut ws, Message::text(hello.to_string())).await.unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4030, "company-a has reached its limit of 2 connected clients"));
    let mut b = Client::connect(&url, &token("bella", "company-b", "admin"), json!({})).await;
    b.until("synced").await;

    // Writes per second: past five, an error naming the limit and the push, retry later.
    for i in 0..12 {
        a1.push(&format!("r-{i}"), update("jobs", "job-a1", "assignee", json!(null), json!(format!("x{i}"))))
            .await;
    }
    let mut limited = Vec::new();
    let mut answered = 0;
    while answered < 12 {
        let v = a1.recv().await;
        match v["type"].as_str() {
            Some("error") => {
                assert_eq!((v["code"].as_str(), v["retry"].as_bool()), (Some("limit"), Some(true)), "{v}");
                assert!(v["message"].as_str().unwrap().contains("limit of 5 writes per second"), "{v}");
                limited.push(v["mutation_id"].as_str().unwrap().to_owned());
                answered += 1;
            }
            Some("ack") => answered += 1,
            _ => {}
        }
    }
    assert!(limited.len() >= 6, "{limited:?}");
    // Company-b writes meanwhile, unhindered.
    b.push("b-1", update("jobs", "job-b1", "status", json!("open"), json!("done"))).await;
    assert_eq!(b.until("ack").await.0["mutation_id"], "b-1");

    // Size: once the database is past 1 MB, pushes are rejected with a reason naming the limit.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let big = "n".repeat(400 * 1024);
    let mut quota = None;
    for i in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let id = format!("big-{i}");
        a2.push(&id, update("jobs", "job-a2", "notes", json!(null), json!(format!("{big}{i}")))).await;
        let v = loop {
            let v = a2.recv().await;
            if v["mutation_id"] == id.as_str() {
                break v;
            }
        };
        if v["type"] == "reject" {
            quota = Some(v);
            break;
        }
        // The base of the next one is this one's value: only the first may be stale.
        let _ = &v;
    }
    let quota = quota.expect("a push past the size limit is rejected");
    assert_eq!(quota["code"], "quota", "{quota}");
    assert!(quota["reason"].as_str().unwrap().contains("storage limit of 1 MB"), "{quota}");
    b.push("b-2", update("jobs", "job-b1", "status", json!("done"), json!("open"))).await;
    assert_eq!(b.until("ack").await.0["conflicts"], json!([]));
    assert_eq!(
        db_value_in(&server, "company-b", "SELECT status FROM jobs WHERE id = 'job-b1'"),
        "open".to_owned().into()
    );
}

/// A database of the shape before tenants had their own: both companies' rows, one log, one
/// version counter, outcomes keyed by `sub` alone, migrations numbered in one sequence.
fn old_shape_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let schema = sqlite_ext::Schema::demo();
    conn.execute_batch(schema.sql()).unwrap();
    let change = |id: &str, v: &str| json!({"table": "jobs", "op": "update", "pk": {"id": id}, "cols": {"notes": {"old": null, "new": v}}});
    let entry = |t: &str, id: &str, v: &str| json!([{"route": [t], "change": change(id, v)}]).to_string();
    conn.execute_batch(&format!(
        "CREATE TABLE moat_meta (key TEXT PRIMARY KEY NOT NULL, value ANY) STRICT;
         CREATE TABLE moat_log (version INTEGER PRIMARY KEY, entry TEXT NOT NULL) STRICT;
         CREATE TABLE moat_mutations (user_id TEXT NOT NULL, mutation_id TEXT NOT NULL, outcome TEXT NOT NULL,
             PRIMARY KEY (user_id, mutation_id)) STRICT, WITHOUT ROWID;
         CREATE TABLE moat_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
             sql TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT;
         INSERT INTO jobs (id, tenant_id, title, notes) VALUES
             ('job-a1', 'company-a', 'A one', 'a notes 2'), ('job-b1', 'company-b', 'B one', 'b notes 3'),
             ('job-a2', 'company-a', 'A two', NULL);
         INSERT INTO moat_log (version, entry) VALUES (1, '{e1}'), (2, '{e2}'), (3, '{e3}');
         INSERT INTO moat_meta (key, value) VALUES ('version', 3);
         INSERT INTO moat_mutations VALUES
             ('bob', 'm-1', '{{\"outcome\":\"ack\",\"version\":2,\"conflicts\":[]}}'),
             ('bob', 'm-2', '{{\"outcome\":\"ack\",\"version\":3,\"conflicts\":[]}}'),
             ('bob', 'm-3', '{{\"outcome\":\"reject\",\"code\":\"forbidden\",\"reason\":\"no\"}}');",
        e1 = entry("company-a", "job-a1", "a notes 1"),
        e2 = entry("company-a", "job-a1", "a notes 2"),
        e3 = entry("company-b", "job-b1", "b notes 3"),
    ))
    .unwrap();
    conn.execute("INSERT INTO moat_meta (key, value) VALUES ('schema_sql', ?1)", [schema.sql()]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_shared_database_is_split_into_tenant_databases() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("moat.db");
    old_shape_db(&old);
    let data = dir.path().join("data");
    let out = moat(&["tenant", "split", "--from", old.to_str().unwrap()], &data);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("company-a: 2 rows, 2 of 3 log entries, 2 of 3 mutation outcomes"), "{report}");
    assert!(report.contains("company-b: 1 rows, 1 of 3 log entries, 2 of 3 mutation outcomes"), "{report}");
    let q = |t: &str, sql: &str| -> String {
        let conn = rusqlite::Connection::open(moat_server::tenants::tenant_path(&data, t)).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| format!("{v:?}")).unwrap()
    };
    assert_eq!(q("company-a", "SELECT group_concat(id) FROM jobs"), "Text(\"job-a1,job-a2\")");
    assert_eq!(q("company-b", "SELECT group_concat(version) FROM moat_log"), "Text(\"3\")");
    assert_eq!(q("company-a", "SELECT group_concat(mutation_id) FROM moat_mutations"), "Text(\"m-1,m-3\")");
    assert_eq!(q("company-b", "SELECT group_concat(mutation_id) FROM moat_mutations"), "Text(\"m-2,m-3\")");
    assert_eq!(q("company-b", "SELECT value FROM moat_meta WHERE key = 'version'"), "Integer(3)");

    // The server serves the split tenants: a client's old cursor catches up (no fresh snapshot), and
    // a replayed mutation id gets its stored outcome.
    let server = TestServer::start_with(|c| {
        c.data = data.clone();
        c.demo = true; // the tenants exist: no seeding
    })
    .await;
    let mut a =
        Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({"company-a/admin": 1}))
            .await;
    let frames = a.settle().await;
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["diff", "synced"], "{frames:?}");
    assert_eq!(frames[0]["version"], 2);
    let mut bob = Client::connect(&server.url(), &token("bob", "company-b", "admin"), json!({})).await;
    bob.until("synced").await;
    bob.push("m-2", update("jobs", "job-b1", "notes", json!("x"), json!("y"))).await;
    let (ack, _) = bob.until("ack").await;
    assert_eq!(ack["version"], 3, "the stored outcome, not a second write: {ack}");
}

async fn metrics(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn gauge(metrics: &str, series: &str) -> Option<i64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tenant_is_closed_and_opens_again_on_demand() {
    let server = TestServer::start_with(|c| c.limits.tenant_idle_secs = 1).await;
    let mut a = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    a.until("synced").await;
    let m = metrics(&server).await;
    assert_eq!(gauge(&m, "moat_tenant_connections{tenant=\"company-a\"}"), Some(1), "{m}");
    let cursor = a.cursor;
    drop(a);
    // Both tenants have no session now: after a second or so, their files are closed.
    let mut open = None;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        open = gauge(&metrics(&server).await, "moat_tenants_open");
        if open == Some(0) {
            break;
        }
    }
    assert_eq!(open, Some(0), "idle tenants are closed");
    // The next session opens it again, and resumes from its cursor.
    let mut a = Client::connect(
        &server.url(),
        &token("alice", "company-a", "admin"),
        json!({"company-a/admin": cursor}),
    )
    .await;
    let frames = a.settle().await;
    assert_eq!(frames.last().unwrap()["type"], "synced", "{frames:?}");
    assert_eq!(gauge(&metrics(&server).await, "moat_tenants_open"), Some(1));
}
