// The dedicated Worker that runs the wasm core. One tab of an origin owns each database (OPFS lets
// one tab hold it; a Web Lock elects the owner); the workers of other tabs send their calls to the
// owner over a BroadcastChannel and relay its events. When the owning tab closes, its lock is
// released and a waiting tab takes over, opening the database itself.

/// <reference lib="webworker" />
import init, { WebClient } from "../../generated/moat_core.js";
import wasmUrl from "../../generated/moat_core_bg.wasm?url";
import type { Api, Between, FromWorker, Method, OpenOptions, ToWorker, WireError } from "./rpc";
import type { SdkEvent } from "./events";

declare const self: DedicatedWorkerGlobalScope;

const tabId = crypto.randomUUID();
let client: WebClient | null = null;
let channel: BroadcastChannel | null = null;
let ownerReady = false;
/** The page said the browser has no network: a database this tab opens starts without one. (The
 * user's own choice to work offline is kept in the database.) */
let noNetwork = false;
/** Another tab of this database has spoken (it asked who owns it, or called): events are relayed
 * to the others only then (a post to a BroadcastChannel costs the owner a trip through the browser,
 * at every event of a first sync). */
let othersHeard = false;
/** Calls made before anyone could answer them (no owner yet), replayed when one is. */
let waiting: { id: number; method: Method; args: unknown[] }[] = [];

function post(m: FromWorker): void {
  self.postMessage(m);
}

function toWire(e: unknown): WireError {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Invalid", message: String(e) };
}

function onEvent(event: SdkEvent): void {
  post({ kind: "event", event });
  if (othersHeard) channel?.postMessage({ kind: "event", event } satisfies Between);
}

/** Runs a call on the local core (this tab owns the database). */
function callLocal(method: Method, args: unknown[]): unknown {
  const c = client;
  if (!c) throw Object.assign(new Error("the database is not open"), { name: "Closed" });
  // The page's `MoatClient.call` typed these against `Api`; here they are taken back apart.
  const [a0, a1, a2, a3, a4] = args as [never, never, never, unknown, unknown];
  switch (method) {
    case "status":
      return c.status();
    case "objectTypes":
      return c.objectTypes();
    case "listView":
      return c.listView(JSON.stringify(a0));
    case "detailView":
      return c.detailView(a0, a1);
    case "edit":
      return c.edit(a0, a1, a2, JSON.stringify(a3));
    case "editText":
      return c.editText(a0, a1, a2, a3 as string, a4 === undefined ? "" : JSON.stringify(a4));
    case "updateRow":
      return c.updateRow(a0, a1, a2, JSON.stringify(a3));
    case "insertRow":
      return c.insertRow(a0, JSON.stringify(a1));
    case "conflicts":
      return c.conflicts();
    case "resolve":
      return c.resolve(a0, JSON.stringify(a1));
    case "rejected":
      return c.rejected();
    case "dismissRejected":
      return c.dismissRejected(a0);
    case "retryRejected":
      return c.retryRejected(a0);
    case "goOffline":
      return c.goOffline();
    case "requestDevices":
      return c.requestFleet();
    case "goOnline":
      return c.goOnline();
    case "networkChanged":
      return c.networkChanged(a0);
    case "newRecord":
      return c.newRecord(a0);
    case "create":
      return c.create(a0, JSON.stringify(a1));
    case "delete":
      return c.delete(a0, a1);
    case "referenceOptions":
      return c.referenceOptions(a0, a1, a2, a3 as number);
    case "lineItemsText":
      return c.lineItemsText(a0, a1, JSON.stringify(a2));
    case "pending":
      return c.pending();
    case "requestHistory":
      return c.requestHistory(a0, a1);
    case "customization":
      return c.customization();
    case "planCustomization":
      return c.planCustomization(JSON.stringify(a0));
    case "customize":
      return c.customize(a0, JSON.stringify(a1));
    case "nameFromLabel":
      return c.nameFromLabel(a0);
    case "fieldKinds":
      return c.fieldKinds();
  }
}

