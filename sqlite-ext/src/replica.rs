//! A client's replica: golden state, pending overlays and the projection, in one SQLite file.
//!
//! For each synced table `t` the file holds:
//! - `server_data_t`: the last state the server confirmed (golden). Only server diffs write it.
//! - `t`: the projection the UI reads and writes: always `server_data_t` with the pending overlays
//!   applied on top, in order.
//!
//! and once: `overlays` (pending local changesets, oldest first, each as the JSON diff that is sent),
//! `conflicts` (what the server could not merge, until the user resolves it) and `moat_meta`.
//!
//! A local write runs against the projection under a session; the changeset it records becomes an
//! overlay in the same transaction. A server diff is applied to both `server_data_t` and `t`; the rows
//! it touched that a pending overlay also touches are reset from `server_data_t` and the overlays are
//! replayed over them ("rebase"), so a local edit is never lost under a server update. Every public
//! method that changes something is one transaction: a crash leaves the file before or after it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::apply::{Conflict, Policy, apply_changeset};
use crate::changeset;
use crate::changeset::Op;
use crate::diff::{Diff, Fields, key_json};
use crate::error::{Error, Result};
use crate::schema::{SERVER_DATA_PREFIX, Schema, Table, quote};
use crate::value::Value;

const REPLICA_SQL: &str = include_str!("../../schemas/replica.sql");

/// A local change on its way to the server: its id and its diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    /// Unique per client and increasing: `<client id>-<n>`. The server applies each id once.
    pub mutation_id: String,
    /// The changes, with the base value of every changed column.
    pub diff: Diff,
}

/// A mutation the server refused, kept with its reason until the user dismisses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The refused mutation.
    pub mutation: Mutation,
    /// Why, in the server's words.
    pub reason: String,
}

/// A conflict waiting for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConflict {
    /// Local id, to resolve it by.
    pub id: i64,
    /// The mutation that ran into it.
    pub mutation_id: String,
    /// Base, theirs and mine per column.
    pub conflict: Conflict,
}

/// How the user settles a conflict. Keeping mine or editing is an ordinary write, based on the
/// server's value, so it goes through the overlays like any other edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Write my values over the server's.
    KeepMine,
    /// Keep the server's values; nothing is sent.
    TakeTheirs,
    /// Write these values instead.
    Edit(Fields<Value>),
}

/// One client's database.
#[derive(Debug)]
pub struct Replica {
    conn: Connection,
    schema: Schema,
    client_id: String,
    /// The snapshot under way started on a device with no synced rows and no pending writes: its
    /// chunks go into the projection, so the app shows them as they arrive.
    first_snapshot: bool,
    /// ...and only there, until the user writes, the server sends a change, or the driver's idle
    /// turn after it: then the golden state is copied from the projection in one statement per
    /// table (cheaper than a second insert per row). A first sync that ended with nothing written
    /// meanwhile leaves the copy for later (`golden_behind` in `moat_meta`, so a restart knows):
    /// "live" does not wait for it.
    golden_behind: bool,
    /// How far [`Replica::catch_up_golden_step`] copied: a table's place in the schema and the last
    /// rowid copied from it (kept as `golden_behind`'s value, `"<place>:<rowid>"`, so a restart goes
    /// on from there).
    golden_at: (usize, i64),
    /// A snapshot is under way (between [`Replica::begin_snapshot`] and its end).
    snapshot_open: bool,
    /// The batch open commits without waiting for the disk; the level to set back after it.
    synchronous: std::cell::Cell<Option<i64>>,
    /// A first sync may be written through a rollback journal (see
    /// [`Replica::journal_first_sync`]).
    journal_first_sync: bool,
    /// Which journal the file is on.
    journal: std::cell::Cell<Journal>,
}

/// The journal a replica file writes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Journal {
    /// The write-ahead log, as opened.
    Wal,
    /// A rollback journal, for a first sync.
    Rollback,
    /// The log, after SQLite refused a rollback journal (an in-memory database): not asked again.
    WalOnly,
}

impl Replica {
    /// Opens (creating if needed) a replica file for `schema`. WAL, `synchronous = FULL`: a local write
    /// that returned survives a crash.
    pub fn open(path: impl AsRef<Path>, schema: Schema) -> Result<Replica> {
        Self::init(open_file(path.as_ref())?, schema)
    }

    /// Opens (creating if needed) a replica file with the schema it was last migrated to, or
    /// `bootstrap` for a new file: what an app does at start, after the server may have moved its
    /// schema on (see [`Replica::migrate_schema`]).
    pub fn open_latest(path: impl AsRef<Path>, bootstrap: Schema) -> Result<Replica> {
        Self::from_connection_latest(open_file(path.as_ref())?, bootstrap)
    }

    /// [`Replica::open_latest`] over a connection the shell opened and configured itself.
    pub fn from_connection_latest(conn: Connection, bootstrap: Schema) -> Result<Replica> {
        let stored: Option<String> = conn
            .query_row("SELECT value FROM moat_meta WHERE key = 'schema_sql'", [], |r| r.get(0))
            .optional()
            .or_else(|e| match e {
                // A new file: no moat_meta yet.
                rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such table") => Ok(None),
                e => Err(e),
            })?;
        let schema = match stored {
            Some(sql) if sql != bootstrap.sql() => Schema::from_sql(&sql)?,
            _ => bootstrap,
        };
        Self::init(conn, schema)
    }

    /// A replica that lives in memory only (tests, benchmarks).
    pub fn open_in_memory(schema: Schema) -> Result<Replica> {
        Self::init(Connection::open_in_memory()?, schema)
    }

