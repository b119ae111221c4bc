//! Schema migrations: numbered SQL files (`schemas/migrations/NNNN_name.sql`) applied in order, each
//! in one transaction, recorded with a checksum in `moat_migrations`.
//!
//! A migration may hold DDL (a new table, a new column) and the matching `object_metadata` and
//! `layout_definition` rows. The schema the server runs with is the base schema (`domain.sql`) followed
//! by every applied migration's SQL, so the model the server checks diffs against always matches the
//! database. A running server's additive migration keeps the change log ([`KeepLog`]): clients catch
//! up. After any other the change log is emptied and the version moves on, so every client takes a
//! fresh snapshot of the new schema's rows on its next connection.
//!
//! Refused: an applied migration whose file changed (checksum), a missing or duplicated number, and a
//! destructive change (a dropped table or column that holds data) unless explicitly allowed.
//!
//! Each tenant's database has its own history, in two numbered sequences ([`Scope`]): the
//! platform's migrations (`schemas/migrations`, applied to every tenant) and the tenant's own (its
//! custom objects and fields). The tenant's schema is the base schema followed by both, in the order
//! they were applied.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use sqlite_ext::Schema;

use crate::error::{Error, Result};

/// Whose migrations a sequence is: numbers are unique within a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// The platform's migrations, applied to every tenant.
    Platform,
    /// One tenant's own migrations.
    Tenant,
    /// The storage an admin's customization needed (made by the server when it was published).
    Customize,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Platform => "platform",
            Scope::Tenant => "tenant",
            Scope::Customize => "customize",
        }
    }
}

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// Its number (the file's `NNNN_` prefix); migrations apply in this order.
    pub version: u32,
    /// The rest of the file name.
    pub name: String,
    /// The SQL.
    pub sql: String,
    /// SHA-256 of the SQL, hex.
    pub checksum: String,
}

/// Where a migration stands against a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Applied, and the file is unchanged.
    Applied,
    /// Not applied yet.
    Pending,
    /// Applied, but the file changed since: refused until it is restored.
    Tampered,
    /// Applied, but its file is gone.
    Missing,
}

/// What applying one migration does (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// Tables created.
    pub tables_added: Vec<String>,
    /// Tables dropped, with the rows they held.
    pub tables_dropped: Vec<(String, i64)>,
    /// Columns added (`table.column`).
    pub columns_added: Vec<String>,
    /// Columns dropped (`table.column`), with the non-null values they held.
    pub columns_dropped: Vec<(String, i64)>,
    /// Rows inserted, updated or deleted by the migration's statements.
    pub rows_changed: i64,
}

impl Effect {
    /// It only adds (tables, columns, rows): what clients hold stays valid.
    pub fn additive(&self) -> bool {
        self.tables_dropped.is_empty() && self.columns_dropped.is_empty()
    }

    /// The tables that got columns.
    pub fn widened(&self) -> Vec<String> {
        let mut t: Vec<String> =
            self.columns_added.iter().filter_map(|c| c.split_once('.').map(|(t, _)| t.to_owned())).collect();
        t.dedup();
        t
    }

    /// Whether it would destroy data.
    pub fn destructive(&self) -> bool {
        self.tables_dropped.iter().any(|(_, n)| *n > 0) || self.columns_dropped.iter().any(|(_, n)| *n > 0)
    }

    /// One line per change, for `plan` and `up`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for t in &self.tables_added {
            let _ = writeln!(s, "    + table {t}");
        }
        for c in &self.columns_added {
            let _ = writeln!(s, "    + column {c}");
        }
        for (t, n) in &self.tables_dropped {
            let _ = writeln!(s, "    - table {t} ({n} rows)");
        }
        for (c, n) in &self.columns_dropped {
            let _ = writeln!(s, "    - column {c} ({n} values)");
        }
        let _ = writeln!(s, "    {} rows written", self.rows_changed);
        s
    }
}

const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS moat_migrations (
    seq        INTEGER PRIMARY KEY,
    scope      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    sql        TEXT NOT NULL,
    applied_ms INTEGER NOT NULL,
    UNIQUE (scope, version)
) STRICT";

