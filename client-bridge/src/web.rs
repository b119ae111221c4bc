//! The web shell: a [`WebClient`] owns the replica (SQLite in OPFS through the `opfs-sahpool` VFS),
//! the WebSocket and the core's sync engine, inside one dedicated Worker. It moves frames between the
//! socket and the engine, carries out the engine's instructions, and reports to the page through one
//! `notify(event)` callback. Every exported method is a delegation to [`crate::views`], the same
//! calls the native shell makes; values cross to JavaScript as plain JSON objects whose shapes
//! `web/src/sdk/types.ts` declares.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use serde::Serialize;
use serde_json::json;
use sqlite_ext::{Instruction, Replica, Schema, SyncEngine};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket, WorkerGlobalScope};

use crate::views::{self, ColumnValue, ConflictChoice, FieldValue, ListRequest, Owned};

/// An error as JavaScript sees it: an `Error` whose `name` says whose fault it is (`Invalid`,
/// `NotFound`, `Storage`) and whose `message` can be shown to the user.
fn js_error(e: sqlite_ext::Error) -> JsValue {
    let name = match e {
        sqlite_ext::Error::NotFound(_) => "NotFound",
        sqlite_ext::Error::Sqlite(_) => "Storage",
        _ => "Invalid",
    };
    let err = js_sys::Error::new(&e.to_string());
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
    engine: RefCell<SyncEngine>,
    role: String,
    url: String,
    notify: js_sys::Function,
    socket: RefCell<Option<WebSocket>>,
    timer: Cell<Option<i32>>,
    offline: Cell<bool>,
    closed: Cell<bool>,
    queue: RefCell<VecDeque<Owned>>,
    busy: Cell<bool>,
    // The handlers live as long as the client, so a handler never drops itself while it runs; a
    // socket that is let go has its handlers detached first, so a stale socket reports nothing.
    on_open: Closure<dyn FnMut()>,
    on_message: Closure<dyn FnMut(MessageEvent)>,
    on_close: Closure<dyn FnMut(CloseEvent)>,
    on_timer: Closure<dyn FnMut()>,
    on_drain: Closure<dyn FnMut()>,
    /// A drain of the frame queue is scheduled (frames that arrive together are applied together).
    drain_scheduled: Cell<bool>,
}

/// One browser's Moat client, living in a dedicated Worker.
#[wasm_bindgen]
pub struct WebClient {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").field("role", &self.inner.role).finish_non_exhaustive()
    }
}

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

thread_local! {
    static VFS_READY: Cell<bool> = const { Cell::new(false) };
}

