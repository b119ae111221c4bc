//! The dynamic UI model: everything a client shows is computed here from the synced
//! `object_metadata` and `layout_definition` rows and the projection, so the web and iOS shells only
//! draw. `docs/metadata.md` describes the metadata. Metadata is data from the wire too: every table
//! and column it names is checked against the schema before it reaches SQL.

use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::apply::ConflictKind;
use crate::diff::Fields;
use crate::error::{Error, Result};
use crate::replica::{Mutation, Replica, Resolution, StoredConflict};
use crate::schema::{ColumnType, Schema, Table, quote};
use crate::value::Value;

pub mod customize;
mod records;

pub use records::{
    FieldInput, HistoryEntryView, LineItemColumn, LineItemRow, LineItemsView, PendingView, ReferenceOption,
    create, delete, history_view, identity, line_items_text, new_record, object_type_of, pending,
    person_name, reference_options, retry_rejected,
};

/// A value as the UI sees it (a blob is shown as no value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldValue {
    /// No value.
    Null,
    /// A whole number (currency fields hold minor units, e.g. cents).
    Integer {
        /// The number.
        value: i64,
    },
    /// A floating-point number.
    Real {
        /// The number.
        value: f64,
    },
    /// Text.
    Text {
        /// The text.
        value: String,
    },
}

impl From<Value> for FieldValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Null | Value::Blob(_) => FieldValue::Null,
            Value::Integer(value) => FieldValue::Integer { value },
            Value::Real(value) => FieldValue::Real { value },
            Value::Text(value) => FieldValue::Text { value },
        }
    }
}

impl From<FieldValue> for Value {
    fn from(v: FieldValue) -> Self {
        match v {
            FieldValue::Null => Value::Null,
            FieldValue::Integer { value } => Value::Integer(value),
            FieldValue::Real { value } => Value::Real(value),
            FieldValue::Text { value } => Value::Text(value),
        }
    }
}

/// The type of a field (`object_metadata.fields[].type`), which is also the widget a layout draws it
/// with (`layout_definition` … `widget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// Several lines of text.
    Multiline,
    /// A number (integer or real).
    Number,
    /// Money, stored as an integer of minor units (`scale` digits).
    Currency,
    /// One of the field's `options`.
    Choice,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// The key of a record of another object type.
    Reference,
    /// A JSON list of line items.
    LineItems,
    /// Yes or no, stored as 1 or 0.
    Boolean,
    /// A kind this app does not know (from newer metadata): shown as text, not editable.
    Unknown,
}

/// A field type an admin can choose, with its name in the admin's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KindChoice {
    /// The type.
    pub kind: FieldKind,
    /// "Text", "Money", "Yes / no"…
    pub label: String,
}

impl FieldKind {
    /// The type's name in the user's words.
    pub fn label(self) -> &'static str {
        match self {
            FieldKind::Text => "Text",
            FieldKind::Multiline => "Long text",
            FieldKind::Number => "Number",
            FieldKind::Currency => "Money",
            FieldKind::Choice => "Choice",
            FieldKind::Date => "Date",
            FieldKind::Reference => "Reference",
            FieldKind::LineItems => "Line items",
            FieldKind::Boolean => "Yes / no",
            FieldKind::Unknown => "Unknown",
        }
    }

    /// Every type an admin can give a field, in the editor's order.
    pub fn choices() -> Vec<KindChoice> {
        Self::KNOWN.iter().map(|k| KindChoice { kind: *k, label: k.label().to_owned() }).collect()
    }

    const KNOWN: [FieldKind; 9] = [
        FieldKind::Text,
        FieldKind::Multiline,
        FieldKind::Number,
        FieldKind::Currency,
        FieldKind::Choice,
        FieldKind::Date,
        FieldKind::Reference,
        FieldKind::LineItems,
        FieldKind::Boolean,
    ];
}

impl<'de> Deserialize<'de> for FieldKind {
    /// A kind from newer metadata reads as [`FieldKind::Unknown`], not as an error (serde's `other`,
    /// written out: the names are the derived `Serialize`'s, so they are written once).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(FieldKind::KNOWN
            .into_iter()
            .find(|k| serde_json::to_value(k).ok().as_ref().and_then(|v| v.as_str()) == Some(&*name))
            .unwrap_or(FieldKind::Unknown))
    }
}

/// One choice of a `choice` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Choice {
    /// The stored value.
    pub value: String,
    /// What is shown.
    pub label: String,
    /// An optional colour (`#rrggbb`).
    #[serde(default)]
    pub color: Option<String>,
}

/// A field definition from `object_metadata.fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FieldMeta {
    /// The column.
    pub name: String,
    /// The label.
    pub label: String,
    /// The field's type.
    #[serde(rename = "type")]
    pub kind: FieldKind,
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
    /// The columns of a `line_items` field's items (each a field of its own: text, number, currency…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<FieldMeta>,
    /// A `reference` field that holds a user's id (an assignee): lists offer "Assigned to me".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mine: bool,
    /// The value a new record starts with, as the field's input reads it (`"open"`, `"12.50"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// An entry of the object-types list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ObjectTypeView {
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
    /// The user may create records of it (the role may write the table and every required field).
    pub can_create: bool,
    /// The user may delete records of it.
    pub can_delete: bool,
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
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ColumnView {
    /// The field.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its type.
    pub kind: FieldKind,
}

/// One shown value: the stored value, its display text and the text an editor starts from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CellView {
    /// The field.
    pub field: String,
    /// The stored value.
    pub value: FieldValue,
    /// The text to show (formatted currency, a choice's label, a reference's title).
    pub display: String,
    /// The value as an input holds it (currency in major units with the field's scale, `12.50`);
    /// an edit of this text goes back through [`parse_input`].
    pub edit_text: String,
}

/// One row of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListRowView {
    /// The record's id (its key).
    pub id: String,
    /// The record's title.
    pub title: String,
    /// One cell per list column.
    pub cells: Vec<CellView>,
}

/// What a list page asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListQuery {
    /// The object type to list.
    pub object_type: String,
    /// Text to find in the search fields.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub search: Option<String>,
    /// Field to sort by; the metadata's default sort when absent.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub sort_field: Option<String>,
    /// Sort ascending (the default) or descending.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub ascending: Option<bool>,
    /// Rows to skip.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub offset: Option<i64>,
    /// Rows to return (50 when absent, at most 500).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub limit: Option<i64>,
    /// Only the records assigned to the signed-in user (the object type's `mine` field).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub mine: Option<bool>,
    /// Only records matching every filter.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub filters: Option<Vec<ListFilter>>,
}

/// One filter of a list: a field equal to a value (a choice), or within a range (a date, a number;
/// `min` and `max` included, each as the field's input reads it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListFilter {
    /// The field.
    pub field: String,
    /// The value it must hold.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub equals: Option<String>,
    /// The smallest value it may hold.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub min: Option<String>,
    /// The largest value it may hold.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub max: Option<String>,
}

/// A choice field a list can be narrowed by, with how many records hold each choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FacetView {
    /// The field.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its choices, in the metadata's order.
    pub options: Vec<FacetOption>,
}

/// One choice of a facet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FacetOption {
    /// The stored value.
    pub value: String,
    /// Its label.
    pub label: String,
    /// Its colour, if the metadata gives one.
    pub color: Option<String>,
    /// Records holding it (within the search and "assigned to me", other filters aside).
    pub count: i64,
}

fn yes() -> Option<bool> {
    Some(true)
}

impl ListQuery {
    /// The first page of `object_type` in its default order.
    pub fn new(object_type: &str) -> ListQuery {
        ListQuery {
            object_type: object_type.to_owned(),
            search: None,
            sort_field: None,
            ascending: None,
            offset: None,
            limit: None,
            mine: None,
            filters: None,
        }
    }
}

/// A page of a list view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListViewModel {
    /// The title (the plural label).
    pub title: String,
    /// The columns.
    pub columns: Vec<ColumnView>,
    /// The rows of this page.
    pub rows: Vec<ListRowView>,
    /// Rows matching the query, all pages.
    pub total: i64,
    /// Records assigned to the signed-in user (within the search), when the object type has an
    /// assignee field (`mine`) and the user is known: the "Assigned to me" view's count.
    pub mine_count: Option<i64>,
    /// Records of the object type on the device (the "All" view's count).
    pub all_count: i64,
    /// The choice fields among the list's columns, to filter by.
    pub facets: Vec<FacetView>,
    /// The date fields among the list's columns, to filter by range.
    pub date_fields: Vec<ColumnView>,
}

/// One field of a detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FieldView {
    /// The field.
    pub field: String,
    /// The label (the layout's override, or the field's).
    pub label: String,
    /// The widget to draw.
    pub widget: FieldKind,
    /// The field's type (what its values are).
    pub kind: FieldKind,
    /// The value, its display text and its editing text.
    pub cell: CellView,
    /// Not editable in this layout.
    pub read_only: bool,
    /// A value must be given.
    pub required: bool,
    /// The choices, for a `choice` widget.
    pub options: Vec<Choice>,
    /// ISO currency code of a currency field.
    pub currency: Option<String>,
    /// Minor-unit digits of a currency field (2 for cents).
    pub scale: Option<u32>,
    /// Smallest allowed number (in stored units).
    pub min: Option<i64>,
    /// Largest allowed number (in stored units).
    pub max: Option<i64>,
    /// What is wrong with the stored value by the metadata's rules now (a rule changed after it was
    /// written, or it came from elsewhere): shown on the field; the value is shown as it is.
    pub problem: Option<String>,
    /// The record a reference field points to, to open it.
    pub link: Option<RecordLink>,
    /// This device changed the field and the server has not confirmed it yet.
    pub pending: bool,
    /// A `line_items` field's items, amounts and total.
    pub line_items: Option<LineItemsView>,
}

/// A record to open: its object type and id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RecordLink {
    /// The object type.
    pub object_type: String,
    /// The record's id.
    pub id: String,
}

/// A section of a detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SectionView {
    /// Section id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// Columns to lay the fields out in.
    pub columns: u32,
    /// The fields, in order.
    pub fields: Vec<FieldView>,
}

/// A record's detail page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DetailViewModel {
    /// The object type's singular label.
    pub object_label: String,
    /// The record's title.
    pub title: String,
    /// The sections, in order.
    pub sections: Vec<SectionView>,
}

/// One conflicting column, in the metadata's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConflictColumnView {
    /// The column.
    pub column: String,
    /// The field's label, from the metadata (the column's name when none names it).
    pub label: String,
    /// The value both sides started from (absent for `row_exists`).
    pub base: Option<FieldValue>,
    /// The server's value (absent when the row was deleted).
    pub theirs: Option<FieldValue>,
    /// This device's value.
    pub mine: FieldValue,
    /// `base` as the UI shows it (a choice's label, formatted currency).
    pub base_display: Option<String>,
    /// `theirs` as the UI shows it.
    pub theirs_display: Option<String>,
    /// `mine` as the UI shows it.
    pub mine_display: String,
    /// `mine` as an editor starts from it (for "Edit…": currency in major units).
    pub mine_edit_text: String,
}

