//! The web shell: a [`WebClient`] owns the replica (SQLite in OPFS through the `opfs-sahpool` VFS),
//! the WebSocket and the [`Driver`], inside one dedicated Worker. It moves frames between the socket
//! and the driver, carries out the driver's effects, and reports to the page through one
//! `notify(event)` callback. Every exported method is a delegation to the driver, the same calls the
//! native shell makes; values cross to JavaScript as plain JSON objects whose TypeScript types are
//! generated from the Rust types (`web/src/sdk/types.ts`).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use serde::Serialize;
use sqlite_ext::ui::{ColumnValue, ConflictChoice, FieldInput, ListQuery};
use sqlite_ext::{Event, FieldValue, Replica, Schema};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket, WorkerGlobalScope};

use crate::driver::{ClientEvent, Driver, Effect};

/// An error as JavaScript sees it: an `Error` whose `name` says whose fault it is (`Invalid`,
/// `NotFound`, `Storage`) and whose `message` can be shown to the user.
fn js_error(e: sqlite_ext::Error) -> JsValue {
    let name = match e {
        sqlite_ext::Error::NotFound(_) => "NotFound",
        sqlite_ext::Error::Sqlite(_) => "Storage",
        _ => "Invalid",
    };
    let err = js_sys::Error::new(&e.for_user());
    err.set_name(name);
    err.into()
}

fn invalid(message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name("Invalid");
    err.into()
}

/// A Rust value as a plain JavaScript object (through JSON: the view models are small).
fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(v).map_err(|e| invalid(&e.to_string()))?;
    js_sys::JSON::parse(&text)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, JsValue> {
    serde_json::from_str(text).map_err(|e| invalid(&format!("bad argument: {e}")))
}

struct Inner {
    driver: RefCell<Driver>,
    url: String,
    notify: js_sys::Function,
    socket: RefCell<Option<WebSocket>>,
    timer: Cell<Option<i32>>,
    closed: Cell<bool>,
    busy: Cell<bool>,
    // The handlers live as long as the client, so a handler never drops itself while it runs; a
    // socket that is let go has its handlers detached first, so a stale socket reports nothing.
    on_open: Closure<dyn FnMut()>,
    on_message: Closure<dyn FnMut(MessageEvent)>,
    on_close: Closure<dyn FnMut(CloseEvent)>,
    on_timer: Closure<dyn FnMut()>,
    on_drain: Closure<dyn FnMut()>,
    /// A run is scheduled (frames that arrive together are applied together).
    drain_scheduled: Cell<bool>,
    /// Calls [`Driver::idle`] (the driver's background work), after what already waits.
    on_idle: Closure<dyn FnMut()>,
}

