// The signed-in user: this window's (sessionStorage, so a reload keeps it, even offline, and another
// window may sign in as someone else), else the last one signed in on this browser (localStorage,
// for a new window).

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
    const raw = sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) {
    const raw = JSON.stringify(s);
    sessionStorage.setItem(KEY, raw);
    localStorage.setItem(KEY, raw);
  } else {
    // Signing out of this window; the browser's last user is forgotten only if it was this one.
    const mine = sessionStorage.getItem(KEY);
    sessionStorage.removeItem(KEY);
    if (localStorage.getItem(KEY) === mine) localStorage.removeItem(KEY);
  }
}

/** A role as people call it. */
export function roleLabel(role: string): string {
  return ({ admin: "Office admin", technician: "Field technician" } as Record<string, string>)[role] ?? role;
}

/** A tenant's id as a name (`company-a` is "Company A"). */
export function tenantLabel(tenant: string): string {
  return tenant
    .split(/[-_\s]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(" ");
}

export function syncUrl(): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/sync`;
}

/** One database per user (and tenant and role): a replica follows one channel. */
export function dbName(s: Session): string {
  return `moat-${s.tenant}-${s.role}-${s.user}.db`.replace(/[^A-Za-z0-9._-]/g, "_");
}
