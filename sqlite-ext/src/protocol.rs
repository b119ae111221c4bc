//! The session messages, one JSON object per WebSocket text frame, tagged by `type`: written here
//! once, encoded and decoded by the server and by the client engine alike. `docs/protocol.md` has an
//! example of each; `tests/fixtures/wire/session/` pins them and both sides decode every fixture.
//!
//! - [`ClientMsg`] decodes strictly (unknown fields are refused): the server treats every client frame
//!   as hostile. An unknown `type` decodes to [`ClientMsg::Unknown`] and is answered with an error
//!   frame, so a newer client survives an older server.
//! - [`ServerMsg`] decodes strictly in what it needs (a missing or mistyped field is a protocol
//!   error; a `diff` without its `version` can never move a cursor) and tolerates fields it does not
//!   know, so an older client survives a newer server that adds some. An unknown `type` decodes to
//!   [`ServerMsg::Unknown`] and is ignored.
//!
//! Strings are `Cow`s, so the server encodes from what it holds without copying and a client decodes
//! into owned values. Diffs are [`DiffJson`]: already-encoded JSON when written (a change is encoded
//! once per channel and spliced into every frame), a JSON tree when read (decoded against the schema
//! by whoever reads it).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::apply::Conflict;

/// The protocol version both sides speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close codes (4000–4999 are the application's). What a client does on each is in
/// `docs/protocol.md`.
pub mod close {
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame larger than the server's `max_frame_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed (it could not read its database); reconnect later, the cursor is kept.
    pub const INTERNAL: u16 = 1011;
    /// The server's schema changed (a live migration); reconnect at once: the welcome carries it.
    pub const SCHEMA_CHANGED: u16 = 1012;
    /// The token is missing, forged, expired, or its role has no rules. A new token is needed.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The peer broke the protocol (no hello in time, a wrong version, a frame that does not decode).
    pub const PROTOCOL: u16 = 4002;
    /// The client did not keep up with its channel; reconnect and resume from the cursor.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The client cannot follow the server's schema (an app from before `schema` was sent in hello,
    /// on a migrated server): it must be updated; reconnecting does not help.
    pub const OUTDATED: u16 = 4010;
    /// Too many pushes waiting for their acks.
    pub const FLOOD: u16 = 4029;
    /// The tenant is at one of its limits (its connected clients): the reason names it; reconnect
    /// later, with backoff.
    pub const TENANT_LIMIT: u16 = 4030;
}

/// A JSON diff inside a frame.
#[derive(Debug, Clone)]
pub enum DiffJson<'a> {
    /// Already-encoded JSON, written as it is (encoded once, sent to many).
    Encoded(&'a RawValue),
    /// A JSON tree: what a decoded frame holds, to be checked with `Diff::from_value`.
    Tree(serde_json::Value),
}

impl PartialEq for DiffJson<'_> {
    /// Equal when they are the same JSON.
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_tree() == other.clone().into_tree()
    }
}

impl Serialize for DiffJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DiffJson::Encoded(raw) => raw.serialize(s),
            DiffJson::Tree(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DiffJson<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(DiffJson::Tree)
    }
}

