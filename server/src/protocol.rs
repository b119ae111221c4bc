//! The session messages, one JSON object per WebSocket text frame, tagged by `type`.
//! `docs/protocol.md` has an example of each; `tests/fixtures/wire/` pins them.
//!
//! Client frames decode strictly (unknown fields are refused); an unknown `type` decodes to
//! [`ClientMsg::Unknown`] and is answered with an error frame, so a newer client survives an older
//! server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlite_ext::Conflict;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close codes the server uses (4000–4999 are the application's).
pub mod close {
    /// The token is missing, forged, expired, or its role has no rules.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client broke the protocol (no hello in time, a wrong version).
    pub const PROTOCOL: u16 = 4002;
    /// The client did not keep up with its channel; reconnect and resume from the cursor.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Too many pushes waiting for their acks.
    pub const FLOOD: u16 = 4029;
    /// The client cannot follow the server's schema (an app from before `schema` was sent in hello,
    /// on a migrated server): it must be updated; reconnecting does not help.
    pub const OUTDATED: u16 = 4010;
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// The server's schema changed (a live migration); reconnect at once: the welcome carries it.
    pub const SCHEMA_CHANGED: u16 = 1012;
}

/// A frame from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The first frame of every connection.
    Hello {
        /// The protocol version the client speaks.
        protocol: u32,
        /// A signed token (JWT) naming user, tenant and role.
        token: String,
        /// The replica's client id (made once per database file).
        client_id: String,
        /// The version of the last diff the client applied, per channel it holds data of.
        #[serde(default)]
        cursors: BTreeMap<String, i64>,
        /// The fingerprint of the client's schema; when it is not the server's, the welcome carries
        /// the server's schema and the client migrates its replica.
        #[serde(default)]
        schema: Option<String>,
    },
    /// A local mutation to apply.
    Push {
        /// Unique per client; the server applies each id at most once.
        mutation_id: String,
        /// The JSON diff, decoded strictly against the schema by the handler.
        diff: serde_json::Value,
    },
    /// Keep-alive; answered with `pong`.
    Ping {
        /// Echoed back.
        #[serde(default)]
        id: Option<u64>,
    },
    /// A message type this server does not know.
    #[serde(other)]
    Unknown,
}

/// The server's schema, as a welcome carries it.
#[derive(Debug, Serialize)]
pub struct SchemaInfo<'a> {
    /// Its fingerprint (FNV-1a 64 of the SQL, hex).
    pub fingerprint: &'a str,
    /// The SQL the schema model is built from (the base schema and every applied migration). A client
    /// builds its model from it in memory and creates tables and columns from the model.
    pub sql: &'a str,
}

/// A frame to a client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// The answer to a good hello.
    Welcome {
        /// The protocol version the server speaks.
        protocol: u32,
        /// The authenticated user.
        user: &'a str,
        /// Their tenant.
        tenant: &'a str,
        /// Their role.
        role: &'a str,
        /// The channels the client receives (today exactly one).
        channels: Vec<&'a str>,
        /// Pushes the client may have waiting for acks; one more closes the connection.
        max_inflight_pushes: usize,
        /// The server's schema, when the client's fingerprint differs (after a migration).
        #[serde(skip_serializing_if = "Option::is_none")]
        schema: Option<SchemaInfo<'a>>,
    },
    /// A full copy of a channel follows: the client drops its rows of that channel first.
    SnapshotBegin {
        /// The channel.
        channel: &'a str,
        /// How many rows the snapshot has, for a progress bar.
        rows: u64,
    },
    /// One chunk of a snapshot, as a diff of inserts.
    Snapshot {
        /// The channel.
        channel: &'a str,
        /// Rows sent so far, this chunk included.
        rows_done: u64,
        /// Rows in the whole snapshot.
        rows: u64,
        /// The rows, as insert changes.
        diff: &'a RawValue,
    },
    /// The snapshot is complete and consistent as of `version`.
    SnapshotEnd {
        /// The channel.
        channel: &'a str,
        /// The cursor to store.
        version: i64,
    },
    /// The initial sync (catch-up or snapshot) is complete: from here on, diffs arrive as they happen.
    Synced {
        /// The channel.
        channel: &'a str,
        /// The version the client is at.
        version: i64,
    },
    /// A change to a channel, live or during catch-up; apply in version order.
    Diff {
        /// The channel.
        channel: &'a str,
        /// The version after this change; the client stores it as its cursor.
        version: i64,
        /// The change, in this channel's view.
        diff: &'a RawValue,
    },
    /// The writer's mutation is durable. `conflicts` (possibly empty) are the conflict alert: what
    /// could not be merged, with base, theirs and mine per column.
    Ack {
        /// The acknowledged mutation.
        mutation_id: &'a str,
        /// The version at which its changes were applied, if any were.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
        /// What could not be merged.
        conflicts: &'a [Conflict],
    },
    /// The mutation was refused as a whole; nothing of it was applied.
    Reject {
        /// The refused mutation.
        mutation_id: &'a str,
        /// Machine-readable reason: `forbidden`, `bad_diff`, `constraint`.
        code: &'a str,
        /// Human-readable reason.
        reason: &'a str,
    },
    /// The client lost access to a channel: it removes that channel's rows.
    Revoke {
        /// The channel.
        channel: &'a str,
    },
    /// A frame could not be handled; the connection stays open.
    Error {
        /// Machine-readable: `protocol`, `unavailable`, `storage`.
        code: &'a str,
        /// Human-readable.
        message: &'a str,
        /// True when sending the same frame again may succeed.
        retry: bool,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

impl ServerMsg<'_> {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}
