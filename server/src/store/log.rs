//! The change log (`moat_log`): one entry per commit that changed something, versioned by one counter.
//! A channel's log is this log seen through the channel's view ([`LogEntry::view`]): each change keeps
//! its row's routing values, so the view needs no second read. The writer appends ([`record`]);
//! catch-up reads ([`log_after`]); the hub publishes what the writer appended.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sqlite_ext::{Change, Diff, Schema, Value};

use crate::error::{Error, Result};
use crate::rules::{Profile, Rules};

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

impl LogEntry {
    /// This profile's view of the entry, if anything of it is visible.
    pub(crate) fn view(&self, rules: &Rules, profile: &Profile) -> Option<Diff> {
        let changes: Vec<_> =
            self.changes.iter().filter_map(|r| rules.view(profile, &r.change, &r.route)).collect();
        (!changes.is_empty()).then_some(Diff { changes })
    }
}

/// The newest version, and the oldest one still in the log (`newest + 1` when the log is empty).
pub(crate) fn log_bounds(conn: &Connection) -> Result<(i64, i64)> {
    let newest = current_version(conn)?;
    let oldest: Option<i64> = conn.query_row("SELECT min(version) FROM moat_log", [], |r| r.get(0))?;
    Ok((newest, oldest.unwrap_or(newest + 1)))
}

/// The version of the newest commit (0 before the first).
pub(crate) fn current_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM moat_meta WHERE key = 'version'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Stores the version a commit reached, and trims the log to `retention` versions now and then.
pub(crate) fn set_version(conn: &Connection, version: i64, retention: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO moat_meta (key, value) VALUES ('version', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([version])?;
    if retention > 0 && version % 1024 == 0 {
        conn.execute("DELETE FROM moat_log WHERE version <= ?1", [version - retention])?;
        conn.execute("DELETE FROM moat_history WHERE version <= ?1", [version - retention])?;
    }
    Ok(())
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
            .map_err(|e| Error::Internal(format!("log entry {version} is unreadable: {e}")))?;
        out.push(LogEntry { version, changes });
    }
    Ok(out)
}

/// Attaches to each applied change its row's routing values (read back for updates, whose diff
/// carries only the changed columns; routing columns never change).
pub(crate) fn route_changes(
    conn: &Connection,
    schema: &Schema,
    rules: &Rules,
    applied: Diff,
) -> Result<Vec<Routed>> {
    let route_cols: Vec<&str> = rules.route_columns().collect();
    let mut out = Vec::with_capacity(applied.changes.len());
    for change in applied.changes {
        let route = match rules.route_of_change(&change) {
            Some(r) => r,
            None => schema
                .table(&change.table)?
                .read_columns(conn, &change.pk, &route_cols)?
                .ok_or_else(|| Error::Internal(format!("updated row {} vanished", change.key())))?,
        };
        out.push(Routed { route, change });
    }
    Ok(out)
}

/// Appends an entry at `version` (inside the commit's transaction) and keeps it for the publish; each
/// changed row is remembered in `moat_history` as `user`'s (empty: an operator's or a migration's).
pub(crate) fn record(
    conn: &Connection,
    version: i64,
    user: &str,
    changes: Vec<Routed>,
    entries: &mut Vec<LogEntry>,
) -> Result<()> {
    let mut remember = conn.prepare_cached(
        "INSERT OR REPLACE INTO moat_history (table_name, row_key, version, user_id, at_ms, op, columns) \
         VALUES (?1, ?2, ?3, ?4, CAST(unixepoch('subsec') * 1000 AS INTEGER), ?5, ?6)",
    )?;
    for r in &changes {
        let c = &r.change;
        let op = match c.op {
            sqlite_ext::Op::Insert => "insert",
            sqlite_ext::Op::Update => "update",
            sqlite_ext::Op::Delete => "delete",
        };
        let columns: Vec<&str> = c.cols.iter().map(|(n, _)| n).collect();
        let columns = serde_json::to_string(&columns).expect("names serialise");
        remember.execute((&c.table, sqlite_ext::ui::record_id(&c.pk), version, user, op, columns))?;
    }
    let json = serde_json::to_string(&changes).expect("log entries serialise");
    conn.prepare_cached("INSERT INTO moat_log (version, entry) VALUES (?1, ?2)")?.execute((version, json))?;
    entries.push(LogEntry { version, changes });
    Ok(())
}

/// The newest `limit` history entries of record `id` of `table`, newest first.
pub(crate) fn history_of(
    conn: &Connection,
    table: &str,
    id: &str,
    limit: usize,
) -> Result<Vec<sqlite_ext::protocol::HistoryEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, at_ms, user_id, op, columns FROM moat_history \
         WHERE table_name = ?1 AND row_key = ?2 ORDER BY version DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map((table, id, limit as i64), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (version, at_ms, user, op, columns) = row?;
        let columns: Vec<String> = serde_json::from_str(&columns)
            .map_err(|e| Error::Internal(format!("history entry {version} is unreadable: {e}")))?;
        out.push(sqlite_ext::protocol::HistoryEntry { version, at_ms, user, op, columns });
    }
    Ok(out)
}

/// Rewrites the logged changes of `tables` (which just got new columns: a customization or an
/// additive migration) to the new schema, so that catch-up still sends each as a valid diff: an
/// insert or delete names every column.
pub(crate) fn refit(conn: &Connection, schema: &Schema, tables: &[String]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT version, entry FROM moat_log ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE moat_log SET entry = ?2 WHERE version = ?1")?;
    for (version, json) in rows {
        let mut routed: Vec<Routed> = serde_json::from_str(&json)
            .map_err(|e| Error::Internal(format!("log entry {version} is unreadable: {e}")))?;
        let mut touched = false;
        for r in routed.iter_mut().filter(|r| tables.contains(&r.change.table)) {
            let mut d = Diff { changes: vec![r.change.clone()] };
            d.refit(schema).map_err(|e| Error::Internal(format!("log entry {version}: {e}")))?;
            r.change = d.changes.pop().expect("one change in, one out");
            touched = true;
        }
        if touched {
            update.execute((version, serde_json::to_string(&routed).expect("log entries serialise")))?;
        }
    }
    Ok(())
}
