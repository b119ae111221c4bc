//! The writers: a small pool of threads, each owning a fixed share of the tenants (by a hash of the
//! tenant's name), so a tenant has exactly one writer and any number of tenants need only a few
//! threads. A thread takes every write waiting in its queue, groups them by tenant, and commits each
//! tenant's group as one [`Batch`]: one transaction holding every push and admin statement of that
//! tenant that was waiting, each in its own savepoint, so one fsync makes them all durable. A busy
//! tenant thus holds up another tenant of the same thread for at most one batch, and tenants of other
//! threads not at all. Once a batch is committed the tenant's hub publishes its log entries, and
//! only then is each writer answered, so a writer's own diff always reaches it before its ack.
//!
//! Idempotency: the outcome of every push (`moat_mutations`, keyed by user and mutation id) is written
//! in the same transaction as the push, so a replayed push gets the first answer and is never applied
//! twice.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sqlite_ext::{Schema, merge};
use tokio::sync::{mpsc, oneshot};

use super::log::{LogEntry, current_version, record, refit, route_changes, set_version};
use super::{Outcome, Push, PushReply, Store, WriteReq};
use crate::error::{Error, Result};
use crate::model::Model;

/// The most changes one log entry of a migration's data holds (a catch-up frame each).
const MIGRATION_CHUNK: usize = 500;

/// A write and the tenant it is for.
pub(crate) type Job = (Arc<Store>, WriteReq);

/// The pool of writer threads. Each thread stops when every sender of its queue is gone.
#[derive(Debug)]
pub(crate) struct Writers {
    queues: Vec<mpsc::Sender<Job>>,
}

impl Writers {
    /// Starts `threads` writer threads (at least one), each committing at most `max_batch` writes at
    /// a time.
    pub(crate) fn start(threads: usize, max_batch: usize) -> Result<Writers> {
        let mut queues = Vec::new();
        for n in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel::<Job>(4096);
            std::thread::Builder::new()
                .name(format!("moat-writer-{n}"))
                .spawn(move || run(rx, max_batch.max(1)))
                .map_err(|e| Error::Unavailable(format!("cannot start a writer: {e}")))?;
            queues.push(tx);
        }
        Ok(Writers { queues })
    }

    /// The queue of the thread that writes `tenant` (the same one for as long as the server runs).
    pub(crate) fn queue_for(&self, tenant: &str) -> mpsc::Sender<Job> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tenant.hash(&mut h);
        self.queues[(h.finish() % self.queues.len() as u64) as usize].clone()
    }

    /// How many writes wait, over every thread.
    pub(crate) fn queue_depth(&self) -> usize {
        self.queues.iter().map(|q| q.max_capacity() - q.capacity()).sum()
    }
}

/// One tenant's share of what a thread took off its queue: writes to commit together, or one
/// migration (which runs alone, between the batches before and after it).
struct Group {
    store: Arc<Store>,
    reqs: Vec<WriteReq>,
}

/// A writer thread: take what waits (up to `max_batch` writes), group it by tenant in arrival order,
/// commit each group.
fn run(mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut groups: Vec<Group> = Vec::new();
        // The group of each tenant that still takes writes (a migration closes it).
        let mut open: HashMap<*const Store, usize> = HashMap::new();
        for (store, req) in jobs {
            store.queued.fetch_sub(1, Ordering::Relaxed);
            let key = Arc::as_ptr(&store);
            if matches!(req, WriteReq::Migrate { .. } | WriteReq::Customize { .. }) {
                open.remove(&key);
                groups.push(Group { store, reqs: vec![req] });
                continue;
            }
            match open.get(&key) {
                Some(&i) => groups[i].reqs.push(req),
                None => {
                    open.insert(key, groups.len());
                    groups.push(Group { store, reqs: vec![req] });
                }
            }
        }
        for Group { store, mut reqs } in groups {
            let mut conn = store.conn.lock().unwrap_or_else(|e| e.into_inner());
            match reqs.pop() {
                Some(WriteReq::Migrate { files, scope, allow_destructive, reply }) => {
                    let done = store.check_lease();
                    let done =
                        done.and_then(|()| migrate(&store, &mut conn, &files, scope, allow_destructive));
                    let _ = reply.send(done);
                }
                Some(WriteReq::Customize { publish, reply }) => {
                    let done = store.check_lease();
                    let _ =
                        reply.send(done.and_then(|()| super::customize::publish(&store, &mut conn, publish)));
                }
                Some(last) => {
                    reqs.push(last);
                    commit_batch(&store, &mut conn, reqs);
                }
                None => {}
            }
        }
    }
    tracing::debug!("writer stopped");
}