impl DiffJson<'_> {
    /// The JSON tree (encoded JSON is parsed).
    pub fn into_tree(self) -> serde_json::Value {
        match self {
            DiffJson::Encoded(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
            DiffJson::Tree(v) => v,
        }
    }

    /// The diff, checked against `schema`. Encoded JSON is parsed straight into the typed diff
    /// (several times faster than through a JSON tree).
    pub fn decode(self, schema: &crate::Schema) -> crate::Result<crate::Diff> {
        match self {
            DiffJson::Encoded(raw) => crate::Diff::from_json(raw.get(), schema),
            DiffJson::Tree(v) => crate::Diff::from_value(v, schema),
        }
    }

    /// Its JSON text (as it came, when it came encoded).
    pub fn json(&self) -> Cow<'_, str> {
        match self {
            DiffJson::Encoded(raw) => Cow::Borrowed(raw.get()),
            DiffJson::Tree(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// In a hello's `accept`: snapshot chunks may come as `snapshot_rows` (columns named once) rather
/// than as `snapshot` diffs.
pub const ACCEPT_SNAPSHOT_ROWS: &str = "snapshot_rows";

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg<'a> {
    /// The first frame of every connection.
    Hello {
        /// The protocol version the client speaks.
        protocol: u32,
        /// A signed token (JWT) naming user, tenant and role.
        #[serde(borrow)]
        token: Cow<'a, str>,
        /// The replica's client id (made once per database file).
        #[serde(borrow)]
        client_id: Cow<'a, str>,
        /// The version of the last diff the client applied, per channel it holds data of.
        #[serde(default)]
        cursors: BTreeMap<String, i64>,
        /// The fingerprint of the client's schema; when it is not the server's, the welcome carries
        /// the server's schema and the client migrates its replica.
        #[serde(default, borrow)]
        schema: Option<Cow<'a, str>>,
        /// How this device's sync is doing, for the tenant's admins (fleet health).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceReport>,
        /// Frames the client takes beyond the protocol's first ones ([`ACCEPT_SNAPSHOT_ROWS`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accept: Vec<String>,
    },
    /// How this device's sync is doing now (sent when it changed, at most every few seconds).
    Report {
        /// The report.
        device: DeviceReport,
    },
    /// An admin asks for the tenant's devices (Sync health); answered with `devices` (or an error
    /// `forbidden`).
    ListDevices {},
    /// Asks who changed a record, when and which fields (a record's history); answered with
    /// `history`.
    History {
        /// The record's table.
        #[serde(borrow)]
        table: Cow<'a, str>,
        /// The record's id, as lists name it (its key, or the JSON array of a key of several columns).
        #[serde(borrow)]
        id: Cow<'a, str>,
    },
    /// An admin's customization: publish a draft, roll back to an earlier version, or list the
    /// versions; answered with `customized` (same `id`).
    Customize {
        /// Chosen by the client; the answer carries it.
        id: String,
        /// What to do.
        request: CustomizeRequest,
    },
    /// A local mutation to apply.
    Push {
        /// Unique per client; the server applies each id at most once.
        #[serde(borrow)]
        mutation_id: Cow<'a, str>,
        /// The JSON diff, decoded strictly against the schema by the handler.
        diff: DiffJson<'a>,
    },
    /// Keep-alive; answered with `pong`.
    Ping {
        /// Echoed back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// A message type this side does not know.
    #[serde(other)]
    Unknown,
}

/// Longest `app_version` and `platform` a device may report.
pub const DEVICE_LABEL_MAX: usize = 64;
/// Longest `last_error` a device may report.
pub const DEVICE_ERROR_MAX: usize = 500;

/// What a device says of its sync: which app it runs, what waits, what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    /// The app's version (`1.4.2`, a build number), as the app names it.
    pub app_version: String,
    /// `web`, `ios`, …
    pub platform: String,
    /// Writes waiting to be sent or acknowledged.
    pub pending: u64,
    /// How long the oldest of them has waited, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_ms: Option<u64>,
    /// Writes the server refused that the user has not dismissed.
    pub rejected: u64,
    /// Conflicts waiting for the user.
    pub conflicts: u64,
    /// The last error the app reported, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl DeviceReport {
    /// Refuses labels and errors longer than the limits (a report is written by the client).
    pub fn check(&self) -> Result<(), String> {
        if self.app_version.len() > DEVICE_LABEL_MAX || self.platform.len() > DEVICE_LABEL_MAX {
            return Err(format!("app_version and platform are at most {DEVICE_LABEL_MAX} bytes"));
        }
        if self.last_error.as_ref().is_some_and(|e| e.len() > DEVICE_ERROR_MAX) {
            return Err(format!("last_error is at most {DEVICE_ERROR_MAX} bytes"));
        }
        Ok(())
    }
}

/// What the user's role may not write, as the sync rules say: the app draws these read-only instead
/// of letting the user type and the server refuse it later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// Tables the role may read but not write.
    #[serde(default)]
    pub read_only_tables: Vec<String>,
    /// Columns the role may read but not write, by table.
    #[serde(default)]
    pub read_only_columns: BTreeMap<String, Vec<String>>,
}

impl Rights {
    /// The role may not write this table.
    pub fn table_read_only(&self, table: &str) -> bool {
        self.read_only_tables.iter().any(|t| t == table)
    }

    /// The role may not write this column (its table's being read-only included).
    pub fn column_read_only(&self, table: &str, column: &str) -> bool {
        self.table_read_only(table)
            || self.read_only_columns.get(table).is_some_and(|c| c.iter().any(|c| c == column))
    }

    /// The role may delete this table's rows: a delete removes every field, so it needs the table and
    /// every column writable (the server also counts the columns hidden from the role).
    pub fn may_delete(&self, table: &str) -> bool {
        !self.table_read_only(table) && self.read_only_columns.get(table).is_none_or(|c| c.is_empty())
    }

    /// Nothing is read-only.
    pub fn is_empty(&self) -> bool {
        self.read_only_tables.is_empty() && self.read_only_columns.is_empty()
    }
}

/// What an admin asks of `customize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CustomizeRequest {
    /// Make the draft the tenant's metadata (with the storage it needs), as one version.
    Publish {
        /// Every object type and layout, as they are to be.
        customization: crate::ui::customize::Customization,
        /// The admin confirmed the data it destroys (a removed field's values).
        #[serde(default)]
        destroy: bool,
    },
    /// Publish an earlier version's metadata again, as a new version.
    Rollback {
        /// The version to go back to.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
        /// The admin confirmed the data it destroys.
        #[serde(default)]
        destroy: bool,
    },
    /// List the versions, newest first.
    Versions {},
}

