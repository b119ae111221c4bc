//! The client's sync state machine, with no I/O: the shells (native, web) feed it [`Event`]s (the
//! transport opened, a frame arrived, the transport closed, a timer fired, the app wrote locally) and
//! carry out the [`Instruction`]s it returns (open the transport, send this frame, set a timer, tell
//! the UI these tables or conflicts changed, show this status). Every rule of the session lives here,
//! once, over a [`Replica`]; `docs/protocol.md` describes the frames.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Serialize;

use crate::apply::Conflict;
use crate::diff::Diff;
use crate::error::{Error, Result};
use crate::protocol::{ClientMsg, DeviceRecord, DeviceReport, DiffJson, PROTOCOL_VERSION, ServerMsg, close};
use crate::replica::Replica;
use crate::schema::Schema;

const BACKOFF_MIN_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 30_000;
/// A device report is sent when it changed, at most this often.
const REPORT_EVERY_MS: i64 = 2_000;

/// Where the connection stands, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not connected; reconnecting on a timer unless the user went offline or the token was refused.
    Offline,
    /// The transport is opening, or the hello is waiting for its welcome.
    Connecting,
    /// Catching up, or a snapshot is arriving (with its progress in the status).
    Syncing,
    /// Up to date and receiving changes as they happen.
    Live,
    /// The server refused the token; a new one is needed ([`SyncEngine::set_token`]).
    Unauthorized,
    /// The server's schema cannot be used by this app (the server said so, or the schema it sent is
    /// refused); the app must be updated. Not reconnecting. The status's `message` says why.
    Outdated,
}

impl Phase {
    /// The phase in words for the user, as every client's status bar shows it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Offline => "Offline",
            Phase::Connecting => "Connecting…",
            Phase::Syncing => "Syncing",
            Phase::Live => "Live",
            Phase::Unauthorized => "Signed out by the server",
            Phase::Outdated => "Update needed",
        }
    }

    /// The label of [`Phase::Offline`] when the user chose to work offline (rather than the network
    /// being away).
    pub const WORKING_OFFLINE: &'static str = "Working offline";
}

/// What a UI shows about sync: the phase, the snapshot's progress and what waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Status {
    /// The connection's phase.
    pub phase: Phase,
    /// The phase in words for the user ([`Phase::label`]).
    pub label: String,
    /// The user chose to work offline (kept across restarts): no connection is tried, whatever the
    /// network does, until they go online. The UI's switch offers "Go online" while this holds and
    /// "Work offline" otherwise (also while the network is away or the server out of reach).
    pub held_offline: bool,
    /// Snapshot rows received (while syncing).
    pub rows_done: u64,
    /// Snapshot rows in all (while syncing; 0 during a catch-up).
    pub rows: u64,
    /// Local writes not yet confirmed by the server.
    pub pending: i64,
    /// Conflicts waiting for the user.
    pub conflicts: i64,
    /// Writes the server refused, kept with their reasons.
    pub rejected: i64,
    /// When the device was last in step with the server (Unix milliseconds).
    pub last_sync_ms: Option<i64>,
    /// Why sync stopped, in words for the user (`outdated`: the app must be updated).
    pub message: Option<String>,
    /// The user administers the tenant (the server said so at welcome): offer the admin's pages.
    pub admin: bool,
    /// A search index is being built on the device (after a first sync, or new search fields):
    /// searches scan the rows meanwhile, slower.
    pub indexing: bool,
}

