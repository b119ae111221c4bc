//! Rows of a snapshot, columns named once: the compact form of a snapshot chunk (`snapshot_rows`,
//! for clients that accept it in their hello).
//!
//! ```json
//! [{"table": "jobs", "columns": ["id", "title", "status"],
//!   "rows": [["job-1", "Boiler", "open"], ["job-2", "Pump", "done"]]}]
//! ```
//!
//! A chunk is a list of table groups: each names its table and its columns once, then gives each
//! row's values in that order (the canonical JSON of [`crate::value`]), every column of the table in
//! any order. About half the bytes of the same rows as insert changes, and decoded without a column
//! name per value. Checked as strictly as a diff: unknown tables or columns, a column named twice or
//! missing, a NULL key, a row of the wrong length and a value of the wrong type are refused with a
//! typed error.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::diff::Change;
use crate::error::{Error, Result};
use crate::schema::{Schema, Table};
use crate::value::{BorrowedValue, FrameValue, Value};

/// One row of a chunk as [`read_rows`] hands it over: its values as the frame gave them, and where
/// each of its table's columns is among them.
#[derive(Debug, Clone, Copy)]
pub struct Row<'r, 'a> {
    at: &'r [usize],
    values: &'r [FrameValue<'a>],
}

impl<'r, 'a> Row<'r, 'a> {
    /// The values in the table's column order.
    pub fn values(&self) -> impl Iterator<Item = &'r FrameValue<'a>> + use<'r, 'a> {
        let values = self.values;
        self.at.iter().map(move |&i| &values[i])
    }
}

/// What [`read_rows`] does with each row.
pub type OnRow<'f, 'a> = dyn FnMut(&Table, Row<'_, 'a>) -> Result<()> + 'f;

/// Reads a chunk's JSON (a list of table groups, each naming its table and columns before its rows)
/// and hands each row, checked against `schema`, to `on_row` as it is read: the chunk is never held
/// decoded, and text with no escape in it is borrowed from `json`. Returns the tables it named. An
/// error stops the reading; the rows handed over before it are the caller's to undo (the replica
/// reads a chunk inside a savepoint).
pub fn read_rows<'a>(json: &'a str, schema: &Schema, on_row: &mut OnRow<'_, 'a>) -> Result<BTreeSet<String>> {
    let mut reader = Reader { schema, on_row, failed: None, tables: BTreeSet::new(), values: Vec::new() };
    let mut de = serde_json::Deserializer::from_str(json);
    let read = (&mut de).deserialize_seq(&mut reader).and_then(|()| de.end());
    match (reader.failed, read) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(Error::Malformed(e.to_string())),
        (None, Ok(())) => Ok(reader.tables),
    }
}

/// The state of a [`read_rows`]: a typed error (a check's or the caller's) is kept here while serde
/// unwinds with a message.
struct Reader<'s, 'f, 'a> {
    schema: &'s Schema,
    on_row: &'s mut OnRow<'f, 'a>,
    failed: Option<Error>,
    tables: BTreeSet<String>,
    /// The row being read (one buffer for every row).
    values: Vec<FrameValue<'a>>,
}

impl<'a> Reader<'_, '_, 'a> {
    fn check<T, E: de::Error>(&mut self, r: Result<T>) -> std::result::Result<T, E> {
        r.map_err(|e| {
            let message = e.to_string();
            self.failed = Some(e);
            E::custom(message)
        })
    }

    /// Checks a row and hands it over.
    fn row<E: de::Error>(
        &mut self,
        table: &Table,
        at: &[usize],
        values: &[FrameValue<'a>],
    ) -> std::result::Result<(), E> {
        let checked = check_row(table, at, values);
        self.check(checked)?;
        let done = (self.on_row)(table, Row { at, values });
        self.check(done)
    }
}

impl<'a> Visitor<'a> for &mut Reader<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of table groups")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Group(&mut *self))?.is_some() {}
        Ok(())
    }
}

