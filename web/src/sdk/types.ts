// The shapes the wasm core hands the SDK. They mirror `client-bridge/src/views.rs` (serde's JSON of
// the same structs the native shell exports through uniffi); change both together.

/** A stored value. Currency fields hold minor units (cents). */
export type FieldValue =
  | { type: "null" }
  | { type: "integer"; value: number }
  | { type: "real"; value: number }
  | { type: "text"; value: string };

/** One column's value of a new row. */
export interface ColumnValue {
  column: string;
  value: FieldValue;
}

export type Phase = "offline" | "connecting" | "syncing" | "live" | "unauthorized" | "outdated";

/** What the UI shows about sync. */
export interface SyncStatus {
  phase: Phase;
  /** Snapshot rows received (while syncing). */
  rows_done: number;
  /** Snapshot rows in all (while syncing). */
  rows: number;
  /** Local writes waiting for the server. */
  pending: number;
  /** Conflicts waiting for the user. */
  conflicts: number;
  /** Writes the server refused. */
  rejected: number;
  /** When the device was last in step with the server (Unix ms). */
  last_sync_ms: number | null;
  /** Why sync stopped, in words for the user (`outdated`: the app must be updated). */
  message: string | null;
}

export interface ObjectTypeView {
  object_type: string;
  label: string;
  label_plural: string;
  icon: string | null;
  count: number;
}

export interface CellView {
  field: string;
  value: FieldValue;
  display: string;
}

export interface ColumnView {
  field: string;
  label: string;
  kind: string;
}

export interface ListRowView {
  id: string;
  title: string;
  cells: CellView[];
}

export interface ListViewModel {
  title: string;
  columns: ColumnView[];
  rows: ListRowView[];
  total: number;
}

export interface ListQuery {
  object_type: string;
  search?: string | null;
  sort_field?: string | null;
  ascending?: boolean;
  offset?: number;
  limit?: number;
}

export interface ChoiceView {
  value: string;
  label: string;
  color: string | null;
}

/** `widget` names the control to draw: text, multiline, number, currency, choice, date, reference, boolean, line_items… */
export interface FieldView {
  field: string;
  label: string;
  widget: string;
  cell: CellView;
  read_only: boolean;
  required: boolean;
  options: ChoiceView[];
}

export interface SectionView {
  id: string;
  label: string;
  columns: number;
  fields: FieldView[];
}

export interface DetailViewModel {
  object_label: string;
  title: string;
  sections: SectionView[];
}

export interface ConflictColumnView {
  column: string;
  /** The field's label, from the metadata. */
  label: string;
  base: FieldValue | null;
  theirs: FieldValue | null;
  mine: FieldValue;
  /** The values as the UI shows them (a choice's label, formatted currency); null when absent. */
  base_display: string | null;
  theirs_display: string | null;
  mine_display: string;
}

export interface ConflictView {
  id: number;
  kind: "field" | "row_deleted" | "row_exists";
  table: string;
  record_id: string;
  /** The object type's label (`Job`) and the record's title. */
  object_label: string;
  title: string;
  columns: ConflictColumnView[];
}

export type ConflictChoice =
  | { type: "keep_mine" }
  | { type: "take_theirs" }
  | { type: "edit"; column: string; value: FieldValue };

export interface RejectedView {
  mutation_id: string;
  reason: string;
  table: string;
  record_id: string;
  columns: string[];
}

/** What the client reports, as it happens. */
export type ClientEvent =
  | { type: "tables"; tables: string[] }
  | { type: "status"; status: SyncStatus }
  | { type: "conflicts"; conflicts: ConflictView[] }
  | { type: "rejected"; mutation_id: string; reason: string }
  | { type: "role"; owner: boolean };

/** An error from the core: `Invalid` (the input; shown to the user), `NotFound`, `Storage`. */
export class MoatError extends Error {
  constructor(
    readonly kind: "Invalid" | "NotFound" | "Storage" | "Closed",
    message: string,
  ) {
    super(message);
    this.name = kind;
  }
}
