//! The one client driver both shells run. It owns the core's sync engine and everything around it
//! that is not moving bytes: the queue of events, applying frames that arrive together in one
//! transaction, going offline and online (as engine events), telling the app the status after every
//! change, reporting failures, and the calls the UI makes (each a delegation to `sqlite_ext::ui`).
//!
//! A shell feeds it the engine's [`Event`]s, calls [`Driver::run`] and carries out the [`Effect`]s in order:
//! connect, send, close, set a timer, notify. That is all a shell does, so the native and web
//! clients cannot drift apart.

use std::collections::{BTreeSet, VecDeque};

use base64::Engine as _;
use serde::Serialize;
use sqlite_ext::ui::{
    self, ColumnValue, ConflictChoice, ConflictView, DetailViewModel, FieldInput, ListQuery, ListViewModel,
    ObjectTypeView, PendingView, ReferenceOption, RejectedView,
};
use sqlite_ext::{Event, FieldValue, Fields, Instruction, Phase, Replica, Status, SyncEngine, Value};

type Result<T> = std::result::Result<T, sqlite_ext::Error>;

/// What waits in the driver's queue: an event for the engine, or a step of the driver's own
/// background work.
#[derive(Debug)]
enum Queued {
    Event(Event),
    /// Nothing else waited (asked for by [`Effect::Idle`]): a step of background work, such as
    /// filling a full-text index.
    Idle,
}

/// What the app is told, as it happens: the native shell calls its listener's method of the same
/// name, the web shell posts it to the page as this JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Rows of these tables changed: re-read what is shown of them.
    Tables {
        /// The tables.
        tables: Vec<String>,
    },
    /// The sync status changed.
    Status {
        /// The status now.
        status: Status,
    },
    /// The server could not merge some of this device's edits: every conflict that waits.
    Conflicts {
        /// The conflicts, as the alert shows them.
        conflicts: Vec<ConflictView>,
    },
    /// The server refused a write; it stays listed with the reason.
    Rejected {
        /// The refused mutation.
        mutation_id: String,
        /// The server's reason.
        reason: String,
    },
    /// Something failed that the user should know of (a frame that could not be used, the local
    /// database failing); sync starts again from a fresh session.
    Error {
        /// In words for the user.
        message: String,
    },
    /// The tenant's devices (Sync health), as the server answered [`Event::RequestFleet`].
    Fleet {
        /// Most recently seen first.
        devices: Vec<sqlite_ext::protocol::DeviceRecord>,
    },
    /// A record's history, as the server answered [`Driver::request_history`].
    History {
        /// The record's object type.
        object_type: String,
        /// The record's id.
        id: String,
        /// Newest first, in the user's words.
        entries: Vec<ui::HistoryEntryView>,
    },
    /// The server's answer to [`Driver::customize`].
    Customized {
        /// The request's id.
        id: String,
        /// The answer.
        answer: sqlite_ext::protocol::CustomizeAnswer,
    },
}

/// What the shell does, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Open the transport; feed `Connected` or `Disconnected` when it opens or fails.
    Connect,
    /// Send this text frame; if that fails, drop the transport and feed `Disconnected`.
    Send(String),
    /// Drop the transport; feed `Disconnected` if one was open.
    Close,
    /// Feed `Timer` after this many milliseconds (replacing any earlier timer).
    SetTimer(u64),
    /// Tell the app.
    Notify(ClientEvent),
    /// Call [`Driver::idle`] after this many milliseconds, once the events and calls already waiting
    /// have had their turn: the driver has background work, done a step at a time so that the app
    /// stays responsive.
    Idle(u64),
}

/// The engine, its queue, and what the app was last told of the status.
#[derive(Debug)]
pub struct Driver {
    engine: SyncEngine,
    role: String,
    queue: VecDeque<Queued>,
    reported: Option<Status>,
    /// A conflict was found on this device; the next run tells the app.
    raised: bool,
    /// The tables this run changed, told at its end.
    changed: BTreeSet<String>,
    /// A snapshot's chunks are held in an open transaction, begun at this many rows.
    held: Option<u64>,
    /// Committing what was held failed outside a run: the next run ends the session.
    failed: Option<String>,
    /// Index work may be left (`ui::index_step`: list indexes past the first page's, full-text
    /// fills): checked at the end of a run.
    indexing: bool,
    /// `object_metadata` changed and the indexes it asks for are not made yet.
    metadata_changed: bool,
    /// An [`Effect::Idle`] is out: its [`Driver::idle`] will come.
    idle_asked: bool,
    /// How long the next background step waits: at the start, a moment (the app opening draws its
    /// first screen first), once work is under way or was made in this session, nothing.
    idle_delay: u64,
}

/// How long background work left from an earlier session waits after the start.
const SETTLE_MS: u64 = 1_000;

/// Rows of a snapshot committed together.
const HOLD_ROWS: u64 = 20_000;