/// One table group: `{"table": …, "columns": […], "rows": [[…], …]}`, in that order.
struct Group<'r, 's, 'f, 'a>(&'r mut Reader<'s, 'f, 'a>);

impl<'a> DeserializeSeed<'a> for Group<'_, '_, '_, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for Group<'_, '_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table group: table, columns, rows")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        const FIELDS: &[&str] = &["table", "columns", "rows"];
        let reader = self.0;
        let schema = reader.schema;
        let (mut table, mut columns): (Option<&Table>, Option<Vec<Cow<'a, str>>>) = (None, None);
        // Rows read before the table and columns were known (a group written with its keys in
        // another order): held, and handed over at the group's end.
        let (mut rows, mut held): (bool, Option<Vec<Vec<FrameValue<'a>>>>) = (false, None);
        while let Some(key) = map.next_key::<Cow<'a, str>>()? {
            match &*key {
                "table" if table.is_none() => {
                    let name: Cow<'a, str> = map.next_value()?;
                    table = Some(reader.check(schema.table(&name))?);
                    reader.tables.insert(name.into_owned());
                }
                "columns" if columns.is_none() => columns = Some(map.next_value()?),
                "rows" if !rows => {
                    rows = true;
                    match (table, &columns) {
                        (Some(t), Some(cols)) => {
                            let at = reader.check(positions(t, cols))?;
                            map.next_value_seed(Rows { reader: &mut *reader, table: t, at: &at })?;
                        }
                        _ => held = Some(map.next_value()?),
                    }
                }
                "table" | "columns" | "rows" => {
                    return Err(de::Error::custom(format!("{key} appears twice")));
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        let (Some(t), Some(cols), true) = (table, columns, rows) else {
            let missing = if table.is_none() {
                "table"
            } else if !rows {
                "rows"
            } else {
                "columns"
            };
            return Err(de::Error::missing_field(missing));
        };
        if let Some(held) = held {
            let at = reader.check(positions(t, &cols))?;
            for values in held {
                reader.row(t, &at, &values)?;
            }
        }
        Ok(())
    }
}

/// A group's rows, each checked against its table and handed over.
struct Rows<'r, 's, 'f, 'a> {
    reader: &'r mut Reader<'s, 'f, 'a>,
    table: &'r Table,
    at: &'r [usize],
}

impl<'a> DeserializeSeed<'a> for Rows<'_, '_, '_, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for Rows<'_, '_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let Rows { reader, table, at } = self;
        let mut values = std::mem::take(&mut reader.values);
        while seq.next_element_seed(Values(&mut values))?.is_some() {
            reader.row(table, at, &values)?;
        }
        values.clear();
        reader.values = values;
        Ok(())
    }
}

/// One row's values, read into the reader's buffer.
struct Values<'r, 'a>(&'r mut Vec<FrameValue<'a>>);

impl<'a> DeserializeSeed<'a> for Values<'_, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> std::result::Result<(), D::Error> {
        self.0.clear();
        d.deserialize_seq(self)
    }
}

impl<'a> Visitor<'a> for Values<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row: a list of values")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(v) = seq.next_element()? {
            self.0.push(v);
        }
        Ok(())
    }
}

