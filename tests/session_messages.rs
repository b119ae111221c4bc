//! The session messages are written once, in the core (`sqlite_ext::protocol`), and both sides decode
//! them with the same types: every golden session fixture (recorded from a real server by
//! `server/tests/golden_messages.rs`) decodes here, on the client's side, to its own kind and encodes
//! back to the same JSON. The client engine decodes strictly: a frame missing a field it needs is a
//! protocol error that closes the session and moves no cursor.

use std::path::PathBuf;

use sqlite_ext::protocol::{ClientMsg, ServerMsg};
use sqlite_ext::{Event, Instruction, Replica, Schema, SyncEngine};

fn session_fixtures() -> Vec<(String, serde_json::Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/wire/session");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            (path.file_stem().unwrap().to_string_lossy().into_owned(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_session_fixture_decodes_with_the_cores_types() {
    let fixtures = session_fixtures();
    assert_eq!(fixtures.len(), 22, "one fixture per session message");
    for (name, json) in fixtures {
        let text = json.to_string();
        let again = match name.as_str() {
            // `history_request`: the client's `history` (the server's answer is `history` too).
            "hello" | "push" | "ping" | "report" | "list_devices" | "history_request" | "customize" => {
                let msg: ClientMsg<'_> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_ne!(msg, ClientMsg::Unknown, "{name}");
                serde_json::to_value(&msg).unwrap()
            }
            _ => {
                let msg: ServerMsg<'_> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_ne!(msg, ServerMsg::Unknown, "{name}");
                serde_json::to_value(&msg).unwrap()
            }
        };
        assert_eq!(again, json, "{name} encodes back to the same JSON");
        assert_eq!(json["type"], name.trim_end_matches("_request"));
    }
}