/// Rows of a first sync's golden copy made per idle turn (~10 ms in a browser's worker: what a call
/// of the app's may wait behind).
const GOLDEN_ROWS: usize = 2_000;

impl Driver {
    /// A driver over `replica`, syncing as the bearer of `token` (a JWT whose `role` picks the
    /// layouts drawn). It starts at once: the first [`Driver::run`] asks for a connection.
    pub fn new(replica: Replica, token: String) -> Result<Driver> {
        let role = role_of(&token)
            .ok_or_else(|| sqlite_ext::Error::Invalid("the token is not a JWT with a role".into()))?;
        Ok(Driver {
            engine: SyncEngine::new(replica, token),
            role,
            queue: VecDeque::from([Queued::Event(Event::Start)]),
            reported: None,
            raised: false,
            changed: BTreeSet::new(),
            held: None,
            failed: None,
            indexing: true,
            metadata_changed: false,
            idle_asked: false,
            idle_delay: SETTLE_MS,
        })
    }

    /// Names the app's version and the platform in this device's reports to the tenant's admins.
    pub fn set_app(&mut self, app_version: &str, platform: &str) {
        self.engine.set_app(app_version, platform);
    }

    /// Starts with no network (the device has none when the app opens): no connection is tried
    /// until [`Event::Network`]`(true)` or [`Event::GoOnline`]. Call before the first [`Driver::run`].
    pub fn start_without_network(&mut self) {
        self.queue.push_front(Queued::Event(Event::Network(false)));
    }

    /// Queues an event for the next [`Driver::run`].
    pub fn feed(&mut self, event: Event) {
        self.queue.push_back(Queued::Event(event));
    }

    /// Queues a step of background work for the next [`Driver::run`], as an [`Effect::Idle`] asked.
    pub fn idle(&mut self) {
        self.queue.push_back(Queued::Idle);
    }

    /// Works off the queue and returns what the shell must do. Inputs that wait together (frames that
    /// arrived together) are applied in one transaction; the status is reported when it changed.
    pub fn run(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(message) = self.failed.take() {
            self.fail(message, &mut out);
        }
        let held = self.held.take();
        // A batch of frames holds server data only (the user's writes commit what is held first),
        // and a full-text fill's step what can be derived again: it commits without waiting for the
        // disk.
        let frames = self.queue.iter().all(|q| matches!(q, Queued::Event(Event::Frame(_)) | Queued::Idle));
        let batch = held.is_some()
            || ((self.queue.len() > 1 || self.engine.snapshot_rows().is_some())
                && if frames {
                    self.engine.replica().begin_server_batch().is_ok()
                } else {
                    self.engine.replica().begin_batch().is_ok()
                });
        let since = held.or(self.engine.snapshot_rows()).unwrap_or(0);
        while let Some(queued) = self.queue.pop_front() {
            let Queued::Event(event) = queued else {
                (self.idle_asked, self.idle_delay) = (false, 0);
                self.index_step(&mut out);
                continue;
            };
            match self.engine.handle(event) {
                Ok(instructions) => {
                    for i in instructions {
                        self.carry_out(i, &mut out);
                    }
                }
                Err(e) => self.fail(format!("the local database failed: {e}"), &mut out),
            }
            // New metadata may sort or filter lists by other fields: index them on the device,
            // before the status is told (it says whether a search index is being filled). Not during a
            // first sync: they are built once its rows are in (a bulk build writes each page once;
            // kept up row by row, random inserts dirty most of an index's pages at every commit,
            // which cost seconds on a browser's storage). What the first page needs now; the other
            // list indexes and the full-text fills a step at a time after (`indexing`): the lists
            // scan meanwhile.
            if self.metadata_changed && !self.engine.replica().first_snapshot() {
                self.metadata_changed = false;
                let r = self.engine.replica();
                if let Err(e) = ui::make_indexes(r.connection(), r.schema()) {
                    out.push(Effect::Notify(ClientEvent::Error { message: e.to_string() }));
                }
                (self.indexing, self.idle_delay) = (true, 0);
            }
            // After every input, not once per run: each step the user took (an edit, going offline)
            // and each phase of the session shows, however the inputs were queued; a snapshot's
            // progress alone is told once a run.
            self.report_status(&mut out, false);
        }
        // While a snapshot arrives its chunks are committed every `HOLD_ROWS` rows, not at every
        // run: each commit waits for the disk, and a snapshot cut short starts again anyway. The
        // user's own writes commit what is held first (`Driver::settle`). A first sync that will be
        // written through a rollback journal commits its first run: the switch waits for no
        // transaction to be open.
        if batch
            && self.engine.snapshot_rows().is_some_and(|rows| rows < since + HOLD_ROWS)
            && !self.engine.replica().wants_journal()
        {
            self.held = Some(since);
        }
        // A failed commit undoes the batch: a new session resends what it needs.
        else if batch && let Err(e) = self.engine.replica().end_batch() {
            self.fail(format!("the local database could not save changes from the server: {e}"), &mut out);
        }
        let changed = std::mem::take(&mut self.changed);
        if !changed.is_empty() {
            out.push(Effect::Notify(ClientEvent::Tables { tables: changed.into_iter().collect() }));
        }
        if std::mem::take(&mut self.raised) {
            self.carry_out(Instruction::ConflictsRaised(Vec::new()), &mut out);
        }
        self.report_status(&mut out, true);
        // Not while a session opens or catches up: the app's first reads (the list it reopens on)
        // and the server's frames go first.
        let settled =
            self.reported.as_ref().is_some_and(|s| !matches!(s.phase, Phase::Connecting | Phase::Syncing));
        let golden_behind = self.engine.replica().golden_behind();
        if (self.indexing || golden_behind) && !self.idle_asked && settled {
            let r = self.engine.replica();
            self.indexing = ui::indexes_pending(r.connection(), r.schema()).unwrap_or(false);
            if self.indexing || golden_behind {
                self.idle_asked = true;
                out.push(Effect::Idle(self.idle_delay));
            }
        }
        out
    }

