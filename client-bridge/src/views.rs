//! The view models both shells hand to their UI, and the calls that compute them. The native shell
//! exports these types through uniffi (Swift, Python); the web shell serialises them to JSON for the
//! TypeScript SDK (`web/src/sdk/types.ts` mirrors them). Each call is a delegation to `sqlite_ext::ui`
//! or the replica, so the two shells cannot drift apart.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sqlite_ext::ui::{self, ListQuery};
use sqlite_ext::{Fields, Phase, Resolution, SyncEngine, Value};

type Result<T> = std::result::Result<T, sqlite_ext::Error>;

/// A value as the UI sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Enum))]
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

/// What the UI shows about sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct SyncStatus {
    /// `offline`, `connecting`, `syncing`, `live`, `unauthorized` or `outdated`.
    pub phase: String,
    /// Snapshot rows received (while syncing).
    pub rows_done: u64,
    /// Snapshot rows in all (while syncing).
    pub rows: u64,
    /// Local writes waiting for the server.
    pub pending: i64,
    /// Conflicts waiting for the user.
    pub conflicts: i64,
    /// Writes the server refused.
    pub rejected: i64,
    /// When the device was last in step with the server (Unix milliseconds).
    pub last_sync_ms: Option<i64>,
    /// Why sync stopped, in words for the user (`outdated`: the app must be updated).
    pub message: Option<String>,
}

impl From<sqlite_ext::Status> for SyncStatus {
    fn from(s: sqlite_ext::Status) -> Self {
        let mut message = None;
        let (phase, rows_done, rows) = match s.phase {
            Phase::Offline => ("offline", 0, 0),
            Phase::Connecting => ("connecting", 0, 0),
            Phase::Syncing { rows_done, rows } => ("syncing", rows_done, rows),
            Phase::Live => ("live", 0, 0),
            Phase::Unauthorized => ("unauthorized", 0, 0),
            Phase::Outdated { reason } => {
                message = Some(reason);
                ("outdated", 0, 0)
            }
        };
        SyncStatus {
            phase: phase.into(),
            rows_done,
            rows,
            pending: s.pending,
            conflicts: s.conflicts,
            rejected: s.rejected,
            last_sync_ms: s.last_sync_ms,
            message,
        }
    }
}

/// An entry of the object-types list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ObjectTypeView {
    /// API name.
    pub object_type: String,
    /// Singular label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// Icon name.
    pub icon: Option<String>,
    /// Records on the device.
    pub count: i64,
}

/// A shown value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct CellView {
    /// The field.
    pub field: String,
    /// The stored value.
    pub value: FieldValue,
    /// The text to show.
    pub display: String,
}

/// A list column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ColumnView {
    /// The field.
    pub field: String,
    /// Its label.
    pub label: String,
    /// Its type.
    pub kind: String,
}

/// A list row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ListRowView {
    /// The record's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// One cell per column.
    pub cells: Vec<CellView>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ListViewModel {
    /// The title.
    pub title: String,
    /// The columns.
    pub columns: Vec<ColumnView>,
    /// The rows.
    pub rows: Vec<ListRowView>,
    /// Matching rows in all.
    pub total: i64,
}

/// A choice of a choice field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ChoiceView {
    /// Stored value.
    pub value: String,
    /// Label.
    pub label: String,
    /// Colour.
    pub color: Option<String>,
}

/// A field of a detail page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct FieldView {
    /// The field.
    pub field: String,
    /// The label.
    pub label: String,
    /// The widget to draw.
    pub widget: String,
    /// The value and its display text.
    pub cell: CellView,
    /// Not editable here.
    pub read_only: bool,
    /// A value is required.
    pub required: bool,
    /// Choices, for a choice widget.
    pub options: Vec<ChoiceView>,
}

/// A section of a detail page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct SectionView {
    /// Id.
    pub id: String,
    /// Label.
    pub label: String,
    /// Layout columns.
    pub columns: u32,
    /// Fields in order.
    pub fields: Vec<FieldView>,
}

/// A record's detail page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct DetailViewModel {
    /// The object type's label.
    pub object_label: String,
    /// The record's title.
    pub title: String,
    /// Sections in order.
    pub sections: Vec<SectionView>,
}

/// One conflicting column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ConflictColumnView {
    /// The column.
    pub column: String,
    /// The field's label, from the metadata.
    pub label: String,
    /// The value both sides started from.
    pub base: Option<FieldValue>,
    /// The server's value.
    pub theirs: Option<FieldValue>,
    /// This device's value.
    pub mine: FieldValue,
    /// `base` as the UI shows it (a choice's label, formatted currency).
    pub base_display: Option<String>,
    /// `theirs` as the UI shows it.
    pub theirs_display: Option<String>,
    /// `mine` as the UI shows it.
    pub mine_display: String,
}

