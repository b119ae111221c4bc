//! JSON diffs: the wire form of a SQLite changeset.
//!
//! ```json
//! {"changes": [
//!   {"table": "jobs", "op": "update", "pk": {"id": "job-a-00001"},
//!    "cols": {"status": {"old": "open", "new": "done"}}}
//! ]}
//! ```
//!
//! A change names its table, its operation, its primary key, and for each changed column its base
//! value (`old`) and its new value (`new`): an INSERT gives `new` for every other column, a DELETE gives
//! `old` for every other column, an UPDATE gives both for the changed columns only. Values use the
//! canonical JSON of [`crate::value`]. Changes appear in changeset order, so [`Diff::to_changeset`]
//! gives back exactly the bytes [`Diff::from_changeset`] was made from.
//!
//! Decoding is strict: unknown fields, duplicate keys, unknown tables or columns, wrong types, an
//! UPDATE that changes nothing and two changes to the same row are all refused with a typed error.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::changeset::{self, Op, RawChange, RawTable};
use crate::error::{Error, Result};
use crate::schema::{Schema, Table};
use crate::value::Value;

/// One changeset, as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    /// The changes, in changeset order (grouped by table).
    pub changes: Vec<Change>,
}

/// One changed row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The synced table.
    pub table: String,
    /// What happened to the row.
    pub op: Op,
    /// The row's primary key, column by column in key order.
    pub pk: Fields<Value>,
    /// The changed columns (every non-key column for an insert or a delete).
    pub cols: Fields<ColumnChange>,
    /// SQLite's "indirect" flag (a change made by a trigger or marked so); absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indirect: bool,
}

/// One column of a change: the value it was based on and the value it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnChange {
    /// The base value (UPDATE, DELETE). Absent for an INSERT.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The new value (INSERT, UPDATE). Absent for a DELETE.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// A field that is present holds a value, even `null`; an absent field is `None` (by `default`).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A JSON object whose keys are column names, kept in order; a repeated key is refused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields<T>(pub Vec<(String, T)>);