/// One browser's Moat client, living in a dedicated Worker.
#[wasm_bindgen]
pub struct WebClient {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

thread_local! {
    /// The storage pool this worker opened (a worker opens one user's database, once).
    static POOL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The pool every user of an origin shared before each user had one: a database there stays there
/// (its pending writes with it); a new one never goes there.
const SHARED_POOL: (&str, &str) = ("opfs-sahpool", ".opfs-sahpool");

fn storage_error(message: String) -> JsValue {
    let err = js_sys::Error::new(&message);
    err.set_name("Storage");
    JsValue::from(err)
}

/// Whether this origin's OPFS has a folder `name` (without creating it).
async fn opfs_has_dir(name: &str) -> bool {
    let navigator: web_sys::WorkerNavigator = scope().navigator();
    let Ok(root) = wasm_bindgen_futures::JsFuture::from(navigator.storage().get_directory()).await else {
        return false;
    };
    let root: web_sys::FileSystemDirectoryHandle = root.unchecked_into();
    wasm_bindgen_futures::JsFuture::from(root.get_directory_handle(name)).await.is_ok()
}

/// Picks and installs the storage pool for `db_name`: each user has a pool of their own (OPFS lets
/// one worker at a time hold a pool, so two users of one browser need two), except a database that
/// is already in the pool all users shared before; with `shared`, that pool for a new one too (tests
/// of that path). Returns the VFS name to open the database with.
async fn install_pool(db_name: &str, shared: bool) -> Result<String, JsValue> {
    use rsqlite_vfs::VfsFilesManager;
    use sqlite_wasm_vfs::sahpool::{OpfsSAHPoolCfgBuilder, install};
    if let Some(vfs) = POOL.with(|p| p.borrow().clone()) {
        return Ok(vfs);
    }
    let cfg = |(vfs, dir): (&str, &str)| OpfsSAHPoolCfgBuilder::new().vfs_name(vfs).directory(dir).build();
    let own_dir = format!(".moat-pools/{}", db_name.replace(['/', '.'], "_"));
    let own = async || -> Result<String, JsValue> {
        install::<sqlite_wasm_rs::WasmOsCallback>(&cfg(("moat-user", &own_dir)), false)
            .await
            .map_err(|e| storage_error(format!("cannot open this browser's storage (OPFS): {e}")))?;
        Ok("moat-user".to_owned())
    };
    let chosen = if !shared && opfs_has_dir(&own_dir).await {
        // The user's own pool exists: their database is there.
        own().await?
    } else if shared || opfs_has_dir(SHARED_POOL.1).await {
        match install::<sqlite_wasm_rs::WasmOsCallback>(&cfg(SHARED_POOL), false).await {
            Ok(util) if shared || util.contains(db_name).unwrap_or(false) => SHARED_POOL.0.to_owned(),
            Ok(util) => {
                // Not this user's: let go of it, for the user whose database is there.
                let _ = util.pause();
                own().await?
            }
            // Another window holds the shared pool, and this user's database may be in it: do not
            // start an empty one beside it (its pending changes would be left behind).
            Err(e) => {
                return Err(storage_error(format!(
                    "another window of this browser holds its older storage ({e}); close the other \
                     signed-in windows and reload"
                )));
            }
        }
    } else {
        own().await?
    };
    POOL.with(|p| *p.borrow_mut() = Some(chosen.clone()));
    Ok(chosen)
}

#[wasm_bindgen]
impl WebClient {
    /// Opens (creating if needed) the replica `db_name` in this origin's OPFS (in a storage pool of
    /// the user's own, so that two users can be signed in to two windows of one browser; a database
    /// already in the pool all users once shared stays there; `shared_pool` puts a new one there too,
    /// for tests of that path) and starts syncing with
    /// the server at `url` (`ws://host:port/sync`) as the bearer of `token`. Works offline from the
    /// first call; with `offline` the browser has no network: it connects only after
    /// [`WebClient::network_changed`] or [`WebClient::go_online`] (and, whatever `offline` says, not
    /// while the user works offline, a choice the replica keeps). `notify` receives each `ClientEvent` (`{type: "tables" | "status" | "conflicts" |
    /// "rejected" | "error" | "fleet" | "history", …}`). Must run in a dedicated Worker (OPFS sync access handles exist
    /// only there).
    pub async fn open(
        url: String,
        token: String,
        db_name: String,
        offline: bool,
        shared_pool: bool,
        notify: js_sys::Function,
    ) -> Result<WebClient, JsValue> {
        let vfs = install_pool(&db_name, shared_pool).await?;
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags_and_vfs(&db_name, flags, vfs.as_str())
            .map_err(|e| js_error(e.into()))?;
        // OPFS has no shared memory, but WAL works with an exclusive lock (the wal-index lives on the
        // heap), and one tab owns the database anyway (a Web Lock elects it). Measured here: a one-field
        // edit costs ~14 ms with WAL against ~20 ms with a rollback journal, both synchronous = FULL.
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;").map_err(|e| js_error(e.into()))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(|e| js_error(e.into()))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| js_error(e.into()))?;
        // A page cache of up to 64 MiB (SQLite's default is 2 MiB): a 100,000-row tenant's lists and
        // searches read from memory after the first time, and a snapshot's held chunks are not
        // spilled to the log before they commit (see `docs/web-client.md`, Big tenants).
        conn.execute_batch("PRAGMA cache_size = -65536").map_err(|e| js_error(e.into()))?;
        // A new database starts with no tables: the server's welcome brings the schema.
        let mut replica = Replica::from_connection_latest(conn, Schema::empty()).map_err(js_error)?;
        // No other connection reads this file: a first sync goes through a rollback journal
        // (fewer storage writes than the log; see `docs/web-client.md`, Big tenants).
        replica.journal_first_sync();
        let mut driver = Driver::new(replica, token).map_err(js_error)?;
        driver.set_app(env!("CARGO_PKG_VERSION"), "web");
        if offline {
            driver.start_without_network();
        }
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let w = weak.clone();
            let on_open = Closure::new(move || feed(&w, Event::Connected));
            let w = weak.clone();
            let on_message = Closure::new(move |ev: MessageEvent| {
                if let (Some(text), Some(inner)) = (ev.data().as_string(), w.upgrade()) {
                    // Not at once: the frames already on their way (a diff and its ack come together)
                    // are applied in one transaction when the event loop comes back to us.
                    inner.driver.borrow_mut().feed(Event::Frame(text));
                    if !inner.drain_scheduled.replace(true) {
                        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
                            inner.on_drain.as_ref().unchecked_ref(),
                            0,
                        );
                    }
                }
            });
            let w = weak.clone();
            let on_close = Closure::new(move |ev: CloseEvent| {
                if let Some(inner) = w.upgrade() {
                    drop_socket(&inner);
                }
                feed(&w, Event::Disconnected(Some(ev.code())));
            });
            let w = weak.clone();
            let on_timer = Closure::new(move || {
                if let Some(inner) = w.upgrade() {
                    inner.timer.set(None);
                }
                feed(&w, Event::Timer);
            });
            let w = weak.clone();
            let on_idle = Closure::new(move || queue(&w, Driver::idle));
            let w = weak.clone();
            let on_drain = Closure::new(move || {
                if let Some(inner) = w.upgrade() {
                    inner.drain_scheduled.set(false);
                    run(&inner);
                }
            });
            Inner {
                driver: RefCell::new(driver),
                url,
                notify,
                socket: RefCell::new(None),
                timer: Cell::new(None),
                closed: Cell::new(false),
                busy: Cell::new(false),
                on_open,
                on_message,
                on_close,
                on_timer,
                on_drain,
                drain_scheduled: Cell::new(false),
                on_idle,
            }
        });
        run(&inner);
        Ok(WebClient { inner })
    }

    /// The sync status now.
    pub fn status(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().status().map_err(js_error)?)
    }

    /// The object types, from the synced `object_metadata`.
    #[wasm_bindgen(js_name = objectTypes)]
    pub fn object_types(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().object_types().map_err(js_error)?)
    }

    /// A page of a list; `query` is a `ListQuery` as JSON.
    #[wasm_bindgen(js_name = listView)]
    pub fn list_view(&self, query: &str) -> Result<JsValue, JsValue> {
        let q: ListQuery = from_json(query)?;
        to_js(&self.driver().list_view(&q).map_err(js_error)?)
    }

    /// Record `id`'s detail page, drawn from the synced `layout_definition` for this user's role.
    #[wasm_bindgen(js_name = detailView)]
    pub fn detail_view(&self, object_type: &str, id: &str) -> Result<JsValue, JsValue> {
        to_js(&self.driver().detail_view(object_type, id).map_err(js_error)?)
    }

    /// Edits one field (`value` is a `FieldValue` as JSON), checked against the metadata and this
    /// role's layout; it shows at once and is sent when possible.
    pub fn edit(&self, object_type: &str, id: &str, field: String, value: &str) -> Result<(), JsValue> {
        let value: FieldValue = from_json(value)?;
        self.call(|d| d.edit(object_type, id, field, value))
    }

    /// Edits one field with what the user typed (currency in major units with the field's scale),
    /// read and checked by the core. `started_from` is the field's value when the user began typing
    /// (a `FieldValue` as JSON, or empty): if another edit replaced it meanwhile, nothing is
    /// overwritten and the conflict alert is raised instead.
    #[wasm_bindgen(js_name = editText)]
    pub fn edit_text(
        &self,
        object_type: &str,
        id: &str,
        field: &str,
        text: &str,
        started_from: &str,
    ) -> Result<(), JsValue> {
        let base: Option<FieldValue> =
            if started_from.is_empty() { None } else { Some(from_json(started_from)?) };
        self.call(|d| d.edit_text(object_type, id, field, text, base))
    }

    /// Writes one column of any synced row (admin tools such as the layout editor); the server checks
    /// the role's rights.
    #[wasm_bindgen(js_name = updateRow)]
    pub fn update_row(&self, table: &str, id: &str, column: String, value: &str) -> Result<(), JsValue> {
        let value: FieldValue = from_json(value)?;
        self.call(|d| d.update_row(table, id, column, value))
    }

    /// Inserts a row into any synced table; `values` is `[{column, value}]` as JSON. The server checks
    /// the role's rights.
    #[wasm_bindgen(js_name = insertRow)]
    pub fn insert_row(&self, table: &str, values: &str) -> Result<(), JsValue> {
        let values: Vec<ColumnValue> = from_json(values)?;
        self.call(|d| d.insert_row(table, values))
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().conflicts().map_err(js_error)?)
    }

    /// Settles a conflict; `choice` is a `ConflictChoice` as JSON.
    pub fn resolve(&self, conflict_id: f64, choice: &str) -> Result<(), JsValue> {
        let choice: ConflictChoice = from_json(choice)?;
        self.call(|d| d.resolve(conflict_id as i64, choice))
    }

    /// Writes the server refused, with its reasons.
    pub fn rejected(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().rejected().map_err(js_error)?)
    }

    /// Forgets a rejected write once the user has seen it.
    #[wasm_bindgen(js_name = dismissRejected)]
    pub fn dismiss_rejected(&self, mutation_id: &str) -> Result<(), JsValue> {
        self.call(|d| d.dismiss_rejected(mutation_id))
    }

    /// Writes a refused change again (checked here first) and forgets the refused one.
    #[wasm_bindgen(js_name = retryRejected)]
    pub fn retry_rejected(&self, mutation_id: &str) -> Result<(), JsValue> {
        self.call(|d| d.retry_rejected(mutation_id))
    }

    /// The form of a new record of `object_type` (a `DetailViewModel`), for this user's role.
    #[wasm_bindgen(js_name = newRecord)]
    pub fn new_record(&self, object_type: &str) -> Result<JsValue, JsValue> {
        to_js(&self.driver().new_record(object_type).map_err(js_error)?)
    }

    /// Creates a record from what the user typed (`inputs`: `[{field, text}]` as JSON), with a key
    /// made on the device; returns its id.
    pub fn create(&self, object_type: &str, inputs: &str) -> Result<String, JsValue> {
        let inputs: Vec<FieldInput> = from_json(inputs)?;
        let id = self.inner.driver.borrow_mut().create(object_type, &inputs).map_err(js_error)?;
        run(&self.inner);
        Ok(id)
    }

    /// Deletes a record (offline too; sent when possible).
    pub fn delete(&self, object_type: &str, id: &str) -> Result<(), JsValue> {
        self.call(|d| d.delete(object_type, id))
    }

    /// The records a reference field may point to whose search fields contain `search`.
    #[wasm_bindgen(js_name = referenceOptions)]
    pub fn reference_options(
        &self,
        object_type: &str,
        field: &str,
        search: &str,
        limit: u32,
    ) -> Result<JsValue, JsValue> {
        to_js(&self.driver().reference_options(object_type, field, search, limit).map_err(js_error)?)
    }

    /// Line items typed as rows of texts (`rows`: `string[][]` as JSON), as the text an edit takes.
    #[wasm_bindgen(js_name = lineItemsText)]
    pub fn line_items_text(&self, object_type: &str, field: &str, rows: &str) -> Result<String, JsValue> {
        let rows: Vec<Vec<String>> = from_json(rows)?;
        self.driver().line_items_text(object_type, field, &rows).map_err(js_error)
    }

    /// Asks the server for a record's history; it arrives as a `history` event.
    #[wasm_bindgen(js_name = requestHistory)]
    pub fn request_history(&self, object_type: &str, id: &str) -> Result<(), JsValue> {
        self.call(|d| d.request_history(object_type, id))
    }

    /// The tenant's object types and layouts as the device holds them (a `Customization`): the
    /// Customize mode's draft.
    pub fn customization(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().customization().map_err(js_error)?)
    }

    /// What publishing a draft (a `Customization` as JSON) would do (a `Plan`), checked here as the
    /// server will check it.
    #[wasm_bindgen(js_name = planCustomization)]
    pub fn plan_customization(&self, draft: &str) -> Result<JsValue, JsValue> {
        let draft = from_json(draft)?;
        to_js(&self.driver().plan_customization(&draft).map_err(js_error)?)
    }

    /// The field types an admin can choose, with their names in the user's words (`KindChoice[]`).
    #[wasm_bindgen(js_name = fieldKinds)]
    pub fn field_kinds(&self) -> Result<JsValue, JsValue> {
        to_js(&sqlite_ext::ui::FieldKind::choices())
    }

    /// An API name made from a label (`Warranty expires` → `warranty_expires`), for a new field or
    /// object type.
    #[wasm_bindgen(js_name = nameFromLabel)]
    pub fn name_from_label(&self, label: &str) -> String {
        sqlite_ext::ui::customize::name_from_label(label)
    }

    /// Sends an admin's customization request (a `CustomizeRequest` as JSON); the answer arrives as
    /// a `customized` event with the same `id`.
    pub fn customize(&self, id: &str, request: &str) -> Result<(), JsValue> {
        let request = from_json(request)?;
        self.call(|d| {
            d.customize(id, request);
            Ok(())
        })
    }

    /// The writes waiting for the server, oldest first.
    pub fn pending(&self) -> Result<JsValue, JsValue> {
        to_js(&self.driver().pending().map_err(js_error)?)
    }

    /// Asks the server for the tenant's devices (Sync health; admins only: `status.admin`); they
    /// arrive as a `fleet` event.
    #[wasm_bindgen(js_name = requestFleet)]
    pub fn request_fleet(&self) {
        feed(&Rc::downgrade(&self.inner), Event::RequestFleet);
    }

    /// Works offline (the user's switch): local work goes on, nothing is sent, and the replica
    /// remembers it, so that the app opens offline too, until [`WebClient::go_online`].
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) {
        feed(&Rc::downgrade(&self.inner), Event::GoOffline);
    }

    /// Goes online (the user's switch): reconnects at once, catches up and sends what is pending.
    #[wasm_bindgen(js_name = goOnline)]
    pub fn go_online(&self) {
        clear_timer(&self.inner);
        feed(&Rc::downgrade(&self.inner), Event::GoOnline);
    }

    /// The browser's network went away (`false`, its `offline` event) or came back (`true`): no
    /// connection is tried while it is away; back, one is at once, unless the user works offline.
    #[wasm_bindgen(js_name = networkChanged)]
    pub fn network_changed(&self, online: bool) {
        if online {
            clear_timer(&self.inner);
        }
        feed(&Rc::downgrade(&self.inner), Event::Network(online));
    }

    /// Stops syncing and lets go of the socket (the database closes when the client is freed).
    pub fn close(&self) {
        self.inner.closed.set(true);
        clear_timer(&self.inner);
        drop_socket(&self.inner);
    }
}

