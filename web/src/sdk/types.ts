// Generated from the Rust types by `tests/typescript.rs` (MOAT_BLESS=1 rewrites it); do not edit.
// The SDK adds its own event in `events.ts` and `MoatError` in `errors.ts`.

/**
 * A value as the UI sees it (a blob is shown as no value).
 */
export type FieldValue = { "type": "null" } | { "type": "integer", 
/**
 * The number.
 */
value: number, } | { "type": "real", 
/**
 * The number.
 */
value: number, } | { "type": "text", 
/**
 * The text.
 */
value: string, };

/**
 * The type of a field (`object_metadata.fields[].type`), which is also the widget a layout draws it
 * with (`layout_definition` … `widget`).
 */
export type FieldKind = "text" | "multiline" | "number" | "currency" | "choice" | "date" | "reference" | "line_items" | "boolean" | "unknown";

/**
 * One choice of a `choice` field.
 */
export type Choice = { 
/**
 * The stored value.
 */
value: string, 
/**
 * What is shown.
 */
label: string, 
/**
 * An optional colour (`#rrggbb`).
 */
color: string | null, };

/**
 * An entry of the object-types list.
 */
export type ObjectTypeView = { 
/**
 * API name, e.g. `jobs`.
 */
object_type: string, 
/**
 * Singular label.
 */
label: string, 
/**
 * Plural label (the list's title).
 */
label_plural: string, 
/**
 * Icon name.
 */
icon: string | null, 
/**
 * How many records the device holds.
 */
count: number, 
/**
 * The user may create records of it (the role may write the table and every required field).
 */
can_create: boolean, 
/**
 * The user may delete records of it.
 */
can_delete: boolean, };

/**
 * A list column header.
 */
export type ColumnView = { 
/**
 * The field.
 */
field: string, 
/**
 * Its label.
 */
label: string, 
/**
 * Its type.
 */
kind: FieldKind, };

/**
 * One shown value: the stored value, its display text and the text an editor starts from.
 */
export type CellView = { 
/**
 * The field.
 */
field: string, 
/**
 * The stored value.
 */
value: FieldValue, 
/**
 * The text to show (formatted currency, a choice's label, a reference's title).
 */
display: string, 
/**
 * The value as an input holds it (currency in major units with the field's scale, `12.50`);
 * an edit of this text goes back through [`parse_input`].
 */
edit_text: string, };

/**
 * One row of a list.
 */
export type ListRowView = { 
/**
 * The record's id (its key).
 */
id: string, 
/**
 * The record's title.
 */
title: string, 
/**
 * One cell per list column.
 */
cells: Array<CellView>, };

/**
 * One filter of a list: a field equal to a value (a choice), or within a range (a date, a number;
 * `min` and `max` included, each as the field's input reads it).
 */
export type ListFilter = { 
/**
 * The field.
 */
field: string, 
/**
 * The value it must hold.
 */
equals?: string, 
/**
 * The smallest value it may hold.
 */
min?: string, 
/**
 * The largest value it may hold.
 */
max?: string, };

/**
 * What a list page asks for.
 */
export type ListQuery = { 
/**
 * The object type to list.
 */
object_type: string, 
/**
 * Text to find in the search fields.
 */
search?: string, 
/**
 * Field to sort by; the metadata's default sort when absent.
 */
sort_field?: string, 
/**
 * Sort ascending (the default) or descending.
 */
ascending?: boolean, 
/**
 * Rows to skip.
 */
offset?: number, 
/**
 * Rows to return (50 when absent, at most 500).
 */
limit?: number, 
/**
 * Only the records assigned to the signed-in user (the object type's `mine` field).
 */
mine?: boolean, 
/**
 * Only records matching every filter.
 */
filters?: Array<ListFilter>, };

/**
 * One choice of a facet.
 */
