//! The dynamic UI model: everything a client shows is computed here from the synced
//! `object_metadata` and `layout_definition` rows and the projection, so the web and iOS shells only
//! draw. `docs/metadata.md` describes the metadata. Metadata is data from the wire too: every table
//! and column it names is checked against the schema before it reaches SQL.

use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::diff::Fields;
use crate::error::{Error, Result};
use crate::replica::{Mutation, Replica};
use crate::schema::{Schema, Table, quote};
use crate::value::Value;

/// One choice of a `choice` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The stored value.
    pub value: String,
    /// What is shown.
    pub label: String,
    /// An optional colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// A field definition from `object_metadata.fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldMeta {
    /// The column.
    pub name: String,
    /// The label.
    pub label: String,
    /// `text`, `multiline`, `number`, `currency`, `choice`, `date`, `reference`, `line_items`, `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A value must be given.
    #[serde(default)]
    pub required: bool,
    /// The choices of a `choice` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// The object type a `reference` field points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    /// ISO currency code of a `currency` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Minor-unit digits of a `currency` field (2 for cents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Smallest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Largest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// An object type, as the list of object types shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectType {
    /// API name, e.g. `jobs`.
    pub object_type: String,
    /// Singular label.
    pub label: String,
    /// Plural label (the list's title).
    pub label_plural: String,
    /// Icon name.
    pub icon: Option<String>,
    /// How many records the device holds.
    pub count: i64,
}

/// Everything about one object type.
#[derive(Debug, Clone)]
struct ObjectMeta {
    label: String,
    label_plural: String,
    table: Table,
    title_field: String,
    list_columns: Vec<String>,
    search_fields: Vec<String>,
    default_sort: Option<(String, bool)>,
    fields: Vec<FieldMeta>,
}

/// A list column header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// The field.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its type.
    pub kind: String,
}

/// One shown value: the raw value and its display text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The field.
    pub field: String,
    /// The stored value.
    pub value: Value,
    /// The text to show (formatted currency, a choice's label, a reference's title).
    pub display: String,
}

/// One row of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListRow {
    /// The record's key.
    pub pk: Fields<Value>,
    /// The record's title.
    pub title: String,
    /// One cell per list column.
    pub cells: Vec<Cell>,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// Text to find in the search fields.
    pub search: Option<String>,
    /// Field to sort by, ascending when true; the metadata's default sort otherwise.
    pub sort: Option<(String, bool)>,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return (at most 500).
    pub limit: i64,
}

/// A page of a list view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListView {
    /// The title (the plural label).
    pub title: String,
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows of this page.
    pub rows: Vec<ListRow>,
    /// Rows matching the query, all pages.
    pub total: i64,
}

/// One field of a detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailField {
    /// The field.
    pub field: String,
    /// The label (the layout's override, or the field's).
    pub label: String,
    /// The widget to draw.
    pub widget: String,
    /// The value and its display text.
    pub cell: Cell,
    /// Not editable in this layout.
    pub read_only: bool,
    /// A value must be given.
    pub required: bool,
    /// The choices, for a `choice` widget.
    pub options: Vec<Choice>,
}

/// A section of a detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Section id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// Columns to lay the fields out in.
    pub columns: u32,
    /// The fields, in order.
    pub fields: Vec<DetailField>,
}

/// A record's detail page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailView {
    /// The object type's singular label.
    pub object_label: String,
    /// The record's title.
    pub title: String,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

#[derive(Debug, Deserialize)]
struct LayoutSection {
    id: String,
    label: String,
    #[serde(default = "one")]
    columns: u32,
    fields: Vec<LayoutField>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct LayoutField {
    field: String,
    widget: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    label: Option<String>,
}

fn bad_meta(what: String) -> Error {
    Error::Invalid(format!("metadata: {what}"))
}

fn json<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| bad_meta(format!("{what}: {e}")))
}

