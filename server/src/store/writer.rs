//! The one writer thread of the database. It takes writes off a queue and commits them in groups: a
//! [`Batch`] is one transaction holding every push and admin statement that was waiting, each in its
//! own savepoint, so one fsync makes them all durable. Once it is committed the hub publishes its
//! log entries, and only then is each writer answered, so a writer's own diff always reaches it before
//! its ack.
//!
//! Idempotency: the outcome of every push (`moat_mutations`, keyed by user and mutation id) is written
//! in the same transaction as the push, so a replayed push gets the first answer and is never applied
//! twice.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sqlite_ext::{Schema, merge};
use tokio::sync::{mpsc, oneshot};

use super::log::{LogEntry, current_version, record, route_changes, set_version};
use super::{Outcome, Push, PushReply, WriteReq, WriterConfig};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::{Model, Models};

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) models: Arc<Models>,
    pub(super) hub: Arc<Hub>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) config: WriterConfig,
    pub(super) rx: mpsc::Receiver<WriteReq>,
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
        if result.is_ok() {
            conn.prepare_cached("RELEASE moat_push")?.execute([])?;
        } else {
            conn.execute_batch("ROLLBACK TO moat_push; RELEASE moat_push")?;
            self.version = before.0;
            self.entries.truncate(before.1);
        }
        self.done.push(Done::Push { reply: push.reply, mutation_id: push.mutation_id, result });
        Ok(())
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
        let merged = rules.check_push(conn, schema, &p.profile, &p.diff).and_then(|()| {
            let report = merge(conn, schema, &p.diff)?;
            Ok((route_changes(conn, schema, rules, report.applied)?, report.conflicts))
        });
        let outcome = match merged {
            Ok((applied, conflicts)) => {
                let version = if applied.is_empty() {
                    None
                } else {
                    self.version += 1;
                    record(conn, self.version, applied, &mut self.entries)?;
                    Some(self.version)
                };
                Outcome::Ack { version, conflicts: rules.visible_conflicts(&p.profile, conflicts) }
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
            record(conn, self.version, routed, &mut self.entries)?;
            Ok(Some(self.version))
        })();
        match &result {
            Ok(_) => conn.execute_batch("RELEASE moat_exec")?,
            Err(_) => conn.execute_batch("ROLLBACK TO moat_exec; RELEASE moat_exec")?,
        }
        self.done.push(Done::Exec { reply, result });
        Ok(())
    }
}

impl Writer {
    pub(super) fn run(mut self) {
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

    fn commit_batch(&mut self, reqs: Vec<WriteReq>) {
        let model = self.models.get();
        let started = Instant::now();
        let mut batch =
            Batch { model: &model, version: 0, entries: Vec::new(), done: Vec::with_capacity(reqs.len()) };
        let retention = self.config.log_retention;
        let result = (|| -> Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            batch.version = current_version(&tx)?;
            for req in reqs {
                match req {
                    WriteReq::Push(push) => batch.push(&tx, push)?,
                    WriteReq::Exec { sql, reply } => batch.exec(&tx, &sql, reply)?,
                    WriteReq::Migrate { reply, .. } => {
                        let _ =
                            reply.send(Err(Error::Unavailable("a migration is not part of a batch".into())));
                    }
                }
            }
            set_version(&tx, batch.version, retention)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "batch commit failed");
            batch.entries.clear();
            let why = e.to_string();
            batch.done.iter_mut().for_each(|d| d.fail(&why));
        }
        self.metrics.observe_batch(started.elapsed());
        self.metrics.diffs.add(batch.entries.len() as u64);
        // Broadcast first, then answer the writers: a writer's connection sends the diff before the ack.
        self.hub.publish(&model.rules, &batch.entries, &self.metrics);
        for d in batch.done {
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
