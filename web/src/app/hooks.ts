import { createContext, useContext, useEffect, useState } from "react";
import type { MoatClient, ObjectTypeView } from "../sdk";
import type { Session } from "./session";

export interface ClientState {
  client: MoatClient | null;
  /** Bumped whenever synced tables change: views re-read their model. */
  version: number;
  session: Session;
  refreshStatus: () => void;
  /** The object types, with what this user may do with them. */
  types: ObjectTypeView[];
}

export const ClientContext = createContext<ClientState | null>(null);

export function useClient(): ClientState & { client: MoatClient } {
  const s = useContext(ClientContext);
  if (!s || !s.client) throw new Error("useClient outside an open client");
  return s as ClientState & { client: MoatClient };
}

export interface Route {
  objectType: string | null;
  recordId: string | null;
  /** The admin's Sync health page (`#/sync-health`). */
  health?: boolean;
  /** A new record of `objectType` (`#/new/<object type>`). */
  create?: boolean;
  /** The admin's Customize mode (`#/customize`). */
  customize?: boolean;
}

function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "sync-health") return { objectType: null, recordId: null, health: true };
  if (parts[0] === "customize") return { objectType: null, recordId: null, customize: true };
  if (parts[0] === "new" && parts[1]) return { objectType: parts[1], recordId: null, create: true };
  if (parts[0] !== "o" || !parts[1]) return { objectType: null, recordId: null };
  return { objectType: parts[1], recordId: parts[2] ?? null };
}

/** The route lives in the URL hash: `#/o/<object type>[/<record id>]`, `#/new/<object type>`,
 * `#/sync-health` or `#/customize`. */
export function useRoute(): [Route, (r: Route) => void] {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  const navigate = (r: Route) => {
    location.hash = r.objectType
      ? `#/o/${encodeURIComponent(r.objectType)}${r.recordId ? `/${encodeURIComponent(r.recordId)}` : ""}`
      : "#/";
  };
  return [route, navigate];
}