/// Something that happened, fed to [`SyncEngine::handle`]. The shells queue these as they come
/// (a frame, a tap, a timer) and hand them over in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The app starts: the engine asks for a connection.
    Start,
    /// The transport is open.
    Connected,
    /// A text frame arrived.
    Frame(String),
    /// The transport closed or failed, with the close code when there was one.
    Disconnected(Option<u16>),
    /// The timer the engine asked for fired.
    Timer,
    /// The app wrote to the replica: there may be mutations to send.
    LocalWrite,
    /// The user chose to work offline: close, and stay closed until [`Event::GoOnline`], across
    /// restarts too (the choice is kept in the replica). Local reads and writes go on.
    GoOffline,
    /// The user asks to be online: connect at once (whatever the network was last said to be),
    /// catch up and send what is pending.
    GoOnline,
    /// The device's network went away (`false`) or came back (`true`), as the platform tells the
    /// shell: while it is away no connection is tried; when it is back one is, at once, unless the
    /// user chose to work offline. Not remembered: an app that starts says how the network is.
    Network(bool),
    /// An admin opened Sync health: ask the server for the tenant's devices (answered with
    /// [`Instruction::Fleet`]; nothing is sent while not live).
    RequestFleet,
    /// The user opened a record's history: ask the server for it (answered with
    /// [`Instruction::History`]; nothing is sent while not live).
    RequestHistory {
        /// The record's table.
        table: String,
        /// The record's id.
        id: String,
    },
    /// An admin customizes (publish, roll back, list versions), answered with
    /// [`Instruction::Customized`]: sent while connected, after the next hello while reconnecting;
    /// refused at once (`offline`) while the app is held offline.
    Customize {
        /// The request's id.
        id: String,
        /// What to do.
        request: crate::protocol::CustomizeRequest,
    },
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    /// Open the transport (the shell answers with `Connected` or `Disconnected`).
    Connect,
    /// Send this text frame.
    Send(String),
    /// Close the transport (the shell answers with `Disconnected` if one was open).
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
    /// Something failed that the app should report: a frame the engine could not use (the session is
    /// closed and starts again from the stored cursors), or the local database failing.
    Failed(String),
    /// The tenant's devices, as the server answered an admin's request.
    Fleet(Vec<DeviceRecord>),
    /// A record's history, as the server answered [`Event::RequestHistory`].
    History {
        /// The record's table.
        table: String,
        /// The record's id.
        id: String,
        /// Newest first.
        entries: Vec<crate::protocol::HistoryEntry>,
    },
    /// The answer to [`Event::Customize`].
    Customized {
        /// The request's id.
        id: String,
        /// The answer.
        answer: crate::protocol::CustomizeAnswer,
    },
}

/// The state machine over one replica.
#[derive(Debug)]
pub struct SyncEngine {
    replica: Replica,
    token: String,
    phase: Phase,
    /// A snapshot's progress: rows received, rows in all.
    progress: (u64, u64),
    /// Why the app is outdated.
    outdated: Option<String>,
    /// The user chose to work offline ([`Event::GoOffline`], kept in the replica): no connection
    /// until [`Event::GoOnline`].
    held_offline: bool,
    /// The device has no network ([`Event::Network`]): no connection until it is back.
    no_network: bool,
    /// A transport is open (between `Connected` and `Disconnected`).
    connected: bool,
    /// Mutation ids sent on this connection and not yet answered, oldest first.
    in_flight: Vec<String>,
    max_in_flight: usize,
    backoff_ms: u64,
    /// Reconnection attempts so far (with the client id, the jitter's input).
    attempts: u64,
    /// The app's version and platform, for device reports.
    app: (String, String),
    /// The last error reported to the app, for device reports.
    last_error: Option<String>,
    /// The last device report sent on this connection, and when (Unix ms).
    reported: Option<(DeviceReport, i64)>,
    /// The server said this user administers the tenant.
    admin: bool,
    /// Customize requests made while reconnecting: sent after the next hello.
    customize_waiting: Vec<(String, crate::protocol::CustomizeRequest)>,
    /// A first sync's tables the app was told of, and its rows when last told: the app redraws when
    /// a table gets its first rows and when the rows have doubled, not at every chunk. Before the
    /// list indexes exist (they are built once the rows are in) a page of a growing table costs a
    /// sort of all of it, so the redraws add up to about two sorts of the whole snapshot (at each
    /// tenth they were five and a half: ~0.4 s of a 100,000-row first sync in a browser).
    shown: (BTreeSet<String>, u64),
}

