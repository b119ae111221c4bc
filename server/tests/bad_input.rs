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