/// What to tell whom once the batch is durable.
enum Done {
    Push { reply: mpsc::Sender<Box<PushReply>>, mutation_id: String, result: Result<Outcome> },
    Exec { reply: oneshot::Sender<Result<Option<i64>>>, result: Result<Option<i64>> },
}

impl Done {
    /// Nothing of the batch became durable: every writer hears so and may retry.
    fn fail(&mut self, why: &str) {
        let e = || Error::Unavailable(format!("commit failed: {why}"));
        match self {
            Done::Push { result, .. } => *result = Err(e()),
            Done::Exec { result, .. } => *result = Err(e()),
        }
    }
}

/// One group commit in the making: the version it has reached, the log entries it appended (to
/// publish once durable), and whom to answer.
struct Batch<'m> {
    model: &'m Model,
    version: i64,
    entries: Vec<LogEntry>,
    done: Vec<Done>,
}

impl Batch<'_> {
    /// Adds one push, in its own savepoint: a push that fails half-way leaves nothing behind.
    fn push(&mut self, conn: &Connection, push: Push) -> Result<()> {
        conn.prepare_cached("SAVEPOINT moat_push")?.execute([])?;
        let before = (self.version, self.entries.len());
        let result = self.apply(conn, &push);
        let ended = if result.is_ok() {
            conn.prepare_cached("RELEASE moat_push").and_then(|mut s| s.execute([])).map(drop)
        } else {
            self.version = before.0;
            self.entries.truncate(before.1);
            conn.execute_batch("ROLLBACK TO moat_push; RELEASE moat_push")
        };
        // Answered whatever happens next: when SQLite has rolled the whole transaction back (disk
        // full, I/O), the batch fails and this push hears so with the others.
        self.done.push(Done::Push { reply: push.reply, mutation_id: push.mutation_id, result });
        Ok(ended?)
    }

    /// The stored outcome of a replayed push, or the push checked, merged and recorded.
    fn apply(&mut self, conn: &Connection, p: &Push) -> Result<Outcome> {
        let stored: Option<String> = conn
            .prepare_cached("SELECT outcome FROM moat_mutations WHERE user_id = ?1 AND mutation_id = ?2")?
            .query_row((&p.user, &p.mutation_id), |r| r.get(0))
            .optional()?;
        if let Some(json) = stored {
            return serde_json::from_str(&json).map_err(|e| {
                Error::Internal(format!("the stored outcome of {} is unreadable: {e}", p.mutation_id))
            });
        }
        let (schema, rules) = (&self.model.schema, &self.model.rules);
        let invalid = |e: sqlite_ext::Error| match e {
            sqlite_ext::Error::Invalid(m) => Error::Invalid(m),
            e => Error::from(e),
        };
        let merged = rules.check_push(conn, schema, &p.profile, &p.diff).and_then(|()| {
            // The metadata's rules, the same check the client runs before it queues an edit.
            sqlite_ext::ui::check_diff(conn, schema, &p.diff).map_err(invalid)?;
            let touches_metadata = p
                .diff
                .changes
                .iter()
                .any(|c| matches!(c.table.as_str(), "object_metadata" | "layout_definition"));
            let report = if touches_metadata {
                // Metadata an admin wrote must still read as every client reads it: checked once
                // merged, and the merge undone if not (the outcome, a reject, is still stored).
                conn.prepare_cached("SAVEPOINT moat_merge")?.execute([])?;
                let checked = merge(conn, schema, &p.diff).map_err(Error::from).and_then(|report| {
                    sqlite_ext::ui::check_metadata(conn, schema, &p.diff).map_err(invalid)?;
                    Ok(report)
                });
                match checked {
                    Ok(report) => {
                        conn.prepare_cached("RELEASE moat_merge")?.execute([])?;
                        report
                    }
                    Err(e) => {
                        conn.execute_batch("ROLLBACK TO moat_merge; RELEASE moat_merge")?;
                        return Err(e);
                    }
                }
            } else {
                merge(conn, schema, &p.diff)?
            };
            Ok((route_changes(conn, schema, rules, report.applied)?, report.conflicts))
        });
        let outcome = match merged {
            Ok((applied, conflicts)) => {
                let version = if applied.is_empty() {
                    None
                } else {
                    self.version += 1;
                    record(conn, self.version, &p.user, applied, &mut self.entries)?;
                    Some(self.version)
                };
                Outcome::Ack { version, conflicts: rules.visible_conflicts(&p.profile, conflicts) }
            }
            Err(e) if !e.retryable() => {
                let code = match &e {
                    Error::BadDiff(sqlite_ext::Error::Constraint { .. }) => "constraint",
                    other => other.code(),
                };
                Outcome::Reject { code: code.to_owned(), reason: e.reason() }
            }
            Err(e) => return Err(e),
        };
        let json = serde_json::to_string(&outcome).expect("outcomes serialise");
        conn.prepare_cached(
            "INSERT INTO moat_mutations (user_id, mutation_id, outcome) VALUES (?1, ?2, ?3)",
        )?
        .execute((&p.user, &p.mutation_id, json))?;
        Ok(outcome)
    }

    /// Adds admin SQL: run under a session (the core's capture), its changes logged like a push's.
    fn exec(
        &mut self,
        conn: &Connection,
        sql: &str,
        reply: oneshot::Sender<Result<Option<i64>>>,
    ) -> Result<()> {
        conn.execute_batch("SAVEPOINT moat_exec")?;
        let (schema, rules) = (&self.model.schema, &self.model.rules);
        let result = (|| {
            let ((), diff) =
                sqlite_ext::capture(conn, schema, |c| c.execute_batch(sql).map_err(Error::from))?;
            if diff.is_empty() {
                return Ok(None);
            }
            let routed = route_changes(conn, schema, rules, diff)?;
            self.version += 1;
            record(conn, self.version, "", routed, &mut self.entries)?;
            Ok(Some(self.version))
        })();
        let ended = match &result {
            Ok(_) => conn.execute_batch("RELEASE moat_exec"),
            Err(_) => conn.execute_batch("ROLLBACK TO moat_exec; RELEASE moat_exec"),
        };
        self.done.push(Done::Exec { reply, result });
        Ok(ended?)
    }
}

