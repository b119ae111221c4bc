//! One tenant's SQLite database, split by role:
//! - this module: the [`Store`] (opening, the write queue, admin SQL and migrations through the
//!   writer) and its readers, pooled connections for snapshots and catch-up;
//! - `writer`: the pool of writer threads and their group commits ([`writer`]'s `Batch`),
//!   idempotency;
//! - `log`: the change log, its versions and each profile's view of it.
//!
//! Besides the synced tables the database holds `schemas/server.sql`: the change log (`moat_log`),
//! the outcome of every mutation (`moat_mutations`) and the version counter (`moat_meta`). All of it
//! is the tenant's own: keys, mutation ids, versions and conflicts never meet another tenant's.

mod customize;
pub(crate) mod devices;
mod log;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sqlite_ext::{Conflict, Diff};
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::customize::{Publish, versions as customization_versions};
pub(crate) use self::log::{LogEntry, current_version, history_of, log_after, log_bounds};
pub(crate) use self::writer::Writers;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::Models;
use crate::rules::Profile;

const SERVER_SQL: &str = include_str!("../../../schemas/server.sql");

/// What became of a push, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Outcome {
    Ack { version: Option<i64>, conflicts: Vec<Conflict> },
    Reject { code: String, reason: String },
}

/// The answer to a push, delivered to the connection that sent it.
#[derive(Debug)]
pub(crate) struct PushReply {
    pub(crate) mutation_id: String,
    pub(crate) result: Result<Outcome>,
}

/// A client's push, checked and merged by the writer.
pub(crate) struct Push {
    /// The writer (`sub`); mutation ids are theirs, inside this tenant's database.
    pub(crate) user: String,
    pub(crate) profile: Profile,
    pub(crate) mutation_id: String,
    pub(crate) diff: Diff,
    /// Where the answer goes (the writer's connection).
    pub(crate) reply: mpsc::Sender<Box<PushReply>>,
}

pub(crate) enum WriteReq {
    Push(Push),
    Exec {
        sql: String,
        reply: oneshot::Sender<Result<Option<i64>>>,
    },
    /// Device records to keep (fleet health), written with the next batch; no answer.
    Devices(Vec<sqlite_ext::protocol::DeviceRecord>),
    /// Apply migrations inside the running server (between two batches: the writer is the only one).
    Migrate {
        files: Vec<crate::migrate::Migration>,
        scope: crate::migrate::Scope,
        allow_destructive: bool,
        reply: oneshot::Sender<Result<String>>,
    },
    /// Publish an admin's customization (between two batches, like a migration).
    Customize {
        publish: Publish,
        reply: oneshot::Sender<Result<sqlite_ext::protocol::CustomizeAnswer>>,
    },
}

/// One tenant's database: its write connection (used by one writer thread of the pool at a time),
/// its readers, its schema and rules, and its channels.
#[derive(Debug)]
pub struct Store {
    /// The tenant's name (its file is `tenants/<name>.db`).
    pub(crate) tenant: Arc<str>,
    path: PathBuf,
    /// Locked only by the writer thread this tenant is assigned to (a migration too goes through it).
    conn: Mutex<Connection>,
    /// The schema and rules now; replaced by a live migration of this tenant.
    pub(crate) models: Arc<Models>,
    /// This tenant's channels.
    pub(crate) hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    /// The queue of the writer thread that owns this tenant.
    writer: mpsc::Sender<writer::Job>,
    /// Writes of this tenant waiting in that queue.
    queued: AtomicUsize,
    readers: Mutex<Vec<Connection>>,
    /// Bounds concurrent reads (and so reader connections and blocking threads): a burst of
    /// thousands of connecting clients queues here instead of opening thousands of SQLite handles.
    read_slots: tokio::sync::Semaphore,
    /// Open sessions of this tenant.
    pub(crate) connections: AtomicUsize,
    /// When a session last started or a write last committed (ms since the Unix epoch).
    last_active_ms: AtomicU64,
    /// When a write last committed (ms since the Unix epoch; 0: not since it was opened).
    pub(crate) last_write_ms: AtomicU64,
    /// Writes admitted in the current second, and which second (for the per-tenant rate limit).
    rate: Mutex<(u64, u32)>,
    /// Diffs committed since the tenant was opened.
    pub(crate) diffs: AtomicU64,
    /// The last batch failed for the database's reasons (disk full, I/O): not ready.
    pub(crate) failing: std::sync::atomic::AtomicBool,
    /// The tenant's devices (fleet health).
    pub(crate) devices: devices::Devices,
    /// The last integrity probe: when, and what it found wrong (`None`: nothing).
    integrity: Mutex<Option<(std::time::Instant, Option<String>)>>,
    /// Until when this node may commit to the tenant ([`crate::hub::mono_ms`]): always on a single
    /// node; in a cluster, until a little before its lease could run out (0: not at all).
    pub(crate) lease_until: AtomicU64,
    /// In a cluster, the tenant file's lock, held while the store is open: a second node cannot
    /// open it for writing, even if leases went wrong.
    _file_lock: Option<std::fs::File>,
}