/// The answer to a `customize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CustomizeAnswer {
    /// It is published: every client of the tenant follows.
    Published {
        /// The new version.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
        /// What changed.
        changes: Vec<String>,
    },
    /// Nothing was changed. `code`: `forbidden` (not an admin), `invalid` (the draft's problems, in
    /// `reason`), `destructive` (it would destroy `lost`; ask again with `destroy`), `stale` (the
    /// draft's `base` is no longer what is published: someone else published meanwhile), `unchanged`,
    /// `not_found` (no such version), `offline` (said by the client itself).
    Refused {
        /// Machine-readable.
        code: String,
        /// In the admin's words.
        reason: String,
        /// The data it would destroy.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lost: Vec<String>,
    },
    /// The versions, newest first, and the roles a layout may be made for.
    Versions {
        /// At most 50.
        versions: Vec<CustomizationVersion>,
        /// The roles of the sync rules.
        roles: Vec<String>,
    },
}

/// One published version of a tenant's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CustomizationVersion {
    /// Its number.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
    /// Who published it (a user id on the wire, which the client turns into the person's name; empty
    /// for the metadata as it was before the first publish).
    pub user: String,
    /// When (Unix milliseconds).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at_ms: i64,
    /// What it changed.
    pub changes: Vec<String>,
}

/// One change of a record, as the server's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The change log's version of the change.
    pub version: i64,
    /// When it was committed (Unix milliseconds).
    pub at_ms: i64,
    /// Who made it (a user id; empty for an operator's or a migration's change).
    pub user: String,
    /// `insert`, `update` or `delete`.
    pub op: String,
    /// The columns it wrote (those the asking user may see).
    pub columns: Vec<String>,
}

/// Who the signed-in user is, as the last welcome said: kept by the replica for the views.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user's id (the token's subject).
    pub user: String,
    /// The routing columns a new row carries, with this user's values.
    #[serde(default)]
    pub route: BTreeMap<String, String>,
}