fn schema_error(e: sqlite_ext::Error) -> Error {
    Error::Config(format!("the migrated schema is refused: {e}"))
}

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the migrations of `dir` (files `NNNN_name.sql`), in order. A missing directory has none.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Config(format!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::Config(e.to_string()))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
        let Some(stem) = file.strip_suffix(".sql") else { continue };
        let (num, name) = stem
            .split_once('_')
            .ok_or_else(|| Error::Config(format!("{file}: a migration is named NNNN_name.sql")))?;
        let version: u32 =
            num.parse().map_err(|_| Error::Config(format!("{file}: a migration is named NNNN_name.sql")))?;
        let sql = std::fs::read_to_string(&path).map_err(|e| Error::Config(format!("{file}: {e}")))?;
        out.push(Migration { version, name: name.to_owned(), checksum: checksum(&sql), sql });
    }
    out.sort_by_key(|m| m.version);
    for pair in out.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(Error::Config(format!("two migrations are numbered {}", pair[0].version)));
        }
    }
    Ok(out)
}

/// The applied migrations recorded in `conn` (of `scope`, or all): (version, name, checksum, sql),
/// in the order they were applied.
fn applied(conn: &Connection, scope: Option<Scope>) -> Result<Vec<(u32, String, String, String)>> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'moat_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT version, name, checksum, sql FROM moat_migrations WHERE ?1 IS NULL OR scope = ?1 ORDER BY seq",
    )?;
    let rows =
        stmt.query_map([scope.map(Scope::as_str)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The schema a database runs with: `base` followed by every migration applied to it.
pub fn effective_schema(conn: &Connection, base: &Schema) -> Result<Schema> {
    let applied = applied(conn, None)?;
    if applied.is_empty() {
        return Ok(base.clone());
    }
    Schema::from_sql(&effective_sql(base.sql(), applied.iter().map(|a| a.3.as_str()))).map_err(schema_error)
}

/// `base` followed by each migration's SQL: the text the schema model is built from.
pub(crate) fn effective_sql<'a>(base: &str, migrations: impl Iterator<Item = &'a str>) -> String {
    let mut sql = base.to_owned();
    for m in migrations {
        sql.push_str("\n-- migration\n");
        sql.push_str(m);
    }
    sql
}

/// Every migration of `scope` known from the files or the database, with its state, in order.
pub fn status(conn: &Connection, files: &[Migration], scope: Scope) -> Result<Vec<(u32, String, State)>> {
    let applied = applied(conn, Some(scope))?;
    let mut out = Vec::new();
    for m in files {
        let state = match applied.iter().find(|a| a.0 == m.version) {
            Some(a) if a.2 == m.checksum => State::Applied,
            Some(_) => State::Tampered,
            None => State::Pending,
        };
        out.push((m.version, m.name.clone(), state));
    }
    for a in &applied {
        if !files.iter().any(|m| m.version == a.0) {
            out.push((a.0, a.1.clone(), State::Missing));
        }
    }
    out.sort_by_key(|s| s.0);
    Ok(out)
}

/// The migrations to apply, after refusing a tampered, missing or out-of-order history.
fn pending<'a>(conn: &Connection, files: &'a [Migration], scope: Scope) -> Result<Vec<&'a Migration>> {
    let applied = applied(conn, Some(scope))?;
    let newest = applied.iter().map(|a| a.0).max().unwrap_or(0);
    for (version, name, state) in status(conn, files, scope)? {
        match state {
            State::Tampered => {
                return Err(Error::Config(format!(
                    "migration {version:04}_{name} was changed after it was applied (checksum differs); \
                     restore the file and put the change in a new migration"
                )));
            }
            State::Missing => {
                return Err(Error::Config(format!(
                    "migration {version:04}_{name} is applied but its file is missing"
                )));
            }
            State::Pending if version < newest => {
                return Err(Error::Config(format!(
                    "migration {version:04}_{name} is older than the newest applied one ({newest:04}); \
                     renumber it after {newest:04}"
                )));
            }
            _ => {}
        }
    }
    Ok(files.iter().filter(|m| !applied.iter().any(|a| a.0 == m.version)).collect())
}