#[wasm_bindgen]
impl WebClient {
    /// Opens (creating if needed) the replica `db_name` in this origin's OPFS and starts syncing with
    /// the server at `url` (`ws://host:port/sync`) as the bearer of `token`. Works offline from the
    /// first call. `notify` receives `{type: "tables" | "status" | "conflicts" | "rejected", …}`.
    /// Must run in a dedicated Worker (OPFS sync access handles exist only there).
    pub async fn open(
        url: String,
        token: String,
        db_name: String,
        notify: js_sys::Function,
    ) -> Result<WebClient, JsValue> {
        let role = views::role_of(&token).ok_or_else(|| invalid("the token is not a JWT with a role"))?;
        if !VFS_READY.with(Cell::get) {
            sqlite_wasm_vfs::sahpool::install::<sqlite_wasm_rs::WasmOsCallback>(
                &sqlite_wasm_vfs::sahpool::OpfsSAHPoolCfg::default(),
                true,
            )
            .await
            .map_err(|e| {
                let err = js_sys::Error::new(&format!("cannot open this browser's storage (OPFS): {e}"));
                err.set_name("Storage");
                JsValue::from(err)
            })?;
            VFS_READY.with(|r| r.set(true));
        }
        let conn = rusqlite::Connection::open(&db_name).map_err(|e| js_error(e.into()))?;
        // OPFS has no shared memory, but WAL works with an exclusive lock (the wal-index lives on the
        // heap), and one tab owns the database anyway (a Web Lock elects it). Measured here: a one-field
        // edit costs ~14 ms with WAL against ~20 ms with a rollback journal, both synchronous = FULL.
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;").map_err(|e| js_error(e.into()))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(|e| js_error(e.into()))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| js_error(e.into()))?;
        let replica = Replica::from_connection_latest(conn, Schema::demo()).map_err(js_error)?;
        let engine = SyncEngine::new(replica, token);
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let w = weak.clone();
            let on_open = Closure::new(move || feed(&w, Owned::Connected));
            let w = weak.clone();
            let on_message = Closure::new(move |ev: MessageEvent| {
                if let (Some(text), Some(inner)) = (ev.data().as_string(), w.upgrade()) {
                    // Not at once: the frames already on their way (a diff and its ack come together)
                    // are applied in one transaction when the event loop comes back to us.
                    inner.queue.borrow_mut().push_back(Owned::Frame(text));
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
                feed(&w, Owned::Disconnected(Some(ev.code())));
            });
            let w = weak.clone();
            let on_timer = Closure::new(move || {
                if let Some(inner) = w.upgrade() {
                    inner.timer.set(None);
                }
                feed(&w, Owned::Timer);
            });
            let w = weak.clone();
            let on_drain = Closure::new(move || {
                if let Some(inner) = w.upgrade() {
                    inner.drain_scheduled.set(false);
                    run(&inner);
                }
            });
            Inner {
                engine: RefCell::new(engine),
                role,
                url,
                notify,
                socket: RefCell::new(None),
                timer: Cell::new(None),
                offline: Cell::new(false),
                closed: Cell::new(false),
                queue: RefCell::new(VecDeque::new()),
                busy: Cell::new(false),
                on_open,
                on_message,
                on_close,
                on_timer,
                on_drain,
                drain_scheduled: Cell::new(false),
            }
        });
        feed(&Rc::downgrade(&inner), Owned::Start);
        Ok(WebClient { inner })
    }

    /// The sync status now.
    pub fn status(&self) -> Result<JsValue, JsValue> {
        to_js(&views::status(&self.inner.engine.borrow()).map_err(js_error)?)
    }

    /// The object types, from the synced `object_metadata`.
    #[wasm_bindgen(js_name = objectTypes)]
    pub fn object_types(&self) -> Result<JsValue, JsValue> {
        to_js(&views::object_types(&self.inner.engine.borrow()).map_err(js_error)?)
    }

    /// A page of a list; `query` is `{object_type, search?, sort_field?, ascending?, offset?, limit?}`
    /// as JSON.
    #[wasm_bindgen(js_name = listView)]
    pub fn list_view(&self, query: &str) -> Result<JsValue, JsValue> {
        let q: ListRequest = from_json(query)?;
        to_js(&views::list_view(&self.inner.engine.borrow(), q).map_err(js_error)?)
    }

    /// Record `id`'s detail page, drawn from the synced `layout_definition` for this user's role.
    #[wasm_bindgen(js_name = detailView)]
    pub fn detail_view(&self, object_type: &str, id: &str) -> Result<JsValue, JsValue> {
        let e = self.inner.engine.borrow();
        to_js(&views::detail_view(&e, &self.inner.role, object_type, id).map_err(js_error)?)
    }

    /// Edits one field (`value` is a `FieldValue` as JSON), checked against the metadata and this
    /// role's layout; it shows at once and is sent when possible.
    pub fn edit(&self, object_type: &str, id: &str, field: String, value: &str) -> Result<(), JsValue> {
        let value: FieldValue = from_json(value)?;
        {
            let mut e = self.inner.engine.borrow_mut();
            views::edit(&mut e, &self.inner.role, object_type, id, field, value).map_err(js_error)?;
        }
        self.local_write();
        Ok(())
    }

    /// Writes one column of any synced row (admin tools such as the layout editor); the server checks
    /// the role's rights.
    #[wasm_bindgen(js_name = updateRow)]
    pub fn update_row(&self, table: &str, id: &str, column: String, value: &str) -> Result<(), JsValue> {
        let value: FieldValue = from_json(value)?;
        views::update_row(&mut self.inner.engine.borrow_mut(), table, id, column, value).map_err(js_error)?;
        self.local_write();
        Ok(())
    }

    /// Inserts a row into any synced table; `values` is `[{column, value}]` as JSON. The server checks
    /// the role's rights.
    #[wasm_bindgen(js_name = insertRow)]
    pub fn insert_row(&self, table: &str, values: &str) -> Result<(), JsValue> {
        let values: Vec<ColumnValue> = from_json(values)?;
        views::insert_row(&mut self.inner.engine.borrow_mut(), table, values).map_err(js_error)?;
        self.local_write();
        Ok(())
    }

    /// Conflicts waiting for the user.
    pub fn conflicts(&self) -> Result<JsValue, JsValue> {
        to_js(&views::conflicts(&self.inner.engine.borrow()).map_err(js_error)?)
    }

    /// Settles a conflict; `choice` is `{type: "keep_mine" | "take_theirs"}` or
    /// `{type: "edit", column, value}` as JSON.
    pub fn resolve(&self, conflict_id: f64, choice: &str) -> Result<(), JsValue> {
        let choice: ConflictChoice = from_json(choice)?;
        views::resolve(&mut self.inner.engine.borrow_mut(), conflict_id as i64, choice).map_err(js_error)?;
        self.local_write();
        Ok(())
    }

    /// Writes the server refused, with its reasons.
    pub fn rejected(&self) -> Result<JsValue, JsValue> {
        to_js(&views::rejected(&self.inner.engine.borrow()).map_err(js_error)?)
    }

    /// Forgets a rejected write once the user has seen it.
    #[wasm_bindgen(js_name = dismissRejected)]
    pub fn dismiss_rejected(&self, mutation_id: &str) -> Result<(), JsValue> {
        views::dismiss_rejected(&mut self.inner.engine.borrow_mut(), mutation_id).map_err(js_error)?;
        self.notify_status();
        Ok(())
    }

    /// Goes offline (the user's switch, or the browser's `offline` event); local work goes on.
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) {
        self.inner.offline.set(true);
        if drop_socket(&self.inner) {
            feed(&Rc::downgrade(&self.inner), Owned::Disconnected(None));
        }
    }

    /// Comes back online: reconnects at once, catches up and sends what is pending.
    #[wasm_bindgen(js_name = goOnline)]
    pub fn go_online(&self) {
        self.inner.offline.set(false);
        clear_timer(&self.inner);
        feed(&Rc::downgrade(&self.inner), Owned::Timer);
    }

    /// Stops syncing and lets go of the socket (the database closes when the client is freed).
    pub fn close(&self) {
        self.inner.closed.set(true);
        clear_timer(&self.inner);
        drop_socket(&self.inner);
    }
}

