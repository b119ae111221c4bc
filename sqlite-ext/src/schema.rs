//! The schema model: which tables are synced, their columns, types and keys.
//!
//! The model is read from SQLite itself (`pragma_table_list`, `pragma_table_info`) after running the
//! schema's SQL, so the `.sql` files under `schemas/` are the single source of truth. Every name from the
//! wire is looked up here before it can reach SQL; the only identifiers ever put into SQL text are the
//! ones this model holds, which are checked to be plain `[A-Za-z_][A-Za-z0-9_]*` names.

use std::collections::HashMap;

use rusqlite::Connection;

use rusqlite::{OptionalExtension, params_from_iter};

use crate::changeset::Op;
use crate::diff::{Change, ColumnChange, Fields};
use crate::error::{Error, Result};
use crate::value::{BorrowedValue, Value};

/// Prefix of a replica's golden copy of a synced table: `jobs` is kept as `server_data_jobs`.
pub const SERVER_DATA_PREFIX: &str = "server_data_";

/// Names a synced table may not have: the replica's own tables and prefixes.
const RESERVED: [&str; 3] = ["overlays", "conflicts", "moat_meta"];
const RESERVED_PREFIXES: [&str; 3] = ["sqlite_", "moat_", SERVER_DATA_PREFIX];

/// The declared type of a column of a STRICT table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `INTEGER` / `INT`.
    Integer,
    /// `REAL`.
    Real,
    /// `TEXT`.
    Text,
    /// `BLOB`.
    Blob,
    /// `ANY`: any storage class.
    Any,
}

impl ColumnType {
    fn parse(decl: &str) -> Option<ColumnType> {
        match decl.to_ascii_uppercase().as_str() {
            "INTEGER" | "INT" => Some(ColumnType::Integer),
            "REAL" => Some(ColumnType::Real),
            "TEXT" => Some(ColumnType::Text),
            "BLOB" => Some(ColumnType::Blob),
            "ANY" => Some(ColumnType::Any),
            _ => None,
        }
    }

    /// True when a STRICT column of this type stores `v` as it is (NULL is checked separately).
    pub fn admits(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (_, Value::Null)
                | (ColumnType::Any, _)
                | (ColumnType::Integer, Value::Integer(_))
                | (ColumnType::Real, Value::Real(_))
                | (ColumnType::Text, Value::Text(_))
                | (ColumnType::Blob, Value::Blob(_))
        )
    }
}

/// One column of a synced table.
#[derive(Debug, Clone)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its declared type.
    pub ty: ColumnType,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// Its 1-based position in the primary key, or 0.
    pub pk: u8,
}

impl Column {
    /// `"name" TYPE`, as a column definition (nullable; a replica adds columns that way).
    pub(crate) fn ddl(&self) -> String {
        let ty = match self.ty {
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Text => "TEXT",
            ColumnType::Blob => "BLOB",
            ColumnType::Any => "ANY",
        };
        format!("{} {ty}", quote(&self.name))
    }
}

/// One synced table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name, as on the wire.
    pub name: String,
    /// Its columns, in declaration order (the order of changeset records).
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order.
    pub pk: Vec<usize>,
}

impl Table {
    /// The index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The primary-key position bytes of the changeset table header.
    pub(crate) fn pk_flags(&self) -> Vec<u8> {
        self.columns.iter().map(|c| c.pk).collect()
    }

    /// `"jobs"` → `"server_data_jobs"`.
    pub fn server_data_name(&self) -> String {
        format!("{SERVER_DATA_PREFIX}{}", self.name)
    }

    /// DDL of the golden copy: same columns, types, NOT NULL and key; no defaults or checks, because
    /// the server's state must always be storable.
    pub(crate) fn server_data_ddl(&self) -> String {
        self.ddl_named(&self.server_data_name())
    }

    /// DDL of the projection as a replica creates it from the model (a table a migration added): the
    /// same shape as the golden copy; the server enforces defaults and checks.
    pub(crate) fn projection_ddl(&self) -> String {
        self.ddl_named(&self.name)
    }