/// A conflict waiting for the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConflictView {
    /// Id to resolve it by.
    pub id: i64,
    /// What kind of concurrent edit it is.
    pub kind: ConflictKind,
    /// The table.
    pub table: String,
    /// The record's id.
    pub record_id: String,
    /// The object type's label (`Job`); the table's name when no metadata names it.
    pub object_label: String,
    /// The record's title, or its key.
    pub title: String,
    /// The conflicting columns.
    pub columns: Vec<ConflictColumnView>,
}

/// How the user settles a conflict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConflictChoice {
    /// Write my values over the server's.
    KeepMine,
    /// Keep the server's values.
    TakeTheirs,
    /// Write this text, read as the field reads input (currency in major units), to this column.
    Edit {
        /// The column.
        column: String,
        /// What the user typed.
        text: String,
    },
}

/// A write the server refused; it stays on the device, with the reason, until dismissed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RejectedView {
    /// The refused mutation's id (to dismiss it by).
    pub mutation_id: String,
    /// The server's reason.
    pub reason: String,
    /// The table of its first change.
    pub table: String,
    /// The record of its first change.
    pub record_id: String,
    /// The columns it wrote.
    pub columns: Vec<String>,
    /// The object type's label (`Job`); the table's name when no metadata names it.
    pub object_label: String,
    /// The record's title, or its key.
    pub title: String,
    /// Per column, in order: the field's label (the column's name when none names it).
    pub labels: Vec<String>,
    /// Per column, in order: the refused value as the UI shows it (what was not saved).
    pub values: Vec<String>,
}

/// One column's value of a new row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ColumnValue {
    /// The column.
    pub column: String,
    /// Its value.
    pub value: FieldValue,
}

/// A section of a layout (`layout_definition.sections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LayoutSection {
    /// Its id within the layout.
    pub id: String,
    /// Its title.
    pub label: String,
    /// Columns of fields (1 to 3).
    #[serde(default = "one")]
    pub columns: u32,
    /// Its fields, in order.
    pub fields: Vec<LayoutField>,
}

fn one() -> u32 {
    1
}

/// A field placed in a layout section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LayoutField {
    /// The field's name.
    pub field: String,
    /// How it is drawn (its kind, or text ↔ multiline).
    pub widget: FieldKind,
    /// Read-only in this layout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A label for this layout only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

fn bad_meta(what: String) -> Error {
    Error::Invalid(format!("metadata: {what}"))
}

fn json<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| bad_meta(format!("{what}: {e}")))
}

/// The object types the device knows, in their order, with what `role` may do with them; one an admin
/// hid (`hidden`) is left out (its records stay, and Customize still lists it).
pub fn object_types(conn: &Connection, schema: &Schema, role: &str) -> Result<Vec<ObjectTypeView>> {
    if schema.table("object_metadata").is_err() {
        // A new device before its first welcome: no schema, so nothing to list yet.
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT object_type, label, label_plural, icon, table_name, fields FROM object_metadata \
         WHERE coalesce(hidden, 0) = 0 ORDER BY sort_order, label_plural",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (object_type, label, label_plural, icon, table_name, fields) = row?;
        // A type whose table this client's schema lacks (a newer server) is not shown.
        let Ok(table) = schema.table(&table_name) else { continue };
        let count = table.count(conn, &[])?;
        let fields: Vec<FieldMeta> = serde_json::from_str(&fields).unwrap_or_default();
        let (can_create, can_delete) =
            records::can_create_delete(conn, &object_type, &table_name, &fields, role)?;
        out.push(ObjectTypeView { object_type, label, label_plural, icon, count, can_create, can_delete });
    }
    Ok(out)
}

/// An object type's metadata as the views read it: a field, list or search column this device's
/// schema lacks (a migration arriving: the schema moves before the metadata rows do) is left out,
/// not an error, so that the page is drawn meanwhile.
fn object_meta(conn: &Connection, schema: &Schema, object_type: &str) -> Result<ObjectMeta> {
    read_object_meta(conn, schema, object_type, false)
}

/// `strict`: every name must be a column of the table (what an admin's write of metadata is held to).
fn read_object_meta(
    conn: &Connection,
    schema: &Schema,
    object_type: &str,
    strict: bool,
) -> Result<ObjectMeta> {
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
    let mut fields: Vec<FieldMeta> = json(&fields, "fields")?;
    let mut list_columns: Vec<String> = json(&list, "list_columns")?;
    let mut search_fields: Vec<String> = json(&search, "search_fields")?;
    if !strict {
        let has = |name: &str| table.column_index(name).is_some();
        fields.retain(|f| has(&f.name));
        list_columns.retain(|c| has(c));
        search_fields.retain(|c| has(c));
    }
    let check = |name: &str| {
        table
            .column_index(name)
            .map(|_| ())
            .ok_or_else(|| Error::UnknownColumn { table: table.name.clone(), column: name.to_owned() })
    };
    for f in &fields {
        check(&f.name)?;
    }
    for c in list_columns.iter().chain(&search_fields).chain([&title_field]) {
        check(c)?;
    }
    let default_sort = match sort {
        Some(s) => {
            let s: customize::SortDef = json(&s, "default_sort")?;
            match check(&s.field) {
                Ok(()) => Some((s.field, s.dir != "desc")),
                Err(_) if !strict => None,
                Err(e) => return Err(e),
            }
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

    fn cell(&self, conn: &Connection, schema: &Schema, field: &str, value: Value) -> Result<CellView> {
        let (display, edit_text) = match self.field(field) {
            Some(f) => (display(conn, schema, f, &value)?, edit_text(f, &value)),
            None => (plain(&value), plain(&value)),
        };
        Ok(CellView { field: field.to_owned(), value: value.into(), display, edit_text })
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
    Ok(match (f.kind, v) {
        (_, Value::Null) => String::new(),
        (FieldKind::Currency, Value::Integer(minor)) => {
            let symbol = match f.currency.as_deref() {
                Some("USD") | None => "$".to_owned(),
                Some("EUR") => "€".to_owned(),
                Some("GBP") => "£".to_owned(),
                Some(code) => format!("{code} "),
            };
            let (sign, whole, frac) = major_units(*minor, scale_of(f));
            format!("{sign}{symbol}{}{frac}", group_thousands(whole))
        }
        (FieldKind::Choice, Value::Text(t)) => {
            f.options.iter().find(|o| o.value == *t).map(|o| o.label.clone()).unwrap_or_else(|| t.clone())
        }
        (FieldKind::Boolean, Value::Integer(i)) => if *i != 0 { "Yes" } else { "No" }.to_owned(),
        (FieldKind::Date, Value::Text(t)) => show_date(t).unwrap_or_else(|| t.clone()),
        (FieldKind::Reference, Value::Text(id)) => match &f.object_type {
            Some(target) => reference_title(conn, schema, target, id)?.unwrap_or_else(|| id.clone()),
            None => id.clone(),
        },
        (FieldKind::LineItems, Value::Text(t)) => {
            let n = serde_json::from_str::<Vec<serde_json::Value>>(t).map(|v| v.len()).unwrap_or(0);
            format!("{n} item{}", if n == 1 { "" } else { "s" })
        }
        _ => plain(v),
    })
}

/// A `YYYY-MM-DD` date as lists and pages show it, with the month's name so that no reader takes
/// the day for the month (`2026-09-03` is `3 Sep 2026`); `None` for anything else (shown as stored).
/// Inputs keep the ISO text ([`edit_text`]), which date pickers read.
fn show_date(t: &str) -> Option<String> {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, rest) = t.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse::<u32>().ok()?, m.parse::<usize>().ok()?, d.parse::<u32>().ok()?);
    Some(format!("{d} {} {y}", MONTHS.get(m.checked_sub(1)?)?))
}

/// Minor-unit digits of a currency field (2 when the metadata does not say; at most 9).
fn scale_of(f: &FieldMeta) -> u32 {
    f.scale.unwrap_or(2).min(9)
}

/// An amount of minor units as its sign, whole units and `.fraction` (empty for scale 0).
fn major_units(minor: i64, scale: u32) -> (&'static str, u64, String) {
    let unit = 10u64.pow(scale);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let frac = if scale == 0 { String::new() } else { format!(".{:0w$}", abs % unit, w = scale as usize) };
    (sign, abs / unit, frac)
}

/// A value as an input holds it: currency in major units with the field's scale (`1250` cents is
/// `12.50`), everything else as stored. [`parse_input`] reads it back to the same value.
pub fn edit_text(f: &FieldMeta, v: &Value) -> String {
    match (f.kind, v) {
        (FieldKind::Currency, Value::Integer(minor)) => {
            let (sign, whole, frac) = major_units(*minor, scale_of(f));
            format!("{sign}{whole}{frac}")
        }
        _ => plain(v),
    }
}

/// What the user typed into a field's input, as the value the field stores; the error names the
/// field and says what is wrong. Currency is read in major units with exactly the field's scale
/// (`12.5` → 1250 cents; a thousands separator, the currency's symbol and `,` are allowed; more
/// decimals than the scale are refused, never rounded). The value is not yet checked against the
/// field's rules ([`edit`] does that).
pub fn parse_input(f: &FieldMeta, text: &str) -> Result<Value> {
    let bad = |why: &str| Error::Invalid(format!("{}: {why}", f.label));
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    Ok(match f.kind {
        FieldKind::Number => match t.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => match t.parse::<f64>() {
                Ok(r) if r.is_finite() => Value::Real(r),
                _ => return Err(bad("not a number")),
            },
        },
        FieldKind::Currency => {
            let scale = scale_of(f);
            let mut digits: String = t.chars().filter(|c| !matches!(c, ',' | ' ' | '_')).collect();
            let negative = digits.starts_with('-');
            if negative {
                digits.remove(0);
            }
            let symbol = match f.currency.as_deref() {
                Some("USD") | None => "$",
                Some("EUR") => "€",
                Some("GBP") => "£",
                Some(code) => code,
            };
            let digits = digits.strip_prefix(symbol).unwrap_or(&digits);
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
            if whole.is_empty() && frac.is_empty() || !all_digits(whole) || !all_digits(frac) {
                return Err(bad("not an amount"));
            }
            if frac.len() > scale as usize {
                return Err(bad(&match scale {
                    0 => "whole amounts only".to_owned(),
                    1 => "at most 1 decimal place".to_owned(),
                    n => format!("at most {n} decimal places"),
                }));
            }
            let frac = format!("{frac:0<w$}", w = scale as usize);
            let minor = format!("{}{whole}{frac}", if negative { "-" } else { "" });
            match minor.trim_start_matches('-').trim_start_matches('0') {
                "" => Value::Integer(0),
                _ => Value::Integer(minor.parse::<i64>().map_err(|_| bad("too large an amount"))?),
            }
        }
        FieldKind::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Integer(1),
            "false" | "0" | "no" => Value::Integer(0),
            _ => return Err(bad("yes or no")),
        },
        _ => Value::Text(text.to_owned()),
    })
}

