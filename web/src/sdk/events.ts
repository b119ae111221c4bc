// What the SDK adds to the core's generated types (`types.ts`): its own event, which tab owns the
// database, and the status's name in the SDK.
import type { ClientEvent, Status } from "./types";

/** What the UI shows about sync (the core's `Status`). */
export type SyncStatus = Status;

/** What a `MoatClient` reports, as it happens: the core's events, and which tab owns the database. */
export type SdkEvent = ClientEvent | { type: "role"; owner: boolean };
