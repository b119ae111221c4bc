// The signed-in user, kept in localStorage so that a reload (even offline) opens the same database.

export interface Session {
  user: string;
  name: string;
  tenant: string;
  role: string;
  token: string;
}

const KEY = "moat.session";

export function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

export function syncUrl(): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/sync`;
}

/** One database per user (and tenant and role): a replica follows one channel. */
export function dbName(s: Session): string {
  return `moat-${s.tenant}-${s.role}-${s.user}.db`.replace(/[^A-Za-z0-9._-]/g, "_");
}