fn group_thousands(n: u64) -> String {
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
pub fn list_view(conn: &Connection, schema: &Schema, q: &ListQuery) -> Result<ListViewModel> {
    let meta = object_meta(conn, schema, &q.object_type)?;
    let t = &meta.table;
    // The search: one condition, its argument once per search field.
    let mut scope = Where::default();
    if let Some(s) = q.search.as_deref().filter(|s| !s.trim().is_empty())
        && !meta.search_fields.is_empty()
    {
        if let Some((cond, arg)) = search_condition(conn, &q.object_type, &meta, s.trim())? {
            scope.push_column(cond, [arg]);
        } else {
            let escaped = s.trim().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let terms: Vec<String> =
                meta.search_fields.iter().map(|f| format!("{} LIKE ? ESCAPE '\\'", quote(f))).collect();
            scope.push(
                format!("({})", terms.join(" OR ")),
                meta.search_fields.iter().map(|_| Value::Text(format!("%{escaped}%"))),
            );
        }
    }
    // "Assigned to me": the object type's assignee field holds the signed-in user's id.
    let mine_field = meta.fields.iter().find(|f| f.mine).map(|f| f.name.clone());
    let user = records::identity(conn)?.user;
    let mine_on = q.mine == Some(true);
    let mine = mine_field.as_deref().map(|field| Mine { field, user: &user, on: mine_on });
    if mine_on && mine.is_none() {
        return Err(Error::Invalid(format!("{} are not assigned to anyone", meta.label_plural)));
    }
    let mut filters = Where::default();
    for flt in q.filters.iter().flatten() {
        let f = meta
            .field(&flt.field)
            .ok_or_else(|| Error::Invalid(format!("{} is not a field of {}", flt.field, meta.label)))?;
        let col = quote(&f.name);
        for (text, op) in [(&flt.equals, "="), (&flt.min, ">="), (&flt.max, "<=")] {
            let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else { continue };
            let v = parse_input(f, text)?;
            filters.push_column(format!("{col} {op} ?"), [v]);
        }
    }
    // Facets count within the scope (search, mine); the filters narrow the rows.
    let facet_fields: Vec<&FieldMeta> = meta
        .list_columns
        .iter()
        .filter_map(|c| meta.field(c))
        .filter(|f| f.kind == FieldKind::Choice)
        .collect();
    let tally = tally_of(conn, &q.object_type, &meta)?;
    let counted = match &tally {
        Some(tally) if scope.terms.is_empty() => {
            counts_from_tally(conn, &meta, tally, mine, &facet_fields, &filters)?
        }
        None if scope.terms.is_empty() && !mine_on => {
            counts_of_all(conn, &meta, mine, &facet_fields, &filters)?
        }
        _ => counts_in_scope(conn, &meta, tally.as_ref(), &scope, mine, &facet_fields, &filters)?,
    };
    let facets = facet_fields
        .iter()
        .zip(&counted.facets)
        .map(|(f, counts)| FacetView {
            field: f.name.clone(),
            label: f.label.clone(),
            options: f
                .options
                .iter()
                .zip(counts)
                .map(|(o, &count)| FacetOption {
                    value: o.value.clone(),
                    label: o.label.clone(),
                    color: o.color.clone(),
                    count,
                })
                .collect(),
        })
        .collect();
    let (mine_count, total, all_count) = (counted.mine, counted.total, counted.all);
    let mut filtered = scope;
    if let Some((c, v)) = mine.filter(|m| m.on).map(|m| m.term()) {
        filtered.push_column(c, [v]);
    }
    filtered.extend(filters);
    let (sort_field, asc) = match &q.sort_field {
        Some(f) => {
            t.column_index(f)
                .ok_or_else(|| Error::UnknownColumn { table: t.name.clone(), column: f.clone() })?;
            (f.clone(), q.ascending.unwrap_or(true))
        }
        None => meta.default_sort.clone().unwrap_or_else(|| (meta.title_field.clone(), true)),
    };
    let pk_cols: Vec<&str> = t.pk.iter().map(|&i| t.columns[i].name.as_str()).collect();
    let mut select: Vec<&str> = pk_cols.clone();
    select.push(&meta.title_field);
    select.extend(meta.list_columns.iter().map(String::as_str));
    // Ties in the key's order, the same way (an index of the sort field and the key reads both).
    let dir = if asc { "ASC" } else { "DESC" };
    let order_pk: Vec<String> = pk_cols.iter().map(|c| format!("{} {dir}", quote(c))).collect();
    let (limit, offset) = (q.limit.unwrap_or(50).clamp(1, 500), q.offset.unwrap_or(0).max(0));
    // The page: SQLite (with no statistics) would read every row the filters match through their
    // index and sort them all; when they match many, walking the sort field's index and checking
    // each row reads far fewer (20,000 of 100,000 jobs, page 10: ~40 → ~0.5 ms natively). Rows
    // walked to fill the page ≈ (offset + limit) × all / matched, against `matched` read and sorted.
    let walk = !filtered.terms.is_empty()
        && i128::from(offset + limit) * i128::from(all_count) < i128::from(total) * i128::from(total)
        && sort_indexed(conn, &t.name, &sort_field)?;
    let sql = format!(
        "SELECT {} FROM {}{} ORDER BY {} {dir}, {} LIMIT {limit} OFFSET {offset}",
        select.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
        quote(&t.name),
        if walk { filtered.sql_unindexed() } else { filtered.sql() },
        quote(&sort_field),
        order_pk.join(", "),
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(&filtered.args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let values: Vec<Value> = (0..select.len()).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
        let n = pk_cols.len();
        let id = key_text(&values[..n]);
        let title = plain(&values[n]);
        let mut cells = Vec::new();
        for (c, v) in meta.list_columns.iter().zip(&values[n + 1..]) {
            cells.push(meta.cell(conn, schema, c, v.clone())?);
        }
        out.push(ListRowView { id, title, cells });
    }
    let columns = meta
        .list_columns
        .iter()
        .map(|c| {
            let f = meta.field(c);
            ColumnView {
                field: c.clone(),
                label: f.map(|f| f.label.clone()).unwrap_or_else(|| c.clone()),
                kind: f.map(|f| f.kind).unwrap_or(FieldKind::Text),
            }
        })
        .collect();
    let date_fields = meta
        .list_columns
        .iter()
        .filter_map(|c| meta.field(c))
        .filter(|f| f.kind == FieldKind::Date)
        .map(|f| ColumnView { field: f.name.clone(), label: f.label.clone(), kind: f.kind })
        .collect();
    Ok(ListViewModel {
        title: meta.label_plural.clone(),
        columns,
        rows: out,
        total,
        mine_count,
        all_count,
        facets,
        date_fields,
    })
}

/// A list's counts: records assigned to the user (within the search), each facet's options (in the
/// options' order, within the scope), the records the filters leave, and all of them.
struct Counts {
    mine: Option<i64>,
    facets: Vec<Vec<i64>>,
    total: i64,
    /// Every record of the object type.
    all: i64,
}

/// "Assigned to me" in a list's query: the assignee field, the signed-in user (empty: nobody, and
/// no "Assigned to me" count), and whether the list is narrowed to the user's records.
#[derive(Clone, Copy)]
struct Mine<'a> {
    field: &'a str,
    user: &'a str,
    on: bool,
}

impl Mine<'_> {
    /// The condition "the assignee is the user", with its argument.
    fn term(&self) -> (String, Value) {
        (format!("{} = ?", quote(self.field)), Value::from(self.user))
    }

    /// Whether the list shows how many records are the user's.
    fn counted(&self) -> bool {
        !self.user.is_empty()
    }
}

/// The counts of a list with no search, from its object type's tally (no row read): "All",
/// "Assigned to me", and the facets (among the user's records when the list is narrowed to them:
/// the pairs [assignee, facet]). Only a filtered total is counted (through the filters' index).
fn counts_from_tally(
    conn: &Connection,
    meta: &ObjectMeta,
    tally: &Tally,
    mine: Option<Mine>,
    facet_fields: &[&FieldMeta],
    filters: &Where,
) -> Result<Counts> {
    let all = tally.get("", "");
    let mine_count = mine.filter(Mine::counted).map(|m| tally.get(m.field, m.user));
    let narrowed = mine.filter(|m| m.on);
    let facets = facet_fields
        .iter()
        .map(|f| {
            f.options
                .iter()
                .map(|o| match narrowed {
                    // A facet of the assignee field itself: only the user's value is among theirs.
                    Some(m) if f.name == m.field => {
                        if o.value == m.user {
                            tally.get(m.field, m.user)
                        } else {
                            0
                        }
                    }
                    Some(m) => tally.get(
                        &tally_col(&[m.field.to_owned(), f.name.clone()]),
                        &format!("{}\u{1f}{}", m.user, o.value),
                    ),
                    None => tally.get(&f.name, &o.value),
                })
                .collect()
        })
        .collect();
    let mut scope = Where::default();
    if let Some(m) = narrowed {
        let (c, v) = m.term();
        scope.push_column(c, [v]);
    }
    let total = match (filters.terms.is_empty(), narrowed) {
        (true, None) => all,
        (true, Some(m)) => tally.get(m.field, m.user),
        (false, _) => {
            scope.extend(filters.clone());
            count_where(conn, &meta.table, &scope)?
        }
    };
    Ok(Counts { mine: mine_count, facets, total, all })
}

/// How many rows of `t` meet `w`.
fn count_where(conn: &Connection, t: &Table, w: &Where) -> Result<i64> {
    Ok(conn
        .prepare_cached(&format!("SELECT count(*) FROM {}{}", quote(&t.name), w.sql()))?
        .query_row(params_from_iter(&w.args), |r| r.get(0))?)
}

/// The counts of a list with no search and no "assigned to me" before its object type's tally is
/// made: each from its column's index alone.
fn counts_of_all(
    conn: &Connection,
    meta: &ObjectMeta,
    mine: Option<Mine>,
    facet_fields: &[&FieldMeta],
    filters: &Where,
) -> Result<Counts> {
    let t = &meta.table;
    let count = |w: &Where| count_where(conn, t, w);
    let mine = match mine.filter(Mine::counted) {
        Some(m) => {
            let mut w = Where::default();
            let (c, v) = m.term();
            w.push(c, [v]);
            Some(count(&w)?)
        }
        None => None,
    };
    // An indexed column: a count per option, each a range of its index (faster than grouping the
    // whole index: ~2.6 against ~3.8 ms for 100,000 rows natively); without its index yet (built at
    // an idle turn after a first sync) one grouped scan, not a scan per option.
    let mut facets = Vec::with_capacity(facet_fields.len());
    for f in facet_fields {
        if sort_indexed(conn, &t.name, &f.name)? {
            let mut counts = Vec::with_capacity(f.options.len());
            for o in &f.options {
                let mut w = Where::default();
                w.push(format!("{} = ?", quote(&f.name)), [Value::Text(o.value.clone())]);
                counts.push(count(&w)?);
            }
            facets.push(counts);
            continue;
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {col}, count(*) FROM {} GROUP BY {col}",
            quote(&t.name),
            col = quote(&f.name)
        ))?;
        let counts: std::collections::HashMap<String, i64> = stmt
            .query_map([], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        facets.push(f.options.iter().map(|o| counts.get(&o.value).copied().unwrap_or(0)).collect());
    }
    Ok(Counts { mine, facets, total: count(filters)?, all: t.count(conn, &[])? })
}