    fn init(mut conn: Connection, schema: Schema) -> Result<Replica> {
        // A row an `INSERT OR REPLACE` replaces is deleted as far as the derived indexes' triggers
        // know (the full-text index and the lists' tallies follow every row: `ui::IndexJob`).
        conn.execute_batch("PRAGMA recursive_triggers = ON")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(REPLICA_SQL)?;
        let stored: Option<String> = tx
            .query_row("SELECT value FROM moat_meta WHERE key = 'schema_sql'", [], |r| r.get(0))
            .optional()?;
        match stored {
            None => {
                tx.execute_batch(schema.sql())?;
                for t in schema.tables() {
                    tx.execute_batch(&t.server_data_ddl())?;
                }
                tx.execute(
                    "INSERT INTO moat_meta (key, value) VALUES ('schema_sql', ?1), \
                     ('client_id', lower(hex(randomblob(12)))), ('next_mutation', 1)",
                    [schema.sql()],
                )?;
            }
            Some(sql) if sql == schema.sql() => {}
            Some(_) => {
                return Err(Error::Schema(
                    "this replica was made with another schema; migrate it first".into(),
                ));
            }
        }
        let client_id: String =
            tx.query_row("SELECT value FROM moat_meta WHERE key = 'client_id'", [], |r| r.get(0))?;
        let golden: Option<rusqlite::types::Value> = tx
            .query_row("SELECT value FROM moat_meta WHERE key = 'golden_behind'", [], |r| r.get(0))
            .optional()?;
        // Where the copy stopped; from the beginning if that cannot be read (it replaces rows).
        let golden_at = match &golden {
            Some(rusqlite::types::Value::Text(at)) => at
                .split_once(':')
                .and_then(|(t, r)| Some((t.parse().ok()?, r.parse().ok()?)))
                .unwrap_or((0, 0)),
            _ => (0, 0),
        };
        tx.commit()?;
        Ok(Replica {
            conn,
            schema,
            client_id,
            first_snapshot: false,
            golden_behind: golden.is_some(),
            golden_at,
            snapshot_open: false,
            synchronous: std::cell::Cell::new(None),
            journal_first_sync: false,
            journal: std::cell::Cell::new(Journal::Wal),
        })
    }

    /// Writes a first sync (see [`Replica::first_snapshot`]) through a rollback journal instead of
    /// the log, back to the log when it ends. A first sync mostly appends to an empty file, and a
    /// rollback journal keeps no copy of a page beyond the file's old end, where the log writes every
    /// page twice (into the log, then into the file at each checkpoint): in a browser, where storage
    /// calls are dear, ~10% of a first sync's time. Only for a file no other connection reads (the
    /// web's, in exclusive locking mode): on a rollback journal a reader blocks the writer.
    /// Batches on the journal keep `synchronous` as it is (NORMAL is power-safe only in WAL).
    pub fn journal_first_sync(&mut self) {
        self.journal_first_sync = true;
    }

    /// A first sync is under way that would be written through a rollback journal, and the file is
    /// not on it yet: the next [`Replica::end_batch`] (or [`Replica::begin_server_batch`] outside a
    /// transaction) switches (a journal mode cannot change inside one), so a shell holding a batch
    /// open commits it instead.
    pub fn wants_journal(&self) -> bool {
        self.journal_first_sync && self.first_snapshot && self.journal.get() == Journal::Wal
    }

