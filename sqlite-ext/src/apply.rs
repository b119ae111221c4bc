//! Applying a diff with SQLite's changeset conflict handler, column by column.
//!
//! [`merge`] is what the server does with a client's diff. SQLite's `sqlite3changeset_apply` applies
//! every change whose base values still match the row; the conflict handler is called for the rest
//! and decides, by the kind of conflict:
//!
//! | SQLite reports | the change | outcome |
//! |---|---|---|
//! | DATA | update: some base values differ | per column: base still current → applied; already equal to mine → nothing to do; otherwise a **field conflict**: the server's value stays and the column is reported |
//! | DATA | delete: the row changed since the base | the delete wins; the row is removed |
//! | NOTFOUND | update of a row deleted meanwhile | nothing applied; reported as a **row_deleted** conflict with every column the writer set |
//! | NOTFOUND | delete of a row already gone | nothing to do (idempotent) |
//! | CONFLICT | insert of a key that exists | equal columns are fine; each differing column is a **row_exists** conflict, the existing row stays |
//! | CONSTRAINT | NOT NULL, CHECK, type of a STRICT table | the whole diff is rolled back: [`Error::Constraint`] |
//!
//! Values are compared as SQL's `IS` compares them, which is how SQLite itself decides that a row
//! still holds a change's base values ([`Value::sql_eq`]).
//!
//! Non-conflicting columns of an update that had a conflicting column are applied in a second pass
//! (a residual changeset whose base is the current row). Everything happens inside one savepoint, and
//! a session records what was really applied, which is what the server broadcasts.
//!
//! Most diffs meet no conflict at all. Those take a shorter way: each change is checked against the
//! row as `sqlite3changeset_apply` would check it and written with a cached statement, and what was
//! applied is recorded from the row before and after, as the session records it. The changeset way
//! compiles its statements anew for every diff and runs `PRAGMA defer_foreign_keys`, which expires
//! every prepared statement of the connection: on the server's writer that was over half of the
//! time per push. A property test (`tests/diff_roundtrip.rs`) holds both ways to the same result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::session::{ConflictAction, ConflictType, Session};
use serde::{Deserialize, Serialize};

use crate::changeset::Op;
use crate::diff::{Change, ColumnChange, Diff, Fields, key_json};
use crate::error::{Error, Result};
use crate::schema::{Schema, Table};
use crate::value::Value;

/// What kind of concurrent edit a conflict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// The same column was changed on both sides to different values.
    Field,
    /// The writer updated a row that was deleted meanwhile.
    RowDeleted,
    /// The writer inserted a key that already exists with other values.
    RowExists,
}

/// A conflict, as data: what the writer is shown and resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conflict {
    /// The kind of conflict.
    pub kind: ConflictKind,
    /// The table of the row.
    pub table: String,
    /// The row's primary key.
    pub pk: Fields<Value>,
    /// The conflicting columns.
    pub columns: Vec<ColumnConflict>,
}

/// One conflicting column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConflict {
    /// The column.
    pub column: String,
    /// The value both sides started from; absent for `row_exists`. A present `null` is SQL NULL.
    #[serde(default, deserialize_with = "crate::diff::present", skip_serializing_if = "Option::is_none")]
    pub base: Option<Value>,
    /// The value now on the server; absent for `row_deleted`. A present `null` is SQL NULL.
    #[serde(default, deserialize_with = "crate::diff::present", skip_serializing_if = "Option::is_none")]
    pub theirs: Option<Value>,
    /// The value the writer wanted.
    pub mine: Value,
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeReport {
    /// What was really applied, as the session extension recorded it: the diff to broadcast.
    pub applied: Diff,
    /// What was not applied, for the writer to resolve.
    pub conflicts: Vec<Conflict>,
}

/// Applies a client's diff onto the authoritative tables with per-column conflict handling (see the
/// module docs). On error nothing of the diff is left applied.
pub fn merge(conn: &Connection, schema: &Schema, diff: &Diff) -> Result<MergeReport> {
    if let Some(applied) = merge_clean(conn, schema, diff)? {
        return Ok(MergeReport { applied, conflicts: Vec::new() });
    }
    merge_by_changeset(conn, schema, diff)
}