/// A conflict waiting for the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ConflictView {
    /// Id to resolve it by.
    pub id: i64,
    /// `field`, `row_deleted` or `row_exists`.
    pub kind: String,
    /// The table.
    pub table: String,
    /// The record's id.
    pub record_id: String,
    /// The object type's label (`Job`).
    pub object_label: String,
    /// The record's title.
    pub title: String,
    /// The conflicting columns.
    pub columns: Vec<ConflictColumnView>,
}

/// How the user settles a conflict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Enum))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConflictChoice {
    /// Write my values over the server's.
    KeepMine,
    /// Keep the server's values.
    TakeTheirs,
    /// Write this value to this column instead.
    Edit {
        /// The column.
        column: String,
        /// The value.
        value: FieldValue,
    },
}

/// An engine event that owns its frame, so that a shell can queue it.
#[derive(Debug)]
pub(crate) enum Owned {
    Start,
    Connected,
    Frame(String),
    Disconnected(Option<u16>),
    Timer,
    LocalWrite,
}

/// Runs the engine over one queued event. A frame the engine cannot use is dropped; the session
/// goes on.
pub(crate) fn handle(e: &mut SyncEngine, ev: &Owned) -> Vec<sqlite_ext::Instruction> {
    use sqlite_ext::Event;
    let event = match ev {
        Owned::Start => Event::Start,
        Owned::Connected => Event::Connected,
        Owned::Frame(t) => Event::Frame(t),
        Owned::Disconnected(c) => Event::Disconnected(*c),
        Owned::Timer => Event::Timer,
        Owned::LocalWrite => Event::LocalWrite,
    };
    e.handle(event).unwrap_or_default()
}

/// A write the server refused; it stays on the device, with the reason, until dismissed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
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
}

/// The role claim of a JWT (decoded, not verified: the server verifies; the client only needs to know
/// which layout to draw). `None` for anything that is not a JWT with a role.
pub(crate) fn role_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["role"].as_str().map(str::to_owned)
}