impl WebClient {
    fn driver(&self) -> std::cell::Ref<'_, Driver> {
        self.inner.driver.borrow()
    }

    /// Runs a call that changes the replica, then carries out what follows.
    fn call(&self, f: impl FnOnce(&mut Driver) -> Result<(), sqlite_ext::Error>) -> Result<(), JsValue> {
        f(&mut self.inner.driver.borrow_mut()).map_err(js_error)?;
        run(&self.inner);
        Ok(())
    }
}

fn emit(inner: &Inner, event: &ClientEvent) {
    if let Ok(v) = to_js(event) {
        // A throwing listener is the page's bug; the session goes on.
        let _ = inner.notify.call1(&JsValue::NULL, &v);
    }
}

/// Detaches and closes the current socket; true if there was one.
fn drop_socket(inner: &Inner) -> bool {
    let Some(ws) = inner.socket.borrow_mut().take() else { return false };
    ws.set_onopen(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
    let _ = ws.close();
    true
}

fn clear_timer(inner: &Inner) {
    if let Some(id) = inner.timer.take() {
        scope().clear_timeout_with_handle(id);
    }
}

/// Queues an event and runs the driver.
fn feed(weak: &Weak<Inner>, event: Event) {
    queue(weak, |driver| driver.feed(event));
}

/// Queues what `add` adds (an event, a step of background work) and runs the driver.
fn queue(weak: &Weak<Inner>, add: impl FnOnce(&mut Driver)) {
    let Some(inner) = weak.upgrade() else { return };
    add(&mut inner.driver.borrow_mut());
    run(&inner);
}

/// Runs the driver and carries out its effects until it has nothing more to do (unless it is
/// already running further up the stack: then that run picks the new event up).
fn run(inner: &Rc<Inner>) {
    if inner.closed.get() || inner.busy.replace(true) {
        return;
    }
    loop {
        let effects = inner.driver.borrow_mut().run();
        if effects.is_empty() {
            break;
        }
        for effect in effects {
            carry_out(inner, effect);
        }
    }
    inner.busy.set(false);
}

fn carry_out(inner: &Inner, effect: Effect) {
    let later = |event| inner.driver.borrow_mut().feed(event);
    match effect {
        Effect::Connect => {
            drop_socket(inner);
            match WebSocket::new(&inner.url) {
                Ok(ws) => {
                    ws.set_onopen(Some(inner.on_open.as_ref().unchecked_ref()));
                    ws.set_onmessage(Some(inner.on_message.as_ref().unchecked_ref()));
                    ws.set_onclose(Some(inner.on_close.as_ref().unchecked_ref()));
                    *inner.socket.borrow_mut() = Some(ws);
                }
                Err(_) => later(Event::Disconnected(None)),
            }
        }
        Effect::Send(text) => {
            let sent = inner.socket.borrow().as_ref().is_some_and(|ws| ws.send_with_str(&text).is_ok());
            if !sent && drop_socket(inner) {
                later(Event::Disconnected(None));
            }
        }
        Effect::Close => {
            if drop_socket(inner) {
                later(Event::Disconnected(None));
            }
        }
        Effect::SetTimer(ms) => {
            clear_timer(inner);
            let ms = i32::try_from(ms).unwrap_or(i32::MAX);
            if let Ok(id) = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
                inner.on_timer.as_ref().unchecked_ref(),
                ms,
            ) {
                inner.timer.set(Some(id));
            }
        }
        Effect::Notify(event) => emit(inner, &event),
        // A task of its own: the page's calls and the frames already queued go first.
        Effect::Idle(ms) => {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
                inner.on_idle.as_ref().unchecked_ref(),
                i32::try_from(ms).unwrap_or(i32::MAX),
            );
        }
    }
}