    fn ddl_named(&self, name: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}{}", c.ddl(), if c.not_null { " NOT NULL" } else { "" }))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})) STRICT",
            quote(name),
            cols.join(", "),
            self.pk_list()
        )
    }

    /// `"a", "b"`: every column, quoted, in order.
    pub(crate) fn column_list(&self) -> String {
        self.columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ")
    }

    fn pk_list(&self) -> String {
        self.pk.iter().map(|&i| quote(&self.columns[i].name)).collect::<Vec<_>>().join(", ")
    }

    /// The key's values in key order, checking that exactly the key columns are given.
    pub fn key_values(&self, pk: &Fields<Value>) -> Result<Vec<Value>> {
        if pk.0.len() != self.pk.len() {
            return Err(Error::Invalid(format!("{} has a key of {} columns", self.name, self.pk.len())));
        }
        self.pk
            .iter()
            .map(|&i| {
                let name = &self.columns[i].name;
                pk.get(name).cloned().ok_or_else(|| Error::Invalid(format!("key column {name} missing")))
            })
            .collect()
    }

    fn checked_columns(&self, columns: &[&str]) -> Result<String> {
        let names: Vec<String> = columns
            .iter()
            .map(|c| {
                self.column_index(c)
                    .map(|i| quote(&self.columns[i].name))
                    .ok_or_else(|| Error::UnknownColumn { table: self.name.clone(), column: (*c).to_owned() })
            })
            .collect::<Result<_>>()?;
        Ok(names.join(", "))
    }

    /// Inserts a row of these column values (every name checked; the key among them), with a
    /// cached statement. Returns the rows written.
    pub(crate) fn insert_row(&self, conn: &Connection, row: &[(&str, &Value)]) -> Result<usize> {
        let names: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=row.len()).map(|n| format!("?{n}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&self.name),
            self.checked_columns(&names)?,
            marks.join(", ")
        );
        Ok(conn.prepare_cached(&sql)?.execute(params_from_iter(row.iter().map(|(_, v)| *v)))?)
    }

    /// Sets columns (every name checked) of the row with key `pk`, with a cached statement.
    /// Returns the rows written: 0 when there is no such row.
    pub(crate) fn update_row(
        &self,
        conn: &Connection,
        pk: &Fields<Value>,
        set: &[(&str, &Value)],
    ) -> Result<usize> {
        let mut values = self.key_values(pk)?;
        let n = values.len();
        let assignments = set
            .iter()
            .enumerate()
            .map(|(k, (c, _))| Ok(format!("{} = ?{}", self.checked_columns(&[c])?, n + k + 1)))
            .collect::<Result<Vec<_>>>()?;
        let sql =
            format!("UPDATE {} SET {} WHERE {}", quote(&self.name), assignments.join(", "), self.pk_where());
        values.extend(set.iter().map(|(_, v)| (*v).clone()));
        Ok(conn.prepare_cached(&sql)?.execute(params_from_iter(values))?)
    }

    /// Deletes the row with key `pk`, with a cached statement. Returns the rows written.
    pub(crate) fn delete_row(&self, conn: &Connection, pk: &Fields<Value>) -> Result<usize> {
        let sql = format!("DELETE FROM {} WHERE {}", quote(&self.name), self.pk_where());
        Ok(conn.prepare_cached(&sql)?.execute(params_from_iter(self.key_values(pk)?))?)
    }

    /// Reads `columns` of the row with key `pk` from this table in `conn`; every name is checked.
    pub fn read_columns(
        &self,
        conn: &Connection,
        pk: &Fields<Value>,
        columns: &[&str],
    ) -> Result<Option<Vec<Value>>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.checked_columns(columns)?,
            quote(&self.name),
            self.pk_where()
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let n = columns.len();
        Ok(stmt
            .query_row(params_from_iter(self.key_values(pk)?), |r| {
                (0..n).map(|i| r.get::<_, Value>(i)).collect()
            })
            .optional()?)
    }

    /// How many rows have `filter` columns equal to the given values. Every name is checked.
    pub fn count(&self, conn: &Connection, filter: &[(&str, &Value)]) -> Result<i64> {
        let (cond, values) = self.filter_sql(filter, &[])?;
        let sql = format!("SELECT count(*) FROM {}{cond}", quote(&self.name));
        Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(values), |r| r.get(0))?)
    }

    /// ` WHERE` each of `filter`'s columns equals its value (nothing for no filter). The columns
    /// named in `constant` are written `+col`, so that the planner chooses no index on them.
    fn filter_sql<'v>(
        &self,
        filter: &[(&str, &'v Value)],
        constant: &[&str],
    ) -> Result<(String, Vec<&'v Value>)> {
        let names: Vec<&str> = filter.iter().map(|(c, _)| *c).collect();
        self.checked_columns(&names)?;
        let cond: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(n, c)| format!("{}{} = ?{}", if constant.contains(c) { "+" } else { "" }, quote(c), n + 1))
            .collect();
        let cond = if cond.is_empty() { String::new() } else { format!(" WHERE {}", cond.join(" AND ")) };
        Ok((cond, filter.iter().map(|(_, v)| *v).collect()))
    }

    /// Calls `f` with every row (all columns, in order, borrowed from SQLite) whose `filter` columns
    /// equal the given values, in key order. Every name is checked.
    ///
    /// `constant` names filter columns that hold the same value in every row of the database (a
    /// tenant's own database: the tenant's routing column). They are checked on each row (`+col`),
    /// not looked up: an index on them selects nothing there and only made SQLite sort the whole
    /// table into key order (100,000 jobs: 160 ms that way, 70 ms along the key's index); and where
    /// no index had them, a plain `col = ?` made SQLite compile the cached statement again at every
    /// use (it plans such a term by its value, and rusqlite's cache clears the values).
    pub fn scan<E: From<Error>>(
        &self,
        conn: &Connection,
        filter: &[(&str, &Value)],
        constant: &[&str],
        mut f: impl FnMut(&[BorrowedValue<'_>]) -> Result<(), E>,
    ) -> Result<(), E> {
        let (sql, values) = self.scan_sql(filter, constant)?;
        let mut stmt = conn.prepare_cached(&sql).map_err(Error::from)?;
        let mut rows = stmt.query(params_from_iter(values)).map_err(Error::from)?;
        let n = self.columns.len();
        while let Some(r) = rows.next().map_err(Error::from)? {
            let row = (0..n)
                .map(|i| {
                    let v = r.get_ref(i).map_err(Error::from)?;
                    BorrowedValue::read(v).map_err(|e| Error::from(rusqlite::Error::Utf8Error(i, e)))
                })
                .collect::<Result<Vec<_>>>()?;
            f(&row)?;
        }
        Ok(())
    }

    /// [`scan`](Self::scan)'s query and its parameters.
    fn scan_sql<'v>(
        &self,
        filter: &[(&str, &'v Value)],
        constant: &[&str],
    ) -> Result<(String, Vec<&'v Value>)> {
        let (cond, values) = self.filter_sql(filter, constant)?;
        let order: Vec<String> = self.pk.iter().map(|&i| quote(&self.columns[i].name)).collect();
        let sql = format!(
            "SELECT {} FROM {}{cond} ORDER BY {}",
            self.column_list(),
            quote(&self.name),
            order.join(", ")
        );
        Ok((sql, values))
    }

    /// The columns' indices in the order an insert change carries them ([`insert_change`](Self::insert_change),
    /// a snapshot's rows): the key's in key order, then the others in declaration order.
    pub fn insert_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.pk.iter().copied().chain((0..self.columns.len()).filter(|&i| self.columns[i].pk == 0))
    }

    /// An insert change carrying a whole row (all columns, in order), as a snapshot sends it.
    pub fn insert_change(&self, mut row: Vec<Value>) -> Change {
        let mut pk = Vec::with_capacity(self.pk.len());
        let mut cols = Vec::with_capacity(self.columns.len());
        for i in self.insert_order() {
            let (name, v) = (self.columns[i].name.clone(), std::mem::replace(&mut row[i], Value::Null));
            if self.columns[i].pk > 0 {
                pk.push((name, v));
            } else {
                cols.push((name, ColumnChange { old: None, new: Some(v) }));
            }
        }
        Change {
            table: self.name.clone(),
            op: Op::Insert,
            pk: Fields(pk),
            cols: Fields(cols),
            indirect: false,
        }
    }

    /// `"k1" = ?1 AND "k2" = ?2`, binding the key in key order.
    pub(crate) fn pk_where(&self) -> String {
        self.pk
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ?{}", quote(&self.columns[i].name), n + 1))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// The synced tables of a database, and the SQL they were made from.
#[derive(Debug, Clone)]
pub struct Schema {
    sql: String,
    tables: Vec<Table>,
    by_name: HashMap<String, usize>,
}

impl Schema {
    /// Builds the model by running `sql` in a scratch in-memory database. Every table the SQL creates
    /// is a synced table and must follow the rules in `schemas/domain.sql`.
    pub fn from_sql(sql: &str) -> Result<Schema> {
        let conn = Connection::open_in_memory()?;
        // A platform migration may read the tenant it runs for from the server's `moat_meta`; here
        // that table is a temporary one (not a synced table: only `main`'s tables are).
        conn.execute_batch("CREATE TEMP TABLE moat_meta (key TEXT PRIMARY KEY NOT NULL, value ANY)")?;
        conn.execute_batch(sql).map_err(|e| Error::Schema(format!("schema SQL does not run: {e}")))?;
        let mut schema = Self::from_connection(&conn)?;
        schema.sql = sql.to_owned();
        Ok(schema)
    }

    /// A short, stable name of this schema (FNV-1a 64 of its SQL, hex): a client and the server compare
    /// them to know whether they hold the same schema.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.sql.as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// No tables: what a client's new replica starts from. Its first welcome carries the server's
    /// schema (the fingerprints differ) and the replica builds its tables from it
    /// ([`crate::Replica::migrate_schema`]), so no client has a schema compiled in.
    pub fn empty() -> Schema {
        Schema { sql: String::new(), tables: Vec::new(), by_name: HashMap::new() }
    }

    /// The demo domain of `schemas/domain.sql`, built into the crate.
    pub fn demo() -> Schema {
        Self::from_sql(DEMO_SQL).expect("schemas/domain.sql is a valid schema")
    }

    /// Reads the model of every user table of `conn`'s main database.
    fn from_connection(conn: &Connection) -> Result<Schema> {
        let mut stmt = conn.prepare(
            "SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?;
        let listed: Vec<(String, bool)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        let mut cols =
            conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")?;
        let mut tables = Vec::new();
        for (name, strict) in listed {
            check_name("table", &name)?;
            if RESERVED.contains(&name.as_str()) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
                return Err(Error::Schema(format!("table name {name:?} is reserved")));
            }
            if !strict {
                return Err(Error::Schema(format!("table {name:?} must be STRICT")));
            }
            let mut columns = Vec::new();
            for row in cols.query_map([&name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })? {
                let (cname, decl, not_null, pk) = row?;
                check_name("column", &cname)?;
                let ty = ColumnType::parse(&decl)
                    .ok_or_else(|| Error::Schema(format!("{name}.{cname}: unsupported type {decl:?}")))?;
                let pk = u8::try_from(pk).map_err(|_| Error::Schema(format!("{name}: key too wide")))?;
                columns.push(Column { name: cname, ty, not_null, pk });
            }
            let mut pk: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].pk > 0).collect();
            if pk.is_empty() {
                return Err(Error::Schema(format!("table {name:?} needs an explicit PRIMARY KEY")));
            }
            pk.sort_by_key(|&i| columns[i].pk);
            tables.push(Table { name, columns, pk });
        }
        if tables.is_empty() {
            return Err(Error::Schema("the schema defines no table".into()));
        }
        let by_name = tables.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Schema { sql: String::new(), tables, by_name })
    }

    /// The SQL the schema was built from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Every synced table, by name order.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// A synced table by its wire name.
    pub fn table(&self, name: &str) -> Result<&Table> {
        self.by_name.get(name).map(|&i| &self.tables[i]).ok_or_else(|| Error::UnknownTable(name.to_owned()))
    }
}