impl WebClient {
    fn local_write(&self) {
        feed(&Rc::downgrade(&self.inner), Owned::LocalWrite);
    }

    fn notify_status(&self) {
        if let Ok(s) = views::status(&self.inner.engine.borrow()) {
            emit(&self.inner, json!({"type": "status", "status": s}));
        }
    }
}

fn emit(inner: &Inner, event: serde_json::Value) {
    if let Ok(v) = js_sys::JSON::parse(&event.to_string()) {
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

/// Queues an event and, unless the queue is already being worked off further up the stack, runs
/// the engine over it and carries out what it says.
fn feed(weak: &Weak<Inner>, ev: Owned) {
    let Some(inner) = weak.upgrade() else { return };
    inner.queue.borrow_mut().push_back(ev);
    run(&inner);
}

/// Works off the queue. Several events at once are applied in one transaction (one OPFS sync).
fn run(inner: &Rc<Inner>) {
    if inner.closed.get() {
        inner.queue.borrow_mut().clear();
        return;
    }
    if inner.busy.replace(true) {
        return;
    }
    let batch = inner.queue.borrow().len() > 1 && inner.engine.borrow().replica().begin_batch().is_ok();
    loop {
        let Some(ev) = inner.queue.borrow_mut().pop_front() else { break };
        let instructions = {
            let mut e = inner.engine.borrow_mut();
            views::handle(&mut e, &ev)
        };
        for i in instructions {
            carry_out(inner, i);
        }
    }
    // A failed commit undoes the batch: start a new session, which resends what it needs.
    let failed = batch && inner.engine.borrow().replica().end_batch().is_err();
    inner.busy.set(false);
    if failed && drop_socket(inner) {
        feed(&Rc::downgrade(inner), Owned::Disconnected(None));
    }
}

fn carry_out(inner: &Inner, i: Instruction) {
    let later = |ev| inner.queue.borrow_mut().push_back(ev);
    match i {
        Instruction::Connect if inner.offline.get() => later(Owned::Disconnected(None)),
        Instruction::Connect => {
            drop_socket(inner);
            match WebSocket::new(&inner.url) {
                Ok(ws) => {
                    ws.set_onopen(Some(inner.on_open.as_ref().unchecked_ref()));
                    ws.set_onmessage(Some(inner.on_message.as_ref().unchecked_ref()));
                    ws.set_onclose(Some(inner.on_close.as_ref().unchecked_ref()));
                    *inner.socket.borrow_mut() = Some(ws);
                }
                Err(_) => later(Owned::Disconnected(None)),
            }
        }
        Instruction::Send(text) => {
            let sent = inner.socket.borrow().as_ref().is_some_and(|ws| ws.send_with_str(&text).is_ok());
            if !sent && drop_socket(inner) {
                later(Owned::Disconnected(None));
            }
        }
        Instruction::Close => {
            if drop_socket(inner) {
                later(Owned::Disconnected(None));
            }
        }
        Instruction::SetTimer(ms) => {
            clear_timer(inner);
            let ms = i32::try_from(ms).unwrap_or(i32::MAX);
            if let Ok(id) = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
                inner.on_timer.as_ref().unchecked_ref(),
                ms,
            ) {
                inner.timer.set(Some(id));
            }
        }
        Instruction::TablesChanged(tables) => emit(inner, json!({"type": "tables", "tables": tables})),
        Instruction::ConflictsRaised(_) => {
            let all = views::conflicts(&inner.engine.borrow()).unwrap_or_default();
            emit(inner, json!({"type": "conflicts", "conflicts": all}));
        }
        Instruction::Rejected { mutation_id, reason } => {
            emit(inner, json!({"type": "rejected", "mutation_id": mutation_id, "reason": reason}))
        }
        Instruction::Status(s) => {
            emit(inner, json!({"type": "status", "status": views::SyncStatus::from(s)}))
        }
    }
}
