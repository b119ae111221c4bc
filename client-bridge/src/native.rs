//! The native client: a [`MoatClient`] owns a replica file, a WebSocket to the server on its own
//! tokio runtime, and the [`Driver`]; it reports changes through a [`MoatListener`]. Every exported
//! method is a one-line delegation to the driver; the sync loop only moves bytes and carries out the
//! driver's effects.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use sqlite_ext::protocol::DeviceRecord;
use sqlite_ext::ui::{
    ColumnValue, ConflictChoice, ConflictView, DetailViewModel, FieldInput, HistoryEntryView, ListQuery,
    ListViewModel, ObjectTypeView, PendingView, ReferenceOption, RejectedView,
};
use sqlite_ext::{Event, FieldValue, Replica, Schema, Status};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::driver::{ClientEvent, Driver, Effect};
use crate::error::MoatError;

/// What the client tells the app, from its sync thread.
#[uniffi::export(callback_interface)]
pub trait MoatListener: Send + Sync {
    /// Rows of these tables changed (a server diff, an ack, a snapshot): re-read what is shown.
    fn on_tables_changed(&self, tables: Vec<String>);
    /// The sync status changed.
    fn on_status(&self, status: Status);
    /// The server could not merge some of this device's edits: every conflict that waits.
    fn on_conflicts(&self, conflicts: Vec<ConflictView>);
    /// The server refused a write; it stays listed with the reason.
    fn on_rejected(&self, mutation_id: String, reason: String);
    /// Something failed that the user should know of; sync starts again from a fresh session.
    fn on_error(&self, message: String);
    /// The tenant's devices (Sync health), as asked for with `request_fleet` (admins only).
    fn on_fleet(&self, devices: Vec<DeviceRecord>);
    /// A record's history, as asked for with `request_history`: who changed it, when, which fields.
    fn on_history(&self, object_type: String, id: String, entries: Vec<HistoryEntryView>);
}