/// The demo domain's SQL.
pub const DEMO_SQL: &str = include_str!("../../schemas/domain.sql");

/// Names that reach SQL text must be plain identifiers; they are quoted all the same.
fn check_name(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if ok { Ok(()) } else { Err(Error::Schema(format!("{what} name {name:?} is not a plain identifier"))) }
}

/// Quotes an identifier that the schema model holds (and so has checked).
pub(crate) fn quote(name: &str) -> String {
    debug_assert!(check_name("identifier", name).is_ok() || name.starts_with(SERVER_DATA_PREFIX));
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot's scan of a tenant's tables: their rows in key order, read along the key (not
    /// sorted through an index on the tenant: `jobs` has one) and each cached statement compiled
    /// once however often it runs (`people` has no such index: a plain `tenant_id = ?` filtered
    /// rows after the key's index, and that made SQLite compile it again at every use).
    #[test]
    fn a_scan_walks_the_key_and_compiles_its_statement_once() {
        let conn = Connection::open_in_memory().unwrap();
        let schema = Schema::demo();
        conn.execute_batch(schema.sql()).unwrap();
        for table in ["jobs", "people"] {
            let name = if table == "jobs" { "title" } else { "name" };
            for n in (0..300).rev() {
                let tenant = if n % 100 == 7 { "b" } else { "a" };
                let sql = format!("INSERT INTO {table} (id, tenant_id, {name}) VALUES (?1, ?2, 'x')");
                conn.execute(&sql, (format!("r{n:03}"), tenant)).unwrap();
            }
            let t = schema.table(table).unwrap();
            let a = Value::Text("a".into());
            let filter = [("tenant_id", &a)];
            let want: Vec<Value> =
                (0..300).filter(|n| n % 100 != 7).map(|n| Value::Text(format!("r{n:03}"))).collect();
            for _ in 0..3 {
                let mut ids = Vec::new();
                t.scan(&conn, &filter, &["tenant_id"], |row| -> Result<()> {
                    ids.push(row[0].to_value());
                    Ok(())
                })
                .unwrap();
                assert_eq!(ids, want);
            }
            let (sql, _) = t.scan_sql(&filter, &["tenant_id"]).unwrap();
            let stmt = conn.prepare_cached(&sql).unwrap();
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(["a"], |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
        }
    }

    #[test]
    fn demo_schema_is_read_from_sql() {
        let s = Schema::demo();
        let names: Vec<_> = s.tables().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["customers", "inventory_items", "jobs", "layout_definition", "object_metadata", "people"]
        );
        let jobs = s.table("jobs").unwrap();
        assert_eq!(jobs.pk, [0]);
        let price = &jobs.columns[jobs.column_index("price_cents").unwrap()];
        assert_eq!((price.ty, price.not_null), (ColumnType::Integer, true));
        assert!(matches!(s.table("users"), Err(Error::UnknownTable(_))));
    }

    #[test]
    fn rules_for_synced_tables_are_enforced() {
        for (sql, why) in [
            ("CREATE TABLE t (id TEXT PRIMARY KEY)", "STRICT"),
            ("CREATE TABLE t (id TEXT) STRICT", "PRIMARY KEY"),
            ("CREATE TABLE overlays (id TEXT PRIMARY KEY) STRICT", "reserved"),
            ("CREATE TABLE server_data_t (id TEXT PRIMARY KEY) STRICT", "reserved"),
            ("CREATE TABLE \"a b\" (id TEXT PRIMARY KEY) STRICT", "identifier"),
            ("CREATE TABLE t (\"x;\" TEXT PRIMARY KEY) STRICT", "identifier"),
        ] {
            let err = Schema::from_sql(sql).unwrap_err().to_string();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }

    #[test]
    fn composite_keys_keep_key_order() {
        let s =
            Schema::from_sql("CREATE TABLE t (a TEXT, b INTEGER, c ANY, PRIMARY KEY (b, a)) STRICT").unwrap();
        let t = s.table("t").unwrap();
        assert_eq!(t.pk, [1, 0]);
        assert_eq!(t.pk_flags(), [2, 1, 0]);
    }
}