    /// One step of background work, in the run's transaction when it has one: a list index or a
    /// part of a full-text fill (what the user may ask for first), then a slice of the golden copy a
    /// first sync left (a change from the server or a write makes the rest first if it comes before).
    fn index_step(&mut self, out: &mut Vec<Effect>) {
        if !self.indexing {
            let r = self.engine.replica_mut();
            if r.golden_behind()
                && !r.snapshot_open()
                && let Err(e) = r.catch_up_golden_step(GOLDEN_ROWS)
            {
                // The next write or change from the server tries again (and fails with it).
                out.push(Effect::Notify(ClientEvent::Error { message: e.to_string() }));
            }
            return;
        }
        let r = self.engine.replica();
        match ui::index_step(r.connection(), r.schema(), ui::FILL_ROWS) {
            Ok(more) => self.indexing = more,
            Err(e) => {
                // Left for the next start (the lists scan without it; a full-text index is not used
                // until it is whole).
                self.indexing = false;
                out.push(Effect::Notify(ClientEvent::Error {
                    message: format!("the search index could not be built: {e}"),
                }));
            }
        }
    }

    /// Tells the app the status when it changed since it was last told; a change of a snapshot's
    /// progress alone waits for the end of the run (`end`).
    fn report_status(&mut self, out: &mut Vec<Effect>, end: bool) {
        match self.engine.status() {
            Ok(s) if self.reported.as_ref() == Some(&s) => {}
            Ok(s)
                if !end
                    && self.reported.as_ref().is_some_and(|r| {
                        Status { rows_done: s.rows_done, rows: s.rows, ..r.clone() } == s
                    }) => {}
            Ok(s) => {
                self.reported = Some(s.clone());
                out.push(Effect::Notify(ClientEvent::Status { status: s }));
            }
            Err(e) => out.push(Effect::Notify(ClientEvent::Error { message: e.to_string() })),
        }
    }

    fn fail(&mut self, message: String, out: &mut Vec<Effect>) {
        self.engine.note_error(&message);
        out.push(Effect::Notify(ClientEvent::Error { message }));
        out.push(Effect::Close);
    }

    fn carry_out(&mut self, i: Instruction, out: &mut Vec<Effect>) {
        out.push(match i {
            Instruction::Connect => Effect::Connect,
            Instruction::Send(text) => Effect::Send(text),
            Instruction::Close => Effect::Close,
            Instruction::SetTimer(ms) => Effect::SetTimer(ms),
            // Told once a run, after its commit (a first sync's chunks each change some tables,
            // and a run applies many).
            Instruction::TablesChanged(tables) => {
                self.metadata_changed |= tables.iter().any(|t| t == "object_metadata");
                self.changed.extend(tables);
                return;
            }
            Instruction::ConflictsRaised(_) => match ui::conflicts(self.engine.replica()) {
                Ok(conflicts) => Effect::Notify(ClientEvent::Conflicts { conflicts }),
                Err(e) => Effect::Notify(ClientEvent::Error { message: e.to_string() }),
            },
            Instruction::Rejected { mutation_id, reason } => {
                Effect::Notify(ClientEvent::Rejected { mutation_id, reason })
            }
            Instruction::Failed(message) => Effect::Notify(ClientEvent::Error { message }),
            Instruction::Fleet(devices) => Effect::Notify(ClientEvent::Fleet { devices }),
            Instruction::History { table, id, entries } => {
                let r = self.engine.replica();
                let (conn, schema) = (r.connection(), r.schema());
                Effect::Notify(ClientEvent::History {
                    object_type: ui::object_type_of(conn, &table).ok().flatten().unwrap_or(table.clone()),
                    entries: ui::history_view(conn, schema, &table, &entries),
                    id,
                })
            }
            Instruction::Customized { id, mut answer } => {
                // Who published each version, by name (the server knows user ids).
                if let sqlite_ext::protocol::CustomizeAnswer::Versions { versions, .. } = &mut answer {
                    let r = self.engine.replica();
                    for v in versions.iter_mut().filter(|v| !v.user.is_empty()) {
                        v.user = ui::person_name(r.connection(), r.schema(), &v.user);
                    }
                }
                Effect::Notify(ClientEvent::Customized { id, answer })
            }
        });
    }