/// Checks a group's columns against its table, and gives, for each of the table's columns in order,
/// where a row holds its value.
fn positions(table: &Table, columns: &[Cow<'_, str>]) -> Result<Vec<usize>> {
    let mut at = vec![None; table.columns.len()];
    for (i, name) in columns.iter().enumerate() {
        let c = table
            .column_index(name)
            .ok_or_else(|| Error::UnknownColumn { table: table.name.clone(), column: name.to_string() })?;
        if at[c].replace(i).is_some() {
            return Err(invalid(table, format!("column {name} appears twice")));
        }
    }
    let missing: Vec<&str> =
        table.columns.iter().zip(&at).filter(|(_, i)| i.is_none()).map(|(c, _)| c.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(invalid(table, format!("every column must be given; missing {missing:?}")));
    }
    Ok(at.into_iter().flatten().collect())
}

/// Checks a row's values against its table: one per column, each of the column's type.
fn check_row(table: &Table, at: &[usize], values: &[FrameValue<'_>]) -> Result<()> {
    if values.len() != at.len() {
        return Err(invalid(table, format!("a row has {} values for {} columns", values.len(), at.len())));
    }
    for (col, &i) in table.columns.iter().zip(at) {
        let v = &values[i];
        let null = matches!(v, FrameValue::Null);
        if !col.ty.admits(&v.class()) || (null && (col.not_null || col.pk > 0)) {
            return Err(invalid(
                table,
                format!(
                    "{} takes {}{:?}, not {v:?}",
                    col.name,
                    if col.not_null || col.pk > 0 { "non-null " } else { "" },
                    col.ty
                ),
            ));
        }
    }
    Ok(())
}

fn invalid(table: &Table, what: String) -> Error {
    Error::Invalid(format!("rows of {}: {what}", table.name))
}

/// A chunk's JSON written row by row (the server's snapshot reader), as [`crate::DiffWriter`]
/// writes a diff's: a new group starts when the table or its columns change.
#[derive(Debug, Default)]
pub struct RowsWriter {
    json: Vec<u8>,
    rows: usize,
    /// The open group's table and columns.
    group: Option<(String, Vec<String>)>,
}

impl RowsWriter {
    /// Appends an insert's row (its key and its columns' new values).
    pub fn push(&mut self, change: &Change) {
        let columns: Vec<&String> =
            change.pk.0.iter().map(|(k, _)| k).chain(change.cols.0.iter().map(|(k, _)| k)).collect();
        let values = change
            .pk
            .iter()
            .map(|(_, v)| v)
            .chain(change.cols.iter().map(|(_, c)| c.new.as_ref().unwrap_or(&Value::Null)))
            .map(BorrowedValue::of);
        self.push_row(&change.table, &columns, values);
    }

    /// Appends a row of `table`: `values` are `columns`' (as [`push`](Self::push) of its insert
    /// would write it, without making the change).
    pub fn push_row<'a>(
        &mut self,
        table: &str,
        columns: &[impl AsRef<str>],
        values: impl IntoIterator<Item = BorrowedValue<'a>>,
    ) {
        let same = self.group.as_ref().is_some_and(|(t, cols)| {
            t == table
                && cols.len() == columns.len()
                && cols.iter().zip(columns).all(|(a, b)| a == b.as_ref())
        });
        if same {
            self.json.push(b',');
        } else {
            self.json.extend_from_slice(match self.group {
                None => b"[",
                Some(_) => b"]},",
            });
            let cols: Vec<String> = columns.iter().map(|c| c.as_ref().to_owned()).collect();
            self.json.extend_from_slice(br#"{"table":"#);
            serde_json::to_writer(&mut self.json, table).expect("names serialise");
            self.json.extend_from_slice(br#","columns":"#);
            serde_json::to_writer(&mut self.json, &cols).expect("names serialise");
            self.json.extend_from_slice(br#","rows":["#);
            self.group = Some((table.to_owned(), cols));
        }
        self.json.push(b'[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.json.push(b',');
            }
            serde_json::to_writer(&mut self.json, &v).expect("values always serialise");
        }
        self.json.push(b']');
        self.rows += 1;
    }

    /// How many rows it holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The JSON written so far, in bytes.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The chunk's JSON.
    pub fn finish(mut self) -> String {
        if self.group.is_none() {
            return "[]".into();
        }
        self.json.extend_from_slice(b"]}]");
        String::from_utf8(self.json).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::FrameValue;
    use crate::{Diff, Replica};

    const INSERTS: &str = r#"{"changes":[
      {"table":"customers","op":"insert","pk":{"id":"cust-1"},"cols":{"tenant_id":{"new":"company-a"},
        "name":{"new":"Harbor Bakery"},"phone":{"new":null},"email":{"new":"a@b.c"},"address":{"new":"12 Elm St"}}},
      {"table":"customers","op":"insert","pk":{"id":"cust-2"},"cols":{"tenant_id":{"new":"company-a"},
        "name":{"new":"Quay \"Fish\""},"phone":{"new":"+1"},"email":{"new":null},"address":{"new":null}}},
      {"table":"inventory_items","op":"insert","pk":{"id":"inv-1"},"cols":{"tenant_id":{"new":"company-a"},
        "sku":{"new":"SKU-1"},"name":{"new":"Valve"},"quantity":{"new":12},"location":{"new":null}}},
      {"table":"customers","op":"insert","pk":{"id":"cust-3"},"cols":{"name":{"new":"Late"},
        "tenant_id":{"new":"company-a"},"address":{"new":"1 Pier"},"email":{"new":null},"phone":{"new":null}}}
    ]}"#;

    fn rows_json(diff: &Diff) -> String {
        let mut w = RowsWriter::default();
        diff.changes.iter().for_each(|c| w.push(c));
        assert_eq!(w.rows(), diff.changes.len());
        w.finish()
    }

    #[test]
    fn rows_name_columns_once_and_apply_as_the_same_inserts_do() {
        let schema = Schema::demo();
        let diff = Diff::from_json(INSERTS, &schema).unwrap();
        let json = rows_json(&diff);
        // A new group where the table changes, and where the columns do (cust-3 gives them in
        // another order).
        let groups: Vec<&str> =
            json.match_indices(r#"{"table":"#).map(|(i, _)| &json[i + 9..i + 12]).collect();
        assert_eq!(groups, ["\"cu", "\"in", "\"cu"]);
        let mut read: Vec<(String, Vec<Value>)> = Vec::new();
        let tables = read_rows(&json, &schema, &mut |t, row| {
            read.push((t.name.clone(), row.values().map(FrameValue::to_value).collect()));
            Ok(())
        })
        .unwrap();
        assert_eq!(tables.into_iter().collect::<Vec<_>>(), ["customers", "inventory_items"]);
        assert_eq!(read.len(), 4);
        // Each row's values come in its table's column order, whatever order the group named them in.
        let late = &read[3];
        let table = schema.table("customers").unwrap();
        let name = table.column_index("name").unwrap();
        assert_eq!((late.0.as_str(), &late.1[name]), ("customers", &Value::from("Late")));
        assert!(json.len() < diff.to_json().len(), "fewer bytes: {json}");

        let (mut by_rows, mut by_diff) =
            (Replica::open_in_memory(schema.clone()).unwrap(), Replica::open_in_memory(schema).unwrap());
        for r in [&mut by_rows, &mut by_diff] {
            r.begin_snapshot("c").unwrap();
        }
        by_rows.apply_snapshot_rows(&json).unwrap();
        by_diff.apply_snapshot_chunk(&diff).unwrap();
        for r in [&mut by_rows, &mut by_diff] {
            r.finish_snapshot("c", 7).unwrap();
            // A first sync leaves its golden copy for an idle turn.
            r.catch_up_golden().unwrap();
        }
        let dump = |r: &Replica| -> Vec<String> {
            let mut out = Vec::new();
            for t in ["customers", "inventory_items", "server_data_customers", "server_data_inventory_items"]
            {
                let mut stmt = r.connection().prepare(&format!("SELECT * FROM {t} ORDER BY id")).unwrap();
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |row| {
                        let v: Vec<String> = (0..n)
                            .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                            .collect();
                        Ok(format!("{t}: {}", v.join(", ")))
                    })
                    .unwrap();
                out.extend(rows.map(Result::unwrap));
            }
            out
        };
        assert_eq!(dump(&by_rows), dump(&by_diff));
        assert_eq!(dump(&by_rows).len(), 8);
        assert!(dump(&by_rows).iter().any(|r| r.contains("Quay \\\"Fish\\\"")), "{:?}", dump(&by_rows));
    }

    #[test]
    fn rows_are_checked_as_strictly_as_a_diff() {
        let schema = Schema::demo();
        let read = |json: &str| {
            let mut rows = 0;
            read_rows(json, &schema, &mut |_, _| {
                rows += 1;
                Ok(())
            })
            .map(|_| rows)
        };
        let refused = |json: &str| read(json).unwrap_err().to_string();
        let group = |cols: &str, rows: &str| {
            format!(r#"[{{"table":"inventory_items","columns":{cols},"rows":{rows}}}]"#)
        };
        assert!(refused(r#"[{"table":"nope","columns":["id"],"rows":[]}]"#).contains("nope"));
        assert!(refused(&group(r#"["id","colour"]"#, r#"[["i",1]]"#)).contains("colour"));
        assert!(refused(&group(r#"["id","sku","sku"]"#, "[]")).contains("twice"));
        assert!(refused(&group(r#"["id","sku"]"#, "[]")).contains("missing [\"tenant_id\""));
        let all = r#"["location","quantity","name","sku","tenant_id","id"]"#;
        assert!(refused(&group(all, r#"[["van",1,"n","s","t"]]"#)).contains("5 values for 6 columns"));
        assert!(refused(&group(all, r#"[["van","many","n","s","t","i"]]"#)).contains("quantity"));
        assert!(refused(&group(all, r#"[["van",1,"n","s","t",null]]"#)).contains("id takes non-null"));
        assert!(refused(&group(all, r#"[["van",1,null,"s","t","i"]]"#)).contains("name takes non-null"));
        assert!(refused(&group(all, r#"[["van",1.5,"n","s","t","i"]]"#)).contains("real"));
        assert!(
            refused(r#"[{"table":"inventory_items","extra":1,"columns":[],"rows":[]}]"#).contains("extra")
        );
        assert!(refused(r#"[{"table":"inventory_items","columns":[]}]"#).contains("rows"));
        assert!(refused(r#"[{"rows":[[1]],"columns":["id"]}]"#).contains("table"));
        assert!(refused(&format!("{} x", group(all, "[]"))).contains("trailing"));
        // A typed error, not only a message.
        assert!(matches!(read(&group(r#"["id","colour"]"#, "[]")), Err(Error::UnknownColumn { .. })));
        // Columns in any order; a text with an escape is read too.
        let rows = r#"[[null,1,"n\"","s","t","i"],["van-1",2,"m","s","t","j"]]"#;
        assert_eq!(read(&group(all, rows)).unwrap(), 2);
        // The group's keys in any order (as a JSON tree with sorted keys writes them): its rows are
        // held until its table and columns are known, and checked as strictly.
        let sorted = format!(r#"[{{"columns":{all},"rows":{rows},"table":"inventory_items"}}]"#);
        assert_eq!(read(&sorted).unwrap(), 2);
        let bad = format!(
            r#"[{{"rows":[["van","many","n","s","t","i"]],"columns":{all},"table":"inventory_items"}}]"#
        );
        assert!(refused(&bad).contains("quantity"));
    }

    #[test]
    fn a_chunk_that_fails_halfway_leaves_no_row_behind() {
        let schema = Schema::demo();
        let mut r = Replica::open_in_memory(schema).unwrap();
        r.begin_snapshot("c").unwrap();
        let all = r#"["location","quantity","name","sku","tenant_id","id"]"#;
        let json = format!(
            r#"[{{"table":"inventory_items","columns":{all},"rows":[[null,1,"n","s","t","i1"],[null,"two","n","s","t","i2"]]}}]"#
        );
        assert!(r.apply_snapshot_rows(&json).unwrap_err().to_string().contains("quantity"));
        let rows: i64 = r
            .connection()
            .query_row("SELECT count(*) FROM server_data_inventory_items", [], |x| x.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the first row, inserted before the second was read, is undone");
    }
}