/// Counts the data a table or column holds (to judge a drop).
fn data_in(conn: &Connection, schema: &Schema, table: &str, column: Option<&str>) -> Result<i64> {
    let t = schema.table(table).map_err(schema_error)?;
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let sql = match column {
        None => format!("SELECT count(*) FROM {}", q(&t.name)),
        Some(c) => {
            let col = t.columns.iter().find(|x| x.name == c).ok_or_else(|| Error::Config(c.into()))?;
            format!("SELECT count({}) FROM {}", q(&col.name), q(&t.name))
        }
    };
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// What a migration's statements changed in the synced tables, under the schema it made; `None` when
/// it could not be captured (the caller then lets every client take a fresh copy).
type Captured = Option<sqlite_ext::Diff>;

/// Runs `m` on `conn` (inside the caller's transaction) and says what it did to the schema; with
/// `capture`, also what its statements changed in the synced tables.
fn run(
    conn: &Connection,
    before_sql: &str,
    m: &Migration,
    capture: bool,
) -> Result<(Effect, String, Captured)> {
    let before = Schema::from_sql(before_sql).map_err(schema_error)?;
    let after_sql = effective_sql(before_sql, std::iter::once(m.sql.as_str()));
    let after = Schema::from_sql(&after_sql).map_err(|e| {
        Error::Config(format!("migration {:04}_{}: the schema it makes is refused: {e}", m.version, m.name))
    })?;
    let mut effect = Effect::default();
    for t in before.tables() {
        match after.table(&t.name) {
            Err(_) => effect.tables_dropped.push((t.name.clone(), data_in(conn, &before, &t.name, None)?)),
            Ok(a) => {
                for c in &t.columns {
                    if !a.columns.iter().any(|x| x.name == c.name) {
                        let n = data_in(conn, &before, &t.name, Some(&c.name))?;
                        effect.columns_dropped.push((format!("{}.{}", t.name, c.name), n));
                    }
                }
            }
        }
    }
    for t in after.tables() {
        match before.table(&t.name) {
            Err(_) => effect.tables_added.push(t.name.clone()),
            Ok(b) => {
                for c in &t.columns {
                    if !b.columns.iter().any(|x| x.name == c.name) {
                        effect.columns_added.push(format!("{}.{}", t.name, c.name));
                    }
                }
            }
        }
    }
    let changes_before = conn.total_changes();
    let failed =
        |e: rusqlite::Error| Error::Config(format!("migration {:04}_{} failed: {e}", m.version, m.name));
    let captured = if capture {
        // The session is attached to the new schema's tables (a table the migration creates is
        // recorded once it exists), so a changed row names the columns clients will have.
        match sqlite_ext::capture(conn, &after, |c| c.execute_batch(&m.sql).map_err(CaptureError::Sql)) {
            Ok(((), diff)) => Some(diff),
            Err(CaptureError::Sql(e)) => return Err(failed(e)),
            Err(CaptureError::Core(e)) => {
                tracing::warn!(error = %e, "a migration's changes could not be captured; clients take a fresh copy");
                None
            }
        }
    } else {
        conn.execute_batch(&m.sql).map_err(failed)?;
        None
    };
    effect.rows_changed = (conn.total_changes() - changes_before) as i64;
    Ok((effect, after_sql, captured))
}

/// Why capturing a migration failed: its SQL (the migration fails) or the capture itself.
enum CaptureError {
    Sql(rusqlite::Error),
    Core(sqlite_ext::Error),
}

impl From<sqlite_ext::Error> for CaptureError {
    fn from(e: sqlite_ext::Error) -> Self {
        CaptureError::Core(e)
    }
}

/// What `up` would do, without changing anything: every pending migration runs in one transaction
/// that is rolled back.
pub fn plan(
    conn: &mut Connection,
    base: &Schema,
    files: &[Migration],
    scope: Scope,
) -> Result<Vec<(Migration, Effect)>> {
    conn.execute_batch(TABLE_SQL)?;
    let todo: Vec<Migration> = pending(conn, files, scope)?.into_iter().cloned().collect();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut sql = effective_schema(&tx, base)?.sql().to_owned();
    let mut out = Vec::new();
    for m in todo {
        let (effect, next, _) = run(&tx, &sql, &m, false)?;
        sql = next;
        out.push((m, effect));
    }
    tx.rollback()?;
    Ok(out)
}

/// Keeps the change log across an additive migration (a running server's): given the migration's
/// transaction, the schema it made, what it did and the data changes it made, it refits the log and
/// appends those changes, so that clients catch up instead of taking a fresh copy.
pub type KeepLog<'a> = &'a dyn Fn(&Connection, &Schema, &Effect, sqlite_ext::Diff) -> Result<()>;

/// Applies every pending migration in order, each in its own transaction; stops at the first one
/// that fails (nothing of it is left) or that would destroy data without `allow_destructive`.
/// `progress` hears about each step. Returns what was applied. With `keep_log`, an additive
/// migration keeps the change log (see [`KeepLog`]); any other empties it, and every client takes a
/// fresh copy of the new schema's rows.
pub fn up(
    conn: &mut Connection,
    base: &Schema,
    files: &[Migration],
    scope: Scope,
    allow_destructive: bool,
    keep_log: Option<KeepLog<'_>>,
    mut progress: impl FnMut(&str),
) -> Result<Vec<(Migration, Effect)>> {
    conn.execute_batch(TABLE_SQL)?;
    let todo: Vec<Migration> = pending(conn, files, scope)?.into_iter().cloned().collect();
    let total = todo.len();
    let mut done = Vec::new();
    for (n, m) in todo.into_iter().enumerate() {
        progress(&format!("[{}/{total}] {:04}_{} …", n + 1, m.version, m.name));
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = effective_schema(&tx, base)?.sql().to_owned();
        let (effect, after, captured) = run(&tx, &before, &m, keep_log.is_some())?;
        if effect.destructive() && !allow_destructive {
            return Err(Error::Config(format!(
                "migration {:04}_{} would destroy data:\n{}run it with --allow-destructive if that is meant",
                m.version,
                m.name,
                effect.describe()
            )));
        }
        tx.execute(
            "INSERT INTO moat_migrations (scope, version, name, checksum, sql, applied_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
            rusqlite::params![scope.as_str(), m.version, m.name, m.checksum, m.sql],
        )?;
        tx.execute("UPDATE moat_meta SET value = ?1 WHERE key = 'schema_sql'", [&after])?;
        let kept = match (keep_log, captured) {
            (Some(keep), Some(diff)) if effect.additive() => {
                let schema = Schema::from_sql(&after).map_err(schema_error)?;
                keep(&tx, &schema, &effect, diff)?;
                true
            }
            _ => false,
        };
        if !kept {
            // Every client re-reads the (new) schema's rows: no cursor survives this migration.
            tx.execute(
                "INSERT INTO moat_meta (key, value) VALUES ('version', 1) \
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
                [],
            )?;
            tx.execute("DELETE FROM moat_log", [])?;
        }
        tx.commit()?;
        progress(&format!(
            "[{}/{total}] {:04}_{} applied in {} ms\n{}",
            n + 1,
            m.version,
            m.name,
            started.elapsed().as_millis(),
            effect.describe()
        ));
        done.push((m, effect));
    }
    Ok(done)
}

/// Records the storage statements of a customization (run by the caller, in its transaction) as the
/// next migration of scope [`Scope::Customize`], and `schema_sql`, the schema they made.
pub(crate) fn record_customization(conn: &Connection, sql: &str, schema_sql: &str) -> Result<()> {
    conn.execute_batch(TABLE_SQL)?;
    let next: u32 = conn.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM moat_migrations WHERE scope = ?1",
        [Scope::Customize.as_str()],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO moat_migrations (scope, version, name, checksum, sql, applied_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
        rusqlite::params![Scope::Customize.as_str(), next, format!("customize_{next}"), checksum(sql), sql],
    )?;
    conn.execute("UPDATE moat_meta SET value = ?1 WHERE key = 'schema_sql'", [schema_sql])?;
    Ok(())
}

/// Creates `dir/NNNN_name.sql` with the next number and a template; returns its path.
pub fn new_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Config("a migration name is letters, digits and _".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let next = load_dir(dir)?.last().map(|m| m.version + 1).unwrap_or(1);
    let path = dir.join(format!("{next:04}_{name}.sql"));
    let template = format!(
        "-- Migration {next:04}: {name}. Runs in one transaction; an applied migration must never change.\n\
         -- DDL (new STRICT tables with a TEXT `id` key and a `tenant_id` routing column, or new nullable\n\
         -- columns) and the matching object_metadata / layout_definition rows go together here.\n\n"
    );
    std::fs::write(&path, template).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// Takes the lock the nodes of a cluster share on the platform database (`moat migrate` cannot take
/// [`writer_lock`] while any node runs).
pub fn shared_lock(db: &Path) -> Result<std::fs::File> {
    lock(db, true, "a single-node `moat serve` or a migration")
}

/// Takes the lock a database's one writer holds: `moat serve` for as long as it runs, `moat migrate`
/// while it changes the schema (a running server's schema model must not change under it).
pub fn writer_lock(db: &Path) -> Result<std::fs::File> {
    lock(
        db,
        false,
        "a running `moat serve` (or another migration); stop it, migrate, start it again: clients \
         reconnect and take a fresh snapshot",
    )
}

/// `<db>.lock`, locked shared or alone; a lock held by someone else is unavailable, held by `who`.
fn lock(db: &Path, shared: bool, who: &str) -> Result<std::fs::File> {
    let path = PathBuf::from(format!("{}.lock", db.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let locked = if shared { file.try_lock_shared() } else { file.try_lock() };
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::Unavailable(format!("{} is in use by {who}", db.display())))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Config(format!("{}: {e}", path.display()))),
    }
}
