//! Operations: `/healthz`, `/metrics`, the demo sign-in, and a graceful shutdown that closes every
//! connection with "going away".

mod support;

use serde_json::json;
use support::{Client, TestServer, token};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_graceful_shutdown() {
    let mut server = TestServer::start().await;
    assert_eq!(get(server.addr, "/healthz").await.0, 200);
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;
    let (status, body) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("moat_connections 1"), "{body}");
    assert!(body.contains("moat_channels 1"));
    assert!(body.contains("moat_fanout_latency_seconds_bucket"));
    assert_eq!(get(server.addr, "/demo/users").await.0, 404, "no demo sign-in without --demo");

    server.stop().await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_offers_its_users_with_working_tokens() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    let (status, body) = get(server.addr, "/demo/users").await;
    assert_eq!(status, 200);
    let users: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // chunked transfer encoding: take the JSON between the first '[' and the last ']'
        serde_json::from_str(&body[body.find('[').unwrap()..=body.rfind(']').unwrap()]).unwrap()
    });
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 4);
    let tom = users.iter().find(|u| u["user"] == "tom").unwrap();
    assert_eq!((tom["tenant"].as_str(), tom["role"].as_str()), (Some("company-a"), Some("technician")));
    let mut c = Client::connect(&server.url(), tom["token"].as_str().unwrap(), json!({})).await;
    let (begin, _) = c.until("snapshot_begin").await;
    assert!(begin["rows"].as_u64().unwrap() > 5000, "the demo data: {begin}");
}
