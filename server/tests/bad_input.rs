//! Untrusted input: every malformed frame gets an error frame or a close with a reason, the stored
//! data is untouched, and the server keeps serving everyone else.

mod support;

use futures_util::SinkExt;
use serde_json::json;
use support::{Client, TestServer, closed, db_value, raw, token, token_exp, update};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_connection_and_data_survive() {
    let server = TestServer::start().await;
    let mut bystander = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    bystander.until("synced").await;
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;

    for (frame, code) in [
        ("not json", "protocol"),
        ("{\"type\":\"push\"", "protocol"),
        ("{\"type\":\"teleport\"}", "protocol"),
        ("{\"type\":\"ping\",\"id\":1,\"extra\":true}", "protocol"),
        ("{\"type\":\"hello\",\"protocol\":1,\"token\":\"x\",\"client_id\":\"y\"}", "protocol"),
        ("[1,2,3]", "protocol"),
    ] {
        c.ws.send(Message::text(frame)).await.unwrap();
        let (err, _) = c.until("error").await;
        assert_eq!(err["code"], code, "{frame}: {err}");
        assert_eq!(err["retry"], false);
    }
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.until("error").await.0["code"], "protocol");

    for (diff, what) in [
        (
            json!({"changes": [{"table": "users", "op": "delete", "pk": {"id": "u"}, "cols": {}}]}),
            "unknown table",
        ),
        (update("jobs", "job-a1", "salary", json!(1), json!(2)), "unknown column"),
        (update("jobs\"; DROP TABLE jobs; --", "job-a1", "status", json!("open"), json!("x")), "injection"),
        (update("jobs", "job-a1", "price_cents", json!(10000), json!("free")), "wrong type"),
        (update("jobs", "job-a1", "price_cents", json!(10000), json!(1.5)), "bare real"),
        (json!({"changes": "all of them"}), "wrong shape"),
    ] {
        c.push("bad", diff).await;
        let (reject, _) = c.until("reject").await;
        assert_eq!(reject["code"], "bad_diff", "{what}: {reject}");
    }
    assert_eq!(db_value(&server, "SELECT count(*) FROM jobs"), 2i64.into());
    assert_eq!(db_value(&server, "SELECT price_cents FROM jobs WHERE id = 'job-a1'"), 10000i64.into());

    // Still served: a good push works on the same connection and reaches the bystander.
    c.push("good", update("jobs", "job-a1", "status", json!("open"), json!("done"))).await;
    c.until("ack").await;
    bystander.until("diff").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_that_connection() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    let mut bystander = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    bystander.until("synced").await;
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;
    let huge = "x".repeat(200 * 1024);
    let _ = c.push("big", update("jobs", "job-a1", "notes", json!("call first"), json!(huge))).await;
    let (code, _) = c.closed().await;
    assert!(code == 1009 || code == 1006, "closed with {code}");
    assert!(bystander.settle().await.is_empty());
    assert_eq!(
        db_value(&server, "SELECT notes FROM jobs WHERE id = 'job-a1'"),
        "call first".to_owned().into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_are_closed_with_a_reason() {
    let server = TestServer::start_with(|c| c.limits.hello_timeout_ms = 300).await;
    let forged = {
        let t = token("alice", "company-a", "admin");
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        parts.join(".")
    };
    let other_secret = moat_server::server::mint(
        &moat_server::auth::Auth::hs256(b"not the server's secret at all").unwrap(),
        "alice",
        "company-a",
        "admin",
        60,
    )
    .unwrap();
    for (hello, code, why) in [
        (
            json!({"type": "hello", "protocol": 1, "token": token_exp("alice", "company-a", "admin", -60), "client_id": "c"}),
            4001,
            "expired",
        ),
        (json!({"type": "hello", "protocol": 1, "token": forged, "client_id": "c"}), 4001, "unauthorized"),
        (json!({"type": "hello", "protocol": 1, "token": other_secret, "client_id": "c"}), 4001, "signature"),
        (
            json!({"type": "hello", "protocol": 1, "token": token("eve", "company-a", "intruder"), "client_id": "c"}),
            4001,
            "no sync rules",
        ),
        (
            json!({"type": "hello", "protocol": 9, "token": token("alice", "company-a", "admin"), "client_id": "c"}),
            4002,
            "protocol 9",
        ),
        (json!({"type": "ping"}), 4002, "hello"),
    ] {
        let mut ws = raw(&server.url()).await;
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let (got, reason) = closed(&mut ws).await;
        assert_eq!(got, code, "{why}: {reason}");
        assert!(reason.contains(why), "{why}: {reason}");
    }
    let mut silent = raw(&server.url()).await;
    let (code, reason) = closed(&mut silent).await;
    assert_eq!((code, reason.as_str()), (4002, "no hello in time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_while_connected_ends_the_session() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.url(), &token_exp("alice", "company-a", "admin", 2), json!({})).await;
    c.until("synced").await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
}

/// The server's WebSocket layer as RFC 6455 has it: a message in fragments is one message, a
/// client's ping gets its pong, and a frame that breaks the framing rules (here a reserved bit,
/// with no extension agreed) closes only its connection, with 4002 and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_framing_fragments_pings_and_bad_frames() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let mut bystander = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    bystander.until("synced").await;
    let mut c = Client::connect(&server.url(), &token("alice", "company-a", "admin"), json!({})).await;
    c.until("synced").await;

    let push = json!({"type": "push", "mutation_id": "in-pieces",
        "diff": update("jobs", "job-a1", "status", json!("open"), json!("done"))})
    .to_string();
    let (a, rest) = push.as_bytes().split_at(10);
    let (b, d) = rest.split_at(rest.len() / 2);
    for (piece, op, last) in [(a, Data::Text, false), (b, Data::Continue, false), (d, Data::Continue, true)] {
        c.ws.send(Message::Frame(Frame::message(piece.to_vec(), OpCode::Data(op), last))).await.unwrap();
    }
    let (ack, _) = c.until("ack").await;
    assert_eq!(ack["mutation_id"], "in-pieces");
    bystander.until("diff").await;

    c.ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    let pong = loop {
        match futures_util::StreamExt::next(&mut c.ws).await.unwrap().unwrap() {
            Message::Pong(p) => break p,
            _ => continue,
        }
    };
    assert_eq!(&pong[..], b"are you there");

    let mut reserved = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    reserved.header_mut().rsv1 = true;
    c.ws.send(Message::Frame(reserved)).await.unwrap();
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4002, "{reason}");
    assert!(reason.contains("reserved bit"), "{reason}");
    assert!(bystander.settle().await.is_empty(), "the others are untouched");
    assert_eq!(db_value(&server, "SELECT status FROM jobs WHERE id = 'job-a1'"), "done".to_owned().into());
}

/// The raw bytes a plain client gets back for `request` (written in `pieces`, 50 ms apart), read
/// until `until` appears or the server closes.
async fn exchange(server: &TestServer, pieces: &[&[u8]], until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tcp.write_all(piece).await.unwrap();
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut chunk));
        match read.await.expect("the server answers") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A masked client text frame.