/// The wait before reconnection attempt `attempt` at backoff `backoff_ms`: between half of it and
/// all of it, spread by the client (`seed`: a hash of its client id). Thousands of clients that lose
/// the server at the same moment (a restart) thus come back over a window instead of at the same
/// instant, and again at each doubling. Deterministic for one client (tests replay it).
pub fn reconnect_delay_ms(backoff_ms: u64, seed: u64, attempt: u64) -> u64 {
    // splitmix64: a well-spread hash of (seed, attempt).
    let mut z = seed.wrapping_add(attempt.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let half = backoff_ms / 2;
    half + z % (backoff_ms - half + 1)
}

/// A stable 64-bit hash of a client id (FNV-1a), the seed of its reconnection jitter.
pub fn jitter_seed(client_id: &str) -> u64 {
    client_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl SyncEngine {
    /// An engine over `replica`, authenticating with `token`.
    pub fn new(replica: Replica, token: String) -> SyncEngine {
        SyncEngine {
            replica,
            token,
            phase: Phase::Offline,
            progress: (0, 0),
            shown: (BTreeSet::new(), 0),
            outdated: None,
            held_offline: false,
            no_network: false,
            customize_waiting: Vec::new(),
            connected: false,
            in_flight: Vec::new(),
            max_in_flight: 64,
            backoff_ms: BACKOFF_MIN_MS,
            attempts: 0,
            app: (String::new(), String::new()),
            last_error: None,
            reported: None,
            admin: false,
        }
    }

    /// Names the app (its version, as the app numbers it) and the platform (`web`, `ios`, …) in the
    /// device reports the tenant's admins see.
    pub fn set_app(&mut self, app_version: &str, platform: &str) {
        self.app = (app_version.chars().take(64).collect(), platform.chars().take(64).collect());
    }

    /// Remembers an error the app was told of, for the next device report.
    pub fn note_error(&mut self, message: &str) {
        self.last_error = Some(message.chars().take(400).collect());
    }

    /// This device's sync now, as reported to the server.
    pub fn device_report(&self) -> Result<DeviceReport> {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(DeviceReport {
            app_version: self.app.0.clone(),
            platform: self.app.1.clone(),
            pending: count(self.replica.pending_count()?),
            oldest_pending_ms: self.replica.oldest_pending_age_ms()?,
            rejected: count(self.replica.rejected_count()?),
            conflicts: count(self.replica.conflict_count()?),
            last_error: self.last_error.clone(),
        })
    }

    /// Sends a device report when it changed since the last one, at most every few seconds.
    fn report_device(&mut self, out: &mut Vec<Instruction>) -> Result<()> {
        if !(self.connected && self.phase == Phase::Live) {
            return Ok(());
        }
        let now = self.replica.now_ms()?;
        if self.reported.as_ref().is_some_and(|(_, at)| now - at < REPORT_EVERY_MS) {
            return Ok(());
        }
        let report = self.device_report()?;
        // The oldest pending write's age changes every millisecond: compare the rest.
        let same = |a: &DeviceReport, b: &DeviceReport| {
            DeviceReport { oldest_pending_ms: None, ..a.clone() }
                == DeviceReport { oldest_pending_ms: None, ..b.clone() }
        };
        let due = self.reported.as_ref().is_none_or(|(last, _)| !same(last, &report));
        if due {
            out.push(Instruction::Send(ClientMsg::Report { device: report.clone() }.to_json()));
            self.reported = Some((report, now));
        }
        Ok(())
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
        if self.phase == Phase::Unauthorized && !self.kept_offline() {
            self.phase = Phase::Connecting;
            return vec![Instruction::Connect];
        }
        Vec::new()
    }

    /// The rows of the snapshot this session is receiving so far, while one arrives.
    pub fn snapshot_rows(&self) -> Option<u64> {
        (self.connected && self.phase == Phase::Syncing && self.replica.snapshot_open())
            .then_some(self.progress.0)
    }

    /// The current status.
    pub fn status(&self) -> Result<Status> {
        let (rows_done, rows) = if self.phase == Phase::Syncing { self.progress } else { (0, 0) };
        Ok(Status {
            phase: self.phase,
            label: if self.phase == Phase::Offline && self.held_offline {
                Phase::WORKING_OFFLINE.to_owned()
            } else {
                self.phase.label().to_owned()
            },
            held_offline: self.held_offline,
            rows_done,
            rows,
            message: if self.phase == Phase::Outdated { self.outdated.clone() } else { None },
            pending: self.replica.pending_count()?,
            conflicts: self.replica.conflict_count()?,
            rejected: self.replica.rejected_count()?,
            last_sync_ms: self.replica.last_sync_ms()?,
            admin: self.admin,
            indexing: crate::ui::search_fill_pending(self.replica.connection())?,
        })
    }

    /// Handles one event; returns what to do. A frame that cannot be used (it does not decode, or
    /// applying it fails) is not an error of this call: the engine reports it
    /// ([`Instruction::Failed`]) and closes the session, which starts again from the stored cursors.
    /// `Err` is left for the local database failing outside a frame.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Instruction>> {
        let mut out = Vec::new();
        // What waits on this device may have changed (a write, an ack, a rejection): told after.
        let report = !matches!(event, Event::Connected);
        match event {
            Event::Start => {
                // The user's choice to work offline outlives the app.
                self.held_offline |= self.replica.held_offline()?;
                self.connect_if_offline(&mut out);
            }
            Event::Timer => self.connect_if_offline(&mut out),
            Event::GoOnline => {
                self.held_offline = false;
                self.no_network = false;
                self.replica.set_held_offline(false)?;
                self.backoff_ms = BACKOFF_MIN_MS;
                self.connect_if_offline(&mut out);
            }
            Event::Network(true) => {
                self.no_network = false;
                self.backoff_ms = BACKOFF_MIN_MS;
                self.connect_if_offline(&mut out);
            }
            Event::GoOffline => {
                self.held_offline = true;
                self.replica.set_held_offline(true)?;
                self.go_quiet(&mut out);
            }
            Event::Network(false) => {
                self.no_network = true;
                self.go_quiet(&mut out);
            }
            Event::Connected if self.kept_offline() => {
                // Opened just as the app went offline.
                out.push(Instruction::Close);
                self.connected = true;
            }
            Event::Connected => {
                self.phase = Phase::Connecting;
                self.connected = true;
                self.in_flight.clear();
                let fingerprint = self.replica.schema().fingerprint();
                let device = self.device_report()?;
                let hello = ClientMsg::Hello {
                    protocol: PROTOCOL_VERSION,
                    token: Cow::Borrowed(&self.token),
                    client_id: Cow::Borrowed(self.replica.client_id()),
                    cursors: self.replica.cursors()?.into_iter().collect(),
                    schema: Some(Cow::Owned(fingerprint)),
                    device: Some(device.clone()),
                    accept: vec![crate::protocol::ACCEPT_SNAPSHOT_ROWS.to_owned()],
                };
                out.push(Instruction::Send(hello.to_json()));
                self.reported = Some((device, self.replica.now_ms()?));
                for (id, request) in std::mem::take(&mut self.customize_waiting) {
                    out.push(Instruction::Send(ClientMsg::Customize { id, request }.to_json()));
                }
            }
            Event::Disconnected(code) => {
                self.connected = false;
                self.in_flight.clear();
                if code == Some(close::UNAUTHORIZED) {
                    self.phase = Phase::Unauthorized;
                } else if code == Some(close::OUTDATED) {
                    if self.phase != Phase::Outdated {
                        self.outdated("this app is too old for the server's schema; update it".into());
                    }
                } else if self.phase == Phase::Outdated {
                    // Stays outdated: reconnecting cannot help.
                } else {
                    self.phase = Phase::Offline;
                    if !self.kept_offline() {
                        let seed = jitter_seed(self.replica.client_id());
                        out.push(Instruction::SetTimer(reconnect_delay_ms(
                            self.backoff_ms,
                            seed,
                            self.attempts,
                        )));
                        self.attempts += 1;
                        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
                    }
                }
            }
            Event::LocalWrite => self.send_pending(&mut out)?,
            Event::RequestFleet => {
                if self.connected && self.phase == Phase::Live {
                    out.push(Instruction::Send(ClientMsg::ListDevices {}.to_json()));
                }
            }
            Event::RequestHistory { table, id } => {
                if self.connected && self.phase == Phase::Live {
                    let msg = ClientMsg::History { table: table.into(), id: id.into() };
                    out.push(Instruction::Send(msg.to_json()));
                }
            }
            Event::Customize { id, request } => {
                if self.connected && !self.kept_offline() {
                    // Any time after the hello: the server reads it once the initial sync is sent.
                    out.push(Instruction::Send(ClientMsg::Customize { id, request }.to_json()));
                } else if self.kept_offline() || matches!(self.phase, Phase::Outdated | Phase::Unauthorized) {
                    out.push(Self::customize_offline(id));
                } else {
                    // Reconnecting (a publish that changed the storage reconnects every app): sent
                    // after the next hello.
                    self.customize_waiting.push((id, request));
                }
            }
            Event::Frame(text) => {
                if let Err(e) = self.frame(&text, &mut out) {
                    let message = match e {
                        Error::Protocol(_) => format!("the server sent a frame this app cannot use: {e}"),
                        e => format!("a change from the server could not be applied: {e}"),
                    };
                    self.note_error(&message);
                    out.push(Instruction::Failed(message));
                    out.push(Instruction::Close);
                }
            }
        }
        if report {
            self.report_device(&mut out)?;
        }
        Ok(out)
    }

    fn outdated(&mut self, reason: String) {
        self.phase = Phase::Outdated;
        self.outdated = Some(reason);
    }

    /// Closes the session (or the connection on its way) because the app goes offline: nothing more
    /// is sent, and customize requests waiting for a session are refused.
    fn go_quiet(&mut self, out: &mut Vec<Instruction>) {
        for (id, _) in std::mem::take(&mut self.customize_waiting) {
            out.push(Self::customize_offline(id));
        }
        if self.connected {
            // Offline from now on: nothing more is sent on the closing session (its
            // `Disconnected` comes later and changes nothing).
            out.push(Instruction::Close);
            self.connected = false;
            self.in_flight.clear();
            if self.phase != Phase::Outdated && self.phase != Phase::Unauthorized {
                self.phase = Phase::Offline;
            }
        } else if matches!(self.phase, Phase::Connecting) {
            // A connection on its way: the shell drops it and says so.
            out.push(Instruction::Close);
            self.phase = Phase::Offline;
        }
    }

    /// Whether no connection may be tried now (the user's choice, or no network).
    fn kept_offline(&self) -> bool {
        self.held_offline || self.no_network
    }

    fn connect_if_offline(&mut self, out: &mut Vec<Instruction>) {
        if self.phase == Phase::Offline && !self.kept_offline() {
            self.phase = Phase::Connecting;
            out.push(Instruction::Connect);
        }
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
            let diff = serde_json::value::to_raw_value(&m.diff)
                .map_err(|e| Error::Malformed(format!("a pending diff: {e}")))?;
            let push = ClientMsg::Push {
                mutation_id: Cow::Borrowed(&m.mutation_id),
                diff: DiffJson::Encoded(&diff),
            };
            out.push(Instruction::Send(push.to_json()));
            self.in_flight.push(m.mutation_id);
        }
        Ok(())
    }

    fn frame(&mut self, text: &str, out: &mut Vec<Instruction>) -> Result<()> {
        let msg = ServerMsg::from_frame(text).map_err(|e| Error::Protocol(e.to_string()))?;
        match msg {
            ServerMsg::Welcome {
                channels, max_inflight_pushes, schema, admin, rights, user, route, ..
            } => {
                if channels.is_empty() {
                    return Err(Error::Protocol("a welcome with no channel".into()));
                }
                self.admin = admin;
                self.replica.set_rights(&rights)?;
                self.replica.set_identity(&crate::protocol::Identity { user: user.into_owned(), route })?;
                self.max_in_flight = max_inflight_pushes.clamp(1, 1024);
                self.backoff_ms = BACKOFF_MIN_MS;
                // The server's schema moved on (a migration): take it before any row of it arrives.
                if let Some(info) = schema {
                    match Schema::from_sql(&info.sql) {
                        Ok(new) if new.fingerprint() != self.replica.schema().fingerprint() => {
                            for (mutation_id, reason) in self.replica.migrate_schema(new)? {
                                out.push(Instruction::Rejected { mutation_id, reason });
                            }
                            out.push(Instruction::TablesChanged(all_tables(&self.replica)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.outdated(format!(
                                "this app cannot use the server's new schema ({e}); update it"
                            ));
                            out.push(Instruction::Close);
                            return Ok(());
                        }
                    }
                }
                // Catch-up or a snapshot follows, then `synced`.
                self.phase = Phase::Syncing;
                self.progress = (0, 0);
            }
            ServerMsg::Revoke { channel } => {
                self.replica.revoke(&channel)?;
                out.push(Instruction::TablesChanged(all_tables(&self.replica)));
            }
            ServerMsg::SnapshotBegin { channel, rows } => {
                self.replica.begin_snapshot(&channel)?;
                self.shown = (BTreeSet::new(), 0);
                self.phase = Phase::Syncing;
                self.progress = (0, rows);
            }
            ServerMsg::Snapshot { rows_done, rows, diff, .. } => {
                let diff = diff.decode(self.replica.schema())?;
                self.replica.apply_snapshot_chunk(&diff)?;
                self.snapshot_progress(tables_of(&diff), rows_done, rows, out);
            }
            ServerMsg::SnapshotRows { rows_done, rows, tables, .. } => {
                let tables = self.replica.apply_snapshot_rows(&tables.json())?;
                self.snapshot_progress(tables.into_iter().collect(), rows_done, rows, out);
            }
            ServerMsg::SnapshotEnd { channel, version } => {
                self.replica.finish_snapshot(&channel, version)?;
                out.push(Instruction::TablesChanged(all_tables(&self.replica)));
            }
            ServerMsg::Synced { .. } => {
                self.phase = Phase::Live;
                self.replica.mark_synced()?;
                self.send_pending(out)?;
            }
            ServerMsg::Diff { channel, version, diff } => {
                let diff = diff.decode(self.replica.schema())?;
                self.replica.apply_server_diff_at(&channel, version, &diff)?;
                out.push(Instruction::TablesChanged(tables_of(&diff)));
            }
            ServerMsg::Ack { mutation_id, conflicts, .. } => {
                let tables = self.settled_tables(&mutation_id)?;
                if self.replica.acknowledge(&mutation_id, &conflicts)? {
                    out.push(Instruction::TablesChanged(tables));
                    if !conflicts.is_empty() {
                        out.push(Instruction::ConflictsRaised(conflicts.into_owned()));
                    }
                }
                self.in_flight.retain(|m| *m != mutation_id);
                self.send_pending(out)?;
            }
            ServerMsg::Reject { mutation_id, reason, .. } => {
                let tables = self.settled_tables(&mutation_id)?;
                if self.replica.reject(&mutation_id, &reason)? {
                    out.push(Instruction::TablesChanged(tables));
                    out.push(Instruction::Rejected {
                        mutation_id: mutation_id.to_string(),
                        reason: reason.into_owned(),
                    });
                }
                self.in_flight.retain(|m| *m != mutation_id);
                self.send_pending(out)?;
            }
            ServerMsg::Error { retry: true, .. } => {
                // The server could not take a push now; start again from a fresh connection, which
                // resends everything unanswered.
                out.push(Instruction::Close);
            }
            ServerMsg::Devices { devices } => out.push(Instruction::Fleet(devices)),
            ServerMsg::History { table, id, entries } => {
                out.push(Instruction::History { table, id, entries })
            }
            ServerMsg::Customized { id, answer } => out.push(Instruction::Customized { id, answer }),
            // Errors about a frame, pongs, and message types newer than this engine: nothing to do.
            ServerMsg::Error { retry: false, .. } | ServerMsg::Pong { .. } | ServerMsg::Unknown => {}
        }
        Ok(())
    }

    /// The answer to a customize request that cannot reach the server.
    fn customize_offline(id: String) -> Instruction {
        let answer = crate::protocol::CustomizeAnswer::Refused {
            code: "offline".into(),
            reason: "Customizing needs a connection to the server; try again once online".into(),
            lost: Vec::new(),
        };
        Instruction::Customized { id, answer }
    }

    /// The tables a pending mutation touches (what changes when it is settled).
    fn settled_tables(&self, mutation_id: &str) -> Result<Vec<String>> {
        Ok(self.replica.pending_mutation(mutation_id)?.map(|m| tables_of(&m.diff)).unwrap_or_default())
    }
}

impl SyncEngine {
    /// After a snapshot chunk of `tables`: the progress, and in a first sync the rows shown as they
    /// arrive (when a table first has rows, and when the rows have doubled since last shown).
    fn snapshot_progress(
        &mut self,
        tables: Vec<String>,
        rows_done: u64,
        rows: u64,
        out: &mut Vec<Instruction>,
    ) {
        if self.replica.first_snapshot()
            && (rows_done >= self.shown.1.saturating_mul(2)
                || tables.iter().any(|t| !self.shown.0.contains(t)))
        {
            self.shown.0.extend(tables.iter().cloned());
            self.shown.1 = rows_done;
            out.push(Instruction::TablesChanged(tables));
        }
        self.phase = Phase::Syncing;
        self.progress = (rows_done, rows);
    }
}

fn tables_of(diff: &Diff) -> Vec<String> {
    diff.changes.iter().map(|c| c.table.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

fn all_tables(replica: &Replica) -> Vec<String> {
    replica.schema().tables().iter().map(|t| t.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnections_spread_over_half_to_all_of_the_backoff() {
        let delays: Vec<u64> =
            (0..10_000).map(|i| reconnect_delay_ms(500, jitter_seed(&format!("client-{i}")), 0)).collect();
        assert!(delays.iter().all(|d| (250..=500).contains(d)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 200, "spread over the window: {} distinct delays", distinct.len());
        let mut per_10ms = [0usize; 26];
        delays.iter().for_each(|d| per_10ms[((d - 250) / 10) as usize] += 1);
        assert!(per_10ms.iter().all(|&n| n < 700), "no 10 ms slot takes more than 7%: {per_10ms:?}");
        // One client's attempts differ from each other, and the same client replays the same delays.
        let seed = jitter_seed("client-7");
        assert_ne!(reconnect_delay_ms(4000, seed, 1), reconnect_delay_ms(4000, seed, 2));
        assert_eq!(reconnect_delay_ms(4000, seed, 3), reconnect_delay_ms(4000, seed, 3));
    }
}
