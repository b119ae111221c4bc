//! Tenants: each is its own SQLite database (`<data>/tenants/<name>.db`), so nothing computed for one
//! tenant ever reads another's file: keys, mutation outcomes, the change log, versions, snapshots and
//! conflicts are per tenant by construction. A small platform database (`<data>/platform.db`) holds
//! what spans tenants: the registry of tenants.
//!
//! A token's `tenant` claim selects the database; it is opened on the first session that needs it
//! and closed again when it has had no session for a while (an idle tenant holds no file open), so a
//! server can hold far more tenants than it has file descriptors for. Writes go to a small pool of
//! writer threads, each owning a fixed share of the tenants (`docs/tenancy.md`).
//!
//! The functions without a running server ([`create`], [`list`], [`export`], [`delete_files`]) are
//! what `moat tenant` runs; the server's admin endpoints add what only it knows (open sessions).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sqlite_ext::Schema;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::{Store, WriterConfig, Writers, initialise, now_ms, open_conn};

const PLATFORM_SQL: &str = "CREATE TABLE IF NOT EXISTS moat_tenants (
    name       TEXT PRIMARY KEY NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT";

/// Checks a tenant's name: it names a file, so only `a-z`, `0-9`, `-` and `_`, 1 to 63 characters,
/// starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name:?} is not a tenant name: 1 to 63 of a-z, 0-9, - and _, starting with a letter or digit"
        )))
    }
}

/// The platform database's path in `data`.
pub fn platform_path(data: &Path) -> PathBuf {
    data.join("platform.db")
}

/// A tenant's database file in `data` (the name must have passed [`check_name`]).
pub fn tenant_path(data: &Path, name: &str) -> PathBuf {
    data.join("tenants").join(format!("{name}.db"))
}

/// Opens (creating if needed) the platform database.
pub fn open_platform(data: &Path) -> Result<Connection> {
    std::fs::create_dir_all(data.join("tenants"))
        .map_err(|e| Error::Config(format!("{}: {e}", data.display())))?;
    let conn = open_conn(&platform_path(data))?;
    conn.execute_batch(PLATFORM_SQL)?;
    Ok(conn)
}

