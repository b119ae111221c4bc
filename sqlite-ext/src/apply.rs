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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::session::{ConflictAction, ConflictType, Session};
use serde::{Deserialize, Serialize};

use crate::changeset::Op;
use crate::diff::{Change, ColumnChange, Diff, Fields, key_json};
use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::value::Value;

/// What kind of concurrent edit a conflict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
