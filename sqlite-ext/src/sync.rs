//! The client's sync state machine, with no I/O: the shells (native, web) feed it [`Event`]s (the
//! transport opened, a frame arrived, the transport closed, a timer fired, the app wrote locally) and
//! carry out the [`Instruction`]s it returns (open the transport, send this frame, set a timer, tell
//! the UI these tables or conflicts changed, show this status). Every rule of the session lives here,
//! once, over a [`Replica`]; `docs/protocol.md` describes the frames.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::apply::Conflict;
use crate::diff::Diff;
use crate::error::{Error, Result};
use crate::replica::Replica;
use crate::schema::Schema;

/// The protocol version this engine speaks.
pub const PROTOCOL_VERSION: u32 = 1;

const BACKOFF_MIN_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 30_000;
/// The close code the server uses for a token it refuses.
const UNAUTHORIZED: u16 = 4001;
/// The server's close code for a client whose schema it cannot serve (an app too old for it).
const OUTDATED: u16 = 4010;

/// Where the connection stands, for the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Not connected; reconnecting on a timer unless the token was refused.
    Offline,
    /// The transport is opening, or the hello is waiting for its welcome.
    Connecting,
    /// The server's schema cannot be used by this app (the server said so, or the schema it sent is
    /// refused); the app must be updated. Not reconnecting.
    Outdated {
        /// Why, in words for the user.
        reason: String,
    },
    /// Catching up, or a snapshot is arriving (with its progress).
    Syncing {
        /// Rows received so far.
        rows_done: u64,
        /// Rows in the snapshot.
        rows: u64,
    },
    /// Up to date and receiving changes as they happen.
    Live,
    /// The server refused the token; a new one is needed ([`SyncEngine::set_token`]).
    Unauthorized,
}

/// What a UI shows about sync: the phase and what waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The connection's phase.
    pub phase: Phase,
    /// Local writes not yet confirmed by the server.
    pub pending: i64,
    /// Conflicts waiting for the user.
    pub conflicts: i64,
    /// Writes the server refused, kept with their reasons.
    pub rejected: i64,
    /// When the device was last in step with the server (Unix milliseconds).
    pub last_sync_ms: Option<i64>,
}

/// Something that happened, fed to [`SyncEngine::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The app starts: the engine asks for a connection.
    Start,
    /// The transport is open.
    Connected,
    /// A text frame arrived.
    Frame(&'a str),
    /// The transport closed or failed, with the close code when there was one.
    Disconnected(Option<u16>),
    /// The timer the engine asked for fired.
    Timer,
    /// The app wrote to the replica: there may be mutations to send.
    LocalWrite,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    /// Open the transport (the shell answers with `Connected` or `Disconnected`).
    Connect,
    /// Send this text frame.
    Send(String),
    /// Close the transport.
    Close,
    /// Fire `Timer` after this many milliseconds (replacing any earlier timer).
    SetTimer(u64),
    /// These tables' rows changed: re-read what is shown of them.
    TablesChanged(Vec<String>),
    /// New conflicts wait for the user.
    ConflictsRaised(Vec<Conflict>),
    /// A write was refused; the list of rejected writes changed.
    Rejected {
        /// The refused mutation.
        mutation_id: String,
        /// The server's reason.
        reason: String,
    },
    /// The status changed.
    Status(Status),
}

/// The state machine over one replica.
#[derive(Debug)]
pub struct SyncEngine {
    replica: Replica,
    token: String,
    phase: Phase,
    channel: Option<String>,
    /// Mutation ids sent on this connection and not yet answered, oldest first.
    in_flight: Vec<String>,
    max_in_flight: usize,
    backoff_ms: u64,
}

impl SyncEngine {
    /// An engine over `replica`, authenticating with `token`.
    pub fn new(replica: Replica, token: String) -> SyncEngine {
        SyncEngine {
            replica,
            token,
            phase: Phase::Offline,
            channel: None,
            in_flight: Vec::new(),
            max_in_flight: 64,
            backoff_ms: BACKOFF_MIN_MS,
        }
    }