export type FacetOption = { 
/**
 * The stored value.
 */
value: string, 
/**
 * Its label.
 */
label: string, 
/**
 * Its colour, if the metadata gives one.
 */
color: string | null, 
/**
 * Records holding it (within the search and "assigned to me", other filters aside).
 */
count: number, };

/**
 * A choice field a list can be narrowed by, with how many records hold each choice.
 */
export type FacetView = { 
/**
 * The field.
 */
field: string, 
/**
 * Its label.
 */
label: string, 
/**
 * Its choices, in the metadata's order.
 */
options: Array<FacetOption>, };

/**
 * A page of a list view.
 */
export type ListViewModel = { 
/**
 * The title (the plural label).
 */
title: string, 
/**
 * The columns.
 */
columns: Array<ColumnView>, 
/**
 * The rows of this page.
 */
rows: Array<ListRowView>, 
/**
 * Rows matching the query, all pages.
 */
total: number, 
/**
 * Records assigned to the signed-in user (within the search), when the object type has an
 * assignee field (`mine`) and the user is known: the "Assigned to me" view's count.
 */
mine_count: number | null, 
/**
 * Records of the object type on the device (the "All" view's count).
 */
all_count: number, 
/**
 * The choice fields among the list's columns, to filter by.
 */
facets: Array<FacetView>, 
/**
 * The date fields among the list's columns, to filter by range.
 */
date_fields: Array<ColumnView>, };

/**
 * A record to open: its object type and id.
 */
export type RecordLink = { 
/**
 * The object type.
 */
object_type: string, 
/**
 * The record's id.
 */
id: string, };

/**
 * One column of line items.
 */
export type LineItemColumn = { 
/**
 * The key in each item.
 */
field: string, 
/**
 * Its label.
 */
label: string, 
/**
 * Its type (what an input for it reads).
 */
kind: FieldKind, 
/**
 * Minor-unit digits of a currency column.
 */
scale: number | null, };

/**
 * One line item.
 */
export type LineItemRow = { 
/**
 * One cell per column.
 */
cells: Array<CellView>, 
/**
 * Quantity × unit price, shown in the currency (absent when the item has no amount).
 */
amount: string | null, };

/**
 * A `line_items` field's items as the UI shows and edits them.
 */
export type LineItemsView = { 
/**
 * The item columns (the field's `items`, or the items' keys when the metadata names none).
 */
columns: Array<LineItemColumn>, 
/**
 * The items, in order.
 */
rows: Array<LineItemRow>, 
/**
 * The sum of the amounts, in the field's currency (`$1,234.50`); absent when items have no amount.
 */
total: string | null, };

/**
 * One field of a detail view.
 */
export type FieldView = { 
/**
 * The field.
 */
field: string, 
/**
 * The label (the layout's override, or the field's).
 */
label: string, 
/**
 * The widget to draw.
 */
widget: FieldKind, 
/**
 * The field's type (what its values are).
 */
kind: FieldKind, 
/**
 * The value, its display text and its editing text.
 */
cell: CellView, 
/**
 * Not editable in this layout.
 */
read_only: boolean, 
/**
 * A value must be given.
 */
required: boolean, 
/**
 * The choices, for a `choice` widget.
 */
options: Array<Choice>, 
/**
 * ISO currency code of a currency field.
 */
currency: string | null, 
/**
 * Minor-unit digits of a currency field (2 for cents).
 */
scale: number | null, 
/**
 * Smallest allowed number (in stored units).
 */
min: number | null, 
/**
 * Largest allowed number (in stored units).
 */
max: number | null, 
/**
 * What is wrong with the stored value by the metadata's rules now (a rule changed after it was
 * written, or it came from elsewhere): shown on the field; the value is shown as it is.
 */
problem: string | null, 
/**
 * The record a reference field points to, to open it.
 */
link: RecordLink | null, 
/**
 * This device changed the field and the server has not confirmed it yet.
 */
pending: boolean, 
/**
 * A `line_items` field's items, amounts and total.
 */
line_items: LineItemsView | null, };

