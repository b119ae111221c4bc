//! `moat tenant split`: turns a server database of the shape before a tenant was a database (one
//! `moat.db` shared by every tenant, rows told apart by their routing column) into one database per
//! tenant, keeping:
//! - every row, in the database of the tenant its routing column names;
//! - the change log, each entry cut down to the changes routed to the tenant (entries left empty are
//!   dropped), and the version counter as it was, so every client's cursor stays valid: its next
//!   connection catches up from the log, no fresh snapshot;
//! - every stored mutation outcome a client may still replay, in the tenant it belongs to: an ack
//!   whose version is in the log belongs to the tenant that version's changes were routed to; else
//!   one with conflicts to the tenant of the conflicting row. An outcome with neither (a reject, or
//!   an ack that changed nothing) carries no row of anyone, and is kept in every tenant, so that no
//!   replay is ever applied twice;
//! - the migrations applied (as the platform's).
//!
//! Each tenant's file starts as a consistent copy of the old one (`VACUUM INTO`), from which the
//! other tenants' rows are then removed; the old file is left as it was.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sqlite_ext::{Schema, Value};

use crate::error::{Error, Result};
use crate::rules::Rules;
use crate::store::{LogEntry, Outcome, log_after};
use crate::tenants;

/// Splits `from` into tenant databases in `data`; `progress` hears each step. Returns a summary.
pub fn split(from: &Path, data: &Path, rules_text: &str, mut progress: impl FnMut(&str)) -> Result<String> {
    let old = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema_sql: String = old
        .query_row("SELECT value FROM moat_meta WHERE key = 'schema_sql'", [], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::Config(format!("{}: not a Moat server database", from.display())))?;
    let schema = Schema::from_sql(&schema_sql)?;
    let rules = Rules::from_toml(rules_text, &schema)?;
    let (column, at) = rules
        .tenant_route()
        .ok_or_else(|| Error::Config("the sync rules route no column by the tenant claim".into()))?;
    // Every tenant a row or a log entry names.
    let mut names = BTreeSet::new();
    for t in schema.tables() {
        let sql = format!("SELECT DISTINCT \"{column}\" FROM \"{}\" WHERE \"{column}\" IS NOT NULL", t.name);
        for n in old.prepare(&sql)?.query_map([], |r| r.get::<_, String>(0))? {
            names.insert(n?);
        }
    }
    let log = log_after(&old, 0, usize::MAX)?;
    let tenant_of = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    };
    let mut by_version: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for e in &log {
        for c in &e.changes {
            if let Some(t) = c.route.get(at).and_then(tenant_of) {
                names.insert(t.clone());
                by_version.entry(e.version).or_default().insert(t);
            }
        }
    }
    for n in &names {
        tenants::check_name(n)?;
        if tenants::tenant_path(data, n).exists() {
            return Err(Error::Config(format!(
                "{}: exists already",
                tenants::tenant_path(data, n).display()
            )));
        }
    }
    let platform = tenants::open_platform(data)?;
    // The tenant of each stored outcome, where the outcome says.
    let outcomes: Vec<(String, String, String)> = old
        .prepare("SELECT user_id, mutation_id, outcome FROM moat_mutations")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut owner: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
    for (_, id, json) in &outcomes {
        let outcome: Outcome = serde_json::from_str(json)
            .map_err(|e| Error::Internal(format!("the stored outcome of {id} is unreadable: {e}")))?;
        owner.push(match outcome {
            Outcome::Ack { version: Some(v), .. } if by_version.get(&v).is_some_and(|t| t.len() == 1) => {
                by_version[&v].iter().next().cloned()
            }
            Outcome::Ack { conflicts, .. } => {
                let mut found = None;
                for c in &conflicts {
                    if let Ok(t) = schema.table(&c.table)
                        && let Some(route) = t.read_columns(&old, &c.pk, &[column])?
                    {
                        found = route.first().and_then(tenant_of);
                        break;
                    }
                }
                found
            }
            Outcome::Reject { .. } => None,
        });
    }
    let mut report = String::new();
    for name in &names {
        progress(&format!("{name}: copying …"));
        let path = tenants::tenant_path(data, name);
        old.execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
        let mut conn = crate::store::open_conn(&path)?;
        let tx = conn.transaction()?;
        let mut rows = 0;
        for t in schema.tables() {
            tx.execute(&format!("DELETE FROM \"{}\" WHERE \"{column}\" IS NOT ?1", t.name), [name])?;
            rows += t.count(&tx, &[])?;
        }
        tx.execute(
            "INSERT INTO moat_meta (key, value) VALUES ('tenant', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1",
            [name],
        )?;
        tx.execute("DELETE FROM moat_log", [])?;
        // Who changed which row: not carried over (it would keep other tenants' record ids).
        tx.execute("DROP TABLE IF EXISTS moat_history", [])?;
        let mut kept_log = 0;
        for LogEntry { version, changes } in &log {
            let mine: Vec<_> = changes
                .iter()
                .filter(|c| c.route.get(at).and_then(tenant_of).as_deref() == Some(name))
                .collect();
            if !mine.is_empty() {
                let json = serde_json::to_string(&mine).expect("log entries serialise");
                tx.execute("INSERT INTO moat_log (version, entry) VALUES (?1, ?2)", (version, json))?;
                kept_log += 1;
            }
        }
        let mut dropped = 0;
        for ((user, id, _), who) in outcomes.iter().zip(&owner) {
            if who.as_ref().is_some_and(|w| w != name) {
                tx.execute("DELETE FROM moat_mutations WHERE user_id = ?1 AND mutation_id = ?2", (user, id))?;
                dropped += 1;
            }
        }
        let kept_outcomes = outcomes.len() - dropped;
        // The migrations table of the shape before scopes: the same history, as the platform's.
        let has_scope: bool = tx
            .query_row(
                "SELECT count(*) FROM pragma_table_info('moat_migrations') WHERE name = 'scope'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        let has_table: bool = tx
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'moat_migrations'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)?;
        if has_table && !has_scope {
            tx.execute_batch(
                "ALTER TABLE moat_migrations RENAME TO moat_migrations_before_split;
                 CREATE TABLE moat_migrations (
                     seq INTEGER PRIMARY KEY, scope TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
                     checksum TEXT NOT NULL, sql TEXT NOT NULL, applied_ms INTEGER NOT NULL,
                     UNIQUE (scope, version)) STRICT;
                 INSERT INTO moat_migrations (scope, version, name, checksum, sql, applied_ms)
                     SELECT 'platform', version, name, checksum, sql, applied_ms
                     FROM moat_migrations_before_split ORDER BY version;
                 DROP TABLE moat_migrations_before_split;",
            )?;
        }
        tx.commit()?;
        conn.execute_batch("VACUUM")?;
        drop(conn);
        tenants::register(&platform, name)?;
        let line = format!(
            "{name}: {rows} rows, {kept_log} of {} log entries, {kept_outcomes} of {} mutation outcomes",
            log.len(),
            outcomes.len()
        );
        progress(&line);
        report.push_str(&line);
        report.push('\n');
    }
    report.push_str(&format!(
        "{} tenant(s) split out of {}; it is left as it was\n",
        names.len(),
        from.display()
    ));
    Ok(report)
}