/// The whole merge through `sqlite3changeset_apply` and its conflict handler, with a session
/// recording what was applied. [`merge`] takes this way for every diff that does not apply cleanly;
/// it is public so that tests can hold the clean path to it.
pub fn merge_by_changeset(conn: &Connection, schema: &Schema, diff: &Diff) -> Result<MergeReport> {
    let sp = Savepoint::open(conn)?;
    let mut session = Session::new(conn)?;
    for t in schema.tables() {
        session.attach(Some(t.name.as_str()))?;
    }

    let events = apply_changeset(conn, &diff.to_changeset(schema)?, Policy::Merge)?;

    let by_key: HashMap<(&str, String), &Change> =
        diff.changes.iter().map(|c| ((c.table.as_str(), c.key()), c)).collect();
    let mut conflicts = Vec::new();
    let mut residual = Diff::default();
    for ev in events {
        let change =
            by_key.get(&(ev.table.as_str(), key_json(&ev.key_fields(schema)?))).ok_or_else(|| {
                Error::CorruptChangeset(format!("conflict on a row the diff lacks in {}", ev.table))
            })?;
        classify(schema, change, &ev, &mut conflicts, &mut residual)?;
    }
    if !residual.is_empty() {
        apply_changeset(conn, &residual.to_changeset(schema)?, Policy::Strict)?;
    }

    let mut bytes = Vec::new();
    session.changeset_strm(&mut bytes)?;
    drop(session);
    let applied = Diff::from_changeset(schema, &bytes)?;
    sp.release()?;
    Ok(MergeReport { applied, conflicts })
}

/// The common case, without SQLite's changeset machinery (which compiles its statements anew for
/// every diff, and whose `PRAGMA defer_foreign_keys` expires every prepared statement of the
/// connection): when every change applies cleanly, as `sqlite3changeset_apply` would apply it (an
/// insert of a new key, an update or delete of a row that still holds every base value, no
/// constraint failing), it is applied with cached statements and recorded as the session would
/// record it (from the row as it was and as it is). Anything else (a conflict, a constraint, a
/// trigger in the schema) leaves nothing behind and returns `None`: the full merge decides.
fn merge_clean(conn: &Connection, schema: &Schema, diff: &Diff) -> Result<Option<Diff>> {
    let triggers: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger')")?
        .query_row([], |r| r.get(0))?;
    if triggers {
        return Ok(None);
    }
    let sp = Savepoint::open(conn)?;
    let mut applied = Vec::with_capacity(diff.changes.len());
    for change in &diff.changes {
        let table = schema.table(&change.table)?;
        let before = read_row(conn, table, &change.pk)?;
        let clean = match (change.op, &before) {
            (Op::Insert, None) => true,
            (Op::Update | Op::Delete, Some(row)) => change.cols.0.iter().all(|(name, c)| {
                let current = table.column_index(name).map(|i| &row[i]);
                matches!((current, &c.old), (Some(now), Some(base)) if now.sql_eq(base))
            }),
            _ => false,
        };
        if !clean || write_row(conn, table, change).is_err() {
            return Ok(None); // the savepoint rolls back
        }
        let after = if change.op == Op::Delete { None } else { read_row(conn, table, &change.pk)? };
        if let Some(c) = recorded(table, change, before, after) {
            applied.push(c);
        }
    }
    sp.release()?;
    // The session lists its changes table by table, in the schema's order.
    let order = |t: &str| schema.tables().iter().position(|x| x.name == t);
    applied.sort_by_key(|c| order(&c.table));
    Ok(Some(Diff { changes: applied }))
}

/// Every column of the row with key `pk`, in declaration order.
fn read_row(conn: &Connection, table: &Table, pk: &Fields<Value>) -> Result<Option<Vec<Value>>> {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    table.read_columns(conn, pk, &names)
}

/// Writes one change with the table's cached statements (names checked, values bound).
fn write_row(conn: &Connection, table: &Table, change: &Change) -> Result<()> {
    let values = change.cols.0.iter().map(|(c, v)| (c.as_str(), v.new.as_ref().unwrap_or(&Value::Null)));
    match change.op {
        Op::Insert => {
            let key = change.pk.0.iter().map(|(c, v)| (c.as_str(), v));
            table.insert_row(conn, &key.chain(values).collect::<Vec<_>>())?
        }
        Op::Update => table.update_row(conn, &change.pk, &values.collect::<Vec<_>>())?,
        Op::Delete => table.delete_row(conn, &change.pk)?,
    };
    Ok(())
}

