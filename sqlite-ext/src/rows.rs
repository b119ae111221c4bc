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

use serde::{Deserialize, Serialize};

use crate::diff::Change;
use crate::error::{Error, Result};
use crate::schema::{Schema, Table};
use crate::value::Value;

/// One table's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRows {
    /// The synced table.
    pub table: String,
    /// The columns each row gives, in order.
    pub columns: Vec<String>,
    /// The rows, each one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl TableRows {
    /// Parses and checks a chunk's JSON (a list of groups) against `schema`.
    pub fn from_json(json: &str, schema: &Schema) -> Result<Vec<TableRows>> {
        let groups: Vec<TableRows> =
            serde_json::from_str(json).map_err(|e| Error::Malformed(e.to_string()))?;
        for g in &groups {
            g.positions(schema.table(&g.table)?)?;
        }
        Ok(groups)
    }

    /// Checks the group against its table, and gives, for each of the table's columns in order, where
    /// a row holds its value.
    pub fn positions(&self, table: &Table) -> Result<Vec<usize>> {
        let invalid = |what: String| Error::Invalid(format!("rows of {}: {what}", table.name));
        let mut at = vec![None; table.columns.len()];
        for (i, name) in self.columns.iter().enumerate() {
            let c = table
                .column_index(name)
                .ok_or_else(|| Error::UnknownColumn { table: table.name.clone(), column: name.clone() })?;
            if at[c].replace(i).is_some() {
                return Err(invalid(format!("column {name} appears twice")));
            }
        }
        let missing: Vec<&str> = table
            .columns
            .iter()
            .zip(&at)
            .filter(|(_, i)| i.is_none())
            .map(|(c, _)| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!("every column must be given; missing {missing:?}")));
        }
        let at: Vec<usize> = at.into_iter().flatten().collect();
        for row in &self.rows {
            if row.len() != self.columns.len() {
                return Err(invalid(format!(
                    "a row has {} values for {} columns",
                    row.len(),
                    self.columns.len()
                )));
            }
            for (col, &i) in table.columns.iter().zip(&at) {
                let v = &row[i];
                let null = matches!(v, Value::Null);
                if !col.ty.admits(v) || (null && (col.not_null || col.pk > 0)) {
                    return Err(invalid(format!(
                        "{} takes {}{:?}, not {v:?}",
                        col.name,
                        if col.not_null || col.pk > 0 { "non-null " } else { "" },
                        col.ty
                    )));
                }
            }
        }
        Ok(at)
    }
}

/// A chunk's JSON written row by row from insert changes (the server's snapshot reader), as
/// [`crate::DiffWriter`] writes a diff's: a new group starts when the table or its columns change.
#[derive(Debug, Default)]
pub struct RowsWriter {
    json: String,
    rows: usize,
    /// The open group's table and columns.
    group: Option<(String, Vec<String>)>,
}

impl RowsWriter {
    /// Appends an insert's row (its key and its columns' new values).
    pub fn push(&mut self, change: &Change) {
        let columns = || change.pk.0.iter().map(|(k, _)| k).chain(change.cols.0.iter().map(|(k, _)| k));
        let same =
            self.group.as_ref().is_some_and(|(t, cols)| *t == change.table && cols.iter().eq(columns()));
        if !same {
            let cols: Vec<String> = columns().cloned().collect();
            self.json.push_str(match self.group {
                None => "[",
                Some(_) => "]},",
            });
            self.json.push_str(r#"{"table":"#);
            self.json.push_str(&serde_json::to_string(&change.table).expect("names serialise"));
            self.json.push_str(r#","columns":"#);
            self.json.push_str(&serde_json::to_string(&cols).expect("names serialise"));
            self.json.push_str(r#","rows":["#);
            self.group = Some((change.table.clone(), cols));
        } else {
            self.json.push(',');
        }
        let values = change
            .pk
            .iter()
            .map(|(_, v)| v)
            .chain(change.cols.iter().map(|(_, c)| c.new.as_ref().unwrap_or(&Value::Null)));
        let values: Vec<&Value> = values.collect();
        self.json.push_str(&serde_json::to_string(&values).expect("values always serialise"));
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
        self.json.push_str("]}]");
        self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let groups = TableRows::from_json(&json, &schema).unwrap();
        let shape: Vec<(&str, usize, usize)> =
            groups.iter().map(|g| (g.table.as_str(), g.columns.len(), g.rows.len())).collect();
        assert_eq!(shape, [("customers", 6, 2), ("inventory_items", 6, 1), ("customers", 6, 1)]);
        assert!(json.len() < diff.to_json().len(), "fewer bytes: {json}");

        let (mut by_rows, mut by_diff) =
            (Replica::open_in_memory(schema.clone()).unwrap(), Replica::open_in_memory(schema).unwrap());
        for r in [&mut by_rows, &mut by_diff] {
            r.begin_snapshot("c").unwrap();
        }
        by_rows.apply_snapshot_rows(&groups).unwrap();
        by_diff.apply_snapshot_chunk(&diff).unwrap();
        for r in [&mut by_rows, &mut by_diff] {
            r.finish_snapshot("c", 7).unwrap();
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
        let refused = |json: &str| TableRows::from_json(json, &schema).unwrap_err().to_string();
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
        assert!(
            refused(r#"[{"table":"inventory_items","columns":[],"rows":[],"extra":1}]"#).contains("extra")
        );
        // Columns in any order.
        let ok = TableRows::from_json(&group(all, r#"[[null,1,"n","s","t","i"]]"#), &schema).unwrap();
        let at = ok[0].positions(schema.table("inventory_items").unwrap()).unwrap();
        assert_eq!(at, [5, 4, 3, 2, 1, 0]);
    }
}
