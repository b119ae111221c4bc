//! The native client: a [`MoatClient`] owns a replica file, a WebSocket to the server on its own
//! tokio runtime, and the core's sync engine; it reports changes through a [`MoatListener`].
//! Every exported method is a thin delegation to `sqlite-ext`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use sqlite_ext::ui::{self, ListQuery};
use sqlite_ext::{
    Event, Fields, Instruction, Phase, Replica, Resolution as CoreResolution, Schema, SyncEngine, Value,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::error::MoatError;

/// A value as the UI sees it.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum FieldValue {
    /// No value.
    Null,
    /// A whole number (currency fields hold minor units, e.g. cents).
    Integer {
        /// The number.
        value: i64,
    },
    /// A floating-point number.
    Real {
        /// The number.
        value: f64,
    },
    /// Text.
    Text {
        /// The text.
        value: String,
    },
}

impl From<Value> for FieldValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Null | Value::Blob(_) => FieldValue::Null,
            Value::Integer(value) => FieldValue::Integer { value },
            Value::Real(value) => FieldValue::Real { value },
            Value::Text(value) => FieldValue::Text { value },
        }
    }
}

impl From<FieldValue> for Value {
    fn from(v: FieldValue) -> Self {
        match v {
            FieldValue::Null => Value::Null,
            FieldValue::Integer { value } => Value::Integer(value),
            FieldValue::Real { value } => Value::Real(value),
            FieldValue::Text { value } => Value::Text(value),
        }
    }
}

/// What the UI shows about sync.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncStatus {
    /// `offline`, `connecting`, `syncing`, `live` or `unauthorized`.
    pub phase: String,
    /// Snapshot rows received (while syncing).
    pub rows_done: u64,
    /// Snapshot rows in all (while syncing).
    pub rows: u64,
    /// Local writes waiting for the server.
    pub pending: i64,
    /// Conflicts waiting for the user.
    pub conflicts: i64,
    /// Writes the server refused.
    pub rejected: i64,
    /// When the device was last in step with the server (Unix milliseconds).
    pub last_sync_ms: Option<i64>,
}

impl From<sqlite_ext::Status> for SyncStatus {
    fn from(s: sqlite_ext::Status) -> Self {
        let (phase, rows_done, rows) = match s.phase {
            Phase::Offline => ("offline", 0, 0),
            Phase::Connecting => ("connecting", 0, 0),
            Phase::Syncing { rows_done, rows } => ("syncing", rows_done, rows),
            Phase::Live => ("live", 0, 0),
            Phase::Unauthorized => ("unauthorized", 0, 0),
        };
        SyncStatus {
            phase: phase.into(),
            rows_done,
            rows,
            pending: s.pending,
            conflicts: s.conflicts,
            rejected: s.rejected,
            last_sync_ms: s.last_sync_ms,
        }
    }
}

/// An entry of the object-types list.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ObjectTypeView {
    /// API name.
    pub object_type: String,
    /// Singular label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// Icon name.
    pub icon: Option<String>,
    /// Records on the device.
    pub count: i64,
}

/// A shown value.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CellView {
    /// The field.
    pub field: String,
    /// The stored value.
    pub value: FieldValue,
    /// The text to show.
    pub display: String,
}

/// A list column.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ColumnView {
    /// The field.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its type.
    pub kind: String,
}

/// A list row.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ListRowView {
    /// The record's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// One cell per column.
    pub cells: Vec<CellView>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ListViewModel {
    /// The title.
    pub title: String,
    /// The columns.
    pub columns: Vec<ColumnView>,
    /// The rows.
    pub rows: Vec<ListRowView>,
    /// Matching rows in all.
    pub total: i64,
}

/// A choice of a choice field.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChoiceView {
    /// Stored value.
    pub value: String,
    /// Label.
    pub label: String,
    /// Colour.
    pub color: Option<String>,
}

/// A field of a detail page.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FieldView {
    /// The field.
    pub field: String,
    /// The label.
    pub label: String,
    /// The widget to draw.
    pub widget: String,
    /// The value and its display text.
    pub cell: CellView,
    /// Not editable here.
    pub read_only: bool,
    /// A value is required.
    pub required: bool,
    /// Choices, for a choice widget.
    pub options: Vec<ChoiceView>,
}

/// A section of a detail page.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionView {
    /// Id.
    pub id: String,
    /// Label.
    pub label: String,
    /// Layout columns.
    pub columns: u32,
    /// Fields in order.
    pub fields: Vec<FieldView>,
}