/// One device's Moat client.
#[derive(uniffi::Object)]
pub struct MoatClient {
    driver: Arc<Mutex<Driver>>,
    wake: mpsc::UnboundedSender<bool>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for MoatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoatClient").finish_non_exhaustive()
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
        // A new file starts with no tables: the server's welcome brings the schema.
        let replica = Replica::open_latest(&db_path, Schema::empty())?;
        let mut driver = Driver::new(replica, token)?;
        driver.set_app(env!("CARGO_PKG_VERSION"), std::env::consts::OS);
        let driver = Arc::new(Mutex::new(driver));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("moat-sync")
            .enable_all()
            .build()
            .map_err(|e| MoatError::Storage { message: format!("cannot start the sync thread: {e}") })?;
        let (wake, rx) = mpsc::unbounded_channel();
        runtime.spawn(sync_loop(Arc::clone(&driver), url, Arc::from(listener), rx));
        Ok(Arc::new(MoatClient { driver, wake, runtime: Mutex::new(Some(runtime)) }))
    }

    /// The sync status now.
    pub fn status(&self) -> Result<Status, MoatError> {
        Ok(self.lock().status()?)
    }

    /// The object types, from the synced `object_metadata`.
    pub fn object_types(&self) -> Result<Vec<ObjectTypeView>, MoatError> {
        Ok(self.lock().object_types()?)
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
        let q = ListQuery {
            object_type,
            search,
            sort_field,
            ascending: Some(ascending),
            offset: Some(offset),
            limit: Some(limit),
            mine: None,
            filters: None,
        };
        Ok(self.lock().list_view(&q)?)
    }

    /// A page of a list for a whole query: search, sort, paging, "assigned to me" and filters.
    pub fn query(&self, query: ListQuery) -> Result<ListViewModel, MoatError> {
        Ok(self.lock().list_view(&query)?)
    }

    /// The form of a new record of `object_type`, from the layout for this user's role (with the
    /// metadata's defaults; read-only what the role may not set).
    pub fn new_record(&self, object_type: String) -> Result<DetailViewModel, MoatError> {
        Ok(self.lock().new_record(&object_type)?)
    }

    /// Creates a record from what the user typed, each field read and checked as an edit is; the key
    /// is made on the device, so this works offline. Returns the new record's id.
    pub fn create(&self, object_type: String, inputs: Vec<FieldInput>) -> Result<String, MoatError> {
        let id = self.lock().create(&object_type, &inputs)?;
        self.wake();
        Ok(id)
    }

    /// Deletes a record (offline too; sent when possible).
    pub fn delete(&self, object_type: String, id: String) -> Result<(), MoatError> {
        self.call(|d| d.delete(&object_type, &id))
    }

    /// The records reference field `field` may point to whose search fields contain `search` (all
    /// when empty), at most `limit`: the reference picker, searched on the device.
    pub fn reference_options(
        &self,
        object_type: String,
        field: String,
        search: String,
        limit: u32,
    ) -> Result<Vec<ReferenceOption>, MoatError> {
        Ok(self.lock().reference_options(&object_type, &field, &search, limit)?)
    }

    /// Line items typed as rows of texts (one per item column, a unit price in major units) as the
    /// text an edit of the field takes (`edit_text`); the error names the item and the column.
    pub fn line_items_text(
        &self,
        object_type: String,
        field: String,
        rows: Vec<Vec<String>>,
    ) -> Result<String, MoatError> {
        Ok(self.lock().line_items_text(&object_type, &field, &rows)?)
    }

    /// Asks the server for a record's history (who changed it, when, which fields); it arrives through
    /// the listener's `on_history`. Nothing is sent while not live.
    pub fn request_history(&self, object_type: String, id: String) -> Result<(), MoatError> {
        self.call(|d| d.request_history(&object_type, &id))
    }

    /// The writes waiting for the server, oldest first (the pending-changes panel).
    pub fn pending(&self) -> Result<Vec<PendingView>, MoatError> {
        Ok(self.lock().pending()?)
    }

    /// The detail page of record `id`, drawn from the synced `layout_definition` for this user's role.
    pub fn detail_view(&self, object_type: String, id: String) -> Result<DetailViewModel, MoatError> {
        Ok(self.lock().detail_view(&object_type, &id)?)
    }

    /// Edits one field of a record with a value, checked against the metadata and this role's
    /// layout; the edit shows at once and is sent when possible.
    pub fn edit(
        &self,
        object_type: String,
        id: String,
        field: String,
        value: FieldValue,
    ) -> Result<(), MoatError> {
        self.call(|d| d.edit(&object_type, &id, field, value))
    }

    /// Edits one field with what the user typed (`12.50` in a currency field with two decimals is
    /// 1250 cents): read, checked and written by the core, exactly as on the web. `started_from` is
    /// the field's value when the user began typing: if another edit replaced it meanwhile, nothing is
    /// overwritten and the conflict alert is raised (`on_conflicts`) instead.
    pub fn edit_text(
        &self,
        object_type: String,
        id: String,
        field: String,
        text: String,
        started_from: Option<FieldValue>,
    ) -> Result<(), MoatError> {
        self.call(|d| d.edit_text(&object_type, &id, &field, &text, started_from))
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
        self.call(|d| d.update_row(&table, &id, column, value))
    }

    /// Inserts a row into any synced table (admin tools: a new object type is an `object_metadata`
    /// row); the server still checks the role's rights.
    pub fn insert_row(&self, table: String, values: Vec<ColumnValue>) -> Result<(), MoatError> {
        self.call(|d| d.insert_row(&table, values))
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<Vec<ConflictView>, MoatError> {
        Ok(self.lock().conflicts()?)
    }

    /// Settles a conflict: keep mine or edit write like any edit; take theirs sends nothing.
    pub fn resolve(&self, conflict_id: i64, choice: ConflictChoice) -> Result<(), MoatError> {
        self.call(|d| d.resolve(conflict_id, choice))
    }

    /// Writes the server refused, with its reasons, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedView>, MoatError> {
        Ok(self.lock().rejected()?)
    }

    /// Forgets a rejected write once the user has seen it.
    pub fn dismiss_rejected(&self, mutation_id: String) -> Result<(), MoatError> {
        self.call(|d| d.dismiss_rejected(&mutation_id))
    }

    /// Writes a refused change again, once what refused it has changed (checked on the device first:
    /// a change still refused throws with the reason and stays listed), and forgets the refused one.
    pub fn retry_rejected(&self, mutation_id: String) -> Result<(), MoatError> {
        self.call(|d| d.retry_rejected(&mutation_id))
    }

    /// Names the app's version and platform in this device's reports to the tenant's admins (by
    /// default the OS and this library's version). Call right after `new`.
    pub fn set_app(&self, app_version: String, platform: String) {
        self.lock().set_app(&app_version, &platform);
    }

    /// Asks the server for the tenant's devices (Sync health; admins only: `Status.admin`). They
    /// arrive through the listener's `on_fleet`.
    pub fn request_fleet(&self) {
        self.lock().feed(Event::RequestFleet);
        self.wake();
    }

    /// Works offline (the user's choice): local reads and writes keep working, nothing is sent,
    /// and the replica remembers it, so that the app opens offline too, until `go_online`.
    pub fn go_offline(&self) {
        self.lock().feed(Event::GoOffline);
        self.wake();
    }

    /// Goes online (the user's choice): reconnects at once, catches up and sends what is pending.
    pub fn go_online(&self) {
        self.lock().feed(Event::GoOnline);
        self.wake();
    }

    /// The device's network went away (`false`) or came back (`true`), as the platform says (e.g.
    /// `NWPathMonitor`): no connection is tried while it is away; back, one is at once, unless the
    /// user works offline. Not remembered.
    pub fn network_changed(&self, online: bool) {
        self.lock().feed(Event::Network(online));
        self.wake();
    }

    /// Stops syncing and closes the database (the app is closing).
    pub fn close(&self) {
        let _ = self.wake.send(false);
        if let Some(rt) = self.runtime.lock().expect("runtime lock").take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl MoatClient {
    fn lock(&self) -> MutexGuard<'_, Driver> {
        lock(&self.driver)
    }

    /// Runs a call that changes the replica, then lets the sync loop carry out what follows.
    fn call(&self, f: impl FnOnce(&mut Driver) -> Result<(), sqlite_ext::Error>) -> Result<(), MoatError> {
        f(&mut self.lock())?;
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        let _ = self.wake.send(true);
    }
}