/**
 * A section of a detail view.
 */
export type SectionView = { 
/**
 * Section id.
 */
id: string, 
/**
 * Its label.
 */
label: string, 
/**
 * Columns to lay the fields out in.
 */
columns: number, 
/**
 * The fields, in order.
 */
fields: Array<FieldView>, };

/**
 * A record's detail page.
 */
export type DetailViewModel = { 
/**
 * The object type's singular label.
 */
object_label: string, 
/**
 * The record's title.
 */
title: string, 
/**
 * The sections, in order.
 */
sections: Array<SectionView>, };

/**
 * What kind of concurrent edit a conflict is.
 */
export type ConflictKind = "field" | "row_deleted" | "row_exists";

/**
 * One conflicting column, in the metadata's words.
 */
export type ConflictColumnView = { 
/**
 * The column.
 */
column: string, 
/**
 * The field's label, from the metadata (the column's name when none names it).
 */
label: string, 
/**
 * The value both sides started from (absent for `row_exists`).
 */
base: FieldValue | null, 
/**
 * The server's value (absent when the row was deleted).
 */
theirs: FieldValue | null, 
/**
 * This device's value.
 */
mine: FieldValue, 
/**
 * `base` as the UI shows it (a choice's label, formatted currency).
 */
base_display: string | null, 
/**
 * `theirs` as the UI shows it.
 */
theirs_display: string | null, 
/**
 * `mine` as the UI shows it.
 */
mine_display: string, 
/**
 * `mine` as an editor starts from it (for "Edit…": currency in major units).
 */
mine_edit_text: string, };

/**
 * A conflict waiting for the user.
 */
export type ConflictView = { 
/**
 * Id to resolve it by.
 */
id: number, 
/**
 * What kind of concurrent edit it is.
 */
kind: ConflictKind, 
/**
 * The table.
 */
table: string, 
/**
 * The record's id.
 */
record_id: string, 
/**
 * The object type's label (`Job`); the table's name when no metadata names it.
 */
object_label: string, 
/**
 * The record's title, or its key.
 */
title: string, 
/**
 * The conflicting columns.
 */
columns: Array<ConflictColumnView>, };

/**
 * How the user settles a conflict.
 */
export type ConflictChoice = { "type": "keep_mine" } | { "type": "take_theirs" } | { "type": "edit", 
/**
 * The column.
 */
column: string, 
/**
 * What the user typed.
 */
text: string, };

/**
 * A write the server refused; it stays on the device, with the reason, until dismissed.
 */
export type RejectedView = { 
/**
 * The refused mutation's id (to dismiss it by).
 */
mutation_id: string, 
/**
 * The server's reason.
 */
reason: string, 
/**
 * The table of its first change.
 */
table: string, 
/**
 * The record of its first change.
 */
record_id: string, 
/**
 * The columns it wrote.
 */
columns: Array<string>, 
/**
 * The object type's label (`Job`); the table's name when no metadata names it.
 */
object_label: string, 
/**
 * The record's title, or its key.
 */
title: string, 
/**
 * Per column, in order: the field's label (the column's name when none names it).
 */
labels: Array<string>, 
/**
 * Per column, in order: the refused value as the UI shows it (what was not saved).
 */
values: Array<string>, };

/**
 * One column's value of a new row.
 */
export type ColumnValue = { 
/**
 * The column.
 */
column: string, 
/**
 * Its value.
 */
value: FieldValue, };

/**
 * One field of a new record, as typed.
 */
export type FieldInput = { 
/**
 * The field.
 */
field: string, 
/**
 * What the user typed (read as the field reads input: currency in major units).
 */
text: string, };

/**
 * A record the reference picker offers.
 */
export type ReferenceOption = { 
/**
 * The record's id (the value the reference stores).
 */
id: string, 
/**
 * Its title.
 */
title: string, 
/**
 * What tells records of the same title apart: the next list column shown (a phone number).
 */
detail: string, };