/// The object types the device knows, in their order.
pub fn object_types(conn: &Connection, schema: &Schema) -> Result<Vec<ObjectType>> {
    let mut stmt = conn.prepare(
        "SELECT object_type, label, label_plural, icon, table_name FROM object_metadata ORDER BY sort_order, label_plural",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (object_type, label, label_plural, icon, table_name) = row?;
        // A type whose table this client's schema lacks (a newer server) is not shown.
        let Ok(table) = schema.table(&table_name) else { continue };
        let count = table.count(conn, &[])?;
        out.push(ObjectType { object_type, label, label_plural, icon, count });
    }
    Ok(out)
}

fn object_meta(conn: &Connection, schema: &Schema, object_type: &str) -> Result<ObjectMeta> {
    type Row = (String, String, String, String, String, String, Option<String>, String);
    let row: Option<Row> = conn
        .query_row(
            "SELECT label, label_plural, table_name, title_field, list_columns, search_fields, default_sort, fields \
             FROM object_metadata WHERE object_type = ?1 ORDER BY id LIMIT 1",
            [object_type],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
        )
        .optional()?;
    let (label, label_plural, table_name, title_field, list, search, sort, fields) =
        row.ok_or_else(|| Error::NotFound(format!("object type {object_type}")))?;
    let table = schema.table(&table_name)?.clone();
    let fields: Vec<FieldMeta> = json(&fields, "fields")?;
    let check = |name: &str| {
        table
            .column_index(name)
            .map(|_| ())
            .ok_or_else(|| Error::UnknownColumn { table: table.name.clone(), column: name.to_owned() })
    };
    for f in &fields {
        check(&f.name)?;
    }
    let list_columns: Vec<String> = json(&list, "list_columns")?;
    let search_fields: Vec<String> = json(&search, "search_fields")?;
    for c in list_columns.iter().chain(&search_fields).chain([&title_field]) {
        check(c)?;
    }
    #[derive(Deserialize)]
    struct Sort {
        field: String,
        dir: String,
    }
    let default_sort = match sort {
        Some(s) => {
            let s: Sort = json(&s, "default_sort")?;
            check(&s.field)?;
            Some((s.field, s.dir != "desc"))
        }
        None => None,
    };
    Ok(ObjectMeta {
        label,
        label_plural,
        table,
        title_field,
        list_columns,
        search_fields,
        default_sort,
        fields,
    })
}

impl ObjectMeta {
    fn field(&self, name: &str) -> Option<&FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn cell(&self, conn: &Connection, schema: &Schema, field: &str, value: Value) -> Result<Cell> {
        let display = match self.field(field) {
            Some(f) => display(conn, schema, f, &value)?,
            None => plain(&value),
        };
        Ok(Cell { field: field.to_owned(), value, display })
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("{} bytes", b.len()),
    }
}

fn display(conn: &Connection, schema: &Schema, f: &FieldMeta, v: &Value) -> Result<String> {
    Ok(match (f.kind.as_str(), v) {
        (_, Value::Null) => String::new(),
        ("currency", Value::Integer(minor)) => {
            let scale = f.scale.unwrap_or(2);
            let unit = 10i64.pow(scale);
            let sign = if *minor < 0 { "-" } else { "" };
            let (whole, frac) = (minor.abs() / unit, minor.abs() % unit);
            let symbol = match f.currency.as_deref() {
                Some("USD") | None => "$".to_owned(),
                Some("EUR") => "€".to_owned(),
                Some("GBP") => "£".to_owned(),
                Some(code) => format!("{code} "),
            };
            let whole = group_thousands(whole);
            if scale == 0 {
                format!("{sign}{symbol}{whole}")
            } else {
                format!("{sign}{symbol}{whole}.{frac:0w$}", w = scale as usize)
            }
        }
        ("choice", Value::Text(t)) => {
            f.options.iter().find(|o| o.value == *t).map(|o| o.label.clone()).unwrap_or_else(|| t.clone())
        }
        ("boolean", Value::Integer(i)) => if *i != 0 { "Yes" } else { "No" }.to_owned(),
        ("reference", Value::Text(id)) => match &f.object_type {
            Some(target) => reference_title(conn, schema, target, id)?.unwrap_or_else(|| id.clone()),
            None => id.clone(),
        },
        ("line_items", Value::Text(t)) => {
            let n = serde_json::from_str::<Vec<serde_json::Value>>(t).map(|v| v.len()).unwrap_or(0);
            format!("{n} item{}", if n == 1 { "" } else { "s" })
        }
        _ => plain(v),
    })
}