fn client_text(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x81];
    match text.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_answered_as_rfc_6455_says_however_their_bytes_arrive() {
    let server = TestServer::start().await;
    let head = "GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
                Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let hello = json!({"type": "hello", "protocol": 1, "token": token("alice", "company-a", "admin"),
                       "client_id": "raw-client", "cursors": {}});
    // The head in three pieces, the last with the hello right behind it (as a client that does not
    // wait for the 101 would send it): answered, and the hello is read as the session's first frame.
    let (a, rest) = head.as_bytes().split_at(20);
    let (b, c) = rest.split_at(50);
    let mut last = c.to_vec();
    last.extend(client_text(&hello.to_string()));
    let got = exchange(&server, &[a, b, &last], "\"synced\"").await;
    assert!(got.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{got}");
    // RFC 6455's own example key and answer.
    assert!(got.to_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{got}");
    assert!(got.contains("\"welcome\"") && got.contains("\"synced\""), "{got}");

    // What the route refuses is answered by the HTTP server as before.
    let got = exchange(&server, &[head.replace("Version: 13", "Version: 8").as_bytes()], "\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 426"), "{got}");
    assert!(got.to_lowercase().contains("sec-websocket-version: 13"), "{got}");
    let got = exchange(&server, &[head.replace("Sec-WebSocket-Key", "X-Key").as_bytes()], "Key\n").await;
    assert!(got.starts_with("HTTP/1.1 400") && got.contains("needs a Sec-WebSocket-Key"), "{got}");
    let got = exchange(&server, &[head.replace("GET", "POST").as_bytes()], "\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 405"), "{got}");
    // Other paths are the HTTP server's, and the server answers everyone still.
    let got = exchange(&server, &[b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], "ok\n").await;
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("ok\n"), "{got}");
    let mut after = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    after.until("synced").await;
}

/// A client that sends part of a handshake and closes its side is let go (the connection ends),
/// and the server serves on: no task keeps looking at what it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_cut_short_ends_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    for part in ["GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n", "GET /sy"] {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(part.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "the server never ended the connection after {part:?}");
    }
    let mut after = Client::connect(&server.url(), &token("amy", "company-a", "admin"), json!({})).await;
    after.until("synced").await;
}