#[test]
fn client_frames_decode_strictly_and_unknown_kinds_are_named() {
    let extra = r#"{"type":"ping","id":1,"sneaky":true}"#;
    assert!(serde_json::from_str::<ClientMsg<'_>>(extra).is_err(), "an unknown field is refused");
    let newer = r#"{"type":"teleport"}"#;
    assert_eq!(serde_json::from_str::<ClientMsg<'_>>(newer).unwrap(), ClientMsg::Unknown);
    // A newer server may add fields and kinds; an older client goes on.
    let more = r#"{"type":"pong","id":7,"server_time":1}"#;
    assert_eq!(serde_json::from_str::<ServerMsg<'_>>(more).unwrap(), ServerMsg::Pong { id: Some(7) });
    assert_eq!(serde_json::from_str::<ServerMsg<'_>>(r#"{"type":"weather"}"#).unwrap(), ServerMsg::Unknown);
}

/// An engine over a fresh replica, connected and past the welcome.
fn welcomed(dir: &tempfile::TempDir) -> SyncEngine {
    let replica = Replica::open(dir.path().join("device.db"), Schema::demo()).unwrap();
    let mut e = SyncEngine::new(replica, "a.b.c".into());
    assert_eq!(e.handle(Event::Start).unwrap(), [Instruction::Connect]);
    let hello = e.handle(Event::Connected).unwrap();
    let [Instruction::Send(hello)] = hello.as_slice() else { panic!("{hello:?}") };
    let hello: ClientMsg<'_> = serde_json::from_str(hello).unwrap();
    assert!(matches!(hello, ClientMsg::Hello { .. }), "the engine's hello is the core's message");
    let welcome = r#"{"type":"welcome","protocol":1,"user":"tom","tenant":"company-a","role":"technician",
                      "channels":["company-a/technician"],"max_inflight_pushes":64}"#;
    assert_eq!(e.handle(Event::Frame(welcome.into())).unwrap(), []);
    let synced = r#"{"type":"synced","channel":"company-a/technician","version":41}"#;
    e.handle(Event::Frame(synced.into())).unwrap();
    e
}

fn cursors(e: &SyncEngine) -> Vec<(String, i64)> {
    e.replica().cursors().unwrap()
}

#[test]
fn a_diff_frame_without_a_version_is_a_protocol_error_on_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = welcomed(&dir);
    let good = r#"{"type":"diff","channel":"company-a/technician","version":42,"diff":{"changes":[]}}"#;
    assert!(
        !e.handle(Event::Frame(good.into())).unwrap().iter().any(|i| matches!(i, Instruction::Failed(_)))
    );
    let before = cursors(&e);
    assert_eq!(before, [("company-a/technician".to_owned(), 42)]);

    let no_version = r#"{"type":"diff","channel":"company-a/technician","diff":{"changes":[]}}"#;
    let out = e.handle(Event::Frame(no_version.into())).unwrap();
    let [Instruction::Failed(why), Instruction::Close] = out.as_slice() else { panic!("{out:?}") };
    assert!(why.contains("version"), "{why}");
    assert_eq!(cursors(&e), before, "the cursor did not move (it used to become 0)");

    // Not JSON at all, and a mistyped field: the same.
    for bad in ["not json", r#"{"type":"ack","mutation_id":7,"conflicts":[]}"#] {
        let out = e.handle(Event::Frame(bad.into())).unwrap();
        assert!(matches!(out.as_slice(), [Instruction::Failed(_), Instruction::Close]), "{bad}: {out:?}");
    }
    // A kind this engine does not know is not an error.
    assert_eq!(e.handle(Event::Frame(r#"{"type":"weather","sunny":true}"#.into())).unwrap(), []);
}

#[test]
fn going_offline_is_an_engine_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = welcomed(&dir);
    assert_eq!(e.handle(Event::GoOffline).unwrap(), [Instruction::Close]);
    // Offline at once, not when the socket's close arrives: nothing is sent on the closing session.
    assert_eq!(e.status().unwrap().phase, sqlite_ext::Phase::Offline);
    assert_eq!(e.handle(Event::LocalWrite).unwrap(), []);
    // The shell closes the socket and says so: offline, and no reconnect timer while held offline.
    assert_eq!(e.handle(Event::Disconnected(None)).unwrap(), []);
    assert_eq!(e.status().unwrap().phase, sqlite_ext::Phase::Offline);
    assert_eq!(e.handle(Event::Timer).unwrap(), [], "no reconnect while the user keeps it offline");
    assert_eq!(e.handle(Event::GoOnline).unwrap(), [Instruction::Connect]);
}

#[test]
fn an_error_about_a_push_names_it() {
    let text = r#"{"code":"limit","message":"limit: over","mutation_id":"x-1","retry":true,"type":"error"}"#;
    let msg: ServerMsg<'_> = serde_json::from_str(text).unwrap();
    assert!(matches!(&msg, ServerMsg::Error { mutation_id: Some(id), retry: true, .. } if id == "x-1"));
    let again: serde_json::Value = serde_json::to_value(&msg).unwrap();
    assert_eq!(again, serde_json::from_str::<serde_json::Value>(text).unwrap());
}

#[test]
fn a_frame_with_rows_decodes_the_same_on_the_fast_path() {
    // `ServerMsg::from_frame` reads snapshot and diff frames without a JSON tree; every fixture, and
    // frames with their keys in another order or an extra field, decode as the tagged enum does.
    let mut frames: Vec<String> = session_fixtures().into_iter().map(|(_, json)| json.to_string()).collect();
    frames.push(
        r#"{"diff":{"changes":[]},"rows":2,"channel":"c","type":"snapshot","rows_done":1,"newer":true}"#
            .into(),
    );
    frames.push(r#"{"type":"diff","channel":"c","version":3,"rows":9,"diff":{"changes":[]}}"#.into());
    frames.push(r#"{"tables":[],"rows":2,"type":"snapshot_rows","channel":"c","rows_done":2}"#.into());
    let mut fast = 0;
    for text in &frames {
        // (The fixtures include the client's frames: whatever the enum makes of them, so must this.)
        let Ok(enum_decoded) = serde_json::from_str::<ServerMsg<'_>>(text) else {
            assert!(ServerMsg::from_frame(text).is_err(), "{text}");
            continue;
        };
        let framed = ServerMsg::from_frame(text).unwrap();
        assert_eq!(framed, enum_decoded, "{text}");
        fast += matches!(
            framed,
            ServerMsg::Snapshot { diff: sqlite_ext::protocol::DiffJson::Encoded(_), .. }
                | ServerMsg::SnapshotRows { tables: sqlite_ext::protocol::DiffJson::Encoded(_), .. }
                | ServerMsg::Diff { diff: sqlite_ext::protocol::DiffJson::Encoded(_), .. }
        ) as usize;
    }
    assert!(fast >= 5, "the snapshot, snapshot_rows and diff frames took the fast path ({fast})");
    // A diff frame without its version is refused either way.
    assert!(ServerMsg::from_frame(r#"{"type":"diff","channel":"c","diff":{"changes":[]}}"#).is_err());
}