/// The counts of a list narrowed by a search or to the user's records, in one read of the rows in
/// scope (each reached through the search's rowids or the assignee's index, once: a count of each
/// kind on its own read them all again). The base is the search when there is one (the assignee
/// count is within it, and "assigned to me" a condition of the facets and the total), else the
/// user's records.
fn counts_in_scope(
    conn: &Connection,
    meta: &ObjectMeta,
    tally: Option<&Tally>,
    search: &Where,
    mine: Option<Mine>,
    facet_fields: &[&FieldMeta],
    filters: &Where,
) -> Result<Counts> {
    let mut base = search.clone();
    // "Assigned to me" as a condition of the facets and the total, when the base is the search.
    let mut within: Option<(String, Value)> = None;
    let mut exprs: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut mine_expr = None;
    if let Some(m) = mine {
        let ((c, v), on, counted) = (m.term(), m.on, m.counted());
        if search.terms.is_empty() {
            // Only "assigned to me": its rows are the base; the assignee count is theirs.
            base.push_column(c, [v]);
            mine_expr = counted.then(|| "count(*)".to_owned());
        } else {
            if counted {
                mine_expr = Some(format!("count(CASE WHEN {c} THEN 1 END)"));
                args.push(v.clone());
            }
            if on {
                within = Some((c, v));
            }
        }
    }
    let when = |extra: &[String]| -> String {
        let all: Vec<&String> = within.iter().map(|(c, _)| c).chain(extra).collect();
        if all.is_empty() {
            "count(*)".to_owned()
        } else {
            format!(
                "count(CASE WHEN {} THEN 1 END)",
                all.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" AND ")
            )
        }
    };
    let counts_mine = mine_expr.is_some();
    exprs.extend(mine_expr);
    for f in facet_fields {
        for o in &f.options {
            exprs.push(when(&[format!("{} = ?", quote(&f.name))]));
            args.extend(within.iter().map(|(_, v)| v.clone()));
            args.push(Value::Text(o.value.clone()));
        }
    }
    exprs.push(when(&filters.terms));
    args.extend(within.iter().map(|(_, v)| v.clone()));
    args.extend(filters.args.iter().cloned());
    args.extend(base.args.iter().cloned());
    let t = &meta.table;
    let all = match tally {
        Some(tally) => tally.get("", ""),
        None => t.count(conn, &[])?,
    };
    let sql = format!("SELECT {} FROM {}{}", exprs.join(", "), quote(&t.name), base.sql());
    conn.query_row(&sql, params_from_iter(&args), |r| {
        let mut i = 0;
        let mut next = || -> rusqlite::Result<i64> {
            i += 1;
            r.get(i - 1)
        };
        let mine = if counts_mine { Some(next()?) } else { None };
        let facets = facet_fields
            .iter()
            .map(|f| f.options.iter().map(|_| next()).collect::<rusqlite::Result<Vec<_>>>())
            .collect::<rusqlite::Result<_>>()?;
        Ok(Counts { mine, facets, total: next()?, all })
    })
    .map_err(Into::into)
}

/// The conditions of a query, with their arguments in order (`?` placeholders).
#[derive(Debug, Clone, Default)]
struct Where {
    terms: Vec<String>,
    /// Each term as `terms` has it, or written so that no index serves it (`+col = ?`).
    unindexed: Vec<String>,
    args: Vec<Value>,
}

impl Where {
    fn push(&mut self, term: String, args: impl IntoIterator<Item = Value>) {
        self.unindexed.push(term.clone());
        self.terms.push(term);
        self.args.extend(args);
    }

    /// A term `"col" op ?` on one column.
    fn push_column(&mut self, term: String, args: impl IntoIterator<Item = Value>) {
        self.unindexed.push(format!("+{term}"));
        self.terms.push(term);
        self.args.extend(args);
    }

    /// Adds `other`'s terms after these.
    fn extend(&mut self, other: Where) {
        self.terms.extend(other.terms);
        self.unindexed.extend(other.unindexed);
        self.args.extend(other.args);
    }

    /// ` WHERE a AND b`, or nothing.
    fn sql(&self) -> String {
        Self::joined(&self.terms)
    }

    /// As [`Where::sql`], with the column terms out of the planner's reach for their indexes.
    fn sql_unindexed(&self) -> String {
        Self::joined(&self.unindexed)
    }

    fn joined(terms: &[String]) -> String {
        if terms.is_empty() { String::new() } else { format!(" WHERE {}", terms.join(" AND ")) }
    }
}

/// Whether an index of `table` starts with `column` (so a list sorted by it can read in order).
fn sort_indexed(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) AS l, pragma_index_info(l.name) AS i \
             WHERE i.seqno = 0 AND i.name = ?2)",
        )?
        .query_row([table, column], |r| r.get(0))?)
}

/// Creates the indexes the lists of every object type need on the device, derived from the metadata
/// ([`missing_indexes`]), each in its own transaction, and fills the full-text ones to the end.
/// Idempotent and cheap when they exist. Returns how many were created. A shell that must stay
/// responsive calls [`make_indexes`], then [`index_step`] at its idle turns.
pub fn ensure_indexes(conn: &Connection, schema: &Schema) -> Result<usize> {
    let missing = missing_indexes(conn, schema)?.len();
    make_indexes(conn, schema)?;
    while index_step(conn, schema, FILL_ROWS)? {}
    Ok(missing)
}

/// What a first page needs, at once: of the indexes [`missing_indexes`] lists, the lists' default
/// sorts built, and the full-text indexes made empty (a list scans with `LIKE` until its index is
/// filled). The others (the assignee's and the choice columns': lists count and filter without them,
/// scanning) are left to [`index_step`]. Each in its own transaction. Returns how many were made.
pub fn make_indexes(conn: &Connection, schema: &Schema) -> Result<usize> {
    let jobs = missing_indexes(conn, schema)?;
    let now: Vec<&IndexJob> = jobs
        .iter()
        .filter(|j| matches!(j, IndexJob::List { first: true, .. } | IndexJob::Search { .. }))
        .collect();
    for job in &now {
        job.build(conn)?;
    }
    Ok(now.len())
}

/// One step of the index work [`make_indexes`] left: the next list index still missing, or up to
/// `rows` rows of a full-text index being filled ([`fill_search_step`]). Returns whether any work may
/// be left.
pub fn index_step(conn: &Connection, schema: &Schema, rows: usize) -> Result<bool> {
    if let Some(job) = missing_indexes(conn, schema)?
        .into_iter()
        .find(|j| matches!(j, IndexJob::List { .. } | IndexJob::Tally { .. }))
    {
        job.build(conn)?;
        return Ok(true);
    }
    fill_search_step(conn, rows)
}

/// Whether index work is left for [`index_step`].
pub fn indexes_pending(conn: &Connection, schema: &Schema) -> Result<bool> {
    Ok(search_fill_pending(conn)?
        || missing_indexes(conn, schema)?
            .iter()
            .any(|j| matches!(j, IndexJob::List { .. } | IndexJob::Tally { .. })))
}

/// Rows a step of a full-text fill indexes (~30 ms natively for the demo's jobs, a few times that in
/// a browser: what a call of the app's may wait behind; each step writes one segment, which FTS5
/// merges as they add up).
pub const FILL_ROWS: usize = 10_000;

/// Indexes up to `rows` more rows of a full-text index still being filled (the first one listed in
/// `moat_search_fill`), in one transaction. Returns whether any index still has rows to take.
pub fn fill_search_step(conn: &Connection, rows: usize) -> Result<bool> {
    let next: Option<(String, String, String, i64)> = conn
        .prepare_cached("SELECT name, source, fields, upto FROM moat_search_fill ORDER BY name LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((name, source, fields, upto)) = next else { return Ok(false) };
    let fields: Vec<String> = serde_json::from_str(&fields).map_err(|e| Error::Malformed(e.to_string()))?;
    let list = fields.iter().map(|f| quote(f)).collect::<Vec<_>>().join(", ");
    // Named with their table: a double-quoted name that is no column would be read as a string.
    let values =
        fields.iter().map(|f| format!("{}.{}", quote(&source), quote(f))).collect::<Vec<_>>().join(", ");
    let limit = i64::try_from(rows).unwrap_or(i64::MAX);
    conn.execute_batch("SAVEPOINT moat_fill")?;
    let step = (|| -> Result<()> {
        // The last rowid of this step: the triggers keep every row up to it from here on.
        let (last, taken): (Option<i64>, i64) = conn.query_row(
            &format!(
                "SELECT max(rowid), count(*) FROM (SELECT rowid FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
                quote(&source)
            ),
            (upto, limit),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some(last) = last {
            conn.execute(
                &format!(
                    "INSERT INTO {} (rowid, {list}) SELECT rowid, {values} FROM {} WHERE rowid > ?1 AND rowid <= ?2",
                    quote(&name),
                    quote(&source)
                ),
                (upto, last),
            )?;
        }
        if taken < limit {
            conn.execute("DELETE FROM moat_search_fill WHERE name = ?1", [&name])?;
        } else {
            conn.execute("UPDATE moat_search_fill SET upto = ?2 WHERE name = ?1", (&name, last))?;
        }
        Ok(())
    })();
    match step {
        Ok(()) => conn.execute_batch("RELEASE moat_fill")?,
        Err(e) => {
            conn.execute_batch("ROLLBACK TO moat_fill; RELEASE moat_fill")?;
            return Err(e);
        }
    }
    search_fill_pending(conn)
}

/// Whether a full-text index is still being filled.
pub fn search_fill_pending(conn: &Connection) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM moat_search_fill)")?.query_row([], |r| r.get(0))?)
}

/// One index the metadata asks for that the device does not have yet (see [`missing_indexes`]).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexJob {
    /// A list index (`CREATE INDEX`).
    List {
        /// The index's name (`moat_ix_<table>_<columns>`).
        name: String,
        /// The list's default sort (with the key): its first page reads it, so it is made first.
        first: bool,
        /// Its table.
        table: String,
        /// Its columns, in order.
        columns: Vec<String>,
    },
    /// An object type's tally (`moat_tally`): its record count, the count of each value of its
    /// facet and assignee fields and of each pair [assignee, facet], filled at once and kept by
    /// triggers; made again when the fields change.
    Tally {
        /// The object type.
        object_type: String,
        /// Its table.
        table: String,
        /// What it counts by value: fields, and pairs of fields (see `tally_keys`).
        keys: Vec<Vec<String>>,
    },
    /// An object type's full-text index, made (again) with its triggers, empty: filled by
    /// [`fill_search_step`].
    Search {
        /// The object type.
        object_type: String,
        /// Its table.
        table: String,
        /// Its search fields.
        fields: Vec<String>,
    },
}

