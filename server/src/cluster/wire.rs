//! What nodes say to each other over NATS, and on which subjects (`docs/scaling.md` lists them).
//! Every body is JSON; a channel frame is the session frame's own bytes, with its channel and
//! version in headers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlite_ext::protocol::{CustomizeRequest, DeviceReport};

use crate::auth::Claims;
use crate::store::Outcome;

/// The owner's requests of `tenant`: `push`, `sync`, `call`, `model`, `migrate`.
pub(crate) fn owner(tenant: &str, op: &str) -> String {
    format!("moat.o.{tenant}.{op}")
}

/// Everything the owner of `tenant` publishes for other nodes: channel frames, watermarks, resets.
pub(crate) fn frames_of(tenant: &str) -> String {
    format!("moat.f.{tenant}.>")
}

/// The subject of one channel's frames (a channel's name may hold any character: its hash names it;
/// the header holds the name).
pub(crate) fn channel(tenant: &str, channel: &str) -> String {
    // FNV-1a, 64 bits: stable across nodes and builds.
    let hash =
        channel.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("moat.f.{tenant}.c.{hash:016x}")
}

/// After a batch's frames: every frame up to the body's version has been published.
pub(crate) fn watermark(tenant: &str) -> String {
    format!("moat.f.{tenant}.w")
}

/// The tenant's model changed or the tenant moved: other nodes' sessions of it reconnect.
pub(crate) fn reset(tenant: &str) -> String {
    format!("moat.f.{tenant}.reset")
}

/// Asks a node to let go of its tenants.
pub(crate) fn drain(node: &str) -> String {
    format!("moat.node.{node}.drain")
}

/// Asks any node that is not draining to take a tenant nobody holds (a queue group: one answers).
pub(crate) const ACQUIRE: &str = "moat.acquire";
pub(crate) const ACQUIRE_GROUP: &str = "moat-acquire";

/// The JetStream key-value bucket of leases: tenant → the node that writes it.
pub(crate) const LEASES: &str = "moat_leases";

pub(crate) const HEADER_CHANNEL: &str = "Moat-Channel";
pub(crate) const HEADER_VERSION: &str = "Moat-Version";
/// On every piece of a message too large for one NATS message but the last.
pub(crate) const HEADER_MORE: &str = "Moat-More";

/// Room left in each piece for its headers.
const HEADER_ROOM: usize = 4096;

/// `payload` in pieces that each fit in one NATS message of at most `most` bytes (the server's
/// `max_payload`; 0 when unknown), each with whether more follow. An empty payload is one empty piece.
pub(crate) fn pieces(payload: &[u8], most: usize) -> impl Iterator<Item = (&[u8], bool)> {
    let size = if most == 0 { 1 << 20 } else { most }.saturating_sub(HEADER_ROOM).max(1024);
    let count = payload.len().div_ceil(size).max(1);
    (0..count).map(move |i| {
        (&payload[(i * size).min(payload.len())..((i + 1) * size).min(payload.len())], i + 1 < count)
    })
}

/// Puts pieces back together, per key (one stream of pieces per key, in order).
#[derive(Debug, Default)]
pub(crate) struct Joiner {
    pending: std::collections::HashMap<String, (std::time::Instant, Vec<u8>)>,
}

/// How long the first pieces of a message wait for the rest (a sender's pieces go out back to back:
/// one that waits longer lost its sender, and is dropped when another message comes in pieces).
const STALE: std::time::Duration = std::time::Duration::from_secs(60);

impl Joiner {
    /// The whole message once its last piece is in (a message of one piece as it came, no copy);
    /// `None` while more are to come.
    pub(crate) fn join(
        &mut self,
        key: &str,
        headers: Option<&async_nats::HeaderMap>,
        piece: &Bytes,
    ) -> Option<Bytes> {
        let more = headers.is_some_and(|h| h.get(HEADER_MORE).is_some());
        match (more, self.pending.remove(key)) {
            (false, None) => Some(piece.clone()),
            (false, Some((_, mut head))) => {
                head.extend_from_slice(piece);
                Some(head.into())
            }
            (true, head) => {
                let (since, mut head) = head.unwrap_or_else(|| (std::time::Instant::now(), Vec::new()));
                head.extend_from_slice(piece);
                self.pending.retain(|_, (t, _)| t.elapsed() < STALE);
                self.pending.insert(key.to_owned(), (since, head));
                None
            }
        }
    }
}

