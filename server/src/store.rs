//! The server's SQLite database: one writer thread that commits in groups, and readers on their own
//! connections for snapshots and catch-up.
//!
//! Besides the synced tables it holds (`schemas/server.sql`) the change log (`moat_log`: one entry per
//! commit that changed something, versioned by one global counter; a channel's log is this log seen
//! through the channel's view) and the outcome of every mutation (`moat_mutations`), written in the
//! same transaction as the mutation, so a replayed push gets the first answer and is never applied
//! twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sqlite_ext::{Change, Conflict, Diff, Op, Schema, Value, merge};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::Models;
use crate::rules::{Profile, Rules};

const SERVER_SQL: &str = include_str!("../../schemas/server.sql");

/// One change of the log, with the routing values of its row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Routed {
    pub(crate) route: Vec<Value>,
    pub(crate) change: Change,
}

/// One committed entry of the change log.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) version: i64,
    pub(crate) changes: Vec<Routed>,
}

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

pub(crate) enum WriteReq {
    Push {
        user: String,
        profile: Profile,
        mutation_id: String,
        diff: Diff,
        reply: mpsc::Sender<Box<PushReply>>,
    },
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

/// The newest version, and the oldest one still in the log (`newest + 1` when the log is empty).
pub(crate) fn log_bounds(conn: &Connection) -> Result<(i64, i64)> {
    let newest: i64 = conn
        .query_row("SELECT value FROM moat_meta WHERE key = 'version'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let oldest: Option<i64> = conn.query_row("SELECT min(version) FROM moat_log", [], |r| r.get(0))?;
    Ok((newest, oldest.unwrap_or(newest + 1)))
}

/// Log entries after `cursor`, up to `limit` of them.
pub(crate) fn log_after(conn: &Connection, cursor: i64, limit: usize) -> Result<Vec<LogEntry>> {
    let mut stmt = conn
        .prepare_cached("SELECT version, entry FROM moat_log WHERE version > ?1 ORDER BY version LIMIT ?2")?;
    let rows =
        stmt.query_map((cursor, limit as i64), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (version, json) = row?;
        let changes: Vec<Routed> = serde_json::from_str(&json)
            .map_err(|e| Error::Config(format!("log entry {version} is unreadable: {e}")))?;
        out.push(LogEntry { version, changes });
    }
    Ok(out)
}

struct Writer {
    conn: Connection,
    models: Arc<Models>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    rx: mpsc::Receiver<WriteReq>,
}

/// What to tell whom once the batch is durable.
enum Done {
    Push { reply: mpsc::Sender<Box<PushReply>>, mutation_id: String, result: Result<Outcome> },
    Exec { reply: oneshot::Sender<Result<Option<i64>>>, result: Result<Option<i64>> },
}

impl Writer {
    fn run(mut self) {
        let mut next = None;
        while let Some(first) = next.take().or_else(|| self.rx.blocking_recv()) {
            if let WriteReq::Migrate { files, allow_destructive, reply } = first {
                let _ = reply.send(self.migrate(&files, allow_destructive));
                continue;
            }
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch {
                match self.rx.try_recv() {
                    // A migration waits for the batch before it to commit.
                    Ok(req @ WriteReq::Migrate { .. }) => {
                        next = Some(req);
                        break;
                    }
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        tracing::info!("writer stopped");
    }

    /// Applies the pending migrations, then swaps the server's model and drops every channel, so
    /// that each session closes (1012) and its client reconnects onto the new schema. The whole set
    /// is checked first (the final schema and the rules over it), so a refusal changes nothing.
    fn migrate(&mut self, files: &[crate::migrate::Migration], allow_destructive: bool) -> Result<String> {
        use crate::migrate;
        let base = &self.models.base;
        let planned = migrate::plan(&mut self.conn, base, files)?;
        if planned.is_empty() {
            return Ok("nothing to apply\n".into());
        }
        let current = migrate::effective_schema(&self.conn, base)?;
        let sql = migrate::effective_sql(current.sql(), planned.iter().map(|(m, _)| m.sql.as_str()));
        let target =
            Schema::from_sql(&sql).map_err(|e| Error::Config(format!("the migrated schema: {e}")))?;
        self.models.build(target)?; // the rules must fit the new schema before anything changes
        let mut log = String::new();
        let result = migrate::up(&mut self.conn, base, files, allow_destructive, |line| {
            tracing::info!("{line}");
            log.push_str(line);
            log.push('\n');
        });
        // Whatever was applied (all, or the ones before a refusal) is what the server now runs on.
        let schema = migrate::effective_schema(&self.conn, base)?;
        if schema.sql() != current.sql() {
            self.models.set(self.models.build(schema)?);
            self.hub.reset();
        }
        result.map(|done| {
            format!("{log}{} migration(s) applied; clients reconnect onto the new schema\n", done.len())
        })
    }

    fn commit_batch(&mut self, batch: Vec<WriteReq>) {
        let model = self.models.get();
        let started = Instant::now();
        let mut done = Vec::with_capacity(batch.len());
        let mut entries = Vec::new();
        let result = (|| -> Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut version: i64 = tx
                .query_row("SELECT value FROM moat_meta WHERE key = 'version'", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            for req in batch {
                match req {
                    WriteReq::Push { user, profile, mutation_id, diff, reply } => {
                        // Each push in its own savepoint: one that fails half-way leaves nothing.
                        tx.prepare_cached("SAVEPOINT moat_push")?.execute([])?;
                        let before = (version, entries.len());
                        let result = push(
                            &tx,
                            &model.schema,
                            &model.rules,
                            &user,
                            &profile,
                            &mutation_id,
                            &diff,
                            &mut version,
                            &mut entries,
                        );
                        if result.is_ok() {
                            tx.prepare_cached("RELEASE moat_push")?.execute([])?;
                        } else {
                            tx.execute_batch("ROLLBACK TO moat_push; RELEASE moat_push")?;
                            (version, _) = before;
                            entries.truncate(before.1);
                        }
                        done.push(Done::Push { reply, mutation_id, result });
                    }
                    WriteReq::Migrate { reply, .. } => {
                        let _ =
                            reply.send(Err(Error::Unavailable("a migration is not part of a batch".into())));
                    }
                    WriteReq::Exec { sql, reply } => {
                        let result = exec(&tx, &model.schema, &model.rules, &sql, &mut version, &mut entries);
                        done.push(Done::Exec { reply, result });
                    }
                }
            }
            tx.execute(
                "INSERT INTO moat_meta (key, value) VALUES ('version', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [version],
            )?;
            if self.config.log_retention > 0 && version % 1024 == 0 {
                tx.execute(
                    "DELETE FROM moat_log WHERE version <= ?1",
                    [version - self.config.log_retention],
                )?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            // Nothing of the batch is durable: every writer hears so and may retry.
            tracing::error!(error = %e, "batch commit failed");
            entries.clear();
            for d in &mut done {
                match d {
                    Done::Push { result, .. } => {
                        *result = Err(Error::Unavailable(format!("commit failed: {e}")))
                    }
                    Done::Exec { result, .. } => {
                        *result = Err(Error::Unavailable(format!("commit failed: {e}")))
                    }
                }
            }
        }
        self.metrics.observe_batch(started.elapsed());
        self.metrics.diffs.add(entries.len() as u64);
        // Broadcast first, then answer the writers: a writer's connection sends the diff before the ack.
        self.hub.publish(&model.rules, &entries, &self.metrics);
        for d in done {
            match d {
                Done::Push { reply, mutation_id, result } => {
                    if let Ok(Outcome::Reject { .. }) = &result {
                        self.metrics.rejects.inc();
                    }
                    if let Ok(Outcome::Ack { conflicts, .. }) = &result {
                        self.metrics.conflicts.add(conflicts.len() as u64);
                    }
                    // A connection that is gone, or too slow to take its acks, loses them; it will
                    // replay the push and get the stored outcome.
                    let _ = reply.try_send(Box::new(PushReply { mutation_id, result }));
                }
                Done::Exec { reply, result } => {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Applies one push inside the batch's transaction (see the module docs for idempotency).
#[allow(clippy::too_many_arguments)]
fn push(
    conn: &Connection,
    schema: &Schema,
    rules: &Rules,
    user: &str,
    profile: &Profile,
    mutation_id: &str,
    diff: &Diff,
    version: &mut i64,
    entries: &mut Vec<LogEntry>,
) -> Result<Outcome> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT outcome FROM moat_mutations WHERE user_id = ?1 AND mutation_id = ?2")?
        .query_row((user, mutation_id), |r| r.get(0))
        .optional()?;
    if let Some(json) = stored {
        return serde_json::from_str(&json)
            .map_err(|e| Error::Config(format!("stored outcome unreadable: {e}")));
    }
    let outcome = match check_and_merge(conn, schema, rules, profile, diff) {
        Ok((applied, conflicts)) => {
            let v = if applied.is_empty() {
                None
            } else {
                *version += 1;
                record(conn, *version, applied, entries)?;
                Some(*version)
            };
            Outcome::Ack { version: v, conflicts }
        }
        Err(e) if !e.retryable() => {
            let code = match &e {
                Error::BadDiff(sqlite_ext::Error::Constraint { .. }) => "constraint",
                other => other.code(),
            };
            Outcome::Reject { code: code.to_owned(), reason: e.to_string() }
        }
        Err(e) => return Err(e),
    };
    let json = serde_json::to_string(&outcome).expect("outcomes serialise");
    conn.prepare_cached("INSERT INTO moat_mutations (user_id, mutation_id, outcome) VALUES (?1, ?2, ?3)")?
        .execute((user, mutation_id, json))?;
    Ok(outcome)
}

/// Permission checks, then the merge; returns the applied changes with their routes, and the
/// conflicts the writer may see.
fn check_and_merge(
    conn: &Connection,
    schema: &Schema,
    rules: &Rules,
    profile: &Profile,
    diff: &Diff,
) -> Result<(Vec<Routed>, Vec<Conflict>)> {
    let route_cols: Vec<&str> = rules.route_columns().collect();
    for change in &diff.changes {
        let table = schema.table(&change.table)?;
        let route = match change.op {
            Op::Insert => {
                let r = rules
                    .route_of_change(change)
                    .ok_or_else(|| Error::Forbidden("routing column missing".into()))?;
                if r != profile.route {
                    return Err(Error::Forbidden(format!(
                        "row {} of {} would leave your channel",
                        change.key(),
                        change.table
                    )));
                }
                None
            }
            // The row's channel is what the database says, never what the client claims.
            Op::Update | Op::Delete => table.read_columns(conn, &change.pk, &route_cols)?,
        };
        rules.check_write(profile, change, route.as_deref())?;
    }
    let report = merge(conn, schema, diff)?;
    let conflicts = rules.visible_conflicts(profile, report.conflicts);
    let applied = route_changes(conn, schema, rules, report.applied)?;
    Ok((applied, conflicts))
}

/// Attaches to each applied change its row's routing values (read back for updates, whose diff
/// carries only the changed columns; routing columns never change).
fn route_changes(conn: &Connection, schema: &Schema, rules: &Rules, applied: Diff) -> Result<Vec<Routed>> {
    let route_cols: Vec<&str> = rules.route_columns().collect();
    let mut out = Vec::with_capacity(applied.changes.len());
    for change in applied.changes {
        let route = match rules.route_of_change(&change) {
            Some(r) => r,
            None => schema
                .table(&change.table)?
                .read_columns(conn, &change.pk, &route_cols)?
                .ok_or_else(|| Error::Config(format!("updated row {} vanished", change.key())))?,
        };
        out.push(Routed { route, change });
    }
    Ok(out)
}

fn record(conn: &Connection, version: i64, changes: Vec<Routed>, entries: &mut Vec<LogEntry>) -> Result<()> {
    let json = serde_json::to_string(&changes).expect("log entries serialise");
    conn.prepare_cached("INSERT INTO moat_log (version, entry) VALUES (?1, ?2)")?.execute((version, json))?;
    entries.push(LogEntry { version, changes });
    Ok(())
}

/// Runs admin SQL under a session and logs what it changed.
fn exec(
    conn: &Connection,
    schema: &Schema,
    rules: &Rules,
    sql: &str,
    version: &mut i64,
    entries: &mut Vec<LogEntry>,
) -> Result<Option<i64>> {
    conn.execute_batch("SAVEPOINT moat_exec")?;
    let result = (|| {
        let mut session = rusqlite::session::Session::new(conn)?;
        for t in schema.tables() {
            session.attach(Some(t.name.as_str()))?;
        }
        conn.execute_batch(sql)?;
        let mut bytes = Vec::new();
        session.changeset_strm(&mut bytes)?;
        drop(session);
        let diff = Diff::from_changeset(schema, &bytes)?;
        if diff.is_empty() {
            return Ok(None);
        }
        let routed = route_changes(conn, schema, rules, diff)?;
        *version += 1;
        record(conn, *version, routed, entries)?;
        Ok(Some(*version))
    })();
    match &result {
        Ok(_) => conn.execute_batch("RELEASE moat_exec")?,
        Err(_) => conn.execute_batch("ROLLBACK TO moat_exec; RELEASE moat_exec")?,
    }
    result
}