impl IndexJob {
    /// Makes the index, in one transaction: a device that stops halfway has none (and makes it
    /// again), never a part of one.
    pub fn build(&self, conn: &Connection) -> Result<()> {
        conn.execute_batch("SAVEPOINT moat_index")?;
        let done = match self {
            IndexJob::List { name, table, columns, .. } => {
                let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                conn.execute_batch(&format!(
                    "CREATE INDEX {} ON {} ({})",
                    quote(name),
                    quote(table),
                    list.join(", ")
                ))
                .map_err(Into::into)
            }
            IndexJob::Tally { object_type, table, keys } => build_tally(conn, object_type, table, keys),
            IndexJob::Search { object_type, table, fields } => {
                build_search_index(conn, object_type, table, fields)
            }
        };
        match done {
            Ok(()) => conn.execute_batch("RELEASE moat_index")?,
            Err(e) => {
                conn.execute_batch("ROLLBACK TO moat_index; RELEASE moat_index")?;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The indexes the lists of every object type need on the device, derived from the metadata, that
/// it does not have yet: its default sort (with the key, so a page is read in order), its assignee
/// (`mine`) field with the sort (Assigned to me), and each choice list column (filters and their
/// counts); then each object type's full-text index of its search fields (FTS5, trigram), made
/// again when the fields change. The list indexes come first (they are quick, and the first page
/// uses them); an index the metadata no longer asks for stays until its table goes.
pub fn missing_indexes(conn: &Connection, schema: &Schema) -> Result<Vec<IndexJob>> {
    if schema.table("object_metadata").is_err() {
        return Ok(Vec::new());
    }
    let types: Vec<String> = conn
        .prepare("SELECT DISTINCT object_type FROM object_metadata")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let (mut lists, mut tallies, mut searches) = (Vec::new(), Vec::new(), Vec::new());
    for ot in types {
        // Metadata this client cannot read is reported where it is drawn, not here.
        let Ok(meta) = object_meta(conn, schema, &ot) else { continue };
        let t = &meta.table;
        let pk: Vec<&str> = t.pk.iter().map(|&i| t.columns[i].name.as_str()).collect();
        let sort =
            meta.default_sort.as_ref().map(|(f, _)| f.clone()).unwrap_or_else(|| meta.title_field.clone());
        let mut wanted: Vec<Vec<&str>> = vec![[vec![sort.as_str()], pk.clone()].concat()];
        for f in meta.fields.iter().filter(|f| f.mine) {
            wanted.push([vec![f.name.as_str(), sort.as_str()], pk.clone()].concat());
        }
        for c in &meta.list_columns {
            if meta.field(c).is_some_and(|f| f.kind == FieldKind::Choice) {
                wanted.push(vec![c.as_str()]);
            }
        }
        // A list sorts by any of its columns (its header): one index starting with each.
        for c in &meta.list_columns {
            if t.column_index(c).is_some() && !wanted.iter().any(|w| w[0] == c.as_str()) {
                wanted.push([vec![c.as_str()], pk.clone()].concat());
            }
        }
        let keys = tally_keys(&meta);
        if !has_tally(conn, &ot, &t.name, &keys)? {
            tallies.push(IndexJob::Tally { object_type: ot.clone(), table: t.name.clone(), keys });
        }
        if !meta.search_fields.is_empty() && !has_search_index(conn, &ot, &t.name, &meta.search_fields)? {
            searches.push(IndexJob::Search {
                object_type: ot.clone(),
                table: t.name.clone(),
                fields: meta.search_fields.clone(),
            });
        }
        for (i, cols) in wanted.into_iter().enumerate() {
            let name = format!("moat_ix_{}_{}", t.name, cols.join("_"));
            let exists: bool = conn
                .prepare_cached("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1")?
                .query_row([&name], |r| r.get::<_, i64>(0))?
                > 0;
            if !exists && !lists.iter().any(|j| matches!(j, IndexJob::List { name: n, .. } if *n == name)) {
                lists.push(IndexJob::List {
                    name,
                    first: i == 0,
                    table: t.name.clone(),
                    columns: cols.iter().map(|c| (*c).to_owned()).collect(),
                });
            }
        }
    }
    lists.extend(tallies);
    lists.extend(searches);
    Ok(lists)
}

/// The full-text index of an object type's search fields: an FTS5 table with the trigram tokenizer
/// (so a search still finds any part of a word, case-insensitively, as `LIKE '%…%'` did), over the
/// projection's rows (external content), kept in step by triggers. No per-row sizes
/// (`columnsize=0`: only ranking reads them, and a list sorts by its own fields; ~8% less time to
/// build). Its name and the columns it indexes, as its DDL.
fn search_index(object_type: &str, table: &str, fields: &[String]) -> (String, String) {
    let name = format!("moat_fts_{object_type}");
    let cols: Vec<String> = fields.iter().map(|f| quote(f)).collect();
    let ddl = format!(
        "CREATE VIRTUAL TABLE {} USING fts5({}, content={}, content_rowid='rowid', tokenize='trigram', columnsize=0)",
        quote(&name),
        cols.join(", "),
        quote(table).replace('"', "'")
    );
    (name, ddl)
}

/// Whether `object_type`'s full-text index is there as wanted (its table as the fields ask, its
/// three triggers).
fn has_search_index(conn: &Connection, object_type: &str, table: &str, fields: &[String]) -> Result<bool> {
    let (name, ddl) = search_index(object_type, table, fields);
    let current = table_sql(conn, &name)?;
    let triggers: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?1 ESCAPE '\\'",
        [format!("{}\\_%", name.replace('_', "\\_"))],
        |r| r.get(0),
    )?;
    Ok(current.as_deref() == Some(ddl.as_str()) && triggers == 3)
}

/// Makes the full-text index of `object_type`'s search fields (dropping one made for other fields),
/// empty: the virtual table, its row in `moat_search_fill` (nothing indexed yet) and three triggers
/// that keep the rows it holds in step (each acts on a row only up to the fill's `upto`; a row past
/// it is indexed by a later step, as it is then). [`fill_search_step`] then fills it, rows in rowid
/// order. Each step buffers up to 8 MiB of terms before it writes a segment (FTS5's `hashsize`;
/// 1 MiB by default): fewer segments merged again and again (~15% less time natively, more in a
/// browser, where each merge's pages go through OPFS).
fn build_search_index(conn: &Connection, object_type: &str, table: &str, fields: &[String]) -> Result<()> {
    let (name, ddl) = search_index(object_type, table, fields);
    drop_search_index(conn, &name)?;
    let cols: Vec<String> = fields.iter().map(|f| quote(f)).collect();
    let of = |row: &str| fields.iter().map(|f| format!("{row}.{}", quote(f))).collect::<Vec<_>>().join(", ");
    let (fts, list) = (quote(&name), cols.join(", "));
    let upto = format!(
        "coalesce((SELECT upto FROM moat_search_fill WHERE name = '{}'), 9223372036854775807)",
        name.replace('\'', "''")
    );
    // The fields must be columns of the table: checked here (reading none), not by the first write's
    // trigger, which would refuse it.
    // (Named with their table: a double-quoted name that is no column would be read as a string.)
    conn.prepare(&format!("SELECT {} FROM {} WHERE 0", of(&quote(table)), quote(table)))?;
    conn.execute(
        "INSERT INTO moat_search_fill (name, source, fields, upto) VALUES (?1, ?2, ?3, 0)",
        (&name, table, serde_json::to_string(fields).expect("names serialise")),
    )?;
    conn.execute_batch(&format!(
        "{ddl};
         CREATE TRIGGER {ai} AFTER INSERT ON {t} BEGIN
           INSERT INTO {fts} (rowid, {list}) SELECT new.rowid, {new} WHERE new.rowid <= {upto};
         END;
         CREATE TRIGGER {ad} AFTER DELETE ON {t} BEGIN
           INSERT INTO {fts} ({fts}, rowid, {list}) SELECT 'delete', old.rowid, {old} WHERE old.rowid <= {upto};
         END;
         CREATE TRIGGER {au} AFTER UPDATE ON {t} BEGIN
           INSERT INTO {fts} ({fts}, rowid, {list}) SELECT 'delete', old.rowid, {old} WHERE old.rowid <= {upto};
           INSERT INTO {fts} (rowid, {list}) SELECT new.rowid, {new} WHERE new.rowid <= {upto};
         END;
         INSERT INTO {fts} ({fts}, rank) VALUES ('hashsize', 8388608);",
        t = quote(table),
        ai = quote(&format!("{name}_ai")),
        ad = quote(&format!("{name}_ad")),
        au = quote(&format!("{name}_au")),
        new = of("new"),
        old = of("old"),
    ))?;
    Ok(())
}

/// The SQL a table (a virtual table too) was created with, if it exists.
fn table_sql(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Whether the full-text index `name` does not hold every row yet.
fn filling(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM moat_search_fill WHERE name = ?1)")?
        .query_row([name], |r| r.get(0))?)
}

fn drop_search_index(conn: &Connection, name: &str) -> Result<()> {
    for suffix in ["_ai", "_ad", "_au"] {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&format!("{name}{suffix}"))))?;
    }
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(name)))?;
    conn.execute("DELETE FROM moat_search_fill WHERE name = ?1", [name])?;
    Ok(())
}

/// Drops what [`ensure_indexes`] derives from the metadata (list indexes, search indexes): before a
/// schema migration (one naming a column would stop the column from being dropped), and before a
/// snapshot's end rewrites the projection (they are made again after, in one pass each).
pub(crate) fn drop_derived(conn: &Connection) -> Result<()> {
    let names: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, name FROM sqlite_master WHERE (type = 'index' AND name LIKE 'moat\\_ix\\_%' ESCAPE '\\') \
             OR (type = 'table' AND name LIKE 'moat\\_fts\\_%' ESCAPE '\\' AND sql LIKE 'CREATE VIRTUAL%')",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name) in names {
        if kind == "index" {
            conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", quote(&name)))?;
        } else {
            drop_search_index(conn, &name)?;
        }
    }
    let tallies: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'moat\\_tally\\_%' ESCAPE '\\'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in tallies {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&name)))?;
    }
    conn.execute_batch("DELETE FROM moat_tally")?;
    Ok(())
}