/// What a session records for a change, from the row before and after it: an insert or a delete
/// carries every non-key column, an update the columns whose stored value changed (by type and
/// bytes); an update that changed nothing is not recorded.
fn recorded(
    table: &Table,
    change: &Change,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> Option<Change> {
    let same = |a: &Value, b: &Value| match (a, b) {
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    };
    let mut cols = Vec::new();
    for (i, col) in table.columns.iter().enumerate() {
        if col.pk > 0 {
            continue;
        }
        let old = before.as_ref().map(|r| r[i].clone());
        let new = after.as_ref().map(|r| r[i].clone());
        if let (Some(o), Some(n)) = (&old, &new)
            && same(o, n)
        {
            continue;
        }
        cols.push((col.name.clone(), ColumnChange { old, new }));
    }
    if change.op == Op::Update && cols.is_empty() {
        return None;
    }
    // The key as stored (after the column's affinity), as the session reads it.
    let row = after.as_ref().or(before.as_ref())?;
    let pk = table.pk.iter().map(|&i| (table.columns[i].name.clone(), row[i].clone())).collect();
    Some(Change {
        table: table.name.clone(),
        op: change.op,
        pk: Fields(pk),
        cols: Fields(cols),
        indirect: false,
    })
}

/// Decides what becomes of one change the handler could not apply as it was.
fn classify(
    schema: &Schema,
    change: &Change,
    ev: &Event,
    conflicts: &mut Vec<Conflict>,
    residual: &mut Diff,
) -> Result<()> {
    let table = schema.table(&change.table)?;
    let current = |name: &str| table.column_index(name).and_then(|i| ev.current.get(i).cloned().flatten());
    let mut columns = Vec::new();
    let kind = match (ev.kind, change.op) {
        (EventKind::Data, Op::Update) => {
            let mut apply = Vec::new();
            for (name, cc) in change.cols.iter() {
                let (Some(base), Some(mine)) = (&cc.old, &cc.new) else { continue };
                let theirs = current(name).unwrap_or(Value::Null);
                if theirs.sql_eq(base) {
                    apply
                        .push((name.to_owned(), ColumnChange { old: Some(theirs), new: Some(mine.clone()) }));
                } else if !theirs.sql_eq(mine) {
                    columns.push(ColumnConflict {
                        column: name.to_owned(),
                        base: Some(base.clone()),
                        theirs: Some(theirs),
                        mine: mine.clone(),
                    });
                }
            }
            if !apply.is_empty() {
                residual.changes.push(Change {
                    table: change.table.clone(),
                    op: Op::Update,
                    pk: change.pk.clone(),
                    cols: Fields(apply),
                    indirect: change.indirect,
                });
            }
            ConflictKind::Field
        }
        (EventKind::NotFound, Op::Update) => {
            for (name, cc) in change.cols.iter() {
                let mine = cc.new.clone().unwrap_or(Value::Null);
                columns.push(ColumnConflict {
                    column: name.to_owned(),
                    base: cc.old.clone(),
                    theirs: None,
                    mine,
                });
            }
            ConflictKind::RowDeleted
        }
        (EventKind::Exists, Op::Insert) => {
            for (name, cc) in change.cols.iter() {
                let mine = cc.new.clone().unwrap_or(Value::Null);
                let theirs = current(name).unwrap_or(Value::Null);
                if !theirs.sql_eq(&mine) {
                    columns.push(ColumnConflict {
                        column: name.to_owned(),
                        base: None,
                        theirs: Some(theirs),
                        mine,
                    });
                }
            }
            ConflictKind::RowExists
        }
        // A delete of a row already gone: nothing to do.
        (EventKind::NotFound, Op::Delete) => return Ok(()),
        (kind, op) => {
            return Err(Error::CorruptChangeset(format!("unexpected {kind:?} conflict for an {op:?}")));
        }
    };
    if !columns.is_empty() {
        conflicts.push(Conflict { kind, table: change.table.clone(), pk: change.pk.clone(), columns });
    }
    Ok(())
}

/// How a conflict handler answers, per use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The server merging a client's diff: see the module docs.
    Merge,
    /// A replica taking the server's word: the server's row replaces whatever is there.
    Authoritative,
    /// A replica replaying its own pending edits over the server's state: mine replace theirs,
    /// changes to rows that are gone are dropped (the server will say what it made of them).
    MineWins,
    /// Any conflict aborts (a residual pass, whose base is the current row).
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Data,
    NotFound,
    Exists,
    Constraint,
}

/// A conflict the handler saw, copied out of SQLite's iterator.
#[derive(Debug)]
pub(crate) struct Event {
    kind: EventKind,
    table: String,
    /// Per column, the key values (others `None`).
    key: Vec<Option<Value>>,
    /// Per column, the row now in the database (DATA and CONFLICT only).
    current: Vec<Option<Value>>,
}

impl Event {
    fn key_fields(&self, schema: &Schema) -> Result<Fields<Value>> {
        let table = schema.table(&self.table)?;
        let mut out = Vec::new();
        for &i in &table.pk {
            let v = self
                .key
                .get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| Error::CorruptChangeset("key missing".into()))?;
            out.push((table.columns[i].name.clone(), v));
        }
        Ok(Fields(out))
    }
}

