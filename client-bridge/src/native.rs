//! The native client: a [`MoatClient`] owns a replica file, a WebSocket to the server on its own
//! tokio runtime, and the core's sync engine; it reports changes through a [`MoatListener`].
//! Every exported method is a thin delegation to `sqlite-ext`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sqlite_ext::{Instruction, Replica, Schema, SyncEngine};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::error::MoatError;
use crate::views::{
    self, ColumnValue, ConflictChoice, ConflictView, DetailViewModel, FieldValue, ListRequest, ListViewModel,
    ObjectTypeView, Owned, RejectedView, SyncStatus,
};

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
        let role = views::role_of(&token)
            .ok_or_else(|| MoatError::Invalid { message: "the token is not a JWT with a role".into() })?;
        let replica = Replica::open_latest(&db_path, Schema::demo())?;
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
        Ok(views::status(&self.lock())?)
    }

    /// The object types, from the synced `object_metadata`.
    pub fn object_types(&self) -> Result<Vec<ObjectTypeView>, MoatError> {
        Ok(views::object_types(&self.lock())?)
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
        let q = ListRequest { object_type, search, sort_field, ascending, offset, limit };
        Ok(views::list_view(&self.lock(), q)?)
    }

    /// The detail page of record `id`, drawn from the synced `layout_definition` for this user's role.
    pub fn detail_view(&self, object_type: String, id: String) -> Result<DetailViewModel, MoatError> {
        Ok(views::detail_view(&self.lock(), &self.role, &object_type, &id)?)
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
        views::edit(&mut self.lock(), &self.role, &object_type, &id, field, value)?;
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
        views::update_row(&mut self.lock(), &table, &id, column, value)?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Inserts a row into any synced table (admin tools: a new object type is an `object_metadata`
    /// row); the server still checks the role's rights.
    pub fn insert_row(&self, table: String, values: Vec<ColumnValue>) -> Result<(), MoatError> {
        views::insert_row(&mut self.lock(), &table, values)?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<Vec<ConflictView>, MoatError> {
        Ok(views::conflicts(&self.lock())?)
    }

    /// Settles a conflict: keep mine or edit write like any edit; take theirs sends nothing.
    pub fn resolve(&self, conflict_id: i64, choice: ConflictChoice) -> Result<(), MoatError> {
        views::resolve(&mut self.lock(), conflict_id, choice)?;
        self.wake(Command::LocalWrite);
        Ok(())
    }

    /// Writes the server refused, with its reasons, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedView>, MoatError> {
        Ok(views::rejected(&self.lock())?)
    }

    /// Forgets a rejected write once the user has seen it.
    pub fn dismiss_rejected(&self, mutation_id: String) -> Result<(), MoatError> {
        Ok(views::dismiss_rejected(&mut self.lock(), &mutation_id)?)
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
                views::handle(&mut e, &ev)
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
                        let all = views::conflicts(&engine.lock().unwrap_or_else(|e| e.into_inner()))
                            .unwrap_or_default();
                        listener.on_conflicts(all);
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
