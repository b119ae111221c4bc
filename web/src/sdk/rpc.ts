// The messages between a page and its worker, and between the worker of a tab that does not own
// the database and the one that does. One table of methods (`Api`) types both ends.

import type {
  ConflictChoice,
  ConflictView,
  DetailViewModel,
  FieldValue,
  ListQuery,
  ListViewModel,
  ObjectTypeView,
  RejectedView,
  ColumnValue,
  FieldInput,
  PendingView,
  ReferenceOption,
  Customization,
  CustomizeRequest,
  Plan,
  KindChoice,
} from "./types";
import type { SdkEvent, SyncStatus } from "./events";

/** Every call the SDK can make, with its arguments and its result. */
export interface Api {
  status(): SyncStatus;
  objectTypes(): ObjectTypeView[];
  listView(query: ListQuery): ListViewModel;
  detailView(objectType: string, id: string): DetailViewModel;
  edit(objectType: string, id: string, field: string, value: FieldValue): void;
  editText(objectType: string, id: string, field: string, text: string, startedFrom?: FieldValue): void;
  updateRow(table: string, id: string, column: string, value: FieldValue): void;
  insertRow(table: string, values: ColumnValue[]): void;
  conflicts(): ConflictView[];
  resolve(conflictId: number, choice: ConflictChoice): void;
  rejected(): RejectedView[];
  dismissRejected(mutationId: string): void;
  retryRejected(mutationId: string): void;
  /** The user works offline: nothing is sent, and the database remembers it until `goOnline`. */
  goOffline(): void;
  /** The user goes online: connects at once. */
  goOnline(): void;
  /** The browser's network went away or came back (not remembered; the user's choice stands). */
  networkChanged(online: boolean): void;
  /** Asks the server for the tenant's devices (admins); they arrive as a `fleet` event. */
  requestDevices(): void;
  newRecord(objectType: string): DetailViewModel;
  create(objectType: string, inputs: FieldInput[]): string;
  delete(objectType: string, id: string): void;
  referenceOptions(objectType: string, field: string, search: string, limit: number): ReferenceOption[];
  lineItemsText(objectType: string, field: string, rows: string[][]): string;
  pending(): PendingView[];
  /** Asks the server for a record's history; it arrives as a `history` event. */
  requestHistory(objectType: string, id: string): void;
  /** The tenant's object types and layouts as this device holds them (Customize mode's draft). */
  customization(): Customization;
  /** What publishing a draft would do, checked here as the server will check it. */
  planCustomization(draft: Customization): Plan;
  /** Sends an admin's customization request; a `customized` event with the same id answers it. */
  customize(id: string, request: CustomizeRequest): void;
  /** An API name made from a label (`Warranty expires` → `warranty_expires`). */
  nameFromLabel(label: string): string;
  /** The field types an admin can choose, named in the user's words. */
  fieldKinds(): KindChoice[];
}

export type Method = keyof Api;

export interface OpenOptions {
  /** `ws://host:port/sync`. */
  url: string;
  /** The bearer token (JWT). */
  token: string;
  /** The database file in this origin's OPFS; one per signed-in user. */
  dbName: string;
  /** Put a new database in the storage pool all users of a browser once shared, not in one of the
   * user's own (only to test that a database from before per-user pools is found there). */
  sharedPool?: boolean;
}

/** Page → worker. */
export type ToWorker =
  /** `offline`: the browser has no network as the page opens. */
  | { kind: "open"; options: OpenOptions; offline: boolean }
  | { kind: "call"; id: number; method: Method; args: unknown[] };

export interface WireError {
  name: string;
  message: string;
}

/** Worker → page. */
export type FromWorker =
  | { kind: "opened"; owner: boolean }
  | { kind: "open-failed"; error: WireError }
  | { kind: "result"; id: number; value: unknown }
  | { kind: "error"; id: number; error: WireError }
  | { kind: "event"; event: SdkEvent };

/** Between the workers of the tabs of one origin (BroadcastChannel). */
export type Between =
  | { kind: "owner-ready" }
  | { kind: "who-owns" }
  | { kind: "call"; from: string; id: number; method: Method; args: unknown[] }
  | { kind: "result"; to: string; id: number; value: unknown }
  | { kind: "error"; to: string; id: number; error: WireError }
  | { kind: "event"; event: SdkEvent };