/// One device of a tenant as the server knows it: its last report, who uses it, when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct DeviceRecord {
    /// The replica's client id.
    pub client_id: String,
    /// Its user (the token's user).
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The app's version.
    pub app_version: String,
    /// `web`, `ios`, …
    pub platform: String,
    /// The schema fingerprint the device is on.
    pub schema: Option<String>,
    /// Writes waiting on the device.
    pub pending: u64,
    /// The oldest pending write's age when it reported, in milliseconds.
    pub oldest_pending_ms: Option<u64>,
    /// Refused writes not yet dismissed.
    pub rejected: u64,
    /// Conflicts waiting for the user.
    pub conflicts: u64,
    /// The last error it reported.
    pub last_error: Option<String>,
    /// Connected now.
    pub connected: bool,
    /// When it was last connected or reported, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}

/// The server's schema, as a welcome carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo<'a> {
    /// Its fingerprint (FNV-1a 64 of the SQL, hex).
    #[serde(borrow)]
    pub fingerprint: Cow<'a, str>,
    /// The SQL the schema model is built from (the base schema and every applied migration). A client
    /// builds its model from it in memory and creates tables and columns from the model.
    #[serde(borrow)]
    pub sql: Cow<'a, str>,
}

/// A frame to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// The answer to a good hello.
    Welcome {
        /// The protocol version the server speaks.
        protocol: u32,
        /// The authenticated user.
        #[serde(borrow)]
        user: Cow<'a, str>,
        /// Their tenant.
        #[serde(borrow)]
        tenant: Cow<'a, str>,
        /// Their role.
        #[serde(borrow)]
        role: Cow<'a, str>,
        /// The channels the client receives (today exactly one).
        channels: Vec<String>,
        /// Pushes the client may have waiting for acks; one more closes the connection.
        max_inflight_pushes: usize,
        /// The server's schema, when the client's fingerprint differs (after a migration).
        #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
        schema: Option<SchemaInfo<'a>>,
        /// The user administers the tenant (the sync rules say so of the role): the app offers the
        /// admin's pages (Sync health).
        #[serde(default)]
        admin: bool,
        /// What the role may not write (drawn read-only by the app).
        #[serde(default, skip_serializing_if = "Rights::is_empty")]
        rights: Rights,
        /// The routing columns a new row of this user carries, with their values (`tenant_id` →
        /// the tenant): a record created on the device fills them, as the server requires.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        route: BTreeMap<String, String>,
    },
    /// A full copy of a channel follows: the client drops its rows of that channel first.
    SnapshotBegin {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// How many rows the snapshot has, for a progress bar.
        rows: u64,
    },
    /// One chunk of a snapshot, as a diff of inserts.
    Snapshot {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// Rows sent so far, this chunk included.
        rows_done: u64,
        /// Rows in the whole snapshot.
        rows: u64,
        /// The rows, as insert changes.
        diff: DiffJson<'a>,
    },
    /// One chunk of a snapshot as rows, columns named once per table (`crate::rows`): for a client
    /// that accepts [`ACCEPT_SNAPSHOT_ROWS`], in place of `snapshot`.
    SnapshotRows {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// Rows sent so far, this chunk included.
        rows_done: u64,
        /// Rows in the whole snapshot.
        rows: u64,
        /// The rows, a list of table groups (read by [`crate::rows::read_rows`]).
        tables: DiffJson<'a>,
    },
    /// The snapshot is complete and consistent as of `version`.
    SnapshotEnd {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// The cursor to store.
        version: i64,
    },
    /// The initial sync (catch-up or snapshot) is complete: from here on, diffs arrive as they happen.
    Synced {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// The version the client is at.
        version: i64,
    },
    /// A change to a channel, live or during catch-up; apply in version order.
    Diff {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
        /// The version after this change; the client stores it as its cursor.
        version: i64,
        /// The change, in this channel's view.
        diff: DiffJson<'a>,
    },
    /// The writer's mutation is durable. `conflicts` (possibly empty) are the conflict alert: what
    /// could not be merged, with base, theirs and mine per column.
    Ack {
        /// The acknowledged mutation.
        #[serde(borrow)]
        mutation_id: Cow<'a, str>,
        /// The version at which its changes were applied, if any were.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
        /// What could not be merged.
        conflicts: Cow<'a, [Conflict]>,
    },
    /// The mutation was refused as a whole; nothing of it was applied.
    Reject {
        /// The refused mutation.
        #[serde(borrow)]
        mutation_id: Cow<'a, str>,
        /// Machine-readable reason: `forbidden`, `bad_diff`, `constraint`.
        #[serde(borrow)]
        code: Cow<'a, str>,
        /// Human-readable reason.
        #[serde(borrow)]
        reason: Cow<'a, str>,
    },
    /// The client lost access to a channel: it removes that channel's rows.
    Revoke {
        /// The channel.
        #[serde(borrow)]
        channel: Cow<'a, str>,
    },
    /// A frame could not be handled; the connection stays open.
    Error {
        /// Machine-readable: `protocol`, `unavailable`, `storage`, `limit`.
        #[serde(borrow)]
        code: Cow<'a, str>,
        /// The push this error is about, when it is about one (it was not applied; with `retry`,
        /// send it again later).
        #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
        mutation_id: Option<Cow<'a, str>>,
        /// Human-readable.
        #[serde(borrow)]
        message: Cow<'a, str>,
        /// True when sending the same frame again may succeed.
        retry: bool,
    },
    /// The tenant's devices, for an admin's `list_devices`; connected ones, then most recently seen.
    Devices {
        /// The devices.
        devices: Vec<DeviceRecord>,
    },
    /// A record's history, newest first (at most 50 entries): empty when the record is not one the
    /// user may see, exactly as for a record that does not exist.
    History {
        /// The record's table.
        table: String,
        /// The record's id, as asked.
        id: String,
        /// Who changed it, when, and which of the fields the user may see.
        entries: Vec<HistoryEntry>,
    },
    /// The answer to a `customize`.
    Customized {
        /// The request's id.
        id: String,
        /// What came of it.
        answer: CustomizeAnswer,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// A message type this client does not know (from a newer server): ignored.
    #[serde(other)]
    Unknown,
}

