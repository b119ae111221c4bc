// The SDK's entry point: a typed, promise-based client over the worker that runs the wasm core.
// No framework: subscribe to events with `on`, call methods, render what they return.

import type { Api, FromWorker, Method, OpenOptions, ToWorker } from "./rpc";
import { MoatError } from "./errors";
import type { SdkEvent, SyncStatus } from "./events";
import type {
  ColumnValue,
  ConflictChoice,
  ConflictView,
  DetailViewModel,
  FieldValue,
  ListQuery,
  ListViewModel,
  FieldInput,
  ObjectTypeView,
  PendingView,
  ReferenceOption,
  RejectedView,
  Customization,
  CustomizeAnswer,
  CustomizeRequest,
  Plan,
  KindChoice,
} from "./types";

type Listener = (event: SdkEvent) => void;

export interface ClientOptions extends OpenOptions {
  /** Follow the browser's `online` / `offline` events (default true). */
  followBrowserNetwork?: boolean;
  /** A worker to use instead of the SDK's own (tests, custom bundling). */
  worker?: Worker;
}

function asError(e: { name: string; message: string }): MoatError {
  const kind = e.name === "NotFound" || e.name === "Storage" || e.name === "Closed" ? e.name : "Invalid";
  return new MoatError(kind, e.message);
}

/** One signed-in user's Moat client in this tab. */
export class MoatClient {
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<Listener>();
  private readonly detach: () => void;
  /** Whether this tab holds the database; the other tabs of the origin go through the one that does. */
  owner = false;

  private constructor(private readonly worker: Worker, followNetwork: boolean) {
    worker.addEventListener("message", (ev: MessageEvent<FromWorker>) => this.receive(ev.data));
    const offline = () => void this.networkChanged(false);
    const online = () => void this.networkChanged(true);
    if (followNetwork) {
      globalThis.addEventListener("offline", offline);
      globalThis.addEventListener("online", online);
    }
    this.detach = () => {
      globalThis.removeEventListener("offline", offline);
      globalThis.removeEventListener("online", online);
    };
  }

  /** Starts the worker, opens the local database and starts syncing. Works offline. */
  static async open(options: ClientOptions): Promise<MoatClient> {
    const worker =
      options.worker ?? new Worker(new URL("./worker.ts", import.meta.url), { type: "module", name: "moat" });
    const client = new MoatClient(worker, options.followBrowserNetwork ?? true);
    await new Promise<void>((resolve, reject) => {
      const first = (ev: MessageEvent<FromWorker>) => {
        if (ev.data.kind === "opened") {
          worker.removeEventListener("message", first);
          client.owner = ev.data.owner;
          resolve();
        } else if (ev.data.kind === "open-failed") {
          worker.removeEventListener("message", first);
          reject(asError(ev.data.error));
        }
      };
      worker.addEventListener("message", first);
      const { url, token, dbName, sharedPool } = options;
      const offline = options.followBrowserNetwork !== false && globalThis.navigator?.onLine === false;
      worker.postMessage({ kind: "open", options: { url, token, dbName, sharedPool }, offline } satisfies ToWorker);
    });
    return client;
  }

  /** Calls `listener` for every event; returns the function that unsubscribes it. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): Promise<SyncStatus> {
    return this.call("status");
  }
  objectTypes(): Promise<ObjectTypeView[]> {
    return this.call("objectTypes");
  }
  listView(query: ListQuery): Promise<ListViewModel> {
    return this.call("listView", query);
  }
  detailView(objectType: string, id: string): Promise<DetailViewModel> {
    return this.call("detailView", objectType, id);
  }
  /** Edits one field; checked against the metadata and the role's layout, shown at once, sent when possible. */
  edit(objectType: string, id: string, field: string, value: FieldValue): Promise<void> {
    return this.call("edit", objectType, id, field, value);
  }
  /**
   * Edits one field with what the user typed: the core reads it as the field reads input (currency
   * in major units with the field's scale), checks it and writes it; a refusal names the field.
   * `startedFrom` is the field's value when the user began typing: if another edit replaced it
   * meanwhile, nothing is overwritten and the conflict alert is raised instead.
   */
  editText(objectType: string, id: string, field: string, text: string, startedFrom?: FieldValue): Promise<void> {
    return this.call("editText", objectType, id, field, text, startedFrom);
  }
  /** Writes one column of any synced row (admin tools); the server checks the role's rights. */
  updateRow(table: string, id: string, column: string, value: FieldValue): Promise<void> {
    return this.call("updateRow", table, id, column, value);
  }
  /** Inserts a row into any synced table (admin tools: a new object type is an `object_metadata` row). */
  insertRow(table: string, values: ColumnValue[]): Promise<void> {
    return this.call("insertRow", table, values);
  }
  conflicts(): Promise<ConflictView[]> {
    return this.call("conflicts");
  }
  resolve(conflictId: number, choice: ConflictChoice): Promise<void> {
    return this.call("resolve", conflictId, choice);
  }
  rejected(): Promise<RejectedView[]> {
    return this.call("rejected");
  }
  dismissRejected(mutationId: string): Promise<void> {
    return this.call("dismissRejected", mutationId);
  }
  /** Writes a refused change again (checked here first: still refused, it stays listed and this throws why). */
  retryRejected(mutationId: string): Promise<void> {
    return this.call("retryRejected", mutationId);
  }
  /** Works offline (the user's switch): nothing is sent, and the database remembers it, so that the
   * app opens offline too, until `goOnline`. The browser's own network is followed separately. */
  goOffline(): Promise<void> {
    return this.call("goOffline");
  }
  /** Goes online (the user's switch): connects at once. */
  goOnline(): Promise<void> {
    return this.call("goOnline");
  }
  /** The device's network went away or came back (not remembered; the user's choice stands). The
   * SDK calls it on the browser's `online` / `offline` events unless `followBrowserNetwork` is false. */
  networkChanged(online: boolean): Promise<void> {
    return this.call("networkChanged", online);
  }
  /** Sync health (admins: `status.admin`): asks for the tenant's devices; a `fleet` event brings them. */
  requestDevices(): Promise<void> {
    return this.call("requestDevices");
  }