    /// Switches to the rollback journal for a first sync, or back to the log once it ended. Outside
    /// a transaction only.
    fn switch_journal(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            return Ok(());
        }
        let (mode, next) = match self.journal.get() {
            Journal::Wal if self.wants_journal() => ("TRUNCATE", Journal::Rollback),
            Journal::Rollback if !self.first_snapshot => ("WAL", Journal::Wal),
            _ => return Ok(()),
        };
        let now: String = self.conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get(0))?;
        self.journal.set(match (next, now.eq_ignore_ascii_case(mode)) {
            (_, true) => next,
            (Journal::Rollback, false) => Journal::WalOnly,
            (_, false) => return Err(Error::Invalid(format!("the replica could not go back to WAL: {now}"))),
        });
        Ok(())
    }

    /// Moves this replica to the server's new schema: creates the tables and columns it added (the
    /// projection and the golden copy, from the model, never from SQL text), drops what it removed,
    /// and re-checks every pending overlay against the new schema. An overlay that no longer fits is
    /// not dropped: it becomes rejected, with the reason, and its rows show the server's state again.
    /// Returns those (mutation id, reason) pairs. The server's snapshot that follows refills the rows.
    pub fn migrate_schema(&mut self, new: Schema) -> Result<Vec<(String, String)>> {
        self.catch_up_golden()?;
        let old = self.schema.clone();
        let tx = self.conn.savepoint()?;
        // The lists' indexes and search tables are derived from the metadata and built again after
        // (`ui::ensure_indexes`); one naming a column would stop it from being dropped.
        crate::ui::drop_derived(&tx)?;
        for t in new.tables() {
            match old.table(&t.name) {
                Err(_) => {
                    tx.execute_batch(&t.projection_ddl())?;
                    tx.execute_batch(&t.server_data_ddl())?;
                }
                Ok(o) => {
                    for c in t.columns.iter().filter(|c| !o.columns.iter().any(|x| x.name == c.name)) {
                        for table in [t.name.clone(), t.server_data_name()] {
                            tx.execute_batch(&format!(
                                "ALTER TABLE {} ADD COLUMN {}",
                                quote(&table),
                                c.ddl()
                            ))?;
                        }
                    }
                }
            }
        }
        // Overlays are checked before anything is dropped, so that their old rows can be restored.
        let mut stmt =
            tx.prepare("SELECT mutation_id, diff FROM overlays WHERE state = 'pending' ORDER BY seq")?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        let mut refused = Vec::new();
        let mut reset = HashMap::new();
        for (mutation_id, json) in rows {
            match upgrade_overlay(&json, &old, &new) {
                Ok(diff) => {
                    let upgraded = diff.to_json();
                    if upgraded != json {
                        tx.execute(
                            "UPDATE overlays SET diff = ?2 WHERE mutation_id = ?1",
                            rusqlite::params![mutation_id, upgraded],
                        )?;
                    }
                }
                Err(why) => {
                    let reason = format!("no longer fits the schema after a migration: {why}");
                    tx.execute(
                        "UPDATE overlays SET state = 'rejected', reason = ?2 WHERE mutation_id = ?1",
                        rusqlite::params![mutation_id, reason],
                    )?;
                    if let Ok(diff) = Diff::from_json(&json, &old) {
                        for c in diff.changes.into_iter().filter(|c| new.table(&c.table).is_ok()) {
                            reset.insert((c.table.clone(), c.key()), c.pk);
                        }
                    }
                    refused.push((mutation_id, reason));
                }
            }
        }
        for t in old.tables() {
            match new.table(&t.name) {
                Err(_) => {
                    tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&t.name)))?;
                    tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&t.server_data_name())))?;
                }
                Ok(n) => {
                    for c in t.columns.iter().filter(|c| !n.columns.iter().any(|x| x.name == c.name)) {
                        for table in [t.name.clone(), t.server_data_name()] {
                            tx.execute_batch(&format!(
                                "ALTER TABLE {} DROP COLUMN {}",
                                quote(&table),
                                quote(&c.name)
                            ))?;
                        }
                    }
                }
            }
        }
        let pending = load_pending(&tx, &new)?;
        rebase(&tx, &new, &pending, &reset)?;
        tx.execute("UPDATE moat_meta SET value = ?1 WHERE key = 'schema_sql'", [new.sql()])?;
        tx.commit()?;
        self.schema = new;
        Ok(refused)
    }

    /// Starts grouping writes: every write until [`Replica::end_batch`] commits with it, in one
    /// transaction (each write stays atomic on its own, as a savepoint). A shell that has several
    /// server frames at hand applies them with one commit, and so one sync, instead of one each.
    pub fn begin_batch(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// As [`Replica::begin_batch`], for a batch of server data only (frames: a snapshot's chunks,
    /// diffs, acks): its commit does not wait for the disk when every commit otherwise does
    /// (`synchronous = FULL`, WAL). A new session sends such data again if a power cut takes it (an
    /// ack too: the server answers a push again with the outcome it stored), and WAL keeps commits in
    /// order, so what is lost is a tail, never a hole; the next commit that waits (any write of the
    /// user's) or checkpoint makes it durable too. [`Replica::end_batch`] sets the level back.
    pub fn begin_server_batch(&self) -> Result<()> {
        self.switch_journal()?;
        let level: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        if level >= 2 && self.journal.get() != Journal::Rollback {
            self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
            self.synchronous.set(Some(level));
        }
        let begun = self.begin_batch();
        if begun.is_err() {
            self.restore_synchronous()?;
        }
        begun
    }

    /// Sets back the level a server batch lowered (none lowered: nothing to do).
    fn restore_synchronous(&self) -> Result<()> {
        if let Some(level) = self.synchronous.take() {
            self.conn.execute_batch(&format!("PRAGMA synchronous = {level}"))?;
        }
        Ok(())
    }

    /// Commits the writes since [`Replica::begin_batch`]; if the commit fails, none of them stays.
    pub fn end_batch(&self) -> Result<()> {
        let done = self.conn.execute_batch("COMMIT");
        if done.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.restore_synchronous()?;
        done?;
        // A first sync that began goes to a rollback journal; one that ended (or was revoked) back.
        self.switch_journal()
    }

    /// This replica's client id, made once when the file was created.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The schema of the synced tables.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The connection, for reading the projection (the synced tables under their own names).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` against the projection in one transaction and records what it changed as a pending
    /// overlay. Returns the mutation to send, or `None` when nothing changed.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<(T, Option<Mutation>)> {
        // The projection is about to hold more than the server's rows: the golden state catches up.
        self.catch_up_golden()?;
        let tx = self.conn.savepoint()?;
        let out = capture(&tx, &self.schema, &self.client_id, f)?;
        tx.commit()?;
        Ok(out)
    }

    /// Inserts a row (every column named in `row` must exist; the key must be given).
    pub fn insert(&mut self, table: &str, row: &Fields<Value>) -> Result<Option<Mutation>> {
        let t = self.schema.table(table)?.clone();
        let values: Vec<(&str, &Value)> = row.0.iter().map(|(c, v)| (c.as_str(), v)).collect();
        Ok(self.write(|c| t.insert_row(c, &values))?.1)
    }

    /// Sets columns of the row with key `pk`. Fails with [`Error::NotFound`] when there is no such row.
    pub fn update(
        &mut self,
        table: &str,
        pk: &Fields<Value>,
        set: &Fields<Value>,
    ) -> Result<Option<Mutation>> {
        let t = self.schema.table(table)?.clone();
        let (n, m) = self.write(|c| update_row(c, &t, pk, set))?;
        if n == 0 {
            return Err(Error::NotFound(format!("{table} {}", key_json(pk))));
        }
        Ok(m)
    }

    /// Deletes the row with key `pk`, if it is there.
    pub fn delete(&mut self, table: &str, pk: &Fields<Value>) -> Result<Option<Mutation>> {
        let t = self.schema.table(table)?.clone();
        let key = t.key_values(pk)?;
        let sql = format!("DELETE FROM {} WHERE {}", quote(&t.name), t.pk_where());
        Ok(self.write(|c| Ok(c.execute(&sql, params_from_iter(key))?))?.1)
    }

    /// One row of the projection, column by column.
    pub fn row(&self, table: &str, pk: &Fields<Value>) -> Result<Option<Fields<Value>>> {
        let t = self.schema.table(table)?;
        read_row(&self.conn, t, &t.name, pk)
    }

    /// One row of the golden state (what the server last confirmed).
    pub fn server_row(&self, table: &str, pk: &Fields<Value>) -> Result<Option<Fields<Value>>> {
        let t = self.schema.table(table)?;
        // Not copied yet: the projection is the golden state (nothing was written since).
        let name = if self.golden_behind { t.name.clone() } else { t.server_data_name() };
        read_row(&self.conn, t, &name, pk)
    }

    /// The pending mutations, oldest first: what to send, in this order.
    pub fn pending(&self) -> Result<Vec<Mutation>> {
        load_pending(&self.conn, &self.schema)
    }

    /// The oldest `limit` pending mutations: what to send next, without decoding the whole queue.
    pub fn pending_head(&self, limit: usize) -> Result<Vec<Mutation>> {
        load_pending_head(&self.conn, &self.schema, i64::try_from(limit).unwrap_or(i64::MAX))
    }

    /// One pending mutation, if `mutation_id` is pending.
    pub fn pending_mutation(&self, mutation_id: &str) -> Result<Option<Mutation>> {
        let diff: Option<String> = self
            .conn
            .query_row(
                "SELECT diff FROM overlays WHERE mutation_id = ?1 AND state = 'pending'",
                [mutation_id],
                |r| r.get(0),
            )
            .optional()?;
        diff.map(|d| {
            Ok(Mutation { mutation_id: mutation_id.to_owned(), diff: Diff::from_json(&d, &self.schema)? })
        })
        .transpose()
    }

    /// How many conflicts wait for the user.
    pub fn conflict_count(&self) -> Result<i64> {
        Ok(self.conn.prepare_cached("SELECT count(*) FROM conflicts")?.query_row([], |r| r.get(0))?)
    }

    /// How many refused mutations are kept.
    pub fn rejected_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*) FROM overlays WHERE state = 'rejected'")?
            .query_row([], |r| r.get(0))?)
    }

    /// How many mutations wait for the server.
    pub fn pending_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*) FROM overlays WHERE state = 'pending'")?
            .query_row([], |r| r.get(0))?)
    }

    /// The mutations the server refused, with its reasons, oldest first.
    pub fn rejected(&self) -> Result<Vec<Rejected>> {
        let mut stmt = self.conn.prepare(
            "SELECT mutation_id, diff, reason FROM overlays WHERE state = 'rejected' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (mutation_id, diff, reason): (String, String, Option<String>) = row?;
            // A write refused by a migration names columns the schema no longer has: list it as it was.
            let diff = Diff::from_json(&diff, &self.schema)
                .or_else(|e| serde_json::from_str(&diff).map_err(|_| e))?;
            out.push(Rejected {
                mutation: Mutation { mutation_id, diff },
                reason: reason.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Applies a diff from the server to the golden state and the projection, then rebases the pending
    /// overlays that touch the same rows. The server's word is final for `server_data_*`.
    pub fn apply_server_diff(&mut self, diff: &Diff) -> Result<()> {
        self.apply_server_diff_inner(diff, None)
    }

    /// [`Replica::apply_server_diff`] for the change at `version` of `channel`, recording the cursor in
    /// the same transaction, so that after a crash the replica resumes exactly after the last diff it
    /// applied.
    pub fn apply_server_diff_at(&mut self, channel: &str, version: i64, diff: &Diff) -> Result<()> {
        self.apply_server_diff_inner(diff, Some((channel, version)))
    }

    /// The version of the last diff applied from `channel`, if any.
    pub fn cursor(&self, channel: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM moat_meta WHERE key = 'cursor:' || ?1", [channel], |r| r.get(0))
            .optional()?)
    }

    fn apply_server_diff_inner(&mut self, diff: &Diff, cursor: Option<(&str, i64)>) -> Result<()> {
        self.catch_up_golden()?;
        // One pass checks the diff and builds the changeset; the golden copy gets the same changes
        // under its own table names.
        let mut raw = diff.to_raw(&self.schema, |t| t.name.clone())?;
        let projection = changeset::write(&raw);
        for t in &mut raw {
            t.name = format!("{SERVER_DATA_PREFIX}{}", t.name);
        }
        let golden = changeset::write(&raw);
        let tx = self.conn.savepoint()?;
        if let Some((channel, version)) = cursor {
            tx.execute(
                "INSERT INTO moat_meta (key, value) VALUES ('cursor:' || ?1, ?2), \
                 ('last_sync_ms', CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (channel, version),
            )?;
        }
        apply_changeset(&tx, &golden, Policy::Authoritative)?;
        apply_changeset(&tx, &projection, Policy::Authoritative)?;
        let pending = load_pending(&tx, &self.schema)?;
        if !pending.is_empty() {
            let touched: HashSet<(&str, String)> =
                diff.changes.iter().map(|c| (c.table.as_str(), c.key())).collect();
            let mut reset = HashMap::new();
            for c in pending.iter().flat_map(|m| &m.diff.changes) {
                if touched.contains(&(c.table.as_str(), c.key())) {
                    reset.insert((c.table.clone(), c.key()), c.pk.clone());
                }
            }
            rebase(&tx, &self.schema, &pending, &reset)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records that the replica is in step with the server now (the engine calls it on `synced`;
    /// each diff applied at a cursor records it too, in its own transaction). The time comes from
    /// SQLite's clock, so the core reads no clock.
    pub fn mark_synced(&mut self) -> Result<()> {
        self.conn.execute(
            "INSERT INTO moat_meta (key, value) VALUES ('last_sync_ms', CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [],
        )?;
        Ok(())
    }

    /// Stores what the user's role may not write (from the welcome), for the views and edits, offline
    /// too.
    pub fn set_rights(&self, rights: &crate::protocol::Rights) -> Result<()> {
        let json = serde_json::to_string(rights).map_err(|e| Error::Invalid(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO moat_meta (key, value) VALUES ('rights', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [json],
        )?;
        Ok(())
    }

    /// Stores who the user is and what a new row of theirs carries (from the welcome), for "assigned to
    /// me" and for records created on the device, offline too.
    pub fn set_identity(&self, identity: &crate::protocol::Identity) -> Result<()> {
        let json = serde_json::to_string(identity).map_err(|e| Error::Invalid(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO moat_meta (key, value) VALUES ('identity', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [json],
        )?;
        Ok(())
    }

    /// The clock, as SQLite reads it (Unix milliseconds; the same on every platform, wasm included).
    pub fn now_ms(&self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)", [], |r| r.get(0))?)
    }

    /// How long the oldest pending write has waited, in milliseconds (`None`: nothing waits).
    pub fn oldest_pending_age_ms(&self) -> Result<Option<u64>> {
        let age: Option<i64> = self.conn.query_row(
            "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) - min(created_ms) FROM overlays WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(age.map(|a| a.max(0) as u64))
    }

    /// Whether the user chose to work offline on this device (kept until they go online again).
    pub fn held_offline(&self) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM moat_meta WHERE key = 'held_offline'")?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Keeps (or forgets) the user's choice to work offline, so that the app starts as they left it.
    pub fn set_held_offline(&self, held: bool) -> Result<()> {
        if held {
            self.conn
                .execute("INSERT OR REPLACE INTO moat_meta (key, value) VALUES ('held_offline', '1')", [])?;
        } else {
            self.conn.execute("DELETE FROM moat_meta WHERE key = 'held_offline'", [])?;
        }
        Ok(())
    }

    /// When the replica was last in step with the server (Unix milliseconds), if ever.
    pub fn last_sync_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM moat_meta WHERE key = 'last_sync_ms'")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    /// The cursor of every channel this replica holds data of (for the hello).
    pub fn cursors(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT substr(key, 8), value FROM moat_meta WHERE key LIKE 'cursor:%' ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A fresh snapshot of `channel` begins: the golden state is emptied (the projection keeps showing
    /// the old rows until [`Replica::finish_snapshot`]) and the channel's cursor is forgotten, so a
    /// crash half-way leads to a new snapshot, never to a catch-up over half a copy. On a device with
    /// no synced rows and nothing pending (a first sign-in), chunks go into the projection as well
    /// (see [`Replica::first_snapshot`]).
    pub fn begin_snapshot(&mut self, channel: &str) -> Result<()> {
        let tx = self.conn.savepoint()?;
        tx.execute("DELETE FROM moat_meta WHERE key = 'cursor:' || ?1", [channel])?;
        // The golden state is refilled from the snapshot (a copy left behind is not needed).
        tx.execute("DELETE FROM moat_meta WHERE key = 'golden_behind'", [])?;
        let mut empty = !has_overlays(&tx)?;
        for t in self.schema.tables() {
            tx.execute_batch(&format!("DELETE FROM {}", quote(&t.server_data_name())))?;
            empty = empty
                && !tx.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {})", quote(&t.name)), [], |r| {
                    r.get::<_, bool>(0)
                })?;
        }
        tx.commit()?;
        (self.first_snapshot, self.golden_behind, self.golden_at) = (empty, empty, (0, 0));
        self.snapshot_open = true;
        Ok(())
    }

    /// Whether the golden state is still to be copied from the projection (after or during a first
    /// sync; see [`Replica::catch_up_golden`]).
    pub fn golden_behind(&self) -> bool {
        self.golden_behind
    }

    /// After or during a first snapshot whose rows went only into the projection: copies them into
    /// the golden state (and from here on chunks go into both). Every write and server change does
    /// it first; a shell makes it a slice at a time at idle turns after a first sync
    /// ([`Replica::catch_up_golden_step`]), so that the next change from the server does not wait.
    pub fn catch_up_golden(&mut self) -> Result<()> {
        while self.catch_up_golden_step(usize::MAX)? {}
        Ok(())
    }

    /// Copies up to `rows` more rows of the golden copy a first sync left (in rowid order, table by
    /// table; nothing changes the projection meanwhile, since every write and server change makes
    /// the whole copy first). Returns whether some is left.
    pub fn catch_up_golden_step(&mut self, rows: usize) -> Result<bool> {
        if !self.golden_behind {
            return Ok(false);
        }
        let (mut table, mut after) = self.golden_at;
        let mut left = i64::try_from(rows).unwrap_or(i64::MAX);
        let tables = self.schema.tables();
        let tx = self.conn.savepoint()?;
        while let Some(t) = tables.get(table)
            && left > 0
        {
            let last: Option<i64> = tx.query_row(
                &format!(
                    "SELECT max(rowid) FROM (SELECT rowid FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
                    quote(&t.name)
                ),
                (after, left),
                |r| r.get(0),
            )?;
            let Some(last) = last else {
                (table, after) = (table + 1, 0);
                continue;
            };
            let copied = tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO {golden} ({cols}) SELECT {cols} FROM {name} \
                     WHERE rowid > ?1 AND rowid <= ?2",
                    name = quote(&t.name),
                    golden = quote(&t.server_data_name()),
                    cols = t.column_list()
                ),
                (after, last),
            )?;
            left -= copied as i64;
            after = last;
        }
        let done = table >= tables.len();
        if done {
            tx.execute("DELETE FROM moat_meta WHERE key = 'golden_behind'", [])?;
        } else {
            tx.execute(
                "UPDATE moat_meta SET value = ?1 WHERE key = 'golden_behind'",
                [format!("{table}:{after}")],
            )?;
        }
        tx.commit()?;
        self.golden_at = (table, after);
        self.golden_behind = !done;
        Ok(!done)
    }

    /// Whether a snapshot is under way: begun, not yet complete (its chunks need no commit of their
    /// own: a snapshot cut short starts again from the beginning).
    pub fn snapshot_open(&self) -> bool {
        self.snapshot_open
    }

    /// Whether the snapshot under way writes its rows into the projection as they arrive (a first
    /// sync: the app can show the first chunks before the end).
    pub fn first_snapshot(&self) -> bool {
        self.first_snapshot
    }

    /// One chunk of a snapshot (inserts) into the golden state, and into the projection during a
    /// first sync. Rows are inserted with cached statements, not through a changeset (whose apply
    /// compiles its statements on every call: most of a chunk's cost).
    pub fn apply_snapshot_chunk(&mut self, diff: &Diff) -> Result<()> {
        if diff.changes.iter().any(|c| c.op != Op::Insert) {
            self.catch_up_golden()?;
            let mut raw = diff.to_raw(&self.schema, Table::server_data_name)?;
            raw.retain(|t| !t.changes.is_empty());
            let tx = self.conn.savepoint()?;
            apply_changeset(&tx, &changeset::write(&raw), Policy::Authoritative)?;
            tx.commit()?;
            self.first_snapshot = false;
            return Ok(());
        }
        let tx = self.conn.savepoint()?;
        // Per table: its statements, made once a chunk.
        let mut statements: HashMap<&str, Vec<String>> = HashMap::new();
        let mut values: Vec<&Value> = Vec::new();
        for c in &diff.changes {
            let table = self.schema.table(&c.table)?;
            values.clear();
            for col in &table.columns {
                let v = c.pk.get(&col.name).or_else(|| c.cols.get(&col.name).and_then(|v| v.new.as_ref()));
                values.push(v.unwrap_or(&Value::Null));
            }
            let sql = statements.entry(table.name.as_str()).or_insert_with(|| {
                snapshot_inserts(table, !self.golden_behind, self.first_snapshot).collect()
            });
            for sql in sql.iter() {
                tx.prepare_cached(sql)?.execute(params_from_iter(values.iter()))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One chunk of a snapshot as rows (`snapshot_rows`: its JSON, read and checked row by row by
    /// [`crate::rows::read_rows`], each row inserted as it is read): as
    /// [`Replica::apply_snapshot_chunk`], without a change per row. All of it or nothing. Returns the
    /// tables it wrote to.
    pub fn apply_snapshot_rows(&mut self, json: &str) -> Result<BTreeSet<String>> {
        let tx = self.conn.savepoint()?;
        let (golden, projection) = (!self.golden_behind, self.first_snapshot);
        // The open group's table and its insert statements.
        let mut inserts: Option<(String, Vec<rusqlite::CachedStatement<'_>>)> = None;
        let tables = crate::rows::read_rows(json, &self.schema, &mut |table, row| {
            if inserts.as_ref().is_none_or(|(name, _)| *name != table.name) {
                let statements = snapshot_inserts(table, golden, projection)
                    .map(|sql| tx.prepare_cached(&sql))
                    .collect::<rusqlite::Result<_>>()?;
                inserts = Some((table.name.clone(), statements));
            }
            for insert in inserts.iter_mut().flat_map(|(_, s)| s.iter_mut()) {
                insert.execute(params_from_iter(row.values()))?;
            }
            Ok(())
        })?;
        drop(inserts);
        tx.commit()?;
        Ok(tables)
    }

    /// The snapshot is complete as of `version`: the projection becomes the golden state with the
    /// pending overlays replayed over it, and the cursor is stored, in one transaction.
    pub fn finish_snapshot(&mut self, channel: &str, version: i64) -> Result<()> {
        self.snapshot_open = false;
        // A first sync wrote its rows into the projection as they came; unless the user wrote
        // meanwhile, the projection is the golden state, and the golden copy waits (see
        // `golden_behind`).
        let copied = self.first_snapshot && !has_overlays(&self.conn)?;
        if !copied {
            self.catch_up_golden()?;
        }
        self.first_snapshot = false;
        let tx = self.conn.savepoint()?;
        if self.golden_behind {
            tx.execute("INSERT OR REPLACE INTO moat_meta (key, value) VALUES ('golden_behind', '0:0')", [])?;
        }
        if !copied {
            // The lists' and search's indexes are made again after, in one pass each
            // (`ui::ensure_indexes`), instead of row by row through the copy.
            crate::ui::drop_derived(&tx)?;
        }
        for t in self.schema.tables().iter().filter(|_| !copied) {
            tx.execute_batch(&format!(
                "DELETE FROM {name}; INSERT INTO {name} ({cols}) SELECT {cols} FROM {golden}",
                name = quote(&t.name),
                golden = quote(&t.server_data_name()),
                cols = t.column_list()
            ))?;
        }
        for m in load_pending(&tx, &self.schema)? {
            apply_changeset(&tx, &m.diff.to_changeset(&self.schema)?, Policy::MineWins)?;
        }
        tx.execute(
            "INSERT INTO moat_meta (key, value) VALUES ('cursor:' || ?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (channel, version),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The user lost `channel`: its rows leave the device (golden state and projection) with its
    /// cursor. A replica holds one channel at a time, so that is every synced row; pending writes
    /// stay, and the server will answer them.
    pub fn revoke(&mut self, channel: &str) -> Result<()> {
        (self.snapshot_open, self.first_snapshot, self.golden_behind) = (false, false, false);
        let tx = self.conn.savepoint()?;
        tx.execute("DELETE FROM moat_meta WHERE key = 'cursor:' || ?1", [channel])?;
        tx.execute("DELETE FROM moat_meta WHERE key = 'golden_behind'", [])?;
        for t in self.schema.tables() {
            tx.execute_batch(&format!(
                "DELETE FROM {}; DELETE FROM {}",
                quote(&t.server_data_name()),
                quote(&t.name)
            ))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The server applied `mutation_id`: the overlay leaves, `conflicts` (what it could not merge) are
    /// kept for the user, and the rows the overlay touched are rebased. Returns false for an unknown
    /// or already acknowledged id, so a repeated ack changes nothing.
    pub fn acknowledge(&mut self, mutation_id: &str, conflicts: &[Conflict]) -> Result<bool> {
        self.settle(mutation_id, |tx| {
            tx.execute("DELETE FROM overlays WHERE mutation_id = ?1", [mutation_id])?;
            for c in conflicts {
                let json = serde_json::to_string(c).expect("conflicts always serialise");
                tx.execute(
                    "INSERT INTO conflicts (mutation_id, conflict) VALUES (?1, ?2)",
                    (mutation_id, json),
                )?;
            }
            Ok(())
        })
    }

    /// The server refused `mutation_id`: it leaves the projection but stays listed, with `reason`,
    /// until [`Replica::dismiss_rejected`]. Returns false for an id that is not pending.
    pub fn reject(&mut self, mutation_id: &str, reason: &str) -> Result<bool> {
        self.settle(mutation_id, |tx| {
            tx.execute(
                "UPDATE overlays SET state = 'rejected', reason = ?2 WHERE mutation_id = ?1",
                (mutation_id, reason),
            )?;
            Ok(())
        })
    }

    /// Takes a pending overlay out of the projection (`f` says how) and rebases its rows.
    fn settle(&mut self, mutation_id: &str, f: impl FnOnce(&Connection) -> Result<()>) -> Result<bool> {
        self.catch_up_golden()?;
        let tx = self.conn.savepoint()?;
        let diff: Option<String> = tx
            .query_row(
                "SELECT diff FROM overlays WHERE mutation_id = ?1 AND state = 'pending'",
                [mutation_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(diff) = diff else { return Ok(false) };
        let diff = Diff::from_json(&diff, &self.schema)?;
        f(&tx)?;
        let reset = diff.changes.iter().map(|c| ((c.table.clone(), c.key()), c.pk.clone())).collect();
        let pending = load_pending(&tx, &self.schema)?;
        rebase(&tx, &self.schema, &pending, &reset)?;
        tx.commit()?;
        Ok(true)
    }

    /// Forgets a rejected mutation once the user has seen it.
    pub fn dismiss_rejected(&mut self, mutation_id: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM overlays WHERE mutation_id = ?1 AND state = 'rejected'", [mutation_id])?;
        Ok(n > 0)
    }

    /// Conflicts waiting for the user, oldest first.
    pub fn conflicts(&self) -> Result<Vec<StoredConflict>> {
        let mut stmt = self.conn.prepare("SELECT id, mutation_id, conflict FROM conflicts ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mutation_id, json) = row?;
            let conflict = serde_json::from_str(&json).map_err(|e| Error::Malformed(e.to_string()))?;
            out.push(StoredConflict { id, mutation_id, conflict });
        }
        Ok(out)
    }

    /// Keeps a conflict found on this device (an edit whose field changed under the user while they
    /// typed) for the user, like one the server reported; `mutation_id` names where it came from.
    pub fn raise_conflict(&mut self, mutation_id: &str, conflict: &Conflict) -> Result<()> {
        let json = serde_json::to_string(conflict).expect("conflicts always serialise");
        self.conn
            .execute("INSERT INTO conflicts (mutation_id, conflict) VALUES (?1, ?2)", (mutation_id, json))?;
        Ok(())
    }

    /// Settles a conflict. Keep mine and edit write to the projection like any local edit (so the base
    /// is the server's value) and return the mutation to send; take theirs sends nothing. A row that
    /// the server deleted cannot be written: [`Error::NotFound`], and the conflict stays.
    pub fn resolve(&mut self, conflict_id: i64, resolution: Resolution) -> Result<Option<Mutation>> {
        let tx = self.conn.savepoint()?;
        let json: String = tx
            .query_row("SELECT conflict FROM conflicts WHERE id = ?1", [conflict_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("conflict {conflict_id}")))?;
        let conflict: Conflict = serde_json::from_str(&json).map_err(|e| Error::Malformed(e.to_string()))?;
        tx.execute("DELETE FROM conflicts WHERE id = ?1", [conflict_id])?;
        let values = match resolution {
            Resolution::TakeTheirs => {
                tx.commit()?;
                return Ok(None);
            }
            Resolution::KeepMine => {
                Fields(conflict.columns.iter().map(|c| (c.column.clone(), c.mine.clone())).collect())
            }
            Resolution::Edit(values) => values,
        };
        let table = self.schema.table(&conflict.table)?;
        let (n, m) =
            capture(&tx, &self.schema, &self.client_id, |c| update_row(c, table, &conflict.pk, &values))?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "{} {} was deleted",
                conflict.table,
                key_json(&conflict.pk)
            )));
        }
        tx.commit()?;
        Ok(m)
    }
}

/// Runs `f` under a session on the projection tables; what it changed becomes a pending overlay.
fn capture<T>(
    conn: &Connection,
    schema: &Schema,
    client_id: &str,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<(T, Option<Mutation>)> {
    let (out, diff) = crate::diff::capture(conn, schema, f)?;
    if diff.is_empty() {
        return Ok((out, None));
    }
    let n: i64 = conn.query_row(
        "UPDATE moat_meta SET value = value + 1 WHERE key = 'next_mutation' RETURNING value - 1",
        [],
        |r| r.get(0),
    )?;
    let mutation_id = format!("{client_id}-{n}");
    conn.execute("INSERT INTO overlays (mutation_id, diff) VALUES (?1, ?2)", (&mutation_id, diff.to_json()))?;
    Ok((out, Some(Mutation { mutation_id, diff })))
}

/// A pending overlay's diff, carried from `old` to `new`: inserts and deletes get the columns the
/// migration added (as NULL), a dropped column that the change only restates is left out. A change
/// to a dropped table, an update of a dropped column, or a value written to one does not fit.
fn upgrade_overlay(json: &str, old: &Schema, new: &Schema) -> std::result::Result<Diff, String> {
    let mut diff = Diff::from_json(json, old).map_err(|e| e.to_string())?;
    diff.refit(new)?;
    Diff::from_json(&diff.to_json(), new).map_err(|e| e.to_string())
}

/// A replica file: WAL, `synchronous = FULL` (a local write that returned survives a crash).
fn open_file(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// A snapshot's inserts into `table`: its golden state and (in a first sync) its projection.
fn snapshot_inserts(table: &Table, golden: bool, projection: bool) -> impl Iterator<Item = String> + '_ {
    let into = move |name: String| {
        format!(
            "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
            quote(&name),
            table.column_list(),
            vec!["?"; table.columns.len()].join(", ")
        )
    };
    let golden = golden.then(|| table.server_data_name());
    golden.into_iter().chain(projection.then(|| table.name.clone())).map(into)
}

/// Whether any write of the user's is kept (pending or refused).
fn has_overlays(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM overlays)", [], |r| r.get(0))?)
}

pub(crate) fn load_pending(conn: &Connection, schema: &Schema) -> Result<Vec<Mutation>> {
    load_pending_head(conn, schema, -1)
}

/// The oldest `limit` pending mutations (all of them for a negative limit), decoded.
fn load_pending_head(conn: &Connection, schema: &Schema, limit: i64) -> Result<Vec<Mutation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT mutation_id, diff FROM overlays WHERE state = 'pending' ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (mutation_id, json) = row?;
        out.push(Mutation { mutation_id, diff: Diff::from_json(&json, schema)? });
    }
    Ok(out)
}

/// Resets the rows in `reset` from the golden state, then replays over them, in order, the parts of
/// the pending overlays that touch them. Rows outside `reset` are not read or written.
fn rebase(
    conn: &Connection,
    schema: &Schema,
    pending: &[Mutation],
    reset: &HashMap<(String, String), Fields<Value>>,
) -> Result<()> {
    if reset.is_empty() {
        return Ok(());
    }
    for ((table, _), pk) in reset {
        let t = schema.table(table)?;
        let key = t.key_values(pk)?;
        let del = format!("DELETE FROM {} WHERE {}", quote(&t.name), t.pk_where());
        conn.prepare_cached(&del)?.execute(params_from_iter(&key))?;
        let copy = format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {} WHERE {}",
            quote(&t.name),
            quote(&t.server_data_name()),
            t.pk_where(),
            cols = t.column_list()
        );
        conn.prepare_cached(&copy)?.execute(params_from_iter(&key))?;
    }
    for m in pending {
        let changes: Vec<_> = m
            .diff
            .changes
            .iter()
            .filter(|c| reset.contains_key(&(c.table.clone(), c.key())))
            .cloned()
            .collect();
        if !changes.is_empty() {
            apply_changeset(conn, &Diff { changes }.to_changeset(schema)?, Policy::MineWins)?;
        }
    }
    Ok(())
}

fn update_row(conn: &Connection, t: &Table, pk: &Fields<Value>, set: &Fields<Value>) -> Result<usize> {
    let cols = column_indexes(t, set)?;
    if cols.is_empty() {
        return Err(Error::Invalid("an update must set a column".into()));
    }
    if let Some(&i) = cols.iter().find(|&&i| t.columns[i].pk > 0) {
        return Err(Error::Invalid(format!("key column {} cannot be updated", t.columns[i].name)));
    }
    let values: Vec<(&str, &Value)> = set.0.iter().map(|(c, v)| (c.as_str(), v)).collect();
    t.update_row(conn, pk, &values)
}

/// The schema's index of every column named in `fields`, refusing unknown names.
fn column_indexes<T>(t: &Table, fields: &Fields<T>) -> Result<Vec<usize>> {
    fields
        .iter()
        .map(|(name, _)| {
            t.column_index(name)
                .ok_or_else(|| Error::UnknownColumn { table: t.name.clone(), column: name.to_owned() })
        })
        .collect()
}

fn read_row(
    conn: &Connection,
    t: &Table,
    sql_name: &str,
    pk: &Fields<Value>,
) -> Result<Option<Fields<Value>>> {
    let key = t.key_values(pk)?;
    let sql = format!("SELECT {} FROM {} WHERE {}", t.column_list(), quote(sql_name), t.pk_where());
    let mut stmt = conn.prepare_cached(&sql)?;
    let row = stmt
        .query_row(params_from_iter(key), |r| {
            (0..t.columns.len()).map(|i| Ok((t.columns[i].name.clone(), r.get::<_, Value>(i)?))).collect()
        })
        .optional()?;
    Ok(row.map(Fields))
}