/// A client's push, forwarded to the owner.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PushReq {
    pub(crate) claims: Claims,
    pub(crate) mutation_id: String,
    pub(crate) diff: serde_json::Value,
}

/// An error as the owner answers it: what the session sends on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) retry: bool,
}

/// The owner's answer to a push.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum PushAns {
    Done { outcome: Outcome },
    Error { error: WireError },
}

/// A session's initial sync, run by the owner; its frames come to `deliver`, one request each.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SyncReq {
    pub(crate) claims: Claims,
    pub(crate) cursor: Option<i64>,
    pub(crate) deliver: String,
    /// The model the session started on (the owner's must be the same).
    pub(crate) fingerprint: String,
    /// The client takes snapshot chunks as `snapshot_rows`.
    #[serde(default)]
    pub(crate) rows: bool,
}

/// How a relayed initial sync (or a call) ended.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum SyncAns {
    Done { version: i64 },
    Close { code: u16, reason: String },
}

/// A session's other requests of the owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub(crate) enum Call {
    History {
        claims: Claims,
        table: String,
        id: String,
    },
    Customize {
        claims: Claims,
        id: String,
        request: CustomizeRequest,
    },
    Devices {
        claims: Claims,
    },
    /// A device connected or reported (no answer).
    Seen {
        claims: Claims,
        client_id: String,
        schema: Option<String>,
        device: Option<DeviceReport>,
    },
    /// A device's session ended (no answer).
    Gone {
        client_id: String,
    },
    /// This node still has sessions on the claims' channel (no answer).
    Interest {
        claims: Claims,
    },
}

/// The answer to a call: the frame to send, or how the session ends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum CallAns {
    Frame { text: String },
    Close { code: u16, reason: String },
}

/// An operator's live migration of the tenant, run by its owner (`POST /admin/migrate` on any node).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MigrateReq {
    pub(crate) files: Vec<crate::migrate::Migration>,
    pub(crate) scope: crate::migrate::Scope,
    pub(crate) allow_destructive: bool,
}

/// Its answer: the progress text, or why it stopped.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum MigrateAns {
    Done { text: String },
    Failed { error: WireError },
}

/// The owner's model of the tenant: its schema (the base one and its migrations).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ModelAns {
    pub(crate) schema_sql: String,
}

/// What `moat node drain` is answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct Moved {
    /// The tenant.
    pub tenant: String,
    /// The node that holds it now (`None`: none yet; the next client's node takes it).
    pub to: Option<String>,
    /// From letting it go to another node holding it, in milliseconds: writes to it waited this long.
    pub ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn more() -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(HEADER_MORE, "1");
        h
    }

    #[test]
    fn pieces_of_two_senders_are_joined_apart_and_a_whole_message_is_not_copied() {
        let body = Bytes::from(vec![7u8; 10_000]);
        let pieces: Vec<_> = pieces(&body, 4096 + 1024).collect();
        assert_eq!(pieces.len(), 10);
        assert!(pieces.iter().rev().skip(1).all(|(_, more)| *more) && !pieces.last().unwrap().1);

        let mut j = Joiner::default();
        let (a, b) = (Bytes::from_static(b"aa"), Bytes::from_static(b"bb"));
        assert_eq!(j.join("inbox-1", Some(&more()), &a), None);
        assert_eq!(j.join("inbox-2", Some(&more()), &b), None);
        assert_eq!(j.join("inbox-1", None, &a).as_deref(), Some(&b"aaaa"[..]));
        assert_eq!(j.join("inbox-2", Some(&async_nats::HeaderMap::new()), &b).as_deref(), Some(&b"bbbb"[..]));
        let whole = Bytes::from(vec![1u8; 64]);
        let out = j.join("inbox-3", None, &whole).unwrap();
        assert_eq!(out.as_ptr(), whole.as_ptr(), "a message of one piece is passed on as it came");
        assert!(j.pending.is_empty());
    }

    #[test]
    fn the_first_pieces_of_a_message_whose_sender_went_away_are_dropped() {
        let mut j = Joiner::default();
        let stale = std::time::Instant::now() - STALE - std::time::Duration::from_secs(1);
        j.pending.insert("gone".into(), (stale, b"half".to_vec()));
        assert_eq!(j.join("new", Some(&more()), &Bytes::from_static(b"x")), None);
        assert!(!j.pending.contains_key("gone"));
        assert!(j.pending.contains_key("new"));
    }
}