/// A record's detail page.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DetailViewModel {
    /// The object type's label.
    pub object_label: String,
    /// The record's title.
    pub title: String,
    /// Sections in order.
    pub sections: Vec<SectionView>,
}

/// One conflicting column.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictColumnView {
    /// The column.
    pub column: String,
    /// The value both sides started from.
    pub base: Option<FieldValue>,
    /// The server's value.
    pub theirs: Option<FieldValue>,
    /// This device's value.
    pub mine: FieldValue,
}

/// A conflict waiting for the user.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictView {
    /// Id to resolve it by.
    pub id: i64,
    /// `field`, `row_deleted` or `row_exists`.
    pub kind: String,
    /// The table.
    pub table: String,
    /// The record's id.
    pub record_id: String,
    /// The conflicting columns.
    pub columns: Vec<ConflictColumnView>,
}

/// How the user settles a conflict.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ConflictChoice {
    /// Write my values over the server's.
    KeepMine,
    /// Keep the server's values.
    TakeTheirs,
    /// Write this value to this column instead.
    Edit {
        /// The column.
        column: String,
        /// The value.
        value: FieldValue,
    },
}

/// What the client tells the app, from its sync thread.
#[uniffi::export(callback_interface)]
pub trait MoatListener: Send + Sync {
    /// Rows of these tables changed (a server diff, an ack, a snapshot): re-read what is shown.
    fn on_tables_changed(&self, tables: Vec<String>);
    /// The sync status changed.
    fn on_status(&self, status: SyncStatus);
    /// The server could not merge some of this device's edits: show the alert.
    fn on_conflicts(&self, conflicts: Vec<ConflictView>);
    /// The server refused a write; it stays listed with the reason.
    fn on_rejected(&self, mutation_id: String, reason: String);
}

enum Command {
    LocalWrite,
    Offline,
    Online,
    Shutdown,
}

/// One device's Moat client.
#[derive(uniffi::Object)]
pub struct MoatClient {
    engine: Arc<Mutex<SyncEngine>>,
    role: String,
    commands: mpsc::UnboundedSender<Command>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for MoatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoatClient").field("role", &self.role).finish_non_exhaustive()
    }
}

fn role_of(token: &str) -> Result<String, MoatError> {
    let bad = || MoatError::Invalid { message: "the token is not a JWT with a role".into() };
    let payload = token.split('.').nth(1).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    claims["role"].as_str().map(str::to_owned).ok_or_else(bad)
}