function call(id: number, method: Method, args: unknown[]): void {
  if (method === "networkChanged") noNetwork = !(args[0] as boolean);
  else if (method === "goOnline") noNetwork = false;
  if (client) {
    try {
      post({ kind: "result", id, value: callLocal(method, args) });
    } catch (e) {
      post({ kind: "error", id, error: toWire(e) });
    }
  } else if (ownerReady && channel) {
    channel.postMessage({ kind: "call", from: tabId, id, method, args } satisfies Between);
  } else {
    waiting.push({ id, method, args });
  }
}

function flushWaiting(): void {
  const w = waiting;
  waiting = [];
  for (const c of w) call(c.id, c.method, c.args);
}

async function becomeOwner(options: OpenOptions): Promise<void> {
  await init({ module_or_path: wasmUrl });
  client = await WebClient.open(options.url, options.token, options.dbName, noNetwork, options.sharedPool ?? false, onEvent);
  ownerReady = true;
  post({ kind: "event", event: { type: "role", owner: true } });
  channel?.postMessage({ kind: "owner-ready" } satisfies Between);
  flushWaiting();
}

function listen(ch: BroadcastChannel): void {
  ch.onmessage = (ev: MessageEvent<Between>) => {
    const m = ev.data;
    if (m.kind === "who-owns" || m.kind === "call") othersHeard = true;
    switch (m.kind) {
      case "who-owns":
        if (client) ch.postMessage({ kind: "owner-ready" } satisfies Between);
        break;
      case "owner-ready":
        if (!client) {
          ownerReady = true;
          flushWaiting();
        }
        break;
      case "call":
        if (client) {
          try {
            const value = callLocal(m.method, m.args);
            ch.postMessage({ kind: "result", to: m.from, id: m.id, value } satisfies Between);
          } catch (e) {
            ch.postMessage({ kind: "error", to: m.from, id: m.id, error: toWire(e) } satisfies Between);
          }
        }
        break;
      case "result":
        if (m.to === tabId) post({ kind: "result", id: m.id, value: m.value });
        break;
      case "error":
        if (m.to === tabId) post({ kind: "error", id: m.id, error: m.error });
        break;
      case "event":
        if (!client) post({ kind: "event", event: m.event });
        break;
    }
  };
}

async function open(options: OpenOptions): Promise<void> {
  const name = `moat:${options.dbName}`;
  channel = new BroadcastChannel(name);
  listen(channel);
  // Whoever holds the lock owns the database until its tab goes away; the others queue for it.
  let opened = false;
  await new Promise<void>((resolve, reject) => {
    void navigator.locks.request(name, { ifAvailable: true }, async (lock) => {
      if (!lock) {
        post({ kind: "event", event: { type: "role", owner: false } });
        channel?.postMessage({ kind: "who-owns" } satisfies Between);
        opened = true;
        resolve();
        // Wait in line; when the owner's tab closes, take over.
        void navigator.locks.request(name, async () => {
          ownerReady = false;
          othersHeard = true; // the tabs that waited beside this one may not have been heard by it
          await becomeOwner(options);
          await new Promise(() => {});
        });
        return;
      }
      try {
        await becomeOwner(options);
        opened = true;
        resolve();
      } catch (e) {
        reject(e);
        return;
      }
      await new Promise(() => {}); // hold the lock for the life of this tab
    });
  });
  if (!opened) throw new Error("could not open the database");
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.kind === "open") {
    noNetwork = m.offline;
    open(m.options).then(
      () => post({ kind: "opened", owner: client !== null }),
      (e: unknown) => post({ kind: "open-failed", error: toWire(e) }),
    );
  } else {
    call(m.id, m.method, m.args);
  }
};

// The browser's `online` and `offline` events are followed by the page's `MoatClient` (unless its
// `followBrowserNetwork` is false), which calls networkChanged: the worker does not follow them on its
// own. A page that opens with no network says so in its `open` message, so the database starts without
// one and no connection is tried before the page's first networkChanged could arrive (a worker's
// sockets need not follow the page's network state). The user's "Work offline" is goOffline, which
// the database remembers: a reload, or a tab that takes over, opens offline from it.

export type { Api };