    fn replica(&self) -> &Replica {
        self.engine.replica()
    }

    /// Before a write of the user's: what a snapshot held uncommitted is committed first, so the
    /// user's write is durable when it returns.
    fn settle(&mut self) {
        if self.held.take().is_some()
            && let Err(e) = self.engine.replica().end_batch()
        {
            self.failed = Some(format!("the local database could not save changes from the server: {e}"));
        }
    }

    /// A local write was made: send it when possible (queued for the next run).
    fn wrote(&mut self) {
        self.feed(Event::LocalWrite);
    }

    fn key(&self, object_type: &str, id: &str) -> Result<Fields<Value>> {
        ui::record_key(self.replica(), &ui::table_of(self.replica(), object_type)?, id)
    }

    /// The sync status now.
    pub fn status(&self) -> Result<Status> {
        self.engine.status()
    }

    /// The object types, from the synced `object_metadata`.
    pub fn object_types(&self) -> Result<Vec<ObjectTypeView>> {
        ui::object_types(self.replica().connection(), self.replica().schema(), &self.role)
    }

    /// A page of a list.
    pub fn list_view(&self, q: &ListQuery) -> Result<ListViewModel> {
        ui::list_view(self.replica().connection(), self.replica().schema(), q)
    }

    /// Record `id`'s detail page, drawn from the synced `layout_definition` for this user's role.
    pub fn detail_view(&self, object_type: &str, id: &str) -> Result<DetailViewModel> {
        let key = self.key(object_type, id)?;
        ui::detail_view(self.replica().connection(), self.replica().schema(), object_type, &key, &self.role)
    }

    /// Edits one field with a value, checked against the metadata and this role's layout.
    pub fn edit(&mut self, object_type: &str, id: &str, field: String, value: FieldValue) -> Result<()> {
        let key = self.key(object_type, id)?;
        let values = Fields(vec![(field, value.into())]);
        self.settle();
        ui::edit(self.engine.replica_mut(), object_type, &key, &values, &self.role)?;
        self.wrote();
        Ok(())
    }

    /// Edits one field with what the user typed, read as the field reads input (currency in major
    /// units with the field's scale), then checked like [`Driver::edit`]. `started_from` is the value
    /// the user began editing from: if a live change replaced it meanwhile, nothing is overwritten and
    /// the conflict alert is raised instead.
    pub fn edit_text(
        &mut self,
        object_type: &str,
        id: &str,
        field: &str,
        text: &str,
        started_from: Option<FieldValue>,
    ) -> Result<()> {
        let key = self.key(object_type, id)?;
        let base = started_from.map(Value::from);
        self.settle();
        let r = ui::edit_text_of(
            self.engine.replica_mut(),
            object_type,
            &key,
            field,
            text,
            &self.role,
            base.as_ref(),
        )?;
        self.raised |= r == ui::Edited::Conflict;
        self.wrote();
        Ok(())
    }

    /// Writes one column of any synced row (admin tools); the server checks the role's rights.
    pub fn update_row(&mut self, table: &str, id: &str, column: String, value: FieldValue) -> Result<()> {
        self.settle();
        let key = ui::record_key(self.replica(), table, id)?;
        self.engine.replica_mut().update(table, &key, &Fields(vec![(column, value.into())]))?;
        self.wrote();
        Ok(())
    }

    /// Inserts a row into any synced table (admin tools); the server checks the role's rights.
    pub fn insert_row(&mut self, table: &str, values: Vec<ColumnValue>) -> Result<()> {
        self.settle();
        let row = Fields(values.into_iter().map(|c| (c.column, c.value.into())).collect());
        self.engine.replica_mut().insert(table, &row)?;
        self.wrote();
        Ok(())
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<Vec<ConflictView>> {
        ui::conflicts(self.replica())
    }

    /// Settles a conflict.
    pub fn resolve(&mut self, conflict_id: i64, choice: ConflictChoice) -> Result<()> {
        self.settle();
        ui::resolve(self.engine.replica_mut(), conflict_id, choice)?;
        self.wrote();
        Ok(())
    }

    /// Writes the server refused, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedView>> {
        ui::rejected(self.replica())
    }

    /// Forgets a rejected write once the user has seen it.
    pub fn dismiss_rejected(&mut self, mutation_id: &str) -> Result<()> {
        self.settle();
        self.engine.replica_mut().dismiss_rejected(mutation_id)?;
        self.wrote();
        Ok(())
    }

    /// Writes a refused change again (checked here first) and forgets the refused one.
    pub fn retry_rejected(&mut self, mutation_id: &str) -> Result<()> {
        self.settle();
        ui::retry_rejected(self.engine.replica_mut(), mutation_id)?;
        self.wrote();
        Ok(())
    }