impl<'a> ServerMsg<'a> {
    /// Decodes a frame from the server. The frames that carry rows (`snapshot`, `diff`) are read
    /// straight from the text with their rows kept encoded, for [`DiffJson::decode`]: the tagged enum
    /// would buffer the whole frame as a JSON tree before reading its tag (most of a snapshot's
    /// decoding time). Any other frame, or one these fields do not fit, goes through the enum, so
    /// the result is the same either way.
    pub fn from_frame(text: &'a str) -> serde_json::Result<ServerMsg<'a>> {
        #[derive(Deserialize)]
        struct Rows<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(borrow)]
            channel: Cow<'a, str>,
            rows_done: Option<u64>,
            rows: Option<u64>,
            version: Option<i64>,
            #[serde(borrow)]
            diff: Option<&'a RawValue>,
            #[serde(borrow)]
            tables: Option<&'a RawValue>,
        }
        if let Ok(r) = serde_json::from_str::<Rows<'a>>(text) {
            match (&*r.kind, r.rows_done, r.rows, r.version, r.diff, r.tables) {
                ("snapshot", Some(rows_done), Some(rows), None, Some(diff), None) => {
                    return Ok(ServerMsg::Snapshot {
                        channel: r.channel,
                        rows_done,
                        rows,
                        diff: DiffJson::Encoded(diff),
                    });
                }
                ("snapshot_rows", Some(rows_done), Some(rows), None, None, Some(tables)) => {
                    return Ok(ServerMsg::SnapshotRows {
                        channel: r.channel,
                        rows_done,
                        rows,
                        tables: DiffJson::Encoded(tables),
                    });
                }
                ("diff", None, None, Some(version), Some(diff), None) => {
                    return Ok(ServerMsg::Diff {
                        channel: r.channel,
                        version,
                        diff: DiffJson::Encoded(diff),
                    });
                }
                _ => {}
            }
        }
        serde_json::from_str(text)
    }
}

impl ClientMsg<'_> {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialise")
    }
}

impl ServerMsg<'_> {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}