/// Applies the pending migrations of one tenant, then swaps its model and drops its channels, so
/// that each of its sessions closes (1012) and its client reconnects onto the new schema. The whole
/// set is checked first (the final schema and the rules over it), so a refusal changes nothing.
fn migrate(
    store: &Store,
    conn: &mut Connection,
    files: &[crate::migrate::Migration],
    scope: crate::migrate::Scope,
    allow_destructive: bool,
) -> Result<String> {
    use crate::migrate;
    let models = &store.models;
    let base = &models.base;
    let planned = migrate::plan(conn, base, files, scope)?;
    if planned.is_empty() {
        return Ok(format!("{}: nothing to apply\n", store.tenant));
    }
    let current = migrate::effective_schema(conn, base)?;
    let sql = migrate::effective_sql(current.sql(), planned.iter().map(|(m, _)| m.sql.as_str()));
    let target = Schema::from_sql(&sql).map_err(|e| Error::Config(format!("the migrated schema: {e}")))?;
    models.build(target)?; // the rules must fit the new schema before anything changes
    // An additive migration keeps the change log: its data changes are logged (in entries of at most
    // MIGRATION_CHUNK changes) and earlier entries refitted, so clients catch up, not re-download.
    let retention = store.config.log_retention;
    let keep =
        |tx: &Connection, schema: &Schema, effect: &migrate::Effect, diff: sqlite_ext::Diff| -> Result<()> {
            let model = models.build(schema.clone())?;
            refit(tx, schema, &effect.widened())?;
            let mut version = current_version(tx)?;
            for chunk in diff.changes.chunks(MIGRATION_CHUNK) {
                let routed =
                    route_changes(tx, schema, &model.rules, sqlite_ext::Diff { changes: chunk.to_vec() })?;
                if !routed.is_empty() {
                    version += 1;
                    record(tx, version, "", routed, &mut Vec::new())?;
                }
            }
            set_version(tx, version, retention)
        };
    let mut log = String::new();
    let result = migrate::up(conn, base, files, scope, allow_destructive, Some(&keep), |line| {
        tracing::info!(tenant = %store.tenant, "{line}");
        log.push_str(line);
        log.push('\n');
    });
    // Whatever was applied (all, or the ones before a refusal) is what the tenant now runs on.
    let schema = migrate::effective_schema(conn, base)?;
    if schema.sql() != current.sql() {
        models.set(models.build(schema)?);
        store.hub.reset();
    }
    result.map(|done| {
        format!(
            "{log}{}: {} migration(s) applied; its clients reconnect onto the new schema\n",
            store.tenant,
            done.len()
        )
    })
}