    /// The form of a new record of `object_type`, from the layout for this user's role.
    pub fn new_record(&self, object_type: &str) -> Result<DetailViewModel> {
        ui::new_record(self.replica().connection(), self.replica().schema(), object_type, &self.role)
    }

    /// Creates a record from what the user typed (key made on the device); returns its id.
    pub fn create(&mut self, object_type: &str, inputs: &[FieldInput]) -> Result<String> {
        self.settle();
        let id = ui::create(self.engine.replica_mut(), object_type, inputs, &self.role)?;
        self.wrote();
        Ok(id)
    }

    /// Deletes a record (offline too; sent when possible).
    pub fn delete(&mut self, object_type: &str, id: &str) -> Result<()> {
        let key = self.key(object_type, id)?;
        self.settle();
        ui::delete(self.engine.replica_mut(), object_type, &key)?;
        self.wrote();
        Ok(())
    }

    /// The records a reference field may point to whose search fields contain `search`.
    pub fn reference_options(
        &self,
        object_type: &str,
        field: &str,
        search: &str,
        limit: u32,
    ) -> Result<Vec<ReferenceOption>> {
        let r = self.replica();
        ui::reference_options(r.connection(), r.schema(), object_type, field, search, limit)
    }

    /// Line items typed as rows of texts, as the JSON an edit of the field takes.
    pub fn line_items_text(&self, object_type: &str, field: &str, rows: &[Vec<String>]) -> Result<String> {
        let r = self.replica();
        ui::line_items_text(r.connection(), r.schema(), object_type, field, rows)
    }

    /// Asks the server for a record's history (it arrives as [`ClientEvent::History`]); nothing is
    /// sent while not live.
    pub fn request_history(&mut self, object_type: &str, id: &str) -> Result<()> {
        let table = ui::table_of(self.replica(), object_type)?;
        self.feed(Event::RequestHistory { table, id: id.to_owned() });
        Ok(())
    }

    /// Sends an admin's customization request; the answer arrives as [`ClientEvent::Customized`].
    pub fn customize(&mut self, id: &str, request: sqlite_ext::protocol::CustomizeRequest) {
        self.feed(Event::Customize { id: id.to_owned(), request });
    }

    /// The tenant's object types and layouts as the device holds them: the Customize mode's draft.
    pub fn customization(&self) -> Result<ui::customize::Customization> {
        ui::customize::read(self.replica().connection())
    }

    /// What publishing `draft` would do, checked on the device (the server runs the same check).
    pub fn plan_customization(&self, draft: &ui::customize::Customization) -> Result<ui::customize::Plan> {
        let r = self.replica();
        let route: Vec<String> = ui::identity(r.connection())?.route.into_keys().collect();
        ui::customize::plan(r.connection(), r.schema(), &route, draft)
    }

    /// The writes waiting for the server, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingView>> {
        ui::pending(self.replica())
    }
}

