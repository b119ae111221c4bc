//! The server's SQLite database, split by role:
//! - this module: the [`Store`] (opening, the write queue, admin SQL and migrations through the
//!   writer) and its readers, pooled connections for snapshots and catch-up;
//! - `writer`: the one writer thread and its group commit ([`writer`]'s `Batch`), idempotency;
//! - `log`: the change log, its versions and each profile's view of it.
//!
//! Besides the synced tables the database holds `schemas/server.sql`: the change log (`moat_log`),
//! the outcome of every mutation (`moat_mutations`) and the version counter (`moat_meta`).

mod log;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sqlite_ext::{Conflict, Diff};
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::log::{LogEntry, log_after, log_bounds};
use self::writer::Writer;
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
    /// The writer (with its tenant: mutation ids are theirs).
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
    /// Apply migrations inside the running server (between two batches: the writer is the only one).
    Migrate {
        files: Vec<crate::migrate::Migration>,
        allow_destructive: bool,
        reply: oneshot::Sender<Result<String>>,
    },
}

/// The database, its writer and its readers.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    writer: mpsc::Sender<WriteReq>,
    readers: Mutex<Vec<Connection>>,
    /// Bounds concurrent reads (and so reader connections and blocking threads): a burst of
    /// thousands of connecting clients queues here instead of opening thousands of SQLite handles.
    read_slots: tokio::sync::Semaphore,
}

/// Concurrent readers: enough to keep both cores busy while one waits on the disk.
const READERS: usize = 4;

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    // An ack is sent only after the commit is on disk; group commit pays the fsync once per batch.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) max_batch: usize,
    pub(crate) log_retention: i64,
}

impl Store {
    /// Opens (creating if needed) the database with `schema`; `seed` is run once, on a new database.
    pub(crate) fn open(
        path: &Path,
        models: Arc<Models>,
        seed: Option<&str>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
    ) -> Result<Arc<Store>> {
        let mut conn = open_conn(path)?;
        let schema = Arc::clone(&models.get().schema);
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SERVER_SQL)?;
            let initialised: Option<String> = tx
                .query_row("SELECT value FROM moat_meta WHERE key = 'schema_sql'", [], |r| r.get(0))
                .optional()?;
            match initialised {
                None => {
                    tx.execute_batch(schema.sql())?;
                    if let Some(seed) = seed {
                        tx.execute_batch(seed)?;
                    }
                    tx.execute(
                        "INSERT INTO moat_meta (key, value) VALUES ('schema_sql', ?1)",
                        [schema.sql()],
                    )?;
                }
                Some(sql) if sql == schema.sql() => {}
                Some(_) => {
                    return Err(Error::Config(
                        "the database was made with another schema; migrate it first".into(),
                    ));
                }
            }
            tx.commit()?;
        }
        let (tx, rx) = mpsc::channel(4096);
        let writer = Writer { conn, models, hub, metrics, config, rx };
        std::thread::Builder::new()
            .name("moat-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Arc::new(Store {
            path: path.to_owned(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
            read_slots: tokio::sync::Semaphore::new(READERS),
        }))
    }

    /// Applies the pending migrations of `files` inside the running server (between two write
    /// batches), swaps its schema and rules, and closes every session (1012) so that clients
    /// reconnect onto the new schema; returns the progress. `POST /admin/migrate` calls this.
    pub async fn migrate(
        &self,
        files: Vec<crate::migrate::Migration>,
        allow_destructive: bool,
    ) -> Result<String> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteReq::Migrate { files, allow_destructive, reply })
            .await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        rx.await.map_err(|_| Error::Unavailable("the writer stopped".into()))?
    }

    /// Queues a write. A full queue pushes back on the caller (and so on its client's socket) for up
    /// to `wait`; after that the write is refused as unavailable, and the client retries later.
    pub(crate) async fn submit(&self, req: WriteReq, wait: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(wait, self.writer.send(req)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Unavailable("the server is shutting down".into())),
            Err(_) => Err(Error::Unavailable("the write queue is full; retry".into())),
        }
    }

    /// How many writes wait for the writer.
    pub(crate) fn queue_depth(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    /// Runs SQL on the authoritative database as one transaction, captures what it changed and
    /// broadcasts it like any client write (for admin tools, migrations and tests). Returns the
    /// version of the change, or `None` when nothing changed.
    pub async fn exec(&self, sql: &str) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteReq::Exec { sql: sql.to_owned(), reply })
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?;
        rx.await.map_err(|_| Error::Unavailable("the writer has stopped".into()))?
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
