//! Records as a field user makes and follows them: a new record's form and its creation (keys made
//! on the device), deletion, the reference picker, line items with their amounts and total, and the
//! writes still waiting for the server.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{
    CellView, DetailViewModel, FieldKind, FieldMeta, FieldView, ListQuery, SectionView, display, edit_text,
    key_text, layout, list_view, meta_of_table, object_meta, parse_input, plain, record_title, rights,
    scale_of, validate,
};
use crate::diff::Fields;
use crate::error::{Error, Result};
use crate::protocol::Identity;
use crate::replica::Replica;
use crate::schema::Schema;
use crate::value::Value;

/// A `line_items` field's items as the UI shows and edits them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LineItemsView {
    /// The item columns (the field's `items`, or the items' keys when the metadata names none).
    pub columns: Vec<LineItemColumn>,
    /// The items, in order.
    pub rows: Vec<LineItemRow>,
    /// The sum of the amounts, in the field's currency (`$1,234.50`); absent when items have no amount.
    pub total: Option<String>,
}

/// One column of line items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LineItemColumn {
    /// The key in each item.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its type (what an input for it reads).
    pub kind: FieldKind,
    /// Minor-unit digits of a currency column.
    pub scale: Option<u32>,
}

/// One line item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LineItemRow {
    /// One cell per column.
    pub cells: Vec<CellView>,
    /// Quantity × unit price, shown in the currency (absent when the item has no amount).
    pub amount: Option<String>,
}

/// One field of a new record, as typed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FieldInput {
    /// The field.
    pub field: String,
    /// What the user typed (read as the field reads input: currency in major units).
    pub text: String,
}

/// A record the reference picker offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReferenceOption {
    /// The record's id (the value the reference stores).
    pub id: String,
    /// Its title.
    pub title: String,
    /// What tells records of the same title apart: the next list column shown (a phone number).
    pub detail: String,
}

/// A write of this device the server has not confirmed yet, in the metadata's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PendingView {
    /// The mutation's id.
    pub mutation_id: String,
    /// What it does: `Created`, `Changed` or `Deleted`.
    pub action: String,
    /// The object type's label (`Job`); the table's name when no metadata names it.
    pub object_label: String,
    /// The object type, to open the record (empty when no metadata names the table).
    pub object_type: String,
    /// The record's id.
    pub record_id: String,
    /// The record's title, or its key.
    pub title: String,
    /// The fields it writes, by label.
    pub labels: Vec<String>,
    /// The values it writes, as shown.
    pub values: Vec<String>,
    /// When it was made (Unix milliseconds).
    pub created_ms: i64,
}

/// One change of a record's history, in the user's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryEntryView {
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// Who: the person's name (from the object type that assignees point to), else their user id;
    /// "An administrator" for an operator's or a migration's change.
    pub who: String,
    /// `Created`, `Changed` or `Deleted`.
    pub action: String,
    /// The fields a change wrote, by label (fields no metadata names are left out).
    pub labels: Vec<String>,
}

/// A record's history from the server's entries, in the metadata's words.
pub fn history_view(
    conn: &Connection,
    schema: &Schema,
    table: &str,
    entries: &[crate::protocol::HistoryEntry],
) -> Vec<HistoryEntryView> {
    let meta = meta_of_table(conn, schema, table).ok().flatten();
    let people = people_type(conn);
    entries
        .iter()
        .map(|e| HistoryEntryView {
            at_ms: e.at_ms,
            who: match &e.user[..] {
                "" => "An administrator".to_owned(),
                user => name_of(conn, schema, people.as_deref(), user),
            },
            action: match e.op.as_str() {
                "insert" => "Created",
                "delete" => "Deleted",
                _ => "Changed",
            }
            .to_owned(),
            labels: match (&meta, e.op.as_str()) {
                (Some(m), "update") => {
                    e.columns.iter().filter_map(|c| m.field(c).map(|f| f.label.clone())).collect()
                }
                _ => Vec::new(),
            },
        })
        .collect()
}

/// The object type whose records are people: the one a `mine` field points to.
/// A user's name, as the people object type (the one `mine` references point to) knows them; the
/// id itself where it does not.
fn name_of(conn: &Connection, schema: &Schema, people: Option<&str>, user: &str) -> String {
    people
        .and_then(|target| super::reference_title(conn, schema, target, user).ok().flatten())
        .unwrap_or_else(|| user.to_owned())
}

