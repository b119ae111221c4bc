//! A client that stops reading is cut off once it falls behind its bounded buffer; everyone else
//! keeps receiving, and the server's memory for it stays bounded.

mod support;

use serde_json::json;
use support::{Client, TestServer, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_others_are_not_delayed() {
    let server = TestServer::start_with(|c| {
        c.limits.channel_buffer = 16;
        c.limits.send_timeout_ms = 500;
    })
    .await;
    let mut slow = Client::connect(&server.url(), &token("sam", "company-a", "admin"), json!({})).await;
    slow.until("synced").await;
    let mut fast = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    fast.until("synced").await;

    // A large note makes each frame big, so socket buffers fill quickly.
    let big = "n".repeat(32 * 1024);
    for i in 0..400 {
        server.store.exec(&format!("UPDATE jobs SET notes = '{big}{i}' WHERE id = 'job-a2'")).await.unwrap();
        let (d, _) = fast.until("diff").await;
        assert_eq!(
            d["diff"]["changes"][0]["cols"]["notes"]["new"].as_str().unwrap().len(),
            big.len() + i.to_string().len()
        );
    }
    // Its send times out (500 ms) at the latest once its socket is full: wait for that, not longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.metrics.slow_consumers.get() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.metrics.slow_consumers.get(), 1, "the slow client was cut off");
    // What it gets when it finally reads: frames it had, then the end of the connection.
    let (code, reason) = slow.closed().await;
    assert!(code == 4008 || code == 1006, "{code} {reason}");
    assert!(fast.settle().await.is_empty());
}

/// On a quiet channel no frame ever times out: the ping deadline finds a client that stopped
/// reading (it cannot answer), while one that reads answers every ping and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_on_a_quiet_channel_is_cut_by_the_ping_deadline() {
    let server = TestServer::start_with(|c| c.limits.ping_interval_ms = 150).await;
    let mut stalled = Client::connect(&server.url(), &token("sam", "company-a", "admin"), json!({})).await;
    stalled.until("synced").await;
    let mut reading = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    reading.until("synced").await;
    // `reading` is read (its pings answered) for ten intervals; `stalled` is not read at all.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            futures_util::StreamExt::next(&mut reading.ws),
        )
        .await;
    }
    assert_eq!(server.metrics.slow_consumers.get(), 1, "only the client that does not read is cut");
    let (code, reason) = stalled.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (4008, "no answer to the server's ping: reconnect to resume from your cursor")
    );
    assert!(reading.settle().await.is_empty(), "the reading client stays");
}