fn conflict_view(c: sqlite_ext::StoredConflict) -> ConflictView {
    let record_id = c.conflict.pk.0.first().map(|(_, v)| crate_plain(v)).unwrap_or_default();
    ConflictView {
        id: c.id,
        kind: serde_json::to_value(c.conflict.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        table: c.conflict.table,
        record_id,
        columns: c
            .conflict
            .columns
            .into_iter()
            .map(|col| ConflictColumnView {
                column: col.column,
                base: col.base.map(Into::into),
                theirs: col.theirs.map(Into::into),
                mine: col.mine.into(),
            })
            .collect(),
    }
}

fn crate_plain(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn key(id: &str) -> Fields<Value> {
    Fields(vec![("id".into(), Value::from(id))])
}

fn cell(c: ui::Cell) -> CellView {
    CellView { field: c.field, value: c.value.into(), display: c.display }
}

#[uniffi::export]
impl MoatClient {
    /// Opens (creating if needed) the replica at `db_path` and starts syncing with the server at
    /// `url` (`ws://host:port/sync`) as the bearer of `token`. Works offline from the first call:
    /// reads and writes go to the local database, and reach the server when it can be reached.
    #[uniffi::constructor]
    pub fn new(
        db_path: String,
        url: String,
        token: String,
        listener: Box<dyn MoatListener>,
    ) -> Result<Arc<Self>, MoatError> {
        let role = role_of(&token)?;
        let replica = Replica::open(&db_path, Schema::demo())?;
        let engine = Arc::new(Mutex::new(SyncEngine::new(replica, token)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("moat-sync")
            .enable_all()
            .build()
            .map_err(|e| MoatError::Storage { message: format!("cannot start the sync thread: {e}") })?;
        let (commands, rx) = mpsc::unbounded_channel();
        runtime.spawn(drive(Arc::clone(&engine), url, Arc::from(listener), rx));
        Ok(Arc::new(MoatClient { engine, role, commands, runtime: Mutex::new(Some(runtime)) }))
    }

    /// The sync status now.
    pub fn status(&self) -> Result<SyncStatus, MoatError> {
        Ok(self.lock().status()?.into())
    }

    /// The object types, from the synced `object_metadata`.
    pub fn object_types(&self) -> Result<Vec<ObjectTypeView>, MoatError> {
        let engine = self.lock();
        let r = engine.replica();
        Ok(ui::object_types(r.connection(), r.schema())?
            .into_iter()
            .map(|t| ObjectTypeView {
                object_type: t.object_type,
                label: t.label,
                label_plural: t.label_plural,
                icon: t.icon,
                count: t.count,
            })
            .collect())
    }

    /// A page of `object_type`'s records, optionally filtered by `search` and sorted by
    /// `sort_field` (the metadata's default sort when `None`).
    pub fn list_view(
        &self,
        object_type: String,
        search: Option<String>,
        sort_field: Option<String>,
        ascending: bool,
        offset: i64,
        limit: i64,
    ) -> Result<ListViewModel, MoatError> {
        let engine = self.lock();
        let r = engine.replica();
        let sort = sort_field.map(|f| (f, ascending));
        let v = ui::list_view(
            r.connection(),
            r.schema(),
            &object_type,
            &ListQuery { search, sort, offset, limit },
        )?;
        Ok(ListViewModel {
            title: v.title,
            columns: v
                .columns
                .into_iter()
                .map(|c| ColumnView { field: c.field, label: c.label, kind: c.kind })
                .collect(),
            rows: v
                .rows
                .into_iter()
                .map(|row| ListRowView {
                    id: row.pk.0.first().map(|(_, v)| crate_plain(v)).unwrap_or_default(),
                    title: row.title,
                    cells: row.cells.into_iter().map(cell).collect(),
                })
                .collect(),
            total: v.total,
        })
    }

    /// The detail page of record `id`, drawn from the synced `layout_definition` for this user's role.
    pub fn detail_view(&self, object_type: String, id: String) -> Result<DetailViewModel, MoatError> {
        let engine = self.lock();
        let r = engine.replica();
        let v = ui::detail_view(r.connection(), r.schema(), &object_type, &key(&id), &self.role)?;
        Ok(DetailViewModel {
            object_label: v.object_label,
            title: v.title,
            sections: v
                .sections
                .into_iter()
                .map(|s| SectionView {
                    id: s.id,
                    label: s.label,
                    columns: s.columns,
                    fields: s
                        .fields
                        .into_iter()
                        .map(|f| FieldView {
                            field: f.field,
                            label: f.label,
                            widget: f.widget,
                            cell: cell(f.cell),
                            read_only: f.read_only,
                            required: f.required,
                            options: f
                                .options
                                .into_iter()
                                .map(|o| ChoiceView { value: o.value, label: o.label, color: o.color })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// Edits one field of a record, checked against the metadata and this role's layout; the edit
    /// shows at once and is sent when possible.
    pub fn edit(
        &self,
        object_type: String,
        id: String,
        field: String,
        value: FieldValue,
    ) -> Result<(), MoatError> {
        let values = Fields(vec![(field, value.into())]);
        let role = self.role.clone();
        ui::edit(self.lock().replica_mut(), &object_type, &key(&id), &values, &role)?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Writes one column of any synced row (for admin tools such as editing metadata); the server
    /// still checks the role's rights.
    pub fn update_row(
        &self,
        table: String,
        id: String,
        column: String,
        value: FieldValue,
    ) -> Result<(), MoatError> {
        self.lock().replica_mut().update(&table, &key(&id), &Fields(vec![(column, value.into())]))?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<Vec<ConflictView>, MoatError> {
        Ok(self.lock().replica().conflicts()?.into_iter().map(conflict_view).collect())
    }

    /// Settles a conflict: keep mine or edit write like any edit; take theirs sends nothing.
    pub fn resolve(&self, conflict_id: i64, choice: ConflictChoice) -> Result<(), MoatError> {
        let resolution = match choice {
            ConflictChoice::KeepMine => CoreResolution::KeepMine,
            ConflictChoice::TakeTheirs => CoreResolution::TakeTheirs,
            ConflictChoice::Edit { column, value } => {
                CoreResolution::Edit(Fields(vec![(column, value.into())]))
            }
        };
        self.lock().replica_mut().resolve(conflict_id, resolution)?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Goes offline (as when the network drops); local reads and writes keep working.
    pub fn go_offline(&self) {
        self.wake(Command::Offline);
    }

    /// Comes back online: reconnects, catches up and sends what is pending.
    pub fn go_online(&self) {
        self.wake(Command::Online);
    }

    /// Stops syncing and closes the database (the app is closing).
    pub fn close(&self) {
        self.wake(Command::Shutdown);
        if let Some(rt) = self.runtime.lock().expect("runtime lock").take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl MoatClient {
    fn lock(&self) -> MutexGuard<'_, SyncEngine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, c: Command) {
        let _ = self.commands.send(c);
    }
}

impl Drop for MoatClient {
    fn drop(&mut self) {
        self.close();
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Owned {
    Start,
    Connected,
    Frame(String),
    Disconnected(Option<u16>),
    Timer,
    LocalWrite,
}

/// The sync loop: moves frames between the socket and the engine and carries out its instructions.
async fn drive(
    engine: Arc<Mutex<SyncEngine>>,
    url: String,
    listener: Arc<dyn MoatListener>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut ws: Option<Ws> = None;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut offline = false;
    let mut events: VecDeque<Owned> = VecDeque::from([Owned::Start]);
    loop {
        while let Some(ev) = events.pop_front() {
            let instructions = {
                let mut e = engine.lock().unwrap_or_else(|e| e.into_inner());
                let event = match &ev {
                    Owned::Start => Event::Start,
                    Owned::Connected => Event::Connected,
                    Owned::Frame(t) => Event::Frame(t),
                    Owned::Disconnected(c) => Event::Disconnected(*c),
                    Owned::Timer => Event::Timer,
                    Owned::LocalWrite => Event::LocalWrite,
                };
                // A frame the engine cannot use is dropped; the session goes on.
                e.handle(event).unwrap_or_default()
            };
            for i in instructions {
                match i {
                    Instruction::Connect if offline => events.push_back(Owned::Disconnected(None)),
                    Instruction::Connect => match tokio_tungstenite::connect_async(url.as_str()).await {
                        Ok((s, _)) => {
                            ws = Some(s);
                            events.push_back(Owned::Connected);
                        }
                        Err(_) => events.push_back(Owned::Disconnected(None)),
                    },
                    Instruction::Send(text) => {
                        let sent = match ws.as_mut() {
                            Some(s) => s.send(Message::text(text)).await.is_ok(),
                            None => false,
                        };
                        if !sent && ws.take().is_some() {
                            events.push_back(Owned::Disconnected(None));
                        }
                    }
                    Instruction::Close => {
                        if ws.take().is_some() {
                            events.push_back(Owned::Disconnected(None));
                        }
                    }
                    Instruction::SetTimer(ms) => {
                        timer = Some(Box::pin(tokio::time::sleep(Duration::from_millis(ms))))
                    }
                    Instruction::TablesChanged(t) => listener.on_tables_changed(t),
                    Instruction::ConflictsRaised(_) => {
                        let all = engine
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .replica()
                            .conflicts()
                            .unwrap_or_default();
                        listener.on_conflicts(all.into_iter().map(conflict_view).collect());
                    }
                    Instruction::Rejected { mutation_id, reason } => {
                        listener.on_rejected(mutation_id, reason)
                    }
                    Instruction::Status(s) => listener.on_status(s.into()),
                }
            }
        }
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::LocalWrite) => events.push_back(Owned::LocalWrite),
                Some(Command::Offline) => {
                    offline = true;
                    if ws.take().is_some() {
                        events.push_back(Owned::Disconnected(None));
                    }
                }
                Some(Command::Online) => {
                    offline = false;
                    timer = None;
                    events.push_back(Owned::Timer);
                }
                Some(Command::Shutdown) | None => return,
            },
            msg = async { match ws.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => match msg {
                Some(Ok(Message::Text(t))) => events.push_back(Owned::Frame(t.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    ws = None;
                    events.push_back(Owned::Disconnected(frame.map(|f| f.code.into())));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    ws = None;
                    events.push_back(Owned::Disconnected(None));
                }
            },
            _ = async { match timer.as_mut() { Some(t) => t.await, None => std::future::pending().await } } => {
                timer = None;
                events.push_back(Owned::Timer);
            }
        }
    }
}