fn group_thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The title of the record `id` of object type `target`, if the device has it.
fn reference_title(conn: &Connection, schema: &Schema, target: &str, id: &str) -> Result<Option<String>> {
    let Ok(meta) = object_meta(conn, schema, target) else { return Ok(None) };
    if meta.table.pk.len() != 1 {
        return Ok(None);
    }
    let pk = Fields(vec![(meta.table.columns[meta.table.pk[0]].name.clone(), Value::from(id))]);
    Ok(meta.table.read_columns(conn, &pk, &[meta.title_field.as_str()])?.map(|v| plain(&v[0])))
}

/// A page of the list of `object_type`'s records.
pub fn list_view(conn: &Connection, schema: &Schema, object_type: &str, q: &ListQuery) -> Result<ListView> {
    let meta = object_meta(conn, schema, object_type)?;
    let t = &meta.table;
    let mut cond = String::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = q.search.as_deref().filter(|s| !s.trim().is_empty()) {
        let terms: Vec<String> =
            meta.search_fields.iter().map(|f| format!("{} LIKE ?1 ESCAPE '\\'", quote(f))).collect();
        if !terms.is_empty() {
            cond = format!(" WHERE {}", terms.join(" OR "));
            let escaped = s.trim().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            args.push(Value::Text(format!("%{escaped}%")));
        }
    }
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {}{cond}", quote(&t.name)),
        params_from_iter(&args),
        |r| r.get(0),
    )?;
    let (sort_field, asc) = match &q.sort {
        Some((f, asc)) => {
            t.column_index(f)
                .ok_or_else(|| Error::UnknownColumn { table: t.name.clone(), column: f.clone() })?;
            (f.clone(), *asc)
        }
        None => meta.default_sort.clone().unwrap_or_else(|| (meta.title_field.clone(), true)),
    };
    let pk_cols: Vec<&str> = t.pk.iter().map(|&i| t.columns[i].name.as_str()).collect();
    let mut select: Vec<&str> = pk_cols.clone();
    select.push(&meta.title_field);
    select.extend(meta.list_columns.iter().map(String::as_str));
    let order_pk: Vec<String> = pk_cols.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "SELECT {} FROM {}{cond} ORDER BY {} {}, {} LIMIT {} OFFSET {}",
        select.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
        quote(&t.name),
        quote(&sort_field),
        if asc { "ASC" } else { "DESC" },
        order_pk.join(", "),
        q.limit.clamp(1, 500),
        q.offset.max(0)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(&args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let values: Vec<Value> = (0..select.len()).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
        let n = pk_cols.len();
        let pk = Fields(pk_cols.iter().zip(&values).map(|(c, v)| ((*c).to_owned(), v.clone())).collect());
        let title = plain(&values[n]);
        let mut cells = Vec::new();
        for (c, v) in meta.list_columns.iter().zip(&values[n + 1..]) {
            cells.push(meta.cell(conn, schema, c, v.clone())?);
        }
        out.push(ListRow { pk, title, cells });
    }
    let columns = meta
        .list_columns
        .iter()
        .map(|c| {
            let f = meta.field(c);
            Column {
                field: c.clone(),
                label: f.map(|f| f.label.clone()).unwrap_or_else(|| c.clone()),
                kind: f.map(|f| f.kind.clone()).unwrap_or_else(|| "text".into()),
            }
        })
        .collect();
    Ok(ListView { title: meta.label_plural.clone(), columns, rows: out, total })
}