/// The role claim of a JWT (decoded, not verified: the server verifies; the client only needs to know
/// which layout to draw). `None` for anything that is not a JWT with a role.
fn role_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["role"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A token whose role is admin (the driver only reads the role; the server would verify it).
    fn admin_token() -> String {
        format!("h.{}.s", URL_SAFE_NO_PAD.encode(r#"{"role":"admin"}"#))
    }

    fn driver() -> Driver {
        let replica = Replica::open(":memory:", sqlite_ext::Schema::demo()).unwrap();
        Driver::new(replica, admin_token()).unwrap()
    }

    /// A fresh directory of this test's own; returns it and the replica file's path in it.
    fn scratch(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("moat-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replica.db");
        (dir, path)
    }

    fn statuses(effects: &[Effect]) -> Vec<sqlite_ext::Phase> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(ClientEvent::Status { status }) => Some(status.phase),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_frame_the_engine_cannot_use_is_reported_and_the_session_starts_again() {
        let mut d = driver();
        assert_eq!(d.run()[0], Effect::Connect);
        d.feed(Event::Connected);
        assert!(matches!(d.run().as_slice(), [Effect::Send(_)]), "the hello");
        d.feed(Event::Frame("not json".into()));
        let out = d.run();
        assert!(
            matches!(out.as_slice(), [Effect::Notify(ClientEvent::Error { .. }), Effect::Close]),
            "reported, not dropped: {out:?}"
        );
        d.feed(Event::Disconnected(None));
        let out = d.run();
        // The first retry waits half to all of the first backoff (500 ms), spread by client.
        assert!(out.iter().any(|e| matches!(e, Effect::SetTimer(250..=500))), "{out:?}");
        assert_eq!(statuses(&out), [sqlite_ext::Phase::Offline]);
    }

    #[test]
    fn each_input_reports_its_status_even_when_queued_together() {
        let mut d = driver();
        d.run();
        d.feed(Event::GoOffline);
        d.feed(Event::GoOnline);
        use sqlite_ext::Phase::{Connecting, Offline};
        assert_eq!(statuses(&d.run()), [Offline, Connecting], "both steps show");
    }

    #[test]
    fn the_users_choice_to_work_offline_outlives_the_app_and_the_networks_does_not() {
        use sqlite_ext::Phase::{Connecting, Offline};
        let (dir, path) = scratch("held");
        let token = admin_token();
        let open =
            || Driver::new(Replica::open(&path, sqlite_ext::Schema::demo()).unwrap(), token.clone()).unwrap();
        let connects = |out: &[Effect]| out.iter().filter(|e| **e == Effect::Connect).count();
        let label = |d: &Driver| d.status().unwrap().label;

        // The user works offline and the app closes: it opens offline, and says it is the user's choice.
        let mut d = open();
        assert_eq!(connects(&d.run()), 1);
        d.feed(Event::GoOffline);
        d.run();
        drop(d);
        let mut d = open();
        let out = d.run();
        assert_eq!(connects(&out), 0, "no connection tried: {out:?}");
        assert_eq!((d.status().unwrap().phase, label(&d).as_str()), (Offline, "Working offline"));
        // The network coming back does not override the user; the user's switch does, and is forgotten.
        d.feed(Event::Network(true));
        assert_eq!(connects(&d.run()), 0);
        d.feed(Event::GoOnline);
        assert_eq!(statuses(&d.run()), [Connecting]);
        drop(d);
        let mut d = open();
        assert_eq!(connects(&d.run()), 1, "online again after a restart");

        // The network going away is not remembered: a restart with it back connects; while it is away,
        // no reconnection is planned, and its return connects at once.
        d.feed(Event::Network(false));
        let out = d.run();
        assert_eq!((statuses(&out), label(&d)), (vec![Offline], "Offline".to_owned()));
        d.feed(Event::Disconnected(None));
        let out = d.run();
        assert!(!out.iter().any(|e| matches!(e, Effect::SetTimer(_))), "no retry without a network: {out:?}");
        d.feed(Event::Network(true));
        assert_eq!(connects(&d.run()), 1);
        drop(d);
        let mut d = open();
        assert_eq!(connects(&d.run()), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_customize_request_made_while_reconnecting_is_sent_after_the_hello_and_refused_when_held_offline() {
        use sqlite_ext::protocol::{CustomizeAnswer, CustomizeRequest};
        let mut d = driver();
        assert_eq!(d.run()[0], Effect::Connect);
        d.customize("c-1", CustomizeRequest::Versions {});
        assert!(
            !d.run().iter().any(|e| matches!(e, Effect::Send(_))),
            "not sent before the transport is open"
        );
        d.feed(Event::Connected);
        let sent: Vec<String> = d
            .run()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 2, "the hello, then the request: {sent:?}");
        assert!(sent[0].contains("\"hello\"") && sent[1].contains("\"customize\""), "{sent:?}");
        d.feed(Event::GoOffline);
        d.run();
        d.customize("c-2", CustomizeRequest::Versions {});
        let out = d.run();
        assert!(
            out.iter().any(|e| matches!(e, Effect::Notify(ClientEvent::Customized { id, answer: CustomizeAnswer::Refused { code, .. } }) if id == "c-2" && code == "offline")),
            "{out:?}"
        );
    }

    /// Connects, is welcomed as alice (admin of company-a) and queues the start of a snapshot of
    /// `rows` rows.
    fn begin_snapshot(d: &mut Driver, rows: u64) {
        d.run();
        d.feed(Event::Connected);
        d.run();
        d.feed(Event::Frame(
            r#"{"type":"welcome","protocol":1,"user":"alice","tenant":"company-a","role":"admin","channels":["company-a/admin"],"max_inflight_pushes":16}"#.into(),
        ));
        d.feed(Event::Frame(format!(
            r#"{{"type":"snapshot_begin","channel":"company-a/admin","rows":{rows}}}"#
        )));
    }

    /// A job's insert, as a snapshot chunk carries it.
    fn job_insert(id: &str) -> String {
        format!(
            r#"{{"table":"jobs","op":"insert","pk":{{"id":"{id}"}},"cols":{{"tenant_id":{{"new":"company-a"}},"title":{{"new":"Fix {id}"}},"status":{{"new":"open"}},"price_cents":{{"new":100}},"notes":{{"new":null}},"internal_notes":{{"new":null}},"line_items":{{"new":"[]"}},"assignee":{{"new":null}},"customer_id":{{"new":null}},"scheduled_date":{{"new":null}}}}}}"#
        )
    }

    fn chunk(ids: &[&str], done: u64) -> String {
        let changes: Vec<String> = ids.iter().map(|id| job_insert(id)).collect();
        format!(
            r#"{{"type":"snapshot","channel":"company-a/admin","rows_done":{done},"rows":3,"diff":{{"changes":[{}]}}}}"#,
            changes.join(",")
        )
    }

    #[test]
    fn a_first_sync_shows_rows_as_they_arrive_and_a_write_meanwhile_is_durable_and_kept() {
        let (dir, path) = scratch("first-sync");
        let replica = Replica::open(&path, sqlite_ext::Schema::demo()).unwrap();
        let token = admin_token();
        let mut d = Driver::new(replica, token).unwrap();
        // What another process would find in the file: only what was committed.
        let other = rusqlite::Connection::open(&path).unwrap();
        let committed = |sql: &str| -> i64 { other.query_row(sql, [], |r| r.get(0)).unwrap() };

        begin_snapshot(&mut d, 3);
        d.feed(Event::Frame(chunk(&["job-1", "job-2"], 2)));
        let out = d.run();
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Notify(ClientEvent::Tables { tables }) if tables == &["jobs"])),
            "the app is told of the first rows before the snapshot ends: {out:?}"
        );
        let rows: i64 =
            d.replica().connection().query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "a first sync writes its rows into the projection as they come");
        assert_eq!(
            committed("SELECT count(*) FROM server_data_jobs"),
            0,
            "the chunks are held, not yet committed"
        );

        let synchronous = |d: &Driver| -> i64 {
            d.replica().connection().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
        };
        assert_eq!(synchronous(&d), 1, "a snapshot's batch commits without waiting for the disk");

        // The user edits a row they can already see: what was held is committed first, then the edit.
        d.update_row("jobs", "job-1", "status".into(), FieldValue::Text { value: "done".into() }).unwrap();
        assert_eq!(synchronous(&d), 2, "the user's write waits for the disk");
        assert_eq!(committed("SELECT count(*) FROM server_data_jobs"), 2);
        assert_eq!(
            committed("SELECT count(*) FROM overlays WHERE state = 'pending'"),
            1,
            "the edit is durable"
        );

        d.feed(Event::Frame(chunk(&["job-3"], 3)));
        d.feed(Event::Frame(r#"{"type":"snapshot_end","channel":"company-a/admin","version":7}"#.into()));
        d.feed(Event::Frame(r#"{"type":"synced","channel":"company-a/admin","version":7}"#.into()));
        d.run();
        assert_eq!(committed("SELECT count(*) FROM jobs"), 3);
        assert_eq!(
            committed("SELECT count(*) FROM jobs WHERE id = 'job-1' AND status = 'done'"),
            1,
            "mine is kept"
        );
        assert_eq!(
            committed("SELECT count(*) FROM server_data_jobs WHERE id = 'job-1' AND status = 'open'"),
            1,
            "the golden state is the server's"
        );
        assert_eq!(committed("SELECT value FROM moat_meta WHERE key = 'cursor:company-a/admin'"), 7);
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_first_sync_on_a_file_of_its_own_goes_through_a_rollback_journal_and_back_to_the_log() {
        let (dir, path) = scratch("journal");
        // As the web shell opens its file: no other connection, WAL, every commit waits for the disk.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL",
        )
        .unwrap();
        let mut replica = Replica::from_connection_latest(conn, sqlite_ext::Schema::demo()).unwrap();
        replica.journal_first_sync();
        let token = admin_token();
        let mut d = Driver::new(replica, token).unwrap();
        let pragma = |d: &Driver, name: &str| -> String {
            d.replica()
                .connection()
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    v => format!("{v:?}"),
                })
                .unwrap()
        };

        begin_snapshot(&mut d, 3);
        d.run();
        assert!(
            d.held.is_none(),
            "the run that began a first sync commits: the switch needs no transaction open"
        );
        assert_eq!(pragma(&d, "journal_mode"), "truncate", "switched after that commit");

        d.feed(Event::Frame(chunk(&["job-1", "job-2"], 2)));
        d.run();
        assert_eq!(pragma(&d, "journal_mode"), "truncate", "the chunks go through a rollback journal");
        assert!(d.held.is_some(), "and are held as before");
        assert_eq!(pragma(&d, "synchronous"), "2", "a batch on the journal still waits for the disk");

        // The user edits meanwhile: committed with what was held, on the journal.
        d.update_row("jobs", "job-1", "status".into(), FieldValue::Text { value: "done".into() }).unwrap();
        assert!(d.held.is_none());
        assert_eq!(pragma(&d, "journal_mode"), "truncate");

        d.feed(Event::Frame(chunk(&["job-3"], 3)));
        d.feed(Event::Frame(r#"{"type":"snapshot_end","channel":"company-a/admin","version":7}"#.into()));
        d.feed(Event::Frame(r#"{"type":"synced","channel":"company-a/admin","version":7}"#.into()));
        d.run();
        assert_eq!(pragma(&d, "journal_mode"), "wal", "back to the log once the first sync is whole");
        drop(d);

        // What the file holds for the next start.
        let other = rusqlite::Connection::open(&path).unwrap();
        let committed = |sql: &str| -> i64 { other.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(committed("SELECT count(*) FROM jobs"), 3);
        assert_eq!(committed("SELECT count(*) FROM server_data_jobs"), 3);
        assert_eq!(committed("SELECT count(*) FROM jobs WHERE id = 'job-1' AND status = 'done'"), 1);
        assert_eq!(committed("SELECT count(*) FROM overlays WHERE state = 'pending'"), 1, "the edit is kept");
        let mode: String = other.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(other);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The tables a run's effects tell the app of.
    fn told(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(ClientEvent::Tables { tables }) => Some(tables.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_first_sync_tells_the_app_of_a_tables_first_rows_then_when_they_have_doubled() {
        let mut d = driver();
        begin_snapshot(&mut d, 100);
        d.feed(Event::Frame(chunk(&["job-1", "job-2"], 2)));
        assert_eq!(told(&d.run()), ["jobs"], "the first rows show at once");
        d.feed(Event::Frame(chunk(&["job-3"], 3)));
        assert!(told(&d.run()).is_empty(), "more rows of a table the app was told of wait");
        d.feed(Event::Frame(chunk(&["job-4"], 4)));
        assert_eq!(told(&d.run()), ["jobs"], "twice the rows told last");
        for (n, id) in (5..=7).zip(["job-5", "job-6", "job-7"]) {
            d.feed(Event::Frame(chunk(&[id], n)));
            assert!(told(&d.run()).is_empty(), "{n} rows");
        }
        d.feed(Event::Frame(chunk(&["job-8"], 8)));
        assert_eq!(told(&d.run()), ["jobs"]);
        d.feed(Event::Frame(r#"{"type":"snapshot_end","channel":"company-a/admin","version":7}"#.into()));
        d.feed(Event::Frame(r#"{"type":"synced","channel":"company-a/admin","version":7}"#.into()));
        assert!(told(&d.run()).contains(&"jobs".to_owned()), "the end tells the rest");
        let rows: i64 =
            d.replica().connection().query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 8);
    }

    #[test]
    fn a_search_index_is_filled_a_step_per_idle_turn_once_the_session_settles_and_goes_on_at_the_next_start()
    {
        let replica = Replica::open(":memory:", sqlite_ext::Schema::demo()).unwrap();
        replica
            .connection()
            .execute_batch(
                r#"INSERT INTO object_metadata (id, tenant_id, object_type, table_name, label, label_plural,
                       title_field, list_columns, search_fields, default_sort, fields)
                   VALUES ('a:jobs', 'company-a', 'jobs', 'jobs', 'Job', 'Jobs', 'title', '["title","status"]',
                       '["title","notes"]', '{"field":"title","dir":"asc"}',
                       '[{"name":"title","label":"Title","type":"text"},{"name":"notes","label":"Notes","type":"multiline"},
                         {"name":"status","label":"Status","type":"choice","options":[{"value":"open","label":"Open"}]}]');
                   WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000)
                   INSERT INTO jobs (id, tenant_id, title, status, price_cents, line_items)
                   SELECT 'job-' || i, 'company-a', 'Boiler ' || i, 'open', 100, '[]' FROM n;"#,
            )
            .unwrap();
        // What a first page needs: the default sort's index; the status filter's is left for later.
        ui::make_indexes(replica.connection(), replica.schema()).unwrap();
        let has_index = |d: &Driver, name: &str| -> bool {
            d.replica()
                .connection()
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
                    [name],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
                > 0
        };
        let pending = |d: &Driver| ui::search_fill_pending(d.replica().connection()).unwrap();
        let token = admin_token();
        let mut d = Driver::new(replica, token).unwrap();
        assert!(has_index(&d, "moat_ix_jobs_title_id") && !has_index(&d, "moat_ix_jobs_status"));
        let idle = |out: &[Effect]| out.iter().filter(|e| matches!(e, Effect::Idle(_))).count();
        assert_eq!(idle(&d.run()), 0, "not while the session opens: the app's first reads go first");
        d.feed(Event::GoOffline);
        assert_eq!(
            d.run().last(),
            Some(&Effect::Idle(SETTLE_MS)),
            "a fill left from before goes on, after a moment"
        );
        assert_eq!(idle(&d.run()), 0, "asked once until it comes");
        let mut steps = 1;
        loop {
            d.idle();
            if idle(&d.run()) == 0 {
                break;
            }
            assert!(pending(&d));
            steps += 1;
        }
        assert_eq!(steps, 5, "the status index, the tally, then 25,000 rows, {} a step", ui::FILL_ROWS);
        assert!(has_index(&d, "moat_ix_jobs_title_id") && has_index(&d, "moat_ix_jobs_status"));
        assert!(!pending(&d));
        let found: i64 = d
            .replica()
            .connection()
            .query_row(
                "SELECT count(*) FROM moat_fts_jobs WHERE moat_fts_jobs MATCH ?1",
                ["\"Boiler 299\""],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 11, "Boiler 299 and 2990 to 2999");
    }
}