impl<T> Fields<T> {
    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<T, const N: usize> From<[(&str, T); N]> for Fields<T> {
    fn from(entries: [(&str, T); N]) -> Self {
        Fields(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl<T: Serialize> Serialize for Fields<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Fields<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Fields<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by column name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("column {k:?} appears twice")));
                    }
                    out.push((k, map.next_value()?));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A diff's JSON written change by change, as [`Diff::to_json`] would write the whole of it, for
/// whoever cuts a stream of changes into diffs by size (the server's snapshot chunks) without
/// holding the changes or serialising them twice.
#[derive(Debug, Default)]
pub struct DiffWriter {
    json: String,
    changes: usize,
}

impl DiffWriter {
    /// Appends one change.
    pub fn push(&mut self, change: &Change) {
        self.json.push_str(if self.changes == 0 { r#"{"changes":["# } else { "," });
        self.json.push_str(&serde_json::to_string(change).expect("a change always serialises"));
        self.changes += 1;
    }

    /// How many changes it holds.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// The JSON written so far, in bytes.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// True before the first change.
    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// The diff's JSON.
    pub fn finish(mut self) -> String {
        if self.changes == 0 {
            return Diff::default().to_json();
        }
        self.json.push_str("]}");
        self.json
    }
}

/// Runs `f` on `conn` under a SQLite session attached to every synced table of `schema`, and returns
/// what it changed as a diff (empty when it changed nothing). The one capture of local changes: the
/// replica records a user's edit with it, the server an operator's SQL.
pub fn capture<T, E: From<Error>>(
    conn: &rusqlite::Connection,
    schema: &Schema,
    f: impl FnOnce(&rusqlite::Connection) -> std::result::Result<T, E>,
) -> std::result::Result<(T, Diff), E> {
    let mut session = rusqlite::session::Session::new(conn).map_err(Error::from)?;
    for t in schema.tables() {
        session.attach(Some(t.name.as_str())).map_err(Error::from)?;
    }
    let out = f(conn)?;
    let mut bytes = Vec::new();
    session.changeset_strm(&mut bytes).map_err(Error::from)?;
    drop(session);
    let diff = if bytes.is_empty() { Diff::default() } else { Diff::from_changeset(schema, &bytes)? };
    Ok((out, diff))
}

impl Diff {
    /// Parses and checks a JSON diff against `schema`. Never panics; every refusal is a typed error.
    pub fn from_json(json: &str, schema: &Schema) -> Result<Diff> {
        let diff: Diff = serde_json::from_str(json).map_err(|e| Error::Malformed(e.to_string()))?;
        diff.validate(schema)?;
        Ok(diff)
    }

    /// Checks a diff already parsed as a JSON value (for a diff inside a larger message).
    pub fn from_value(value: serde_json::Value, schema: &Schema) -> Result<Diff> {
        let diff: Diff = serde_json::from_value(value).map_err(|e| Error::Malformed(e.to_string()))?;
        diff.validate(schema)?;
        Ok(diff)
    }

    /// The diff as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a diff always serialises: values are never NaN")
    }

    /// True when there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Reads a changeset the session extension produced on tables of `schema`.
    pub fn from_changeset(schema: &Schema, bytes: &[u8]) -> Result<Diff> {
        Self::from_raw(schema, changeset::parse(bytes)?, |t| t.name.clone())
    }

    /// Reads a changeset whose table names are those `name_of` gives for the schema's tables (for
    /// example the replica's `server_data_` copies), naming the changes by their wire names.
    pub(crate) fn from_raw(
        schema: &Schema,
        raw: Vec<RawTable>,
        name_of: impl Fn(&Table) -> String,
    ) -> Result<Diff> {
        let mut changes = Vec::new();
        for rt in raw {
            let table = schema.tables().iter().find(|t| name_of(t) == rt.name).ok_or_else(|| {
                Error::CorruptChangeset(format!("table {:?} is not in the schema", rt.name))
            })?;
            if rt.pk != table.pk_flags() {
                return Err(Error::CorruptChangeset(format!(
                    "table {:?} header does not match the schema's columns and key",
                    rt.name
                )));
            }
            for rc in rt.changes {
                changes.push(change_from_raw(table, rc)?);
            }
        }
        Ok(Diff { changes })
    }

    /// Checks every table, column, type and rule of the format.
    pub fn validate(&self, schema: &Schema) -> Result<()> {
        self.to_raw(schema, |_| String::new()).map(drop)
    }

    /// The binary changeset SQLite applies, naming tables by their wire names.
    pub fn to_changeset(&self, schema: &Schema) -> Result<Vec<u8>> {
        Ok(changeset::write(&self.to_raw(schema, |t| t.name.clone())?))
    }

    /// The changes grouped under table headers whose names `name_of` gives. A new header starts
    /// whenever the table changes from one change to the next.
    pub(crate) fn to_raw(
        &self,
        schema: &Schema,
        name_of: impl Fn(&Table) -> String,
    ) -> Result<Vec<RawTable>> {
        let mut out: Vec<RawTable> = Vec::new();
        let mut current: Option<&str> = None;
        let mut rows = HashSet::with_capacity(self.changes.len());
        for c in &self.changes {
            let table = schema.table(&c.table)?;
            let raw = to_raw_change(table, c)?;
            if !rows.insert((c.table.as_str(), c.key())) {
                return Err(Error::Invalid(format!("two changes to row {} of {}", c.key(), c.table)));
            }
            if current != Some(c.table.as_str()) {
                out.push(RawTable { name: name_of(table), pk: table.pk_flags(), changes: Vec::new() });
                current = Some(c.table.as_str());
            }
            out.last_mut().expect("pushed above").changes.push(raw);
        }
        Ok(out)
    }

    /// Fits a diff made under an older schema to `new` (after a migration): a column `new` added is
    /// given NULL in an insert or a delete (which name every column); a column `new` lacks is left
    /// out when the diff gave it no value, and refused when it did (its value would be lost).
    pub fn refit(&mut self, new: &Schema) -> std::result::Result<(), String> {
        for c in &mut self.changes {
            let t = new.table(&c.table).map_err(|_| format!("table {} was removed", c.table))?;
            let mut kept = Vec::new();
            for (name, cc) in std::mem::take(&mut c.cols.0) {
                if t.columns.iter().any(|x| x.name == name) {
                    kept.push((name, cc));
                } else if c.op == Op::Update || cc.new.as_ref().is_some_and(|v| !matches!(v, Value::Null)) {
                    return Err(format!("column {}.{name} was removed", c.table));
                }
            }
            c.cols.0 = kept;
            if c.op != Op::Update {
                for col in t.columns.iter().filter(|x| x.pk == 0) {
                    if !c.cols.0.iter().any(|(n, _)| *n == col.name) {
                        let cc = if c.op == Op::Insert {
                            ColumnChange { old: None, new: Some(Value::Null) }
                        } else {
                            ColumnChange { old: Some(Value::Null), new: None }
                        };
                        c.cols.0.push((col.name.clone(), cc));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Change {
    /// The key as canonical JSON (`["job-1"]`), usable to compare or hash rows.
    pub fn key(&self) -> String {
        key_json(&self.pk)
    }
}

/// The key's values, in key order, as a JSON array.
pub(crate) fn key_json(pk: &Fields<Value>) -> String {
    let values: Vec<&Value> = pk.0.iter().map(|(_, v)| v).collect();
    serde_json::to_string(&values).expect("key values always serialise")
}

fn change_from_raw(table: &Table, rc: RawChange) -> Result<Change> {
    let bad = |what: &str| Error::CorruptChangeset(format!("{} in {}: {what}", op_name(rc.op), table.name));
    let key_record = if rc.op == Op::Insert { &rc.new } else { &rc.old };
    let mut pk = Vec::with_capacity(table.pk.len());
    for &i in &table.pk {
        let v = key_record[i].clone().ok_or_else(|| bad("undefined key column"))?;
        pk.push((table.columns[i].name.clone(), v));
    }
    let mut cols = Vec::new();
    for (i, col) in table.columns.iter().enumerate() {
        let old = rc.old.get(i).cloned().flatten();
        let new = rc.new.get(i).cloned().flatten();
        if col.pk > 0 {
            if rc.op == Op::Update && new.is_some() {
                return Err(bad("an update may not change the key"));
            }
            continue;
        }
        match (rc.op, &old, &new) {
            (Op::Update, None, None) => continue,
            (Op::Update, Some(_), Some(_)) | (Op::Insert, None, Some(_)) | (Op::Delete, Some(_), None) => {}
            _ => return Err(bad(&format!("column {} is not complete", col.name))),
        }
        cols.push((col.name.clone(), ColumnChange { old, new }));
    }
    Ok(Change {
        table: table.name.clone(),
        op: rc.op,
        pk: Fields(pk),
        cols: Fields(cols),
        indirect: rc.indirect,
    })
}

fn to_raw_change(table: &Table, c: &Change) -> Result<RawChange> {
    let invalid = |what: String| Error::Invalid(format!("{} on {}: {what}", op_name(c.op), table.name));
    let ncol = table.columns.len();
    let mut old: Vec<Option<Value>> = vec![None; if c.op == Op::Insert { 0 } else { ncol }];
    let mut new: Vec<Option<Value>> = vec![None; if c.op == Op::Delete { 0 } else { ncol }];

    if c.pk.0.len() != table.pk.len() {
        return Err(invalid(format!("the key has {} columns, not {}", table.pk.len(), c.pk.0.len())));
    }
    for ((name, v), &i) in c.pk.0.iter().zip(&table.pk) {
        let col = &table.columns[i];
        if *name != col.name {
            return Err(match table.column_index(name) {
                None => Error::UnknownColumn { table: table.name.clone(), column: name.clone() },
                Some(_) => invalid(format!("key column {} expected where {name} is", col.name)),
            });
        }
        if matches!(v, Value::Null) || !col.ty.admits(v) {
            return Err(invalid(format!("key {name} must be a non-null {:?}", col.ty)));
        }
        match c.op {
            Op::Insert => new[i] = Some(v.clone()),
            Op::Update | Op::Delete => old[i] = Some(v.clone()),
        }
    }

    for (name, cc) in c.cols.iter() {
        let i = table
            .column_index(name)
            .ok_or_else(|| Error::UnknownColumn { table: table.name.clone(), column: name.to_owned() })?;
        let col = &table.columns[i];
        if col.pk > 0 {
            return Err(invalid(format!("key column {name} belongs in \"pk\"")));
        }
        if old.get(i).is_some_and(Option::is_some) || new.get(i).is_some_and(Option::is_some) {
            return Err(invalid(format!("column {name} appears twice")));
        }
        match (c.op, &cc.old, &cc.new) {
            (Op::Insert, None, Some(_)) | (Op::Delete, Some(_), None) => {}
            (Op::Update, Some(o), Some(n)) if o.same_as(n) => {
                return Err(invalid(format!("column {name} does not change")));
            }
            (Op::Update, Some(_), Some(_)) => {}
            (Op::Insert, ..) => return Err(invalid(format!("column {name} must have \"new\" only"))),
            (Op::Delete, ..) => return Err(invalid(format!("column {name} must have \"old\" only"))),
            (Op::Update, ..) => return Err(invalid(format!("column {name} must have \"old\" and \"new\""))),
        }
        if let Some(n) = &cc.new {
            if !col.ty.admits(n) || (col.not_null && matches!(n, Value::Null)) {
                return Err(invalid(format!(
                    "{name} takes {}{:?}, not {n:?}",
                    if col.not_null { "non-null " } else { "" },
                    col.ty
                )));
            }
            new[i] = Some(n.clone());
        }
        if let Some(o) = &cc.old {
            old[i] = Some(o.clone());
        }
    }

    let given = c.cols.0.len();
    match c.op {
        Op::Update if given == 0 => return Err(invalid("an update must change a column".into())),
        Op::Insert | Op::Delete if given != ncol - table.pk.len() => {
            let missing: Vec<&str> = table
                .columns
                .iter()
                .filter(|col| col.pk == 0 && c.cols.get(&col.name).is_none())
                .map(|col| col.name.as_str())
                .collect();
            return Err(invalid(format!("every column must be given; missing {missing:?}")));
        }
        _ => {}
    }
    Ok(RawChange { op: c.op, indirect: c.indirect, old, new })
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Insert => "insert",
        Op::Update => "update",
        Op::Delete => "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_written_change_by_change_is_the_diff_s_json() {
        let change = |id: &str, note: Value| Change {
            table: "jobs".into(),
            op: Op::Insert,
            pk: Fields(vec![("id".into(), Value::from(id))]),
            cols: Fields(vec![("notes".into(), ColumnChange { old: None, new: Some(note) })]),
            indirect: false,
        };
        assert_eq!(DiffWriter::default().finish(), Diff::default().to_json());
        let changes = vec![change("a", Value::Real(0.1 + 0.2)), change("b\"", Value::Null)];
        let mut w = DiffWriter::default();
        for c in &changes {
            w.push(c);
        }
        assert_eq!((w.changes(), w.is_empty()), (2, false));
        assert!(w.len() > 20);
        assert_eq!(w.finish(), Diff { changes }.to_json());
    }
}