/// The layout sections of `object_type` for `role` (a role's own layout wins over the shared one).
fn layout(conn: &Connection, object_type: &str, role: &str) -> Result<Vec<LayoutSection>> {
    let sections: Option<String> = conn
        .query_row(
            "SELECT sections FROM layout_definition WHERE object_type = ?1 AND name = 'detail' \
             AND (role = ?2 OR role IS NULL) ORDER BY role IS NULL, id LIMIT 1",
            [object_type, role],
            |r| r.get(0),
        )
        .optional()?;
    json(&sections.ok_or_else(|| Error::NotFound(format!("a detail layout for {object_type}")))?, "sections")
}

/// The detail page of one record, drawn from the layout for `role`.
pub fn detail_view(
    conn: &Connection,
    schema: &Schema,
    object_type: &str,
    pk: &Fields<Value>,
    role: &str,
) -> Result<DetailView> {
    let meta = object_meta(conn, schema, object_type)?;
    let t = &meta.table;
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let row =
        t.read_columns(conn, pk, &names)?.ok_or_else(|| Error::NotFound(format!("{object_type} record")))?;
    let value_of = |name: &str| t.column_index(name).map(|i| row[i].clone());
    let mut sections = Vec::new();
    for s in layout(conn, object_type, role)? {
        let mut fields = Vec::new();
        for lf in s.fields {
            let Some(value) = value_of(&lf.field) else {
                return Err(Error::UnknownColumn { table: t.name.clone(), column: lf.field });
            };
            let fm = meta.field(&lf.field);
            fields.push(DetailField {
                label: lf.label.or_else(|| fm.map(|f| f.label.clone())).unwrap_or_else(|| lf.field.clone()),
                widget: lf.widget,
                cell: meta.cell(conn, schema, &lf.field, value)?,
                read_only: lf.read_only,
                required: fm.is_some_and(|f| f.required),
                options: fm.map(|f| f.options.clone()).unwrap_or_default(),
                field: lf.field,
            });
        }
        sections.push(Section { id: s.id, label: s.label, columns: s.columns, fields });
    }
    let title = value_of(&meta.title_field).map(|v| plain(&v)).unwrap_or_default();
    Ok(DetailView { object_label: meta.label.clone(), title, sections })
}

/// How the conflict alert names a conflict: the object type and record, and each column's label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictText {
    /// The object type's label (`Job`); the table's name when no metadata names it.
    pub object_label: String,
    /// The record's title, or its key.
    pub title: String,
    /// Per conflicting column, in order: its label and the display text of base, theirs and mine.
    pub columns: Vec<ConflictColumnText>,
}

/// One column of a [`ConflictText`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictColumnText {
    /// The field's label.
    pub label: String,
    /// The value both sides started from, as shown (absent for `row_exists`).
    pub base: Option<String>,
    /// The server's value, as shown (absent when the row was deleted).
    pub theirs: Option<String>,
    /// This device's value, as shown.
    pub mine: String,
}