/// A user's name in words (see [`history_view`]); for lists the server gives by user id.
pub fn person_name(conn: &Connection, schema: &Schema, user: &str) -> String {
    name_of(conn, schema, people_type(conn).as_deref(), user)
}

fn people_type(conn: &Connection) -> Option<String> {
    let mut stmt = conn.prepare_cached("SELECT fields FROM object_metadata ORDER BY sort_order, id").ok()?;
    let all: Vec<String> = stmt.query_map([], |r| r.get(0)).ok()?.filter_map(|r| r.ok()).collect();
    all.iter()
        .filter_map(|f| serde_json::from_str::<Vec<FieldMeta>>(f).ok())
        .flatten()
        .find(|f| f.mine)
        .and_then(|f| f.object_type)
}

/// The object type stored in `table`, if the metadata names one.
pub fn object_type_of(conn: &Connection, table: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT object_type FROM object_metadata WHERE table_name = ?1 ORDER BY sort_order, id LIMIT 1",
        )?
        .query_row([table], |r| r.get(0))
        .optional()?)
}

/// Who the user is, as the last welcome said (empty before the first one).
pub fn identity(conn: &Connection) -> Result<Identity> {
    let json: Option<String> = conn
        .prepare_cached("SELECT value FROM moat_meta WHERE key = 'identity'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
}

/// The item columns of a line-items field: its `items`, or the keys of the stored items.
/// A field the metadata does not describe, as a layout draws it.
pub(super) fn bare_field(name: &str, kind: FieldKind) -> FieldMeta {
    FieldMeta {
        name: name.to_owned(),
        label: name.to_owned(),
        kind,
        required: false,
        options: Vec::new(),
        object_type: None,
        currency: None,
        scale: None,
        min: None,
        max: None,
        items: Vec::new(),
        mine: false,
        default: None,
    }
}

fn item_fields(f: &FieldMeta, items: &[serde_json::Map<String, serde_json::Value>]) -> Vec<FieldMeta> {
    if !f.items.is_empty() {
        return f.items.clone();
    }
    let mut names: Vec<&String> = Vec::new();
    for k in items.iter().flat_map(|i| i.keys()) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names
        .into_iter()
        .map(|n| FieldMeta { label: n.replace('_', " "), ..bare_field(n, FieldKind::Text) })
        .collect()
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

/// An item's amount in minor units: its currency column times its number columns (`qty` ×
/// `unit_price_cents`), when the items have exactly one currency column.
fn amount(cols: &[FieldMeta], item: &serde_json::Map<String, serde_json::Value>) -> Option<i64> {
    let mut currency = cols.iter().filter(|c| c.kind == FieldKind::Currency);
    let price = currency.next()?;
    if currency.next().is_some() {
        return None;
    }
    let mut minor = item.get(&price.name).and_then(serde_json::Value::as_i64)?;
    for c in cols.iter().filter(|c| c.kind == FieldKind::Number) {
        let q = item.get(&c.name).map(json_value).unwrap_or(Value::Integer(0));
        minor = match q {
            Value::Integer(q) => minor.checked_mul(q)?,
            Value::Real(q) => (minor as f64 * q).round() as i64,
            _ => 0,
        };
    }
    Some(minor)
}

/// The line items of a field's stored JSON, with each item's amount and the total.
pub(super) fn line_items_view(conn: &Connection, schema: &Schema, f: &FieldMeta, v: &Value) -> LineItemsView {
    let items: Vec<serde_json::Map<String, serde_json::Value>> = match v {
        Value::Text(t) => serde_json::from_str::<Vec<serde_json::Value>>(t)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let cols = item_fields(f, &items);
    let price = cols.iter().find(|c| c.kind == FieldKind::Currency);
    let money = |minor: i64| match price {
        Some(p) => display(conn, schema, p, &Value::Integer(minor)).unwrap_or_else(|_| minor.to_string()),
        None => minor.to_string(),
    };
    let mut total: Option<i64> = None;
    let rows = items
        .iter()
        .map(|item| {
            let a = amount(&cols, item);
            if let Some(a) = a {
                total = Some(total.unwrap_or(0).saturating_add(a));
            }
            LineItemRow {
                cells: cols
                    .iter()
                    .map(|c| {
                        let value = item.get(&c.name).map(json_value).unwrap_or(Value::Null);
                        CellView {
                            field: c.name.clone(),
                            display: display(conn, schema, c, &value).unwrap_or_else(|_| plain(&value)),
                            edit_text: edit_text(c, &value),
                            value: value.into(),
                        }
                    })
                    .collect(),
                amount: a.map(money),
            }
        })
        .collect();
    let has_amount = price.is_some() && cols.iter().filter(|c| c.kind == FieldKind::Currency).count() == 1;
    LineItemsView {
        columns: cols
            .iter()
            .map(|c| LineItemColumn {
                field: c.name.clone(),
                label: c.label.clone(),
                kind: c.kind,
                scale: (c.kind == FieldKind::Currency).then(|| scale_of(c)),
            })
            .collect(),
        rows,
        total: has_amount.then(|| money(total.unwrap_or(0))),
    }
}

/// The stored JSON of line items typed as rows of texts (one per column of the field's `items`, in
/// order): each cell read as its column reads input (a unit price in major units), an empty row
/// dropped. The error names the row and the column. The result is what an edit of the field takes.
pub fn line_items_text(
    conn: &Connection,
    schema: &Schema,
    object_type: &str,
    field: &str,
    rows: &[Vec<String>],
) -> Result<String> {
    let meta = object_meta(conn, schema, object_type)?;
    let f = meta
        .field(field)
        .filter(|f| f.kind == FieldKind::LineItems)
        .ok_or_else(|| Error::Invalid(format!("{field} is not a line-items field of {}", meta.label)))?;
    if f.items.is_empty() {
        return Err(Error::Invalid(format!("{}: the metadata names no item columns", f.label)));
    }
    let cols = &f.items;
    let mut out = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        if row.iter().all(|t| t.trim().is_empty()) {
            continue;
        }
        let mut item = serde_json::Map::new();
        for (c, text) in cols.iter().zip(row.iter().chain(std::iter::repeat(&String::new()))) {
            let at = |e: Error| match e {
                Error::Invalid(m) => Error::Invalid(format!("{}, item {}: {m}", f.label, n + 1)),
                e => e,
            };
            let v = parse_input(c, text).map_err(at)?;
            validate(c, &v).map_err(at)?;
            let j = match v {
                Value::Null => continue,
                Value::Integer(i) => serde_json::Value::from(i),
                Value::Real(r) => serde_json::Value::from(r),
                Value::Text(t) => serde_json::Value::from(t),
                Value::Blob(_) => continue,
            };
            item.insert(c.name.clone(), j);
        }
        out.push(serde_json::Value::Object(item));
    }
    Ok(serde_json::Value::Array(out).to_string())
}

/// Whether the user may create and delete records of the object type whose table is `table`, with
/// `fields` and the layout for `role`: deleting needs every column writable (the server's rule);
/// creating needs the table writable and every required field without a default on the layout and
/// writable.
pub(super) fn can_create_delete(
    conn: &Connection,
    object_type: &str,
    table: &str,
    fields: &[FieldMeta],
    role: &str,
) -> Result<(bool, bool)> {
    let rights = rights(conn)?;
    if rights.table_read_only(table) {
        return Ok((false, false));
    }
    // A delete removes every field: a role that may not write some of them may not delete.
    let delete = rights.may_delete(table);
    let Ok(sections) = layout(conn, object_type, role) else { return Ok((false, delete)) };
    let on_layout: Vec<_> = sections.iter().flat_map(|s| &s.fields).filter(|l| !l.read_only).collect();
    let create = fields
        .iter()
        .filter(|f| f.required && f.default.is_none())
        .all(|f| on_layout.iter().any(|l| l.field == f.name) && !rights.column_read_only(table, &f.name));
    Ok((create, delete))
}

/// The form of a new record of `object_type`: the layout's sections for `role`, each field with the
/// metadata's default, writable where the role may write it.
pub fn new_record(
    conn: &Connection,
    schema: &Schema,
    object_type: &str,
    role: &str,
) -> Result<DetailViewModel> {
    let meta = object_meta(conn, schema, object_type)?;
    let rights = rights(conn)?;
    let mut sections = Vec::new();
    for s in layout(conn, object_type, role)? {
        let mut fields = Vec::new();
        for lf in s.fields {
            let Some(f) = meta.field(&lf.field) else { continue };
            let value = match &f.default {
                Some(text) => parse_input(f, text).unwrap_or(Value::Null),
                None => Value::Null,
            };
            let mut view = field_view(conn, schema, &meta, f, value)?;
            view.label = lf.label.unwrap_or_else(|| f.label.clone());
            view.widget = lf.widget;
            view.read_only = lf.read_only
                || f.kind == FieldKind::Unknown
                || rights.column_read_only(&meta.table.name, &lf.field);
            // A new record's empty required field is not yet a problem: the form says so on save.
            view.problem = None;
            fields.push(view);
        }
        sections.push(SectionView { id: s.id, label: s.label, columns: s.columns, fields });
    }
    Ok(DetailViewModel { object_label: meta.label.clone(), title: format!("New {}", meta.label), sections })
}

/// A field of a record as a detail page or a form shows it (the layout's label, widget and
/// read-only flag are the caller's to set).
pub(super) fn field_view(
    conn: &Connection,
    schema: &Schema,
    meta: &super::ObjectMeta,
    f: &FieldMeta,
    value: Value,
) -> Result<FieldView> {
    let problem =
        (f.kind != FieldKind::Unknown).then(|| validate(f, &value).err()).flatten().map(|e| match e {
            Error::Invalid(m) => m,
            e => e.to_string(),
        });
    let link = match (&f.kind, &f.object_type, &value) {
        (FieldKind::Reference, Some(target), Value::Text(id)) if !id.is_empty() => {
            Some(super::RecordLink { object_type: target.clone(), id: id.clone() })
        }
        _ => None,
    };
    let line_items = (f.kind == FieldKind::LineItems).then(|| line_items_view(conn, schema, f, &value));
    Ok(FieldView {
        problem,
        label: f.label.clone(),
        widget: f.kind,
        kind: f.kind,
        cell: meta.cell(conn, schema, &f.name, value)?,
        read_only: false,
        required: f.required,
        options: f.options.clone(),
        currency: f.currency.clone(),
        scale: (f.kind == FieldKind::Currency).then(|| scale_of(f)),
        min: f.min,
        max: f.max,
        field: f.name.clone(),
        link,
        pending: false,
        line_items,
    })
}

/// Creates a record of `object_type` from what the user typed, with a key made on the device; the
/// fields not given take the metadata's default. Checked as an edit is (the layout for `role`, the
/// role's rights, each field's rules, required fields, references), then written as a local
/// mutation. Returns the new record's id.
pub fn create(replica: &mut Replica, object_type: &str, inputs: &[FieldInput], role: &str) -> Result<String> {
    let schema = replica.schema().clone();
    let conn = replica.connection();
    let meta = object_meta(conn, &schema, object_type)?;
    let t = &meta.table;
    let rights = rights(conn)?;
    if rights.table_read_only(&t.name) {
        return Err(Error::Invalid(format!("{} are read-only for your role", meta.label_plural)));
    }
    let identity = identity(conn)?;
    let editable: Vec<super::LayoutField> =
        layout(conn, object_type, role)?.into_iter().flat_map(|s| s.fields).collect();
    let [key_index] = t.pk.as_slice() else {
        return Err(Error::Invalid(format!("{} records cannot be created here", meta.label_plural)));
    };
    let key_column = t.columns[*key_index].name.clone();
    let id: String = conn.query_row("SELECT lower(hex(randomblob(10)))", [], |r| r.get(0))?;
    let mut row: Vec<(String, Value)> = vec![(key_column.clone(), Value::Text(id.clone()))];
    for (column, value) in &identity.route {
        if t.column_index(column).is_none() {
            continue;
        }
        row.push((column.clone(), Value::Text(value.clone())));
    }
    if row.len() == 1 && !identity.route.is_empty() {
        return Err(Error::Invalid(format!("{} records cannot be created here", meta.label_plural)));
    }
    for f in &meta.fields {
        if f.name == key_column || row.iter().any(|(c, _)| *c == f.name) {
            continue;
        }
        let typed = inputs.iter().find(|i| i.field == f.name);
        let text = match (typed, &f.default) {
            (Some(i), _) => {
                let lf = editable.iter().find(|l| l.field == f.name);
                if lf.is_none_or(|l| l.read_only) && !i.text.trim().is_empty() {
                    return Err(Error::Invalid(format!("{} cannot be set here", f.label)));
                }
                if rights.column_read_only(&t.name, &f.name) && !i.text.trim().is_empty() {
                    return Err(Error::Invalid(format!("{} is read-only for your role", f.label)));
                }
                i.text.clone()
            }
            (None, Some(d)) => d.clone(),
            (None, None) => String::new(),
        };
        let v = parse_input(f, &text)?;
        validate(f, &v)?;
        super::check_reference(conn, &schema, f, &v, &crate::diff::Diff::default())?;
        if v != Value::Null {
            row.push((f.name.clone(), v));
        }
    }
    // A NOT NULL column nobody gave a value: the empty value of its kind (a replica's tables carry no
    // SQL defaults; the metadata's `default` is where a tenant says what a new record starts with).
    for c in t.columns.iter().filter(|c| c.not_null) {
        if row.iter().any(|(n, _)| *n == c.name) {
            continue;
        }
        let empty = match (meta.field(&c.name).map(|f| f.kind), c.ty) {
            (Some(FieldKind::LineItems), _) => Value::Text("[]".into()),
            (_, crate::schema::ColumnType::Integer) => Value::Integer(0),
            (_, crate::schema::ColumnType::Real) => Value::Real(0.0),
            _ => Value::Text(String::new()),
        };
        row.push((c.name.clone(), empty));
    }
    for i in inputs {
        if meta.field(&i.field).is_none() {
            return Err(Error::Invalid(format!("{} is not a field of {}", i.field, meta.label)));
        }
    }
    replica.insert(&t.name, &Fields(row))?;
    Ok(id)
}

/// Deletes a record, as a local mutation (sent when possible). The role must be able to write the
/// object type.
pub fn delete(replica: &mut Replica, object_type: &str, pk: &Fields<Value>) -> Result<()> {
    let meta = object_meta(replica.connection(), replica.schema(), object_type)?;
    if rights(replica.connection())?.table_read_only(&meta.table.name) {
        return Err(Error::Invalid(format!("{} are read-only for your role", meta.label_plural)));
    }
    if !rights(replica.connection())?.may_delete(&meta.table.name) {
        return Err(Error::Invalid(format!("{} cannot be deleted by your role", meta.label_plural)));
    }
    if meta.table.read_columns(replica.connection(), pk, &[meta.title_field.as_str()])?.is_none() {
        return Err(Error::NotFound(format!("this {} (it may have been deleted)", meta.label)));
    }
    replica.delete(&meta.table.name, pk)?;
    Ok(())
}

/// The records a reference field may point to, found on the device: the referenced object type's
/// records whose search fields contain `search` (all when empty), in its default order, at most
/// `limit` (50 at most).
pub fn reference_options(
    conn: &Connection,
    schema: &Schema,
    object_type: &str,
    field: &str,
    search: &str,
    limit: u32,
) -> Result<Vec<ReferenceOption>> {
    let meta = object_meta(conn, schema, object_type)?;
    let target = meta
        .field(field)
        .filter(|f| f.kind == FieldKind::Reference)
        .and_then(|f| f.object_type.clone())
        .ok_or_else(|| Error::Invalid(format!("{field} is not a reference field of {}", meta.label)))?;
    let mut q = ListQuery::new(&target);
    q.search = Some(search.to_owned()).filter(|s| !s.trim().is_empty());
    q.limit = Some(i64::from(limit.clamp(1, 50)));
    let title_field = object_meta(conn, schema, &target)?.title_field;
    Ok(list_view(conn, schema, &q)?
        .rows
        .into_iter()
        .map(|r| ReferenceOption {
            detail: r
                .cells
                .iter()
                .find(|c| c.field != title_field && !c.display.is_empty())
                .map(|c| c.display.clone())
                .unwrap_or_default(),
            id: r.id,
            title: r.title,
        })
        .collect())
}

/// Writes a refused change again, as new local writes, and forgets the refused one: for when what
/// refused it has changed (an admin widened a rule or gave the role the right). Checked on the device
/// first, as an edit is (the metadata's rules, the role's rights): a change still refused here stays
/// listed, and the error says why.
pub fn retry_rejected(replica: &mut Replica, mutation_id: &str) -> Result<()> {
    let refused = replica
        .rejected()?
        .into_iter()
        .find(|r| r.mutation.mutation_id == mutation_id)
        .ok_or_else(|| Error::NotFound("this refused change (it was dismissed)".into()))?;
    let diff = refused.mutation.diff;
    let (conn, schema) = (replica.connection(), replica.schema().clone());
    let rights = rights(conn)?;
    for c in &diff.changes {
        let names = super::Names::of(conn, &c.table);
        if rights.table_read_only(&c.table) {
            return Err(Error::Invalid(format!("{} are read-only for your role", names.plural())));
        }
        if let Some((n, _)) = c.cols.iter().find(|(n, _)| rights.column_read_only(&c.table, n)) {
            return Err(Error::Invalid(format!("{} is read-only for your role", names.field(n))));
        }
    }
    super::check_diff(conn, &schema, &diff)?;
    for c in diff.changes {
        let new: Vec<(String, Value)> =
            c.cols.iter().filter_map(|(n, cc)| cc.new.clone().map(|v| (n.to_owned(), v))).collect();
        match c.op {
            crate::changeset::Op::Insert => {
                let mut row = c.pk.0.clone();
                row.extend(new.into_iter().filter(|(n, _)| !c.pk.0.iter().any(|(k, _)| k == n)));
                replica.insert(&c.table, &Fields(row))?;
            }
            crate::changeset::Op::Update => {
                replica.update(&c.table, &c.pk, &Fields(new))?;
            }
            crate::changeset::Op::Delete => {
                replica.delete(&c.table, &c.pk)?;
            }
        }
    }
    replica.dismiss_rejected(mutation_id)?;
    Ok(())
}

/// The writes waiting for the server, oldest first, in the metadata's words.
pub fn pending(replica: &Replica) -> Result<Vec<PendingView>> {
    let (conn, schema) = (replica.connection(), replica.schema());
    let created: std::collections::HashMap<String, i64> = {
        let mut stmt =
            conn.prepare("SELECT mutation_id, created_ms FROM overlays WHERE state = 'pending'")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::new();
    for m in replica.pending()? {
        let Some(c) = m.diff.changes.first() else { continue };
        let object_type = object_type_of(conn, &c.table)?;
        let meta = object_type.as_ref().and_then(|ot| object_meta(conn, schema, ot).ok());
        let record_id = key_text(&c.pk.0.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
        let title = record_title(conn, meta.as_ref(), &c.pk)
            .or_else(|| {
                let title_field = &meta.as_ref()?.title_field;
                c.cols.iter().find(|(n, _)| n == title_field).and_then(|(_, cc)| cc.old.as_ref().map(plain))
            })
            .unwrap_or_else(|| record_id.clone());
        let field = |column: &str| meta.as_ref().and_then(|m| m.field(column));
        let shown: Vec<(&str, Value)> = c
            .cols
            .iter()
            .filter(|(n, _)| field(n).is_some() || meta.is_none())
            .filter_map(|(n, cc)| cc.new.clone().map(|v| (n, v)))
            .collect();
        out.push(PendingView {
            created_ms: created.get(&m.mutation_id).copied().unwrap_or(0),
            mutation_id: m.mutation_id,
            action: match c.op {
                crate::changeset::Op::Insert => "Created",
                crate::changeset::Op::Update => "Changed",
                crate::changeset::Op::Delete => "Deleted",
            }
            .to_owned(),
            object_label: meta.as_ref().map(|m| m.label.clone()).unwrap_or_else(|| c.table.clone()),
            object_type: object_type.unwrap_or_default(),
            record_id,
            title,
            labels: shown
                .iter()
                .map(|(n, _)| field(n).map(|f| f.label.clone()).unwrap_or_else(|| (*n).to_owned()))
                .collect(),
            values: shown
                .iter()
                .map(|(n, v)| match field(n) {
                    Some(f) => display(conn, schema, f, v).unwrap_or_else(|_| plain(v)),
                    None => plain(v),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// The columns of `table`'s row `pk` that pending writes of this device change.
pub(super) fn pending_columns(
    conn: &Connection,
    schema: &Schema,
    table: &str,
    pk: &Fields<Value>,
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    let waiting: i64 = conn
        .query_row("SELECT count(*) FROM overlays WHERE state = 'pending'", [], |r| r.get(0))
        .unwrap_or(0);
    if waiting == 0 {
        return Ok(out);
    }
    for m in crate::replica::load_pending(conn, schema)? {
        for c in m.diff.changes.iter().filter(|c| c.table == table && c.pk == *pk) {
            out.extend(c.cols.iter().map(|(n, _)| n.to_owned()));
        }
    }
    Ok(out)
}