  /** The form of a new record: the layout's fields for this role, with the metadata's defaults. */
  newRecord(objectType: string): Promise<DetailViewModel> {
    return this.call("newRecord", objectType);
  }
  /** Creates a record from what the user typed (checked as an edit is; key made here, offline too); its id. */
  create(objectType: string, inputs: FieldInput[]): Promise<string> {
    return this.call("create", objectType, inputs);
  }
  /** Deletes a record (offline too; sent when possible). */
  delete(objectType: string, id: string): Promise<void> {
    return this.call("delete", objectType, id);
  }
  /** The records a reference field may point to, searched on the device. */
  referenceOptions(objectType: string, field: string, search: string, limit = 20): Promise<ReferenceOption[]> {
    return this.call("referenceOptions", objectType, field, search, limit);
  }
  /** Line items typed as rows of texts, as the text an edit of the field takes (`editText`). */
  lineItemsText(objectType: string, field: string, rows: string[][]): Promise<string> {
    return this.call("lineItemsText", objectType, field, rows);
  }
  /** Asks the server for a record's history (who changed it, when, which fields): a `history` event brings it. */
  requestHistory(objectType: string, id: string): Promise<void> {
    return this.call("requestHistory", objectType, id);
  }
  /** The writes waiting for the server, oldest first. */
  pending(): Promise<PendingView[]> {
    return this.call("pending");
  }
  /** The tenant's object types and layouts as this device holds them: a draft to customize. */
  customization(): Promise<Customization> {
    return this.call("customization");
  }
  /** What publishing `draft` would do: its problems, its changes, the data it would destroy. */
  planCustomization(draft: Customization): Promise<Plan> {
    return this.call("planCustomization", draft);
  }
  /** An API name made from a label (`Warranty expires` → `warranty_expires`), by the core's rule. */
  nameFromLabel(label: string): Promise<string> {
    return this.call("nameFromLabel", label);
  }
  /** The field types an admin can choose, named in the user's words. */
  fieldKinds(): Promise<KindChoice[]> {
    return this.call("fieldKinds");
  }
  /** Sends an admin's customization request and waits for the server's answer (at most
   * `waitMs`: a connection lost meanwhile leaves the outcome to be read from the versions). */
  customize(request: CustomizeRequest, waitMs = 30_000): Promise<CustomizeAnswer> {
    const id = `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new MoatError("Closed", "No answer from the server; see the published versions for what happened"));
      }, waitMs);
      const off = this.on((e) => {
        if (e.type === "customized" && e.id === id) {
          off();
          clearTimeout(timer);
          resolve(e.answer);
        }
      });
      this.call("customize", id, request).catch((err: Error) => {
        off();
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Stops the worker (the tab's database handle goes with it). */
  close(): void {
    this.detach();
    this.worker.terminate();
    for (const p of this.calls.values()) p.reject(new MoatError("Closed", "the client was closed"));
    this.calls.clear();
  }

  private call<M extends Method>(method: M, ...args: Parameters<Api[M]>): Promise<ReturnType<Api[M]>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ kind: "call", id, method, args } satisfies ToWorker);
    });
  }

  private receive(m: FromWorker): void {
    switch (m.kind) {
      case "result":
      case "error": {
        const p = this.calls.get(m.id);
        if (!p) return;
        this.calls.delete(m.id);
        if (m.kind === "result") p.resolve(m.value);
        else p.reject(asError(m.error));
        return;
      }
      case "event":
        if (m.event.type === "role") this.owner = m.event.owner;
        for (const l of this.listeners) l(m.event);
        return;
      default:
        return;
    }
  }
}