/// The words and display values for a conflict's alert, from the metadata of the object type whose
/// table it is in (choice labels, currency, reference titles). Falls back to raw names and values.
pub fn conflict_text(conn: &Connection, schema: &Schema, c: &crate::apply::Conflict) -> Result<ConflictText> {
    let object_type: Option<String> = conn
        .query_row(
            "SELECT object_type FROM object_metadata WHERE table_name = ?1 ORDER BY sort_order, id LIMIT 1",
            [&c.table],
            |r| r.get(0),
        )
        .optional()?;
    let meta = match object_type {
        Some(ot) => Some(object_meta(conn, schema, &ot)?),
        None => None,
    };
    let key = c.pk.0.first().map(|(_, v)| plain(v)).unwrap_or_default();
    let title = match &meta {
        Some(m) => {
            let t = &m.table;
            let sql =
                format!("SELECT {} FROM {} WHERE {}", quote(&m.title_field), quote(&t.name), t.pk_where());
            let keys = t.key_values(&c.pk)?;
            let title: Option<Value> =
                conn.query_row(&sql, params_from_iter(keys), |r| r.get(0)).optional()?;
            title.map(|v| plain(&v)).filter(|t| !t.is_empty()).unwrap_or_else(|| key.clone())
        }
        None => key.clone(),
    };
    let shown = |column: &str, v: &Value| -> Result<String> {
        match meta.as_ref().and_then(|m| m.field(column)) {
            Some(f) => display(conn, schema, f, v),
            None => Ok(plain(v)),
        }
    };
    let mut columns = Vec::new();
    for col in &c.columns {
        let label = meta
            .as_ref()
            .and_then(|m| m.field(&col.column))
            .map(|f| f.label.clone())
            .unwrap_or_else(|| col.column.clone());
        columns.push(ConflictColumnText {
            label,
            base: col.base.as_ref().map(|v| shown(&col.column, v)).transpose()?,
            theirs: col.theirs.as_ref().map(|v| shown(&col.column, v)).transpose()?,
            mine: shown(&col.column, &col.mine)?,
        });
    }
    Ok(ConflictText {
        object_label: meta.map(|m| m.label).unwrap_or_else(|| c.table.clone()),
        title,
        columns,
    })
}

/// Validates an edit against the metadata and the layout for `role`, then writes it as a local
/// mutation. Every problem is reported with the field's label.
pub fn edit(
    replica: &mut Replica,
    object_type: &str,
    pk: &Fields<Value>,
    values: &Fields<Value>,
    role: &str,
) -> Result<Option<Mutation>> {
    let schema = replica.schema().clone();
    let conn = replica.connection();
    let meta = object_meta(conn, &schema, object_type)?;
    let editable: Vec<LayoutField> =
        layout(conn, object_type, role)?.into_iter().flat_map(|s| s.fields).collect();
    for (name, v) in values.iter() {
        let f = meta
            .field(name)
            .ok_or_else(|| Error::Invalid(format!("{name} is not a field of {object_type}")))?;
        let lf = editable.iter().find(|l| l.field == name);
        if lf.is_none_or(|l| l.read_only) {
            return Err(Error::Invalid(format!("{} cannot be edited here", f.label)));
        }
        validate(f, v)?;
    }
    replica.update(&meta.table.name, pk, values)
}

fn validate(f: &FieldMeta, v: &Value) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("{}: {why}", f.label)));
    let empty = matches!(v, Value::Null) || matches!(v, Value::Text(t) if t.trim().is_empty());
    if empty {
        return if f.required { bad("a value is required") } else { Ok(()) };
    }
    match (f.kind.as_str(), v) {
        ("text" | "multiline" | "reference", Value::Text(_)) => Ok(()),
        ("number" | "currency", Value::Integer(i)) => {
            if f.min.is_some_and(|m| *i < m) || f.max.is_some_and(|m| *i > m) {
                bad("out of range")
            } else {
                Ok(())
            }
        }
        ("choice", Value::Text(t)) => {
            if f.options.iter().any(|o| o.value == *t) {
                Ok(())
            } else {
                bad(&format!("{t:?} is not one of the choices"))
            }
        }
        ("date", Value::Text(t)) => {
            let ok = t.len() == 10
                && t.char_indices()
                    .all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() })
                && (1..=12).contains(&t[5..7].parse::<u32>().unwrap_or(0))
                && (1..=31).contains(&t[8..10].parse::<u32>().unwrap_or(0));
            if ok { Ok(()) } else { bad("a date is written YYYY-MM-DD") }
        }
        ("line_items", Value::Text(t)) => match serde_json::from_str::<Vec<serde_json::Value>>(t) {
            Ok(_) => Ok(()),
            Err(_) => bad("line items must be a JSON list"),
        },
        ("boolean", Value::Integer(0 | 1)) => Ok(()),
        (kind, _) => bad(&format!("not a valid {kind} value")),
    }
}