fn commit_batch(store: &Store, conn: &mut Connection, reqs: Vec<WriteReq>) {
    let model = store.models.get();
    let metrics = &store.metrics;
    let started = Instant::now();
    let mut batch =
        Batch { model: &model, version: 0, entries: Vec::new(), done: Vec::with_capacity(reqs.len()) };
    let config = &store.config;
    let result = (|| -> Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The size limit: a tenant at its limit takes no more pushes (admin SQL still runs, so an
        // operator can clean up); the reject names the limit.
        let full = config.max_database_bytes > 0 && Store::size_bytes(&tx)? >= config.max_database_bytes;
        batch.version = current_version(&tx)?;
        for req in reqs {
            match req {
                WriteReq::Push(push) if full => {
                    let reason = format!(
                        "{} has reached its storage limit of {} MB; nothing more can be saved until space is freed",
                        store.tenant,
                        config.max_database_bytes / (1024 * 1024)
                    );
                    batch.done.push(Done::Push {
                        reply: push.reply,
                        mutation_id: push.mutation_id,
                        result: Ok(Outcome::Reject { code: "quota".into(), reason }),
                    });
                }
                WriteReq::Push(push) => batch.push(&tx, push)?,
                WriteReq::Exec { sql, reply } => batch.exec(&tx, &sql, reply)?,
                // Fleet records never fail a batch: a failure here is logged and the pushes go on.
                WriteReq::Devices(records) => {
                    tx.execute_batch("SAVEPOINT devices")?;
                    match super::devices::save(&tx, &records) {
                        Ok(()) => tx.execute_batch("RELEASE devices")?,
                        Err(e) => {
                            tracing::warn!(tenant = %store.tenant, error = %e, "device records not written");
                            tx.execute_batch("ROLLBACK TO devices; RELEASE devices")?;
                        }
                    }
                }
                WriteReq::Migrate { reply, .. } => {
                    let _ = reply.send(Err(Error::Unavailable("a migration is not part of a batch".into())));
                }
                WriteReq::Customize { reply, .. } => {
                    let _ =
                        reply.send(Err(Error::Unavailable("a customization is not part of a batch".into())));
                }
            }
        }
        set_version(&tx, batch.version, config.log_retention)?;
        if !batch.entries.is_empty() {
            tx.prepare_cached(
                "INSERT INTO moat_meta (key, value) VALUES ('last_write_ms', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([super::now_ms() as i64])?;
        }
        // In a cluster, only while this node holds the tenant's lease (else rolled back: retry).
        store.check_lease()?;
        tx.commit()?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(tenant = %store.tenant, error = %e, "batch commit failed");
        batch.entries.clear();
        let why = e.to_string();
        batch.done.iter_mut().for_each(|d| d.fail(&why));
    }
    // The database failing under a write (disk full, I/O) makes the tenant unhealthy until a write
    // succeeds again; readiness reports it.
    let storage_failed = batch.done.iter().any(|d| match d {
        Done::Push { result, .. } => matches!(result, Err(Error::Storage(_) | Error::Unavailable(_))),
        Done::Exec { result, .. } => matches!(result, Err(Error::Storage(_) | Error::Unavailable(_))),
    });
    if storage_failed {
        metrics.commit_failures.inc();
    }
    store.failing.store(storage_failed, Ordering::Relaxed);
    metrics.observe_batch(started.elapsed());
    metrics.diffs.add(batch.entries.len() as u64);
    store.diffs.fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
    if !batch.entries.is_empty() {
        let now = super::now_ms();
        store.last_write_ms.store(now, Ordering::Relaxed);
        store.touch();
    }
    // Broadcast first, then answer the writers: a writer's connection sends the diff before the ack.
    store.hub.publish(&model.rules, &batch.entries, metrics);
    for d in batch.done {
        match d {
            Done::Push { reply, mutation_id, result } => {
                if let Ok(Outcome::Reject { .. }) = &result {
                    metrics.rejects.inc();
                }
                if let Ok(Outcome::Ack { conflicts, .. }) = &result {
                    metrics.conflicts.add(conflicts.len() as u64);
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