/// Applies binary changeset `bytes` with `policy`; returns the conflicts the policy records.
pub(crate) fn apply_changeset(conn: &Connection, bytes: &[u8], policy: Policy) -> Result<Vec<Event>> {
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&events);
    let outcome = conn.apply_strm(&mut &bytes[..], None::<fn(&str) -> bool>, move |ty, item| {
        use ConflictAction::SQLITE_CHANGESET_REPLACE as Replace;
        use ConflictAction::{SQLITE_CHANGESET_ABORT as Abort, SQLITE_CHANGESET_OMIT as Omit};
        let Ok(op) = item.op() else { return Abort };
        let (table, ncol, is_insert, is_delete) = (
            op.table_name().to_owned(),
            op.number_of_columns() as usize,
            op.code() == rusqlite::hooks::Action::SQLITE_INSERT,
            op.code() == rusqlite::hooks::Action::SQLITE_DELETE,
        );
        let kind = match ty {
            ConflictType::SQLITE_CHANGESET_DATA => EventKind::Data,
            ConflictType::SQLITE_CHANGESET_NOTFOUND => EventKind::NotFound,
            ConflictType::SQLITE_CHANGESET_CONFLICT => EventKind::Exists,
            _ => EventKind::Constraint,
        };
        let (action, record) = match (policy, kind) {
            (Policy::Merge, EventKind::Data) if is_delete => (Replace, false),
            (Policy::Merge, EventKind::Constraint) | (Policy::Authoritative, EventKind::Constraint) => {
                (Abort, true)
            }
            (Policy::Merge, _) => (Omit, true),
            (Policy::Authoritative | Policy::MineWins, EventKind::Data | EventKind::Exists) => {
                (Replace, false)
            }
            (Policy::Authoritative | Policy::MineWins, _) => (Omit, false),
            (Policy::Strict, _) => (Abort, true),
        };
        if record {
            let pk = item.pk().map(<[u8]>::to_vec).unwrap_or_default();
            let read = |i: usize| {
                let v = if is_insert { item.new_value(i) } else { item.old_value(i) };
                v.ok().and_then(|v| Value::from_value_ref(v).ok())
            };
            let key =
                (0..ncol).map(|i| if pk.get(i).copied().unwrap_or(0) > 0 { read(i) } else { None }).collect();
            let current = if matches!(kind, EventKind::Data | EventKind::Exists) {
                (0..ncol).map(|i| item.conflict(i).ok().and_then(|v| Value::from_value_ref(v).ok())).collect()
            } else {
                Vec::new()
            };
            sink.lock().expect("handler never panics holding the lock").push(Event {
                kind,
                table,
                key,
                current,
            });
        }
        action
    });
    let events = std::mem::take(&mut *events.lock().expect("handler never panics holding the lock"));
    if let Err(e) = outcome {
        return Err(
            match events
                .iter()
                .find(|ev| matches!(ev.kind, EventKind::Constraint) || policy == Policy::Strict)
            {
                Some(ev) => Error::Constraint {
                    table: ev.table.clone(),
                    key: serde_json::to_string(&ev.key.iter().flatten().collect::<Vec<_>>())
                        .unwrap_or_default(),
                    reason: if ev.kind == EventKind::Constraint {
                        "a NOT NULL, CHECK or type constraint failed".into()
                    } else {
                        "the row changed while the change was applied".into()
                    },
                },
                None => Error::Sqlite(e),
            },
        );
    }
    Ok(events)
}

/// A SAVEPOINT that rolls back unless released, so a failed apply leaves nothing behind.
pub(crate) struct Savepoint<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> Savepoint<'c> {
    pub(crate) fn open(conn: &'c Connection) -> Result<Self> {
        // Prepared once per connection: this runs for every diff the server merges.
        conn.prepare_cached("SAVEPOINT moat_apply")?.execute([])?;
        Ok(Savepoint { conn, done: false })
    }

    pub(crate) fn release(mut self) -> Result<()> {
        self.done = true;
        self.conn.prepare_cached("RELEASE moat_apply")?.execute([])?;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK TO moat_apply; RELEASE moat_apply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_base_survives_the_wire_as_null_not_as_absent() {
        let c = ColumnConflict {
            column: "notes".into(),
            base: Some(Value::Null),
            theirs: Some(Value::Text("office".into())),
            mine: Value::Text("tech".into()),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"column":"notes","base":null,"theirs":"office","mine":"tech"}"#);
        assert_eq!(serde_json::from_str::<ColumnConflict>(&json).unwrap(), c);
        let absent: ColumnConflict = serde_json::from_str(r#"{"column":"notes","mine":"tech"}"#).unwrap();
        assert_eq!((absent.base, absent.theirs), (None, None));
    }
}