/**
 * A write of this device the server has not confirmed yet, in the metadata's words.
 */
export type PendingView = { 
/**
 * The mutation's id.
 */
mutation_id: string, 
/**
 * What it does: `Created`, `Changed` or `Deleted`.
 */
action: string, 
/**
 * The object type's label (`Job`); the table's name when no metadata names it.
 */
object_label: string, 
/**
 * The object type, to open the record (empty when no metadata names the table).
 */
object_type: string, 
/**
 * The record's id.
 */
record_id: string, 
/**
 * The record's title, or its key.
 */
title: string, 
/**
 * The fields it writes, by label.
 */
labels: Array<string>, 
/**
 * The values it writes, as shown.
 */
values: Array<string>, 
/**
 * When it was made (Unix milliseconds).
 */
created_ms: number, };

/**
 * One change of a record's history, in the user's words.
 */
export type HistoryEntryView = { 
/**
 * When (Unix milliseconds).
 */
at_ms: number, 
/**
 * Who: the person's name (from the object type that assignees point to), else their user id;
 * "An administrator" for an operator's or a migration's change.
 */
who: string, 
/**
 * `Created`, `Changed` or `Deleted`.
 */
action: string, 
/**
 * The fields a change wrote, by label (fields no metadata names are left out).
 */
labels: Array<string>, };

/**
 * Where the connection stands, for the UI.
 */
export type Phase = "offline" | "connecting" | "syncing" | "live" | "unauthorized" | "outdated";

/**
 * What a UI shows about sync: the phase, the snapshot's progress and what waits.
 */
export type Status = { 
/**
 * The connection's phase.
 */
phase: Phase, 
/**
 * The phase in words for the user ([`Phase::label`]).
 */
label: string, 
/**
 * The user chose to work offline (kept across restarts): no connection is tried, whatever the
 * network does, until they go online. The UI's switch offers "Go online" while this holds and
 * "Work offline" otherwise (also while the network is away or the server out of reach).
 */
held_offline: boolean, 
/**
 * Snapshot rows received (while syncing).
 */
rows_done: number, 
/**
 * Snapshot rows in all (while syncing; 0 during a catch-up).
 */
rows: number, 
/**
 * Local writes not yet confirmed by the server.
 */
pending: number, 
/**
 * Conflicts waiting for the user.
 */
conflicts: number, 
/**
 * Writes the server refused, kept with their reasons.
 */
rejected: number, 
/**
 * When the device was last in step with the server (Unix milliseconds).
 */
last_sync_ms: number | null, 
/**
 * Why sync stopped, in words for the user (`outdated`: the app must be updated).
 */
message: string | null, 
/**
 * The user administers the tenant (the server said so at welcome): offer the admin's pages.
 */
admin: boolean, 
/**
 * A search index is being built on the device (after a first sync, or new search fields):
 * searches scan the rows meanwhile, slower.
 */
indexing: boolean, };

/**
 * One device of a tenant as the server knows it: its last report, who uses it, when it was seen.
 */
export type DeviceRecord = { 
/**
 * The replica's client id.
 */
client_id: string, 
/**
 * Its user (the token's user).
 */
user: string, 
/**
 * The user's role.
 */
role: string, 
/**
 * The app's version.
 */
app_version: string, 
/**
 * `web`, `ios`, …
 */
platform: string, 
/**
 * The schema fingerprint the device is on.
 */
schema: string | null, 
/**
 * Writes waiting on the device.
 */
pending: number, 
/**
 * The oldest pending write's age when it reported, in milliseconds.
 */
oldest_pending_ms: number | null, 
/**
 * Refused writes not yet dismissed.
 */
rejected: number, 
/**
 * Conflicts waiting for the user.
 */
conflicts: number, 
/**
 * The last error it reported.
 */
last_error: string | null, 
/**
 * Connected now.
 */
connected: boolean, 
/**
 * When it was last connected or reported, milliseconds since the Unix epoch.
 */
last_seen_ms: number, };