impl Drop for MoatClient {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock(driver: &Mutex<Driver>) -> MutexGuard<'_, Driver> {
    driver.lock().unwrap_or_else(|e| e.into_inner())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket to `url`: `wss://` (or `https://`) over TLS checked by the platform's
/// verifier (the system trust store; on Apple platforms Security.framework and the device's trust
/// settings, so a company CA installed on the device is trusted), `ws://` (or `http://`) in the clear.
async fn connect(url: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = match url.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some(("http", rest)) => format!("ws://{rest}"),
        _ => url.to_owned(),
    };
    let connector = match url.starts_with("wss://") {
        true => Some(tokio_tungstenite::Connector::Rustls(tls_config().map_err(|e| {
            tokio_tungstenite::tungstenite::Error::Tls(
                tokio_tungstenite::tungstenite::error::TlsError::Rustls(Box::new(e)),
            )
        })?)),
        false => None,
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await?;
    Ok(ws)
}

/// The TLS client configuration, made once per process (reading the trust store is not free).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(Arc::clone(c));
    }
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

/// The sync loop: moves frames between the socket and the driver and carries out its effects.
async fn sync_loop(
    driver: Arc<Mutex<Driver>>,
    url: String,
    listener: Arc<dyn MoatListener>,
    mut wake: mpsc::UnboundedReceiver<bool>,
) {
    let mut ws: Option<Ws> = None;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // The driver asked for an `Driver::idle` (background work, a step at a time), not before then.
    let mut idle: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        loop {
            let effects = lock(&driver).run();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                match effect {
                    Effect::Connect => {
                        let event = match connect(&url).await {
                            Ok(s) => {
                                ws = Some(s);
                                Event::Connected
                            }
                            Err(_) => Event::Disconnected(None),
                        };
                        lock(&driver).feed(event);
                    }
                    Effect::Send(text) => {
                        let sent = match ws.as_mut() {
                            Some(s) => s.send(Message::text(text)).await.is_ok(),
                            None => false,
                        };
                        if !sent && ws.take().is_some() {
                            lock(&driver).feed(Event::Disconnected(None));
                        }
                    }
                    Effect::Close => {
                        if ws.take().is_some() {
                            lock(&driver).feed(Event::Disconnected(None));
                        }
                    }
                    Effect::SetTimer(ms) => {
                        timer = Some(Box::pin(tokio::time::sleep(Duration::from_millis(ms))))
                    }
                    Effect::Notify(event) => notify(listener.as_ref(), event),
                    Effect::Idle(ms) => idle = Some(Box::pin(tokio::time::sleep(Duration::from_millis(ms)))),
                }
            }
        }
        tokio::select! {
            w = wake.recv() => if w != Some(true) { return },
            msg = async { match ws.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => {
                let mut next = Some(msg);
                // Frames that are already here are applied together, in one transaction.
                while let Some(msg) = next.take() {
                    match msg {
                        Some(Ok(Message::Text(t))) => lock(&driver).feed(Event::Frame(t.to_string())),
                        Some(Ok(Message::Close(frame))) => {
                            ws = None;
                            lock(&driver).feed(Event::Disconnected(frame.map(|f| f.code.into())));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            ws = None;
                            lock(&driver).feed(Event::Disconnected(None));
                        }
                    }
                    next = ws.as_mut().and_then(|s| s.next().now_or_never());
                }
            },
            _ = async { match timer.as_mut() { Some(t) => t.await, None => std::future::pending().await } } => {
                timer = None;
                lock(&driver).feed(Event::Timer);
            }
            // After a yield, so that what is already waiting (the app's calls on the driver, frames)
            // goes first.
            _ = async { match idle.as_mut() { Some(t) => { t.await; tokio::task::yield_now().await } None => std::future::pending().await } } => {
                idle = None;
                lock(&driver).idle();
            }
        }
    }
}

fn notify(listener: &dyn MoatListener, event: ClientEvent) {
    match event {
        ClientEvent::Tables { tables } => listener.on_tables_changed(tables),
        ClientEvent::Status { status } => listener.on_status(status),
        ClientEvent::Conflicts { conflicts } => listener.on_conflicts(conflicts),
        ClientEvent::Rejected { mutation_id, reason } => listener.on_rejected(mutation_id, reason),
        ClientEvent::Error { message } => listener.on_error(message),
        ClientEvent::Fleet { devices } => listener.on_fleet(devices),
        ClientEvent::History { object_type, id, entries } => listener.on_history(object_type, id, entries),
        // Customizing is the web app's (an admin's desk); the native app never asks.
        ClientEvent::Customized { .. } => {}
    }
}