/// What an object type's tally counts by value: each facet (choice list column) and its assignee
/// (`mine`) field, those its table has, each once; then each facet's values among each assignee's
/// records (the pair [assignee, facet]: "Assigned to me"'s facets).
fn tally_keys(meta: &ObjectMeta) -> Vec<Vec<String>> {
    let mut singles: Vec<String> = Vec::new();
    let facets =
        meta.list_columns.iter().filter(|c| meta.field(c).is_some_and(|f| f.kind == FieldKind::Choice));
    let mine: Vec<&String> = meta.fields.iter().filter(|f| f.mine).map(|f| &f.name).collect();
    for c in facets.clone().chain(mine.iter().copied()) {
        if meta.table.column_index(c).is_some() && !singles.contains(c) {
            singles.push(c.clone());
        }
    }
    let mut keys: Vec<Vec<String>> = singles.iter().map(|c| vec![c.clone()]).collect();
    for m in mine.iter().filter(|m| singles.contains(m)) {
        for c in facets.clone().filter(|c| singles.contains(c) && c != m) {
            let pair = vec![(*m).clone(), c.clone()];
            if !keys.contains(&pair) {
                keys.push(pair);
            }
        }
    }
    keys
}

/// The name a tally key's counts are kept under (`moat_tally.col`): its fields, joined by the unit
/// separator (U+001F), as is a pair's value.
fn tally_col(key: &[String]) -> String {
    key.join("\u{1f}")
}

/// The triggers that keep `object_type`'s tally in step with its table (`moat_tally`): names
/// and SQL, as `sqlite_master` keeps it. Each row counts once in the record count and once under
/// each key's value (a row with a NULL in the key is not counted under it).
fn tally_triggers(object_type: &str, table: &str, keys: &[Vec<String>]) -> Vec<(String, String)> {
    let lit = |s: &str| {
        // The separator as `char(31)`: no control character in the schema's text.
        let parts: Vec<String> = s.split('\u{1f}').map(|p| format!("'{}'", p.replace('\'', "''"))).collect();
        parts.join(" || char(31) || ")
    };
    let (kind, t) = (lit(object_type), quote(table));
    let val = |row: &str, key: &[String]| {
        key.iter().map(|c| format!("{row}.{}", quote(c))).collect::<Vec<_>>().join(" || char(31) || ")
    };
    let present = |row: &str, key: &[String]| {
        key.iter().map(|c| format!("{row}.{} IS NOT NULL", quote(c))).collect::<Vec<_>>().join(" AND ")
    };
    let changed = |key: &[String]| {
        let any = key.iter().map(|c| format!("old.{0} IS NOT new.{0}", quote(c))).collect::<Vec<_>>();
        format!(" AND ({})", any.join(" OR "))
    };
    let add = |row: &str, key: &[String], also: &str| {
        format!(
            "INSERT INTO moat_tally (kind, col, val, n) SELECT {kind}, {}, {}, 1 WHERE {}{also} \
             ON CONFLICT DO UPDATE SET n = n + 1;",
            lit(&tally_col(key)),
            val(row, key),
            present(row, key)
        )
    };
    let take = |row: &str, key: &[String], also: &str| {
        format!(
            "UPDATE moat_tally SET n = n - 1 WHERE kind = {kind} AND col = {} AND val = {}{also};",
            lit(&tally_col(key)),
            val(row, key)
        )
    };
    let rows = |d: &str| {
        format!(
            "INSERT INTO moat_tally (kind, col, val, n) VALUES ({kind}, '', '', {d}) ON CONFLICT DO UPDATE SET n = n + {d};"
        )
    };
    let name = |suffix: &str| format!("moat_tally_{object_type}_{suffix}");
    let body = |lines: Vec<String>| lines.iter().map(|l| format!("\n  {l}")).collect::<String>();
    let ai = [vec![rows("1")], keys.iter().map(|k| add("new", k, "")).collect()].concat();
    let ad = [vec![rows("-1")], keys.iter().map(|k| take("old", k, "")).collect()].concat();
    let au: Vec<String> =
        keys.iter().flat_map(|k| [take("old", k, &changed(k)), add("new", k, &changed(k))]).collect();
    let of = keys.iter().filter(|k| k.len() == 1).map(|k| quote(&k[0])).collect::<Vec<_>>().join(", ");
    let trigger = |suffix: &str, event: String, lines: Vec<String>| {
        (
            name(suffix),
            format!("CREATE TRIGGER {} AFTER {event} ON {t} BEGIN{}\nEND", quote(&name(suffix)), body(lines)),
        )
    };
    let mut out = vec![trigger("ai", "INSERT".into(), ai), trigger("ad", "DELETE".into(), ad)];
    // An update changes a count only through a counted field.
    if !keys.is_empty() {
        out.push(trigger("au", format!("UPDATE OF {of}"), au));
    }
    out
}

