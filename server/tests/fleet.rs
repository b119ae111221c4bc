//! Fleet health: devices report their app, what waits and their last error (in hello and when it
//! changes); the tenant's admins ask for the devices; `/metrics` sums them; the records outlive the
//! server. Reports are client frames: checked like any other.

mod support;

use futures_util::SinkExt;
use serde_json::{Value, json};
use support::{Client, TestServer, closed, token};
use tokio_tungstenite::tungstenite::Message;

async fn device(server: &TestServer, user: &str, role: &str, client_id: &str, report: Value) -> Client {
    let hello = json!({"type": "hello", "protocol": 1, "token": token(user, "company-a", role),
        "client_id": client_id, "cursors": {}, "device": report});
    let mut c = Client::hello(&server.url(), hello).await;
    c.until("synced").await;
    c
}

async fn fleet(c: &mut Client) -> Vec<Value> {
    c.send(json!({"type": "list_devices"})).await;
    c.until("devices").await.0["devices"].as_array().unwrap().clone()
}

fn by_id<'a>(devices: &'a [Value], id: &str) -> &'a Value {
    devices.iter().find(|d| d["client_id"] == id).unwrap_or_else(|| panic!("{id} in {devices:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_every_device_of_their_tenant_and_no_one_else_does() {
    let mut server = TestServer::start().await;
    let ipad = json!({"app_version": "2.1.0", "platform": "ios", "pending": 3, "oldest_pending_ms": 120000,
        "rejected": 1, "conflicts": 0, "last_error": "the server sent a frame this app cannot use"});
    let mut alice = device(
        &server,
        "alice",
        "admin",
        "alice-laptop",
        json!({"app_version": "2.1.0",
        "platform": "web", "pending": 0, "rejected": 0, "conflicts": 0}),
    )
    .await;
    assert_eq!(alice.welcome["admin"], true);
    let mut tom = device(&server, "tom", "technician", "tom-ipad", ipad).await;
    assert_eq!(tom.welcome["admin"], false);

    // A technician may not list the devices.
    tom.send(json!({"type": "list_devices"})).await;
    let (err, _) = tom.until("error").await;
    assert_eq!((err["code"].as_str(), err["retry"].as_bool()), (Some("forbidden"), Some(false)), "{err}");

    let devices = fleet(&mut alice).await;
    let t = by_id(&devices, "tom-ipad");
    assert_eq!(
        (&t["user"], &t["role"], &t["platform"], &t["connected"]),
        (&json!("tom"), &json!("technician"), &json!("ios"), &json!(true))
    );
    assert_eq!(
        (&t["pending"], &t["oldest_pending_ms"], &t["rejected"]),
        (&json!(3), &json!(120000), &json!(1))
    );
    assert!(t["schema"].is_null(), "this hello named no schema");
    let metrics = support::get(server.addr, "/metrics").await.1;
    assert!(metrics.contains("moat_fleet_devices_connected 2"), "{metrics}");
    assert!(metrics.contains("moat_fleet_pending_writes 3"));
    assert!(metrics.contains("moat_fleet_oldest_pending_seconds 120"));
    assert!(metrics.contains("moat_fleet_devices_with_errors 1"));

    // A later report replaces the figures; a session's end marks the device disconnected.
    tom.send(json!({"type": "report", "device": {"app_version": "2.1.0", "platform": "ios", "pending": 0,
        "rejected": 0, "conflicts": 0}}))
        .await;
    tom.settle().await;
    let t = by_id(&fleet(&mut alice).await, "tom-ipad").clone();
    assert_eq!((&t["pending"], &t["last_error"]), (&json!(0), &Value::Null));
    let _ = tom.ws.close(None).await;
    drop(tom);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let devices = fleet(&mut alice).await;
        if by_id(&devices, "tom-ipad")["connected"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tom's device shows disconnected");
    }
    // Company B's admin sees none of company A's devices (a tenant is its own database).
    let mut bella = Client::connect(&server.url(), &token("bella", "company-b", "admin"), json!({})).await;
    bella.until("synced").await;
    let theirs = fleet(&mut bella).await;
    assert!(theirs.iter().all(|d| d["user"] == "bella"), "{theirs:?}");

    // Hostile reports: refused with a reason, the session and the record intact.
    alice
        .send(json!({"type": "report", "device": {"app_version": "x".repeat(65), "platform": "web",
        "pending": 0, "rejected": 0, "conflicts": 0}}))
        .await;
    let (err, _) = alice.until("error").await;
    assert!(err["message"].as_str().unwrap().contains("at most 64 bytes"), "{err}");
    alice.send(json!({"type": "report", "device": {"platform": "web", "pending": -1}})).await;
    assert_eq!(alice.until("error").await.0["code"], "protocol");
    let mut ws = support::raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token("mallory", "company-a", "admin"),
        "client_id": "m", "device": {"app_version": "1", "platform": "web", "pending": 0, "rejected": 0,
        "conflicts": 0, "last_error": "e".repeat(501)}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    assert_eq!(closed(&mut ws).await.0, 4002);
    assert_eq!(by_id(&fleet(&mut alice).await, "alice-laptop")["app_version"], "2.1.0");

    // The records are kept in the tenant's database (written in the background, and at shutdown).
    server.stop().await;
    let stored = support::db_value(&server, "SELECT count(*) FROM moat_devices");
    assert_eq!(stored, rusqlite::types::Value::Integer(2), "alice's and tom's devices");
}