/// How often readiness probes a tenant's database with `PRAGMA quick_check` (it reads every page,
/// so not on every `/readyz`).
const INTEGRITY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Concurrent readers per tenant: enough to keep both cores busy while one waits on the disk.
const READERS: usize = 4;

pub(crate) fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    // An ack is sent only after the commit is on disk; group commit pays the fsync once per batch.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The lock on a tenant's file that its one writer holds in a cluster; waits up to 10 s for a node
/// that is letting the tenant go to close it.
fn file_lock(path: &Path) -> Result<std::fs::File> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match crate::migrate::writer_lock(path) {
            Ok(f) => return Ok(f),
            Err(Error::Unavailable(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) log_retention: i64,
    /// Writes per second a tenant may make (0: no limit).
    pub(crate) max_writes_per_second: u32,
    /// The size a tenant's database may reach, in bytes (0: no limit).
    pub(crate) max_database_bytes: u64,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates the server's tables and the tenant's schema in a new database (running `seed` once;
/// `moat_meta`'s `tenant` names the tenant, for migrations and seeds to read), or checks that an
/// existing one was made with `schema`.
pub(crate) fn initialise(
    conn: &mut Connection,
    tenant: &str,
    schema: &sqlite_ext::Schema,
    seed: Option<&str>,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SERVER_SQL)?;
    let initialised: Option<String> =
        tx.query_row("SELECT value FROM moat_meta WHERE key = 'schema_sql'", [], |r| r.get(0)).optional()?;
    match initialised {
        None => {
            tx.execute("INSERT INTO moat_meta (key, value) VALUES ('tenant', ?1)", [tenant])?;
            tx.execute_batch(schema.sql())?;
            if let Some(seed) = seed {
                tx.execute_batch(seed)?;
            }
            tx.execute("INSERT INTO moat_meta (key, value) VALUES ('schema_sql', ?1)", [schema.sql()])?;
        }
        Some(sql) if sql == schema.sql() => {}
        Some(_) => {
            return Err(Error::Config("the database was made with another schema; migrate it first".into()));
        }
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens the tenant database at `path` (which must have been created: [`initialise`]) on its
    /// writer connection, reading its schema (the base one and its migrations) from it; its writes go
    /// to the writer thread that owns the tenant.
    pub(crate) fn open(tenant: &str, path: &Path, shared: &crate::tenants::Shared) -> Result<Arc<Store>> {
        let file_lock = match shared.cluster {
            true => Some(file_lock(path)?),
            false => None,
        };
        let mut conn = open_conn(path)?;
        let schema = crate::migrate::effective_schema(&conn, &shared.base)?;
        initialise(&mut conn, tenant, &schema, None)?;
        let models = Arc::new(Models::new(shared.base.clone(), schema, shared.rules_text.clone())?);
        let devices = devices::Devices::load(&conn)?;
        Ok(Arc::new(Store {
            tenant: Arc::from(tenant),
            path: path.to_owned(),
            conn: Mutex::new(conn),
            models,
            hub: Arc::new(Hub::new(shared.channel_buffer, Arc::clone(&shared.metrics))),
            metrics: Arc::clone(&shared.metrics),
            config: shared.writer.clone(),
            writer: shared.writers.queue_for(tenant),
            queued: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
            read_slots: tokio::sync::Semaphore::new(READERS),
            connections: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(now_ms()),
            last_write_ms: AtomicU64::new(0),
            rate: Mutex::new((0, 0)),
            diffs: AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
            integrity: Mutex::new(None),
            devices,
            lease_until: AtomicU64::new(if shared.cluster { 0 } else { u64::MAX }),
            _file_lock: file_lock,
        }))
    }

    /// Whether this node may commit to the tenant now; refused as unavailable (retry) if not.
    pub(crate) fn check_lease(&self) -> Result<()> {
        match crate::hub::mono_ms() < self.lease_until.load(Ordering::Relaxed) {
            true => Ok(()),
            false => {
                Err(Error::Unavailable(format!("{} is moving between server nodes; retry", self.tenant)))
            }
        }
    }

    /// Connected clients, diffs committed since opened, writes waiting (for the metrics).
    pub(crate) fn figures(&self) -> (u64, u64, u64) {
        (
            self.connections.load(Ordering::Relaxed) as u64,
            self.diffs.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed) as u64,
        )
    }

    /// Marks the tenant as in use now (it is not closed while in use).
    pub(crate) fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the tenant was last in use.
    pub(crate) fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// Closes the pooled reader connections (an idle tenant keeps only its writer's files open).
    pub(crate) fn trim_readers(&self) {
        self.readers.lock().expect("reader pool lock").clear();
    }

    /// Admits one write under the tenant's writes-per-second limit, or says which limit it hit.
    pub(crate) fn admit_write(&self) -> Result<()> {
        let limit = self.config.max_writes_per_second;
        if limit == 0 {
            return Ok(());
        }
        let second = now_ms() / 1000;
        let mut rate = self.rate.lock().expect("rate lock");
        if rate.0 != second {
            *rate = (second, 0);
        }
        if rate.1 >= limit {
            return Err(Error::Limit(format!(
                "{} has reached its limit of {limit} writes per second; retry in a moment",
                self.tenant
            )));
        }
        rate.1 += 1;
        Ok(())
    }

    /// Applies the pending migrations of `files` inside the running server (between two write
    /// batches), swaps this tenant's schema and rules, and closes its sessions (1012) so that its
    /// clients reconnect onto the new schema; returns the progress. Other tenants are untouched.
    pub async fn migrate(
        self: &Arc<Self>,
        files: Vec<crate::migrate::Migration>,
        scope: crate::migrate::Scope,
        allow_destructive: bool,
    ) -> Result<String> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteReq::Migrate { files, scope, allow_destructive, reply }).await?;
        rx.await.map_err(|_| Error::Unavailable("the writer stopped".into()))?
    }

    /// Publishes an admin's customization (or a rollback) in the tenant's writer; see
    /// [`customize`](self::customize).
    pub(crate) async fn customize(
        self: &Arc<Self>,
        publish: Publish,
    ) -> Result<sqlite_ext::protocol::CustomizeAnswer> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteReq::Customize { publish, reply }).await?;
        rx.await.map_err(|_| Error::Unavailable("the writer stopped".into()))?
    }

    async fn send(self: &Arc<Self>, req: WriteReq) -> Result<()> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.writer.send((Arc::clone(self), req)).await.map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            Error::Unavailable("the server is shutting down".into())
        })
    }

    /// Writes the device records that changed since the last call (in the background, with the
    /// tenant's next batch).
    pub(crate) async fn flush_devices(self: &Arc<Self>) {
        let changed = self.devices.take_dirty();
        if !changed.is_empty() {
            let _ = self.send(WriteReq::Devices(changed)).await;
        }
    }

    /// Queues a write. A full queue pushes back on the caller (and so on its client's socket) for up
    /// to `wait`; after that the write is refused as unavailable, and the client retries later.
    pub(crate) async fn submit(self: &Arc<Self>, req: WriteReq, wait: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(wait, self.send(req)).await {
            Ok(r) => r,
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Error::Unavailable("the write queue is full; retry".into()))
            }
        }
    }

    /// Runs SQL on the tenant's database as one transaction, captures what it changed and
    /// broadcasts it like any client write (for admin tools, migrations and tests). Returns the
    /// version of the change, or `None` when nothing changed.
    pub async fn exec(self: &Arc<Self>, sql: &str) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteReq::Exec { sql: sql.to_owned(), reply }).await?;
        rx.await.map_err(|_| Error::Unavailable("the writer has stopped".into()))?
    }

    /// The database's size on disk in bytes (its pages; the WAL is checkpointed into them).
    pub(crate) fn size_bytes(conn: &Connection) -> Result<u64> {
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    /// Whether the tenant can serve: its last batch did not fail for the database's reasons, a
    /// reader finds the database readable (its header and schema), and the last integrity probe
    /// (`PRAGMA quick_check`, at the first call and every ten minutes after) found nothing wrong.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(format!("{}: its last write failed to commit", self.tenant)));
        }
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?))
            .await?;
        let last = self.integrity.lock().expect("integrity lock").clone();
        let found = match last {
            Some((at, found)) if at.elapsed() < INTEGRITY_EVERY => found,
            _ => {
                let found = self
                    .read(|c| {
                        let first: String = c.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
                        Ok((first != "ok").then_some(first))
                    })
                    .await
                    .unwrap_or_else(|e| Some(e.to_string()));
                if let Some(problem) = &found {
                    tracing::error!(tenant = %self.tenant, %problem, "the database fails its integrity check");
                }
                *self.integrity.lock().expect("integrity lock") =
                    Some((std::time::Instant::now(), found.clone()));
                found
            }
        };
        match found {
            Some(problem) => Err(Error::Unavailable(format!(
                "{}: the database fails its integrity check: {problem}",
                self.tenant
            ))),
            None => Ok(()),
        }
    }

    /// Runs `f` on a reader connection in a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _slot = self.read_slots.acquire().await.map_err(|_| Error::Unavailable("store closed".into()))?;
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = store.readers.lock().expect("reader pool lock").pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_conn(&store.path)?,
            };
            let out = f(&mut conn);
            store.readers.lock().expect("reader pool lock").push(conn);
            out
        })
        .await
        .map_err(|e| Error::Unavailable(format!("reader task failed: {e}")))?
    }
}
