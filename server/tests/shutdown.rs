//! Ending well: on shutdown every connected client gets a 1001 close frame (not a bare FIN), and a
//! frame above `max_frame_bytes` gets 1009, while the same connection's neighbours carry on.

mod support;

use futures_util::SinkExt;
use serde_json::json;
use support::{Client, TestServer, closed, token};
use tokio_tungstenite::tungstenite::Message;

/// The real binary, stopped with SIGTERM: the process must not exit before its sessions have sent
/// their close frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_1001_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::moat(&["tenant", "create", "company-a"], &data);
    let server = support::Moat::serve(&data, &[], &[]);
    let url = server.url();
    let tok = token("alice", "company-a", "admin");
    let mut clients = Vec::new();
    for _ in 0..2000 {
        let mut c = Client::connect(&url, &tok, json!({})).await;
        c.until("synced").await;
        clients.push(c);
    }
    server.signal(libc::SIGTERM);
    let mut codes = std::collections::BTreeMap::new();
    for c in &mut clients {
        *codes.entry(c.closed().await.0).or_insert(0) += 1;
    }
    server.stop();
    assert_eq!(codes, [(1001, 2000)].into(), "close codes seen by the 2,000 clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_above_the_limit_gets_1009() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    let tok = token("alice", "company-a", "admin");
    let mut big = Client::connect(&server.url(), &tok, json!({})).await;
    big.until("synced").await;
    let mut other = Client::connect(&server.url(), &tok, json!({})).await;
    other.until("synced").await;
    big.ws.send(Message::text("x".repeat(100 * 1024))).await.unwrap();
    let (code, reason) = big.closed().await;
    assert_eq!((code, reason.as_str()), (1009, "a frame above 65536 bytes"));
    // Before hello too.
    let mut ws = support::raw(&server.url()).await;
    ws.send(Message::text("y".repeat(100 * 1024))).await.unwrap();
    assert_eq!(closed(&mut ws).await.0, 1009);
    assert!(other.settle().await.is_empty(), "the others carry on");
}

/// A stop ends connections whose first request has not come yet at once, rather than after the
/// server's 5-second grace for requests under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_sending_its_first_request_does_not_hold_the_stop() {
    use tokio::io::AsyncWriteExt;
    let mut server = TestServer::start().await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    server.stop().await;
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(4),
        "the stop waited {waited:?} for a request that never came"
    );
}