/// Whether `object_type`'s tally is there as its fields want it (its triggers as they would be made
/// now; one left from more counted fields is told apart by the insert trigger's SQL).
fn has_tally(conn: &Connection, object_type: &str, table: &str, keys: &[Vec<String>]) -> Result<bool> {
    for (name, sql) in tally_triggers(object_type, table, keys) {
        let current: Option<String> = conn
            .prepare_cached("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?
            .query_row([&name], |r| r.get(0))
            .optional()?;
        if current.as_deref() != Some(sql.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes `object_type`'s tally (again): its triggers, and its counts from one grouped read of each
/// key (an index's, when its field has one).
fn build_tally(conn: &Connection, object_type: &str, table: &str, keys: &[Vec<String>]) -> Result<()> {
    for suffix in ["ai", "ad", "au"] {
        conn.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {}",
            quote(&format!("moat_tally_{object_type}_{suffix}"))
        ))?;
    }
    conn.execute("DELETE FROM moat_tally WHERE kind = ?1", [object_type])?;
    for (_, sql) in tally_triggers(object_type, table, keys) {
        conn.execute_batch(&sql)?;
    }
    conn.execute(
        &format!(
            "INSERT INTO moat_tally (kind, col, val, n) SELECT ?1, '', '', count(*) FROM {}",
            quote(table)
        ),
        [object_type],
    )?;
    for key in keys {
        let cols: Vec<String> = key.iter().map(|c| quote(c)).collect();
        conn.execute(
            &format!(
                "INSERT INTO moat_tally (kind, col, val, n) SELECT ?1, ?2, {}, count(*) FROM {} \
                 WHERE {} GROUP BY 3",
                cols.join(" || char(31) || "),
                quote(table),
                cols.iter().map(|c| format!("{c} IS NOT NULL")).collect::<Vec<_>>().join(" AND ")
            ),
            (object_type, tally_col(key)),
        )?;
    }
    Ok(())
}

/// `object_type`'s tally, by field and value as text (the record count under two empty texts), when
/// it is there as the metadata wants it; else none (the caller counts).
fn tally_of(conn: &Connection, object_type: &str, meta: &ObjectMeta) -> Result<Option<Tally>> {
    if !has_tally(conn, object_type, &meta.table.name, &tally_keys(meta))? {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached("SELECT col, val, n FROM moat_tally WHERE kind = ?1")?;
    let counts = stmt
        .query_map([object_type], |r| Ok(((r.get(0)?, plain(&r.get::<_, Value>(1)?)), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Tally(counts)))
}

/// An object type's tally, read (see [`tally_of`]).
struct Tally(std::collections::HashMap<(String, String), i64>);

impl Tally {
    /// How many records hold `value` in `column` (the empty column: how many there are).
    fn get(&self, column: &str, value: &str) -> i64 {
        self.0.get(&(column.to_owned(), value.to_owned())).copied().unwrap_or(0)
    }
}

/// The condition that finds `text` in the search fields through the full-text index, when there is
/// one as the metadata wants it, holding every row, and the text is long enough for trigrams (3
/// characters); else none (the caller scans with `LIKE`).
fn search_condition(
    conn: &Connection,
    object_type: &str,
    meta: &ObjectMeta,
    text: &str,
) -> Result<Option<(String, Value)>> {
    if text.chars().count() < 3 {
        return Ok(None);
    }
    let (name, ddl) = search_index(object_type, &meta.table.name, &meta.search_fields);
    if table_sql(conn, &name)?.as_deref() != Some(ddl.as_str()) || filling(conn, &name)? {
        return Ok(None);
    }
    // One phrase: the text as typed, found anywhere in a field (a quote is doubled inside it). The
    // index is asked once; the page, its count and its facets then read the matching rows by rowid.
    // A text a quarter of the rows hold is found faster by scanning than by reading that many rowids
    // out of the index: past that many, the index is left (the largest rowid stands for the row
    // count; counting would cost a scan).
    let phrase = format!("\"{}\"", text.replace('"', "\"\""));
    let rows: i64 =
        conn.query_row(&format!("SELECT ifnull(max(rowid), 0) FROM {}", quote(&meta.table.name)), [], |r| {
            r.get(0)
        })?;
    let most = rows / 4 + 1;
    let mut stmt =
        conn.prepare(&format!("SELECT rowid FROM {0} WHERE {0} MATCH ?1 LIMIT ?2", quote(&name)))?;
    let rowids: Vec<i64> = stmt
        .query_map(rusqlite::params![phrase, most + 1], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rowids.len() as i64 > most {
        return Ok(None);
    }
    let list = rowids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    Ok(Some(("rowid IN (SELECT value FROM json_each(?))".to_owned(), Value::Text(format!("[{list}]")))))
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
) -> Result<DetailViewModel> {
    let meta = object_meta(conn, schema, object_type)?;
    let rights = rights(conn)?;
    let t = &meta.table;
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let row = t
        .read_columns(conn, pk, &names)?
        .ok_or_else(|| Error::NotFound(format!("this {} (it may have been deleted)", meta.label)))?;
    let value_of = |name: &str| t.column_index(name).map(|i| row[i].clone());
    let pending = records::pending_columns(conn, schema, &t.name, pk)?;
    let mut sections = Vec::new();
    for s in layout(conn, object_type, role)? {
        let mut fields = Vec::new();
        for lf in s.fields {
            // A field this device's schema lacks (a migration arriving) is left out until it is here.
            let Some(value) = value_of(&lf.field) else { continue };
            let mut view = match meta.field(&lf.field) {
                Some(f) => records::field_view(conn, schema, &meta, f, value)?,
                // A column the metadata does not describe: shown as the layout says, never edited.
                None => {
                    let mut v = records::field_view(
                        conn,
                        schema,
                        &meta,
                        &records::bare_field(&lf.field, lf.widget),
                        value,
                    )?;
                    v.read_only = true;
                    v.problem = None;
                    v.line_items = None;
                    v
                }
            };
            view.read_only |= lf.read_only
                || view.kind == FieldKind::Unknown
                || rights.column_read_only(&t.name, &lf.field);
            view.widget = lf.widget;
            view.pending = pending.contains(&lf.field);
            if let Some(label) = lf.label {
                view.label = label;
            }
            fields.push(view);
        }
        sections.push(SectionView { id: s.id, label: s.label, columns: s.columns, fields });
    }
    let title = value_of(&meta.title_field).map(|v| plain(&v)).unwrap_or_default();
    Ok(DetailViewModel { object_label: meta.label.clone(), title, sections })
}

/// A key as the UI names a record (a list row's `id`, a conflict's `record_id`): the key's value for a
/// one-column key, the JSON array of its values (canonical JSON, see `value.rs`) for a key of several
/// columns. [`record_key`] reads it back with the table's column types.
fn key_text(values: &[Value]) -> String {
    match values {
        [one] => plain(one),
        many => serde_json::to_string(many).expect("values serialise"),
    }
}

/// The metadata of the object type whose table is `table`, if one names it.
fn meta_of_table(conn: &Connection, schema: &Schema, table: &str) -> Result<Option<ObjectMeta>> {
    object_type_of(conn, table)?.map(|ot| object_meta(conn, schema, &ot)).transpose()
}

/// A conflict as the alert shows it, in the metadata's words: the object type and the record's
/// title, each column's label, and base, theirs and mine as shown (choice labels, currency, reference
/// titles). Falls back to raw names and values where no metadata names the table or it is broken.
pub fn conflict_view(conn: &Connection, schema: &Schema, stored: StoredConflict) -> ConflictView {
    let c = stored.conflict;
    let record_id = key_text(&c.pk.0.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let meta = meta_of_table(conn, schema, &c.table).ok().flatten();
    let title = record_title(conn, meta.as_ref(), &c.pk).unwrap_or_else(|| record_id.clone());
    let field = |column: &str| meta.as_ref().and_then(|m| m.field(column));
    let shown = |column: &str, v: &Value| match field(column) {
        Some(f) => display(conn, schema, f, v).unwrap_or_else(|_| plain(v)),
        None => plain(v),
    };
    let columns = c
        .columns
        .into_iter()
        .map(|col| ConflictColumnView {
            label: field(&col.column).map(|f| f.label.clone()).unwrap_or_else(|| col.column.clone()),
            base_display: col.base.as_ref().map(|v| shown(&col.column, v)),
            theirs_display: col.theirs.as_ref().map(|v| shown(&col.column, v)),
            mine_display: shown(&col.column, &col.mine),
            mine_edit_text: match field(&col.column) {
                Some(f) => edit_text(f, &col.mine),
                None => plain(&col.mine),
            },
            base: col.base.map(Into::into),
            theirs: col.theirs.map(Into::into),
            mine: col.mine.into(),
            column: col.column,
        })
        .collect();
    ConflictView {
        id: stored.id,
        kind: c.kind,
        object_label: meta.map(|m| m.label).unwrap_or_else(|| c.table.clone()),
        table: c.table,
        record_id,
        title,
        columns,
    }
}

/// The title of the record `pk` of `meta`'s table, if it has a non-empty one on the device.
fn record_title(conn: &Connection, meta: Option<&ObjectMeta>, pk: &Fields<Value>) -> Option<String> {
    let m = meta?;
    let t = &m.table;
    let sql = format!("SELECT {} FROM {} WHERE {}", quote(&m.title_field), quote(&t.name), t.pk_where());
    let keys = t.key_values(pk).ok()?;
    let title: Value = conn.query_row(&sql, params_from_iter(keys), |r| r.get(0)).optional().ok()??;
    Some(plain(&title)).filter(|t| !t.is_empty())
}

/// The conflicts waiting for the user, as the alert shows them.
pub fn conflicts(replica: &Replica) -> Result<Vec<ConflictView>> {
    let (conn, schema) = (replica.connection(), replica.schema());
    Ok(replica.conflicts()?.into_iter().map(|c| conflict_view(conn, schema, c)).collect())
}

/// Settles a conflict: keep mine or an edit write like any edit (an edit's text is read as the
/// field reads input); take theirs sends nothing.
pub fn resolve(replica: &mut Replica, conflict_id: i64, choice: ConflictChoice) -> Result<Option<Mutation>> {
    let resolution = match choice {
        ConflictChoice::KeepMine => Resolution::KeepMine,
        ConflictChoice::TakeTheirs => Resolution::TakeTheirs,
        ConflictChoice::Edit { column, text } => {
            let stored = replica
                .conflicts()?
                .into_iter()
                .find(|c| c.id == conflict_id)
                .ok_or_else(|| Error::NotFound("this conflict (it was already resolved)".into()))?;
            let meta = meta_of_table(replica.connection(), replica.schema(), &stored.conflict.table)?;
            let value = match meta.as_ref().and_then(|m| m.field(&column)) {
                Some(f) => {
                    let v = parse_input(f, &text)?;
                    validate(f, &v)?;
                    v
                }
                None => Value::Text(text),
            };
            Resolution::Edit(Fields(vec![(column, value)]))
        }
    };
    replica.resolve(conflict_id, resolution)
}

/// The writes the server refused, oldest first, in the metadata's words: the object type, the
/// record's title, each field's label and the value that was not saved (raw names where no metadata
/// names the table).
pub fn rejected(replica: &Replica) -> Result<Vec<RejectedView>> {
    let (conn, schema) = (replica.connection(), replica.schema());
    Ok(replica
        .rejected()?
        .into_iter()
        .map(|r| {
            let first = r.mutation.diff.changes.first();
            let table = first.map(|c| c.table.clone()).unwrap_or_default();
            let meta = meta_of_table(conn, schema, &table).ok().flatten();
            let record_id = first
                .map(|c| key_text(&c.pk.0.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()))
                .unwrap_or_default();
            let title = first
                .and_then(|c| record_title(conn, meta.as_ref(), &c.pk))
                .unwrap_or_else(|| record_id.clone());
            let field = |column: &str| meta.as_ref().and_then(|m| m.field(column));
            let cols = first.map(|c| c.cols.0.as_slice()).unwrap_or_default();
            RejectedView {
                mutation_id: r.mutation.mutation_id,
                reason: r.reason,
                object_label: meta.as_ref().map(|m| m.label.clone()).unwrap_or_else(|| table.clone()),
                title,
                labels: cols
                    .iter()
                    .map(|(n, _)| field(n).map(|f| f.label.clone()).unwrap_or_else(|| n.clone()))
                    .collect(),
                values: cols
                    .iter()
                    .map(|(n, cc)| {
                        let v = cc.new.clone().unwrap_or(Value::Null);
                        match field(n) {
                            Some(f) => display(conn, schema, f, &v).unwrap_or_else(|_| plain(&v)),
                            None => plain(&v),
                        }
                    })
                    .collect(),
                columns: cols.iter().map(|(n, _)| n.clone()).collect(),
                table,
                record_id,
            }
        })
        .collect())
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
    let rights = rights(conn)?;
    if rights.table_read_only(&meta.table.name) {
        return Err(Error::Invalid(format!("{} are read-only for your role", meta.label_plural)));
    }
    for (name, v) in values.iter() {
        let f = meta
            .field(name)
            .ok_or_else(|| Error::Invalid(format!("{name} is not a field of {}", meta.label)))?;
        let lf = editable.iter().find(|l| l.field == name);
        if lf.is_none_or(|l| l.read_only) {
            return Err(Error::Invalid(format!("{} cannot be edited here", f.label)));
        }
        if rights.column_read_only(&meta.table.name, name) {
            return Err(Error::Invalid(format!("{} is read-only for your role", f.label)));
        }
        validate(f, v)?;
        check_reference(conn, &schema, f, v, &crate::diff::Diff::default())?;
    }
    replica.update(&meta.table.name, pk, values)
}

/// What an edit from the UI did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    /// Written as a local mutation (or nothing to write: the field already holds the value).
    Saved,
    /// The field changed under the user while they typed (another device's edit arrived): nothing was
    /// written, and a conflict waits for the user with what they started from (base), the value now
    /// (theirs) and what they typed (mine), exactly as if the server had found it.
    Conflict,
}

/// Edits one field from what the user typed: read as the field reads input ([`parse_input`]),
/// then checked and written as [`edit`] does. `started_from` is the value the user began editing
/// from: if the field no longer holds it (a live change arrived meanwhile), the edit is not written
/// over that change; a conflict is raised instead ([`Edited::Conflict`]).
pub fn edit_text_of(
    replica: &mut Replica,
    object_type: &str,
    pk: &Fields<Value>,
    field: &str,
    text: &str,
    role: &str,
    started_from: Option<&Value>,
) -> Result<Edited> {
    let meta = object_meta(replica.connection(), replica.schema(), object_type)?;
    let f = meta
        .field(field)
        .ok_or_else(|| Error::Invalid(format!("{field} is not a field of {}", meta.label)))?;
    let mine = parse_input(f, text)?;
    if let Some(base) = started_from {
        let now = meta
            .table
            .read_columns(replica.connection(), pk, &[field])?
            .and_then(|mut v| v.pop())
            .ok_or_else(|| Error::NotFound(format!("this {} (it may have been deleted)", meta.label)))?;
        if !now.same_as(base) && !now.same_as(&mine) {
            validate(f, &mine)?;
            let conflict = crate::apply::Conflict {
                kind: ConflictKind::Field,
                table: meta.table.name.clone(),
                pk: pk.clone(),
                columns: vec![crate::apply::ColumnConflict {
                    column: field.to_owned(),
                    base: Some(base.clone()),
                    theirs: Some(now),
                    mine,
                }],
            };
            replica.raise_conflict("local", &conflict)?;
            return Ok(Edited::Conflict);
        }
    }
    edit(replica, object_type, pk, &Fields(vec![(field.to_owned(), mine)]), role)?;
    Ok(Edited::Saved)
}

/// The key of record `id` of `table` (a list row's `id`: the key's value, or the JSON array of its
/// values for a key of several columns), in the types of the table's key columns (from the schema:
/// an `INTEGER` key is a number).
pub fn record_key(replica: &Replica, table: &str, id: &str) -> Result<Fields<Value>> {
    key_of(replica.schema(), table, id)
}

/// The record id of key `pk` (what [`record_key`] reads back): how lists, conflicts and the server's
/// history name a record.
pub fn record_id(pk: &Fields<Value>) -> String {
    key_text(&pk.0.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())
}

/// [`record_key`] against a schema: the key of record `id` of `table`.
pub fn key_of(schema: &Schema, table: &str, id: &str) -> Result<Fields<Value>> {
    let t = schema.table(table)?;
    let missing = || Error::NotFound(format!("record {id:?}"));
    let values: Vec<Value> = match t.pk.as_slice() {
        [_] => vec![Value::Text(id.to_owned())],
        _ => serde_json::from_str(id).map_err(|_| missing())?,
    };
    if values.len() != t.pk.len() {
        return Err(missing());
    }
    let mut key = Vec::with_capacity(values.len());
    for (&i, v) in t.pk.iter().zip(values) {
        let c = &t.columns[i];
        let v = match (c.ty, v) {
            (ColumnType::Integer, Value::Text(s)) => Value::Integer(s.parse().map_err(|_| missing())?),
            (ColumnType::Real, Value::Text(s)) => Value::Real(s.parse().map_err(|_| missing())?),
            (_, v) => v,
        };
        key.push((c.name.clone(), v));
    }
    Ok(Fields(key))
}

/// The table behind `object_type`.
pub fn table_of(replica: &Replica, object_type: &str) -> Result<String> {
    Ok(object_meta(replica.connection(), replica.schema(), object_type)?.table.name)
}

/// What the user's role may not write, as the last welcome said (nothing before the first one).
pub fn rights(conn: &Connection) -> Result<crate::protocol::Rights> {
    let json: Option<String> = conn
        .prepare_cached("SELECT value FROM moat_meta WHERE key = 'rights'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
}

/// The user's words for one table's records and columns: its object type's labels and its fields'
/// labels, the raw names where no metadata names them. The server words its refusals with them.
#[derive(Debug, Clone)]
pub struct Names {
    label: String,
    plural: String,
    fields: Vec<(String, String)>,
}

impl Names {
    /// The names `object_metadata` gives `table` (raw names when it gives none, or is unreadable).
    pub fn of(conn: &Connection, table: &str) -> Names {
        let row: Option<(String, String, String)> = conn
            .prepare_cached(
                "SELECT label, label_plural, fields FROM object_metadata WHERE table_name = ?1 ORDER BY id LIMIT 1",
            )
            .and_then(|mut s| s.query_row([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .ok()
            .flatten();
        match row {
            Some((label, plural, fields)) => Names {
                label,
                plural,
                fields: serde_json::from_str::<Vec<FieldMeta>>(&fields)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| (f.name, f.label))
                    .collect(),
            },
            None => Names { label: table.to_owned(), plural: table.to_owned(), fields: Vec::new() },
        }
    }

    /// The singular label (`Job`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The plural label (`Jobs`).
    pub fn plural(&self) -> &str {
        &self.plural
    }

    /// A column's field label (`Price`).
    pub fn field<'a>(&'a self, column: &'a str) -> &'a str {
        self.fields.iter().find(|(n, _)| n == column).map_or(column, |(_, l)| l)
    }
}

/// The rules `object_metadata` sets for the rows of one table: what [`check_diff`] applies.
struct TableRules {
    label: String,
    fields: Vec<FieldMeta>,
}

/// The metadata's rules for `table`, if an object type is stored in it.
fn table_rules(conn: &Connection, table: &str) -> Result<Option<TableRules>> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT label, fields FROM object_metadata WHERE table_name = ?1 ORDER BY id LIMIT 1",
        )?
        .query_row([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((label, fields)) => Ok(Some(TableRules { label, fields: json(&fields, "fields")? })),
        None => Ok(None),
    }
}

/// Checks the rows a diff writes against the rules `object_metadata` sets for their tables: each
/// new value against its field (type, required, choices, range, date, line items' shape), an insert's
/// required fields present, and a reference naming a record of its object type that exists (in the
/// database, or inserted by the same diff). The one check, run by the client before an edit is queued
/// and by the server before a push is merged; the error names the object, the field and the rule.
/// Tables without metadata, and deletes, are not checked.
pub fn check_diff(conn: &Connection, schema: &Schema, diff: &crate::diff::Diff) -> Result<()> {
    if schema.table("object_metadata").is_err() {
        return Ok(());
    }
    let mut rules: std::collections::HashMap<&str, Option<TableRules>> = std::collections::HashMap::new();
    for change in &diff.changes {
        if change.op == crate::changeset::Op::Delete {
            continue;
        }
        if !rules.contains_key(change.table.as_str()) {
            rules.insert(&change.table, table_rules(conn, &change.table)?);
        }
        let Some(r) = &rules[change.table.as_str()] else { continue };
        let new: Vec<(&str, &Value)> =
            change.cols.iter().filter_map(|(c, v)| v.new.as_ref().map(|n| (c, n))).collect();
        let within = |e: Error| match e {
            Error::Invalid(m) => Error::Invalid(format!("{}: {m}", r.label)),
            e => e,
        };
        if change.op == crate::changeset::Op::Insert {
            for f in r.fields.iter().filter(|f| f.required) {
                if !new.iter().any(|(c, _)| *c == f.name) {
                    return Err(within(Error::Invalid(format!("{}: a value is required", f.label))));
                }
            }
        }
        for (column, value) in new {
            let Some(f) = r.fields.iter().find(|f| f.name == column) else { continue };
            validate(f, value).map_err(within)?;
            check_reference(conn, schema, f, value, diff).map_err(within)?;
        }
    }
    Ok(())
}

/// Checks the metadata a diff wrote, once it is applied (the server runs it inside the push's
/// transaction): every object type whose `object_metadata` or `layout_definition` rows the diff
/// inserts or updates must still read as the clients read it (its fields parse and name columns of
/// its table; its title, list, search and sort columns are columns; each of its layouts parses and
/// names only its fields), so that no admin's edit leaves every client of the tenant with a page that
/// cannot be drawn. The error names the object type and what is wrong.
pub fn check_metadata(conn: &Connection, schema: &Schema, diff: &crate::diff::Diff) -> Result<()> {
    let mut types = std::collections::BTreeSet::new();
    for c in &diff.changes {
        if c.op == crate::changeset::Op::Delete
            || !matches!(c.table.as_str(), "object_metadata" | "layout_definition")
        {
            continue;
        }
        let t = schema.table(&c.table)?;
        if let Some(Value::Text(ot)) =
            t.read_columns(conn, &c.pk, &["object_type"])?.and_then(|mut v| v.pop())
        {
            types.insert(ot);
        }
    }
    let bad = |ot: &str, e: Error| match e {
        Error::Sqlite(e) => Error::Sqlite(e),
        e => Error::Invalid(format!("{ot}: {}", e.for_user())),
    };
    for ot in types {
        let meta = read_object_meta(conn, schema, &ot, true).map_err(|e| bad(&ot, e))?;
        let mut stmt =
            conn.prepare_cached("SELECT sections FROM layout_definition WHERE object_type = ?1")?;
        let layouts: Vec<String> = stmt.query_map([&ot], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        for sections in layouts {
            let sections: Vec<LayoutSection> = json(&sections, "sections").map_err(|e| bad(&ot, e))?;
            for f in sections.iter().flat_map(|s| &s.fields) {
                if meta.field(&f.field).is_none() {
                    let why = format!("a layout names {:?}, which is not a field of {}", f.field, meta.label);
                    return Err(Error::Invalid(format!("{ot}: {why}")));
                }
            }
        }
    }
    Ok(())
}

/// A reference must name a record of its object type: one in the database, or one the same diff
/// inserts.
fn check_reference(
    conn: &Connection,
    schema: &Schema,
    f: &FieldMeta,
    v: &Value,
    diff: &crate::diff::Diff,
) -> Result<()> {
    let (FieldKind::Reference, Some(target), Value::Text(id)) = (f.kind, &f.object_type, v) else {
        return Ok(());
    };
    if id.trim().is_empty() {
        return Ok(());
    }
    let table: Option<String> = conn
        .prepare_cached("SELECT table_name FROM object_metadata WHERE object_type = ?1 ORDER BY id LIMIT 1")?
        .query_row([target], |r| r.get(0))
        .optional()?;
    let missing = || Error::Invalid(format!("{}: {id:?} is not a record of {target}", f.label));
    let Some(table) = table else { return Err(missing()) };
    let Ok(t) = schema.table(&table) else { return Err(missing()) };
    let [k] = t.pk.as_slice() else { return Err(missing()) };
    let key = &t.columns[*k].name;
    let inserted = diff.changes.iter().any(|c| {
        c.table == table
            && c.op == crate::changeset::Op::Insert
            && c.pk.iter().any(|(_, v)| *v == Value::Text(id.clone()))
    });
    let exists = inserted
        || conn
            .prepare_cached(&format!("SELECT 1 FROM {} WHERE {} = ?1", quote(&table), quote(key)))?
            .query_row([id], |_| Ok(()))
            .optional()?
            .is_some();
    if exists { Ok(()) } else { Err(missing()) }
}

fn validate(f: &FieldMeta, v: &Value) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("{}: {why}", f.label)));
    let empty = matches!(v, Value::Null) || matches!(v, Value::Text(t) if t.trim().is_empty());
    if empty {
        return if f.required { bad("a value is required") } else { Ok(()) };
    }
    match (f.kind, v) {
        (FieldKind::Text | FieldKind::Multiline | FieldKind::Reference, Value::Text(_)) => Ok(()),
        (FieldKind::Number | FieldKind::Currency, Value::Integer(i)) => {
            let shown = |n: i64| match f.kind {
                FieldKind::Currency => edit_text(f, &Value::Integer(n)),
                _ => n.to_string(),
            };
            match (f.min, f.max) {
                (Some(lo), Some(hi)) if *i < lo || *i > hi => {
                    bad(&format!("must be between {} and {}", shown(lo), shown(hi)))
                }
                (Some(lo), _) if *i < lo => bad(&format!("must be at least {}", shown(lo))),
                (_, Some(hi)) if *i > hi => bad(&format!("must be at most {}", shown(hi))),
                _ => Ok(()),
            }
        }
        (FieldKind::Number, Value::Real(r)) => match (f.min, f.max) {
            _ if !r.is_finite() => bad("must be a number"),
            (Some(lo), Some(hi)) if *r < lo as f64 || *r > hi as f64 => {
                bad(&format!("must be between {lo} and {hi}"))
            }
            (Some(lo), _) if *r < lo as f64 => bad(&format!("must be at least {lo}")),
            (_, Some(hi)) if *r > hi as f64 => bad(&format!("must be at most {hi}")),
            _ => Ok(()),
        },
        (FieldKind::Choice, Value::Text(t)) => {
            if f.options.iter().any(|o| o.value == *t) {
                Ok(())
            } else {
                bad(&format!("{t:?} is not one of the choices"))
            }
        }
        (FieldKind::Date, Value::Text(t)) => {
            let shaped = t.len() == 10
                && t.char_indices()
                    .all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
            let (y, m, d) = match shaped {
                true => (
                    t[0..4].parse::<u32>().unwrap_or(0),
                    t[5..7].parse::<u32>().unwrap_or(0),
                    t[8..10].parse::<u32>().unwrap_or(0),
                ),
                false => (0, 0, 0),
            };
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if leap => 29,
                2 => 28,
                _ => 0,
            };
            if shaped && y > 0 && (1..=days).contains(&d) {
                Ok(())
            } else {
                bad("a date is written YYYY-MM-DD (a real day)")
            }
        }
        (FieldKind::LineItems, Value::Text(t)) => match serde_json::from_str::<Vec<serde_json::Value>>(t) {
            Ok(items) if items.iter().all(serde_json::Value::is_object) => Ok(()),
            Ok(_) => bad("each line item must be an object"),
            Err(_) => bad("line items must be a JSON list"),
        },
        (FieldKind::Boolean, Value::Integer(0 | 1)) => Ok(()),
        (FieldKind::Unknown, _) => bad("this app cannot edit this field; update it"),
        (kind, _) => bad(&format!("not a valid {} value", format!("{kind:?}").to_lowercase())),
    }
}