    /// The replica, to read the projection.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, to write to it; follow a write with [`Event::LocalWrite`].
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Replaces the token (after the server refused the old one, or before it expires); the next
    /// connection uses it.
    pub fn set_token(&mut self, token: String) -> Vec<Instruction> {
        self.token = token;
        if self.phase == Phase::Unauthorized {
            self.phase = Phase::Connecting;
            return vec![Instruction::Connect];
        }
        Vec::new()
    }

    /// The current status.
    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            phase: self.phase.clone(),
            pending: self.replica.pending_count()?,
            conflicts: self.replica.conflict_count()?,
            rejected: self.replica.rejected_count()?,
            last_sync_ms: self.replica.last_sync_ms()?,
        })
    }

    /// Handles one event; returns what to do.
    pub fn handle(&mut self, event: Event<'_>) -> Result<Vec<Instruction>> {
        let before = self.status()?;
        let mut out = Vec::new();
        match event {
            Event::Start | Event::Timer => {
                if self.phase == Phase::Offline {
                    self.phase = Phase::Connecting;
                    out.push(Instruction::Connect);
                }
            }
            Event::Connected => {
                self.phase = Phase::Connecting;
                self.in_flight.clear();
                let cursors: serde_json::Map<String, Json> =
                    self.replica.cursors()?.into_iter().map(|(c, v)| (c, Json::from(v))).collect();
                let hello = json!({"type": "hello", "protocol": PROTOCOL_VERSION, "token": self.token,
                                   "client_id": self.replica.client_id(), "cursors": cursors,
                                   "schema": self.replica.schema().fingerprint()});
                out.push(Instruction::Send(hello.to_string()));
            }
            Event::Disconnected(code) => {
                self.in_flight.clear();
                if code == Some(UNAUTHORIZED) {
                    self.phase = Phase::Unauthorized;
                } else if code == Some(OUTDATED) {
                    if !matches!(self.phase, Phase::Outdated { .. }) {
                        self.phase = Phase::Outdated {
                            reason: "this app is too old for the server's schema; update it".into(),
                        };
                    }
                } else if matches!(self.phase, Phase::Outdated { .. }) {
                    // Stays outdated: reconnecting cannot help.
                } else {
                    self.phase = Phase::Offline;
                    out.push(Instruction::SetTimer(self.backoff_ms));
                    self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
                }
            }
            Event::LocalWrite => self.send_pending(&mut out)?,
            Event::Frame(text) => self.frame(text, &mut out)?,
        }
        let after = self.status()?;
        if after != before {
            out.push(Instruction::Status(after));
        }
        Ok(out)
    }

    /// Sends pending mutations not yet in flight, up to the server's window, once live.
    fn send_pending(&mut self, out: &mut Vec<Instruction>) -> Result<()> {
        if !matches!(self.phase, Phase::Live) {
            return Ok(());
        }
        // Mutations go out in order, so the in-flight ones are the head of the queue: reading the
        // head up to the window is enough, however long the offline queue is.
        for m in self.replica.pending_head(self.max_in_flight)? {
            if self.in_flight.len() >= self.max_in_flight {
                break;
            }
            if self.in_flight.contains(&m.mutation_id) {
                continue;
            }
            let frame = json!({"type": "push", "mutation_id": m.mutation_id, "diff": m.diff});
            out.push(Instruction::Send(frame.to_string()));
            self.in_flight.push(m.mutation_id);
        }
        Ok(())
    }

    fn frame(&mut self, text: &str, out: &mut Vec<Instruction>) -> Result<()> {
        let msg: Json = serde_json::from_str(text).map_err(|e| Error::Malformed(format!("frame: {e}")))?;
        let str_field = |name: &str| msg[name].as_str().map(str::to_owned);
        let schema = self.replica.schema().clone();
        match msg["type"].as_str().unwrap_or("") {
            "welcome" => {
                self.channel = msg["channels"][0].as_str().map(str::to_owned);
                self.max_in_flight =
                    msg["max_inflight_pushes"].as_u64().unwrap_or(64).clamp(1, 1024) as usize;
                self.backoff_ms = BACKOFF_MIN_MS;
                // The server's schema moved on (a migration): take it before any row of it arrives.
                if let Some(sql) = msg["schema"]["sql"].as_str() {
                    match Schema::from_sql(sql) {
                        Ok(new) if new.fingerprint() != self.replica.schema().fingerprint() => {
                            for (mutation_id, reason) in self.replica.migrate_schema(new)? {
                                out.push(Instruction::Rejected { mutation_id, reason });
                            }
                            out.push(Instruction::TablesChanged(all_tables(&self.replica)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.phase = Phase::Outdated {
                                reason: format!(
                                    "this app cannot use the server's new schema ({e}); update it"
                                ),
                            };
                            out.push(Instruction::Close);
                            return Ok(());
                        }
                    }
                }
                // Catch-up or a snapshot follows, then `synced`.
                self.phase = Phase::Syncing { rows_done: 0, rows: 0 };
            }
            "revoke" => {
                let channel = str_field("channel").unwrap_or_default();
                self.replica.revoke(&channel)?;
                out.push(Instruction::TablesChanged(all_tables(&self.replica)));
            }
            "snapshot_begin" => {
                let channel = str_field("channel").unwrap_or_default();
                self.replica.begin_snapshot(&channel)?;
                self.phase = Phase::Syncing { rows_done: 0, rows: msg["rows"].as_u64().unwrap_or(0) };
            }
            "snapshot" => {
                let diff = Diff::from_value(msg["diff"].clone(), &schema)?;
                self.replica.apply_snapshot_chunk(&diff)?;
                self.phase = Phase::Syncing {
                    rows_done: msg["rows_done"].as_u64().unwrap_or(0),
                    rows: msg["rows"].as_u64().unwrap_or(0),
                };
            }
            "snapshot_end" => {
                let channel = str_field("channel").unwrap_or_default();
                self.replica.finish_snapshot(&channel, msg["version"].as_i64().unwrap_or(0))?;
                out.push(Instruction::TablesChanged(all_tables(&self.replica)));
            }
            "synced" => {
                self.phase = Phase::Live;
                self.replica.mark_synced()?;
                self.send_pending(out)?;
            }
            "diff" => {
                let channel = str_field("channel").unwrap_or_default();
                let diff = Diff::from_value(msg["diff"].clone(), &schema)?;
                self.replica.apply_server_diff_at(&channel, msg["version"].as_i64().unwrap_or(0), &diff)?;
                out.push(Instruction::TablesChanged(tables_of(&diff)));
            }
            "ack" => {
                let id = str_field("mutation_id").unwrap_or_default();
                let conflicts: Vec<Conflict> = serde_json::from_value(msg["conflicts"].clone())
                    .map_err(|e| Error::Malformed(format!("ack conflicts: {e}")))?;
                let tables = self.settled_tables(&id)?;
                if self.replica.acknowledge(&id, &conflicts)? {
                    out.push(Instruction::TablesChanged(tables));
                    if !conflicts.is_empty() {
                        out.push(Instruction::ConflictsRaised(conflicts));
                    }
                }
                self.in_flight.retain(|m| *m != id);
                self.send_pending(out)?;
            }
            "reject" => {
                let id = str_field("mutation_id").unwrap_or_default();
                let reason = str_field("reason").unwrap_or_default();
                let tables = self.settled_tables(&id)?;
                if self.replica.reject(&id, &reason)? {
                    out.push(Instruction::TablesChanged(tables));
                    out.push(Instruction::Rejected { mutation_id: id.clone(), reason });
                }
                self.in_flight.retain(|m| *m != id);
                self.send_pending(out)?;
            }
            "error" if msg["retry"].as_bool() == Some(true) => {
                // The server could not take a push now; start again from a fresh connection, which
                // resends everything unanswered.
                out.push(Instruction::Close);
            }
            // `pong`, errors about a frame, and message types newer than this engine: nothing to do.
            _ => {}
        }
        Ok(())
    }

    /// The tables a pending mutation touches (what changes when it is settled).
    fn settled_tables(&self, mutation_id: &str) -> Result<Vec<String>> {
        Ok(self.replica.pending_mutation(mutation_id)?.map(|m| tables_of(&m.diff)).unwrap_or_default())
    }
}

fn tables_of(diff: &Diff) -> Vec<String> {
    diff.changes.iter().map(|c| c.table.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

fn all_tables(replica: &Replica) -> Vec<String> {
    replica.schema().tables().iter().map(|t| t.name.clone()).collect()
}