pub(crate) fn conflict_view(r: &sqlite_ext::Replica, c: sqlite_ext::StoredConflict) -> ConflictView {
    let record_id = c.conflict.pk.0.first().map(|(_, v)| plain(v)).unwrap_or_default();
    // Words from the metadata; the raw names and values if it cannot say (a table no type names).
    let text =
        ui::conflict_text(r.connection(), r.schema(), &c.conflict).unwrap_or_else(|_| ui::ConflictText {
            object_label: c.conflict.table.clone(),
            title: record_id.clone(),
            columns: c
                .conflict
                .columns
                .iter()
                .map(|col| ui::ConflictColumnText {
                    label: col.column.clone(),
                    base: col.base.as_ref().map(plain),
                    theirs: col.theirs.as_ref().map(plain),
                    mine: plain(&col.mine),
                })
                .collect(),
        });
    ConflictView {
        id: c.id,
        kind: serde_json::to_value(c.conflict.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        table: c.conflict.table,
        record_id,
        object_label: text.object_label,
        title: text.title,
        columns: c
            .conflict
            .columns
            .into_iter()
            .zip(text.columns)
            .map(|(col, t)| ConflictColumnView {
                column: col.column,
                label: t.label,
                base: col.base.map(Into::into),
                theirs: col.theirs.map(Into::into),
                mine: col.mine.into(),
                base_display: t.base,
                theirs_display: t.theirs,
                mine_display: t.mine,
            })
            .collect(),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn key(id: &str) -> Fields<Value> {
    Fields(vec![("id".into(), Value::from(id))])
}

fn cell(c: ui::Cell) -> CellView {
    CellView { field: c.field, value: c.value.into(), display: c.display }
}

/// The sync status now.
pub(crate) fn status(e: &SyncEngine) -> Result<SyncStatus> {
    Ok(e.status()?.into())
}

/// The object types, from the synced `object_metadata`.
pub(crate) fn object_types(e: &SyncEngine) -> Result<Vec<ObjectTypeView>> {
    let r = e.replica();
    Ok(ui::object_types(r.connection(), r.schema())?
        .into_iter()
        .map(|t| ObjectTypeView {
            object_type: t.object_type,
            label: t.label,
            label_plural: t.label_plural,
            icon: t.icon,
            count: t.count,
        })
        .collect())
}

/// What a list page asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ListRequest {
    pub(crate) object_type: String,
    #[serde(default)]
    pub(crate) search: Option<String>,
    #[serde(default)]
    pub(crate) sort_field: Option<String>,
    #[serde(default = "yes")]
    pub(crate) ascending: bool,
    #[serde(default)]
    pub(crate) offset: i64,
    #[serde(default = "page")]
    pub(crate) limit: i64,
}

fn yes() -> bool {
    true
}

fn page() -> i64 {
    50
}

/// A page of a list.
pub(crate) fn list_view(e: &SyncEngine, q: ListRequest) -> Result<ListViewModel> {
    let r = e.replica();
    let sort = q.sort_field.map(|f| (f, q.ascending));
    let query = ListQuery { search: q.search, sort, offset: q.offset, limit: q.limit };
    let v = ui::list_view(r.connection(), r.schema(), &q.object_type, &query)?;
    Ok(ListViewModel {
        title: v.title,
        columns: v
            .columns
            .into_iter()
            .map(|c| ColumnView { field: c.field, label: c.label, kind: c.kind })
            .collect(),
        rows: v
            .rows
            .into_iter()
            .map(|row| ListRowView {
                id: row.pk.0.first().map(|(_, v)| plain(v)).unwrap_or_default(),
                title: row.title,
                cells: row.cells.into_iter().map(cell).collect(),
            })
            .collect(),
        total: v.total,
    })
}

/// Record `id`'s detail page, drawn from the synced `layout_definition` for `role`.
pub(crate) fn detail_view(
    e: &SyncEngine,
    role: &str,
    object_type: &str,
    id: &str,
) -> Result<DetailViewModel> {
    let r = e.replica();
    let v = ui::detail_view(r.connection(), r.schema(), object_type, &key(id), role)?;
    Ok(DetailViewModel {
        object_label: v.object_label,
        title: v.title,
        sections: v
            .sections
            .into_iter()
            .map(|s| SectionView {
                id: s.id,
                label: s.label,
                columns: s.columns,
                fields: s
                    .fields
                    .into_iter()
                    .map(|f| FieldView {
                        field: f.field,
                        label: f.label,
                        widget: f.widget,
                        cell: cell(f.cell),
                        read_only: f.read_only,
                        required: f.required,
                        options: f
                            .options
                            .into_iter()
                            .map(|o| ChoiceView { value: o.value, label: o.label, color: o.color })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// One field of a record, checked against the metadata and `role`'s layout.
pub(crate) fn edit(
    e: &mut SyncEngine,
    role: &str,
    object_type: &str,
    id: &str,
    field: String,
    value: FieldValue,
) -> Result<()> {
    let values = Fields(vec![(field, value.into())]);
    ui::edit(e.replica_mut(), object_type, &key(id), &values, role)?;
    Ok(())
}

/// One column of any synced row (admin tools such as the metadata editor); the server checks rights.
pub(crate) fn update_row(
    e: &mut SyncEngine,
    table: &str,
    id: &str,
    column: String,
    value: FieldValue,
) -> Result<()> {
    e.replica_mut().update(table, &key(id), &Fields(vec![(column, value.into())]))?;
    Ok(())
}

/// One column's value of a new row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(uniffi::Record))]
pub struct ColumnValue {
    /// The column.
    pub column: String,
    /// Its value.
    pub value: FieldValue,
}

/// Inserts a row into any synced table (admin tools: a new object type is an `object_metadata` row);
/// the server checks the role's rights.
pub(crate) fn insert_row(e: &mut SyncEngine, table: &str, values: Vec<ColumnValue>) -> Result<()> {
    let row = Fields(values.into_iter().map(|c| (c.column, c.value.into())).collect());
    e.replica_mut().insert(table, &row)?;
    Ok(())
}

/// Conflicts waiting for the user.
pub(crate) fn conflicts(e: &SyncEngine) -> Result<Vec<ConflictView>> {
    let r = e.replica();
    Ok(r.conflicts()?.into_iter().map(|c| conflict_view(r, c)).collect())
}

/// Settles a conflict.
pub(crate) fn resolve(e: &mut SyncEngine, conflict_id: i64, choice: ConflictChoice) -> Result<()> {
    let resolution = match choice {
        ConflictChoice::KeepMine => Resolution::KeepMine,
        ConflictChoice::TakeTheirs => Resolution::TakeTheirs,
        ConflictChoice::Edit { column, value } => Resolution::Edit(Fields(vec![(column, value.into())])),
    };
    e.replica_mut().resolve(conflict_id, resolution)?;
    Ok(())
}

/// Writes the server refused, oldest first.
pub(crate) fn rejected(e: &SyncEngine) -> Result<Vec<RejectedView>> {
    Ok(e.replica()
        .rejected()?
        .into_iter()
        .map(|r| {
            let first = r.mutation.diff.changes.first();
            RejectedView {
                mutation_id: r.mutation.mutation_id,
                reason: r.reason,
                table: first.map(|c| c.table.clone()).unwrap_or_default(),
                record_id: first.and_then(|c| c.pk.0.first()).map(|(_, v)| plain(v)).unwrap_or_default(),
                columns: first.map(|c| c.cols.0.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default(),
            }
        })
        .collect())
}

/// Forgets a rejected write once the user has seen it.
pub(crate) fn dismiss_rejected(e: &mut SyncEngine, mutation_id: &str) -> Result<()> {
    e.replica_mut().dismiss_rejected(mutation_id)?;
    Ok(())
}