/**
 * A field type an admin can choose, with its name in the admin's words.
 */
export type KindChoice = { 
/**
 * The type.
 */
kind: FieldKind, 
/**
 * "Text", "Money", "Yes / no"…
 */
label: string, };

/**
 * A field definition from `object_metadata.fields`.
 */
export type FieldMeta = { 
/**
 * The column.
 */
name: string, 
/**
 * The label.
 */
label: string, 
/**
 * The field's type.
 */
type: FieldKind, 
/**
 * A value must be given.
 */
required: boolean, 
/**
 * The choices of a `choice` field.
 */
options?: Array<Choice>, 
/**
 * The object type a `reference` field points to.
 */
object_type?: string | null, 
/**
 * ISO currency code of a `currency` field.
 */
currency?: string | null, 
/**
 * Minor-unit digits of a `currency` field (2 for cents).
 */
scale?: number | null, 
/**
 * Smallest allowed number.
 */
min?: number | null, 
/**
 * Largest allowed number.
 */
max?: number | null, 
/**
 * The columns of a `line_items` field's items (each a field of its own: text, number, currency…).
 */
items?: Array<FieldMeta>, 
/**
 * A `reference` field that holds a user's id (an assignee): lists offer "Assigned to me".
 */
mine?: boolean, 
/**
 * The value a new record starts with, as the field's input reads it (`"open"`, `"12.50"`).
 */
default?: string | null, };

/**
 * A field placed in a layout section.
 */
export type LayoutField = { 
/**
 * The field's name.
 */
field: string, 
/**
 * How it is drawn (its kind, or text ↔ multiline).
 */
widget: FieldKind, 
/**
 * Read-only in this layout.
 */
read_only?: boolean, 
/**
 * A label for this layout only.
 */
label?: string | null, };

/**
 * A section of a layout (`layout_definition.sections`).
 */
export type LayoutSection = { 
/**
 * Its id within the layout.
 */
id: string, 
/**
 * Its title.
 */
label: string, 
/**
 * Columns of fields (1 to 3).
 */
columns: number, 
/**
 * Its fields, in order.
 */
fields: Array<LayoutField>, };

/**
 * A list's default order.
 */
export type SortDef = { 
/**
 * The field.
 */
field: string, 
/**
 * `asc` or `desc`.
 */
dir: string, };

/**
 * One object type: an `object_metadata` row.
 */
export type ObjectTypeDef = { 
/**
 * API name (`jobs`); never changes once published.
 */
object_type: string, 
/**
 * The table holding its records; a new object type's table is created when it is published.
 */
table_name: string, 
/**
 * Singular label.
 */
label: string, 
/**
 * Plural label.
 */
label_plural: string, 
/**
 * Icon name.
 */
icon: string | null, 
/**
 * Position in the object list.
 */
sort_order: number, 
/**
 * The field that names a record.
 */
title_field: string, 
/**
 * The list's columns.
 */
list_columns: Array<string>, 
/**
 * The fields a search looks in.
 */
search_fields: Array<string>, 
/**
 * The list's order.
 */
default_sort: SortDef | null, 
/**
 * The fields.
 */
fields: Array<FieldMeta>, 
/**
 * Left out of the object list (its records and its table stay).
 */
hidden?: boolean, };

/**
 * One layout: a `layout_definition` row.
 */
export type LayoutDef = { 
/**
 * The object type it draws.
 */
object_type: string, 
/**
 * Its name (`detail`).
 */
name: string, 
/**
 * The role it is for; `None`: every role without a layout of its own.
 */
role: string | null, 
/**
 * Its sections.
 */
sections: Array<LayoutSection>, };

/**
 * Every object type and layout of a tenant, as an admin edits them.
 */
