// The shapes the wasm core hands the SDK are generated from the Rust types (`generated.ts`, checked by
// `tests/typescript.rs`); this module adds only what the SDK itself says.

import type { ClientEvent as CoreEvent, Status } from "./generated";

export type * from "./generated";

/** What the UI shows about sync (the core's `Status`). */
export type SyncStatus = Status;

/** What the client reports, as it happens: the core's events, and which tab owns the database. */
export type ClientEvent = CoreEvent | { type: "role"; owner: boolean };

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