/// Whether `name` is a registered tenant.
pub fn exists(platform: &Connection, name: &str) -> Result<bool> {
    Ok(platform
        .query_row("SELECT 1 FROM moat_tenants WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Demo data for one tenant: the demo seed holds two companies; the tenant keeps `from`'s rows,
/// routed to itself.
pub fn demo_seed_for(schema: &Schema, seed: &str, from: &str, tenant: &str) -> String {
    let mut sql = seed.to_owned();
    let q = |s: &str| s.replace('\'', "''");
    for t in schema.tables() {
        if t.column_index("tenant_id").is_none() {
            continue;
        }
        sql.push_str(&format!(
            "\nDELETE FROM \"{0}\" WHERE tenant_id IS NOT '{1}';\nUPDATE \"{0}\" SET tenant_id = '{2}';",
            t.name.replace('"', "\"\""),
            q(from),
            q(tenant)
        ));
    }
    sql
}

/// Creates the tenant `name` in `data` with `schema` (the base schema: platform migrations are
/// applied by `moat migrate`), running `seed` once in the same transaction. The tenant is
/// registered last, so a running server sees it only once its database is complete. Safe while the
/// server runs.
pub fn create(data: &Path, name: &str, schema: &Schema, seed: Option<&str>) -> Result<()> {
    check_name(name)?;
    let platform = open_platform(data)?;
    if exists(&platform, name)? {
        return Err(Error::Config(format!("tenant {name} already exists")));
    }
    let path = tenant_path(data, name);
    if path.exists() {
        return Err(Error::Config(format!(
            "{} exists but is not registered; move it away or register it with `moat tenant adopt`",
            path.display()
        )));
    }
    let mut conn = open_conn(&path)?;
    initialise(&mut conn, name, schema, seed)?;
    drop(conn);
    register(&platform, name)
}

/// Registers an existing tenant database.
pub(crate) fn register(platform: &Connection, name: &str) -> Result<()> {
    platform.execute(
        "INSERT INTO moat_tenants (name, created_ms) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        rusqlite::params![name, now_ms() as i64],
    )?;
    Ok(())
}

/// What `moat tenant list` shows of a tenant (and `GET /admin/tenants` answers, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Its name.
    pub name: String,
    /// Rows in its synced tables.
    pub rows: i64,
    /// Its database's size in bytes (with the WAL).
    pub bytes: u64,
    /// Open sessions (known only to a running server: `None` from the files alone).
    pub connections: Option<usize>,
    /// When it last changed: the newest change log entry's commit, ms since the Unix epoch (0: never).
    pub last_write_ms: u64,
    /// The migrations applied to it: `platform:0002`, `tenant:0001`, ...
    pub migrations: Vec<String>,
}

/// Every tenant of `data`, with its rows, size, last write and migrations.
pub fn list(data: &Path, base: &Schema) -> Result<Vec<TenantInfo>> {
    let names = registered(&open_platform(data)?)?;
    let mut out = Vec::new();
    for name in names {
        let path = tenant_path(data, &name);
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let schema = crate::migrate::effective_schema(&conn, base)?;
        let mut rows = 0;
        for t in schema.tables() {
            rows += t.count(&conn, &[])?;
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let bytes = size(&path) + size(&PathBuf::from(format!("{}-wal", path.display())));
        let last: Option<i64> = conn
            .query_row("SELECT value FROM moat_meta WHERE key = 'last_write_ms'", [], |r| r.get(0))
            .optional()?;
        let migrations = conn
            .prepare("SELECT scope || ':' || printf('%04d', version) FROM moat_migrations ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>())
            .unwrap_or_default();
        out.push(TenantInfo {
            name,
            rows,
            bytes,
            connections: None,
            last_write_ms: last.unwrap_or(0) as u64,
            migrations,
        });
    }
    Ok(out)
}

/// The registered tenants' names, in order.
pub(crate) fn registered(platform: &Connection) -> Result<Vec<String>> {
    let names = platform
        .prepare("SELECT name FROM moat_tenants ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

/// Writes a consistent copy of the tenant's database to `to` (SQLite's `VACUUM INTO`: one read
/// transaction, so the copy is the database as of one commit). Safe while the server runs.
pub fn export(data: &Path, name: &str, to: &Path) -> Result<()> {
    check_name(name)?;
    if !exists(&open_platform(data)?, name)? {
        return Err(Error::Config(format!("there is no tenant {name}")));
    }
    if to.exists() {
        return Err(Error::Config(format!("{} exists; export writes a new file", to.display())));
    }
    let conn = open_conn(&tenant_path(data, name))?;
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
    Ok(())
}

/// Unregisters the tenant and removes its files. The caller makes sure no session is open.
pub fn delete_files(data: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let platform = open_platform(data)?;
    if !exists(&platform, name)? {
        return Err(Error::Config(format!("there is no tenant {name}")));
    }
    platform.execute("DELETE FROM moat_tenants WHERE name = ?1", [name])?;
    let path = tenant_path(data, name);
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Config(format!("{}: {e}", p.display()))),
        }
    }
    Ok(())
}

/// What every tenant of a server is opened with.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The base schema (migrations come on top, per tenant).
    pub(crate) base: Schema,
    /// The sync rules' text (checked against each tenant's schema when it opens).
    pub(crate) rules_text: String,
    pub(crate) writers: Writers,
    pub(crate) channel_buffer: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) writer: WriterConfig,
    /// In a cluster: each store takes its file's lock and writes only under a lease.
    pub(crate) cluster: bool,
}

/// The open tenants of a running server.
#[derive(Debug)]
pub(crate) struct Tenants {
    data: PathBuf,
    shared: Shared,
    platform: Mutex<Connection>,
    open: Mutex<HashMap<String, Arc<Store>>>,
    /// Opening a tenant happens one at a time, so two sessions never open the same file twice.
    opening: tokio::sync::Mutex<()>,
}

impl Tenants {
    pub(crate) fn new(data: &Path, shared: Shared) -> Result<Tenants> {
        let platform = open_platform(data)?;
        Ok(Tenants {
            data: data.to_owned(),
            shared,
            platform: Mutex::new(platform),
            open: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn data(&self) -> &Path {
        &self.data
    }

    pub(crate) fn base(&self) -> &Schema {
        &self.shared.base
    }

    /// The tenant `name` if it is open now (no waiting, nothing opened).
    pub(crate) fn get_open(&self, name: &str) -> Option<Arc<Store>> {
        let open = self.open.lock().expect("tenants lock");
        let s = open.get(name)?;
        s.touch();
        Some(Arc::clone(s))
    }

    /// The tenant's store, opening it if needed; `None` when there is no such tenant.
    pub(crate) async fn get(self: &Arc<Self>, name: &str) -> Result<Option<Arc<Store>>> {
        if let Some(s) = self.get_open(name) {
            return Ok(Some(s));
        }
        if check_name(name).is_err() {
            return Ok(None);
        }
        let _one = self.opening.lock().await;
        if let Some(s) = self.open.lock().expect("tenants lock").get(name) {
            return Ok(Some(Arc::clone(s)));
        }
        let (me, owned) = (Arc::clone(self), name.to_owned());
        let store = tokio::task::spawn_blocking(move || me.open_now(&owned))
            .await
            .map_err(|e| Error::Unavailable(format!("opening a tenant failed: {e}")))??;
        if let Some(s) = &store {
            self.open.lock().expect("tenants lock").insert(name.to_owned(), Arc::clone(s));
        }
        Ok(store)
    }

    fn open_now(&self, name: &str) -> Result<Option<Arc<Store>>> {
        if !exists(&self.platform.lock().expect("platform lock"), name)? {
            return Ok(None);
        }
        let store = Store::open(name, &tenant_path(&self.data, name), &self.shared)?;
        tracing::debug!(tenant = name, "tenant opened");
        Ok(Some(store))
    }

    /// The tenants open now.
    pub(crate) fn open_now_list(&self) -> Vec<Arc<Store>> {
        self.open.lock().expect("tenants lock").values().cloned().collect()
    }

    /// Every registered tenant's name.
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        registered(&self.platform.lock().expect("platform lock"))
    }

    /// Closes tenants with no session that have been idle for `idle_ms` (their files close when the
    /// last write in flight is done), and the reader connections of tenants idle for a while.
    pub(crate) fn close_idle(&self, idle_ms: u64) {
        let mut open = self.open.lock().expect("tenants lock");
        open.retain(|name, store| {
            let idle = store.idle_ms();
            // In a cluster a tenant whose lease this node holds stays open: the cluster owns it.
            let until = store.lease_until.load(Ordering::Relaxed);
            let leased = until > 0 && until != u64::MAX;
            let keep = store.connections.load(Ordering::Relaxed) > 0 || idle < idle_ms || leased;
            if !keep {
                tracing::debug!(tenant = %name, "idle tenant closed");
            } else if idle >= idle_ms.min(30_000) {
                store.trim_readers();
            }
            keep
        });
    }

    /// Writes every open tenant's changed device records (fleet health), in the background.
    pub(crate) async fn flush_devices(&self) {
        for store in self.open_now_list() {
            store.flush_devices().await;
        }
    }

    /// Waits until every write queued so far for an open tenant is committed: an empty write behind
    /// them is answered only after the batch before it (a queue's writes commit in order).
    pub(crate) async fn settle(&self) {
        for store in self.open_now_list() {
            let _ = store.exec("").await;
        }
    }

    /// Forgets an open tenant (it was deleted): its sessions' channels close.
    pub(crate) fn forget(&self, name: &str) -> Option<Arc<Store>> {
        self.forget_for(name, crate::hub::SCHEMA_CHANGED)
    }

    /// Forgets an open tenant, its sessions' closes saying `reason` (in a cluster: it moved).
    pub(crate) fn forget_for(&self, name: &str, reason: &'static str) -> Option<Arc<Store>> {
        let store = self.open.lock().expect("tenants lock").remove(name);
        if let Some(s) = &store {
            s.hub.reset_for(reason);
        }
        store
    }

    /// Whether `name` is a registered tenant.
    pub(crate) fn exists(&self, name: &str) -> Result<bool> {
        exists(&self.platform.lock().expect("platform lock"), name)
    }

    /// The sync rules' text every tenant's model is built with.
    pub(crate) fn rules_text(&self) -> &str {
        &self.shared.rules_text
    }

    /// Writes waiting, over every tenant.
    pub(crate) fn queue_depth(&self) -> usize {
        self.shared.writers.queue_depth()
    }

    /// Takes the registry lock (for creating and deleting tenants in the running server).
    pub(crate) fn platform(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.platform.lock().expect("platform lock")
    }
}