export type Customization = { 
/**
 * The object types, in their order.
 */
object_types: Array<ObjectTypeDef>, 
/**
 * The layouts of every object type.
 */
layouts: Array<LayoutDef>, 
/**
 * The [`fingerprint`] of the metadata this draft was read from ([`read`] fills it): a publish
 * whose base is no longer what is published is refused, so that a draft made before someone
 * else's publish never undoes it unseen.
 */
base?: string | null, };

/**
 * What publishing a draft would do.
 */
export type Plan = { 
/**
 * What stops it, in the user's words; nothing is published while there are any.
 */
problems: Array<string>, 
/**
 * What it changes, one line each ("Jobs: added the field Warranty expires").
 */
changes: Array<string>, 
/**
 * Data it would destroy ("Jobs: Warranty expires, 3 values"): publishing needs a second
 * confirmation.
 */
lost: Array<string>, 
/**
 * The storage statements (SQL) it runs first.
 */
ddl: Array<string>, 
/**
 * Tables that get new columns (their earlier changes are refitted to the new schema).
 */
widened: Array<string>, 
/**
 * It drops a table or a column (clients then take a fresh copy).
 */
drops: boolean, 
/**
 * The [`fingerprint`] of the draft: once it is published, the base of the next draft.
 */
fingerprint: string, };

/**
 * What an admin asks of `customize`.
 */
export type CustomizeRequest = { "action": "publish", 
/**
 * Every object type and layout, as they are to be.
 */
customization: Customization, 
/**
 * The admin confirmed the data it destroys (a removed field's values).
 */
destroy: boolean, } | { "action": "rollback", 
/**
 * The version to go back to.
 */
version: number, 
/**
 * The admin confirmed the data it destroys.
 */
destroy: boolean, } | { "action": "versions", };

/**
 * One published version of a tenant's metadata.
 */
export type CustomizationVersion = { 
/**
 * Its number.
 */
version: number, 
/**
 * Who published it (a user id on the wire, which the client turns into the person's name; empty
 * for the metadata as it was before the first publish).
 */
user: string, 
/**
 * When (Unix milliseconds).
 */
at_ms: number, 
/**
 * What it changed.
 */
changes: Array<string>, };

/**
 * The answer to a `customize`.
 */
export type CustomizeAnswer = { "result": "published", 
/**
 * The new version.
 */
version: number, 
/**
 * What changed.
 */
changes: Array<string>, } | { "result": "refused", 
/**
 * Machine-readable.
 */
code: string, 
/**
 * In the admin's words.
 */
reason: string, 
/**
 * The data it would destroy.
 */
lost?: Array<string>, } | { "result": "versions", 
/**
 * At most 50.
 */
versions: Array<CustomizationVersion>, 
/**
 * The roles of the sync rules.
 */
roles: Array<string>, };

/**
 * What the app is told, as it happens: the native shell calls its listener's method of the same
 * name, the web shell posts it to the page as this JSON.
 */
export type ClientEvent = { "type": "tables", 
/**
 * The tables.
 */
tables: Array<string>, } | { "type": "status", 
/**
 * The status now.
 */
status: Status, } | { "type": "conflicts", 
/**
 * The conflicts, as the alert shows them.
 */
conflicts: Array<ConflictView>, } | { "type": "rejected", 
/**
 * The refused mutation.
 */
mutation_id: string, 
/**
 * The server's reason.
 */
reason: string, } | { "type": "error", 
/**
 * In words for the user.
 */
message: string, } | { "type": "fleet", 
/**
 * Most recently seen first.
 */
devices: Array<DeviceRecord>, } | { "type": "history", 
/**
 * The record's object type.
 */
object_type: string, 
/**
 * The record's id.
 */
id: string, 
/**
 * Newest first, in the user's words.
 */
entries: Array<HistoryEntryView>, } | { "type": "customized", 
/**
 * The request's id.
 */
id: string, 
/**
 * The answer.
 */
answer: CustomizeAnswer, };
