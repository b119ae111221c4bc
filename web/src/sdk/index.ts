// Moat's web SDK: `MoatClient.open(...)`, then read view models and edit; events say what changed.
export { MoatClient, type ClientOptions } from "./client";
export type * from "./types";
export type * from "./events";
export { MoatError } from "./errors";
