import { useCallback, useEffect, useState } from "react";
import { MoatClient, type ConflictView, type ObjectTypeView, type SyncStatus } from "../sdk";
import { ClientContext, useRoute, type Route } from "./hooks";
import { dbName, loadSession, roleLabel, saveSession, syncUrl, tenantLabel, type Session } from "./session";
import { SignIn } from "./SignIn";
import { StatusBar } from "./StatusBar";
import { ListPage } from "./ListPage";
import { DetailPage } from "./DetailPage";
import { ConflictDialog } from "./ConflictDialog";
import { PendingPanel, RejectedPanel } from "./RejectedPanel";
import { NewRecordPage } from "./NewRecordPage";
import { SyncHealthPage } from "./SyncHealthPage";
import { CustomizePage } from "./CustomizePage";

declare global {
  interface Window {
    /** The signed-in client, for automation and the browser console. */
    moat?: MoatClient;
  }
}

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  if (!session) {
    return (
      <SignIn
        onSignIn={(s) => {
          saveSession(s);
          setSession(s);
        }}
      />
    );
  }
  return (
    <Workspace
      key={session.user}
      session={session}
      onSignOut={() => {
        saveSession(null);
        setSession(null);
      }}
    />
  );
}

function Workspace({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [client, setClient] = useState<MoatClient | null>(null);
  const [openError, setOpenError] = useState<string | null>(null);
  const [status, setStatus] = useState<SyncStatus | null>(null);
  /** The last sync failure the core reported (cleared once live again). */
  const [syncError, setSyncError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  const [types, setTypes] = useState<ObjectTypeView[]>([]);
  const [conflicts, setConflicts] = useState<ConflictView[]>([]);
  const [showRejected, setShowRejected] = useState(false);
  const [showPending, setShowPending] = useState(false);
  /** The conflict alert was put off (Escape); the conflicts badge brings it back. */
  const [conflictsLater, setConflictsLater] = useState(false);
  const [owner, setOwner] = useState<boolean | null>(null);
  const [route, navigate] = useRoute();

  useEffect(() => {
    let c: MoatClient | null = null;
    let cancelled = false;
    // Tests only: put a new database in the storage pool all users once shared (a browser from
    // before per-user pools).
    const sharedPool = localStorage.getItem("moat.test.sharedPool") === "1";
    MoatClient.open({ url: syncUrl(), token: session.token, dbName: dbName(session), sharedPool }).then(
      async (opened) => {
        if (cancelled) return opened.close();
        c = opened;
        window.moat = opened;
        opened.on((ev) => {
          if (ev.type === "status") {
            setStatus(ev.status);
            if (ev.status.phase === "live") setSyncError(null);
          } else if (ev.type === "error") setSyncError(ev.message);
          else if (ev.type === "tables") setVersion((v) => v + 1);
          else if (ev.type === "conflicts") {
            setConflicts(ev.conflicts);
            setConflictsLater(false);
          }
          else if (ev.type === "rejected") setVersion((v) => v + 1);
          else if (ev.type === "role") setOwner(ev.owner);
        });
        setOwner(opened.owner);
        setClient(opened);
        setStatus(await opened.status());
        setConflicts(await opened.conflicts());
      },
      (e: unknown) => setOpenError(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      cancelled = true;
      c?.close();
      if (window.moat === c) window.moat = undefined;
    };
  }, [session]);

  useEffect(() => {
    if (!client) return;
    // The navigation's counts follow the data, but not on every single change: a burst of live edits
    // re-reads them once, so the worker stays free for the edits themselves.
    const t = setTimeout(() => {
      client.objectTypes().then(setTypes, () => setTypes([]));
      // A status event follows every change; the counts in it (pending, conflicts) are re-read there.
      client.conflicts().then(setConflicts, () => undefined);
    }, types.length === 0 ? 0 : 250);
    return () => clearTimeout(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, version]);

  const refreshStatus = useCallback(() => {
    client?.status().then(setStatus, () => undefined);
    client?.conflicts().then(setConflicts, () => undefined);
  }, [client]);

  const current = route.objectType ?? types[0]?.object_type ?? null;
  const adminPage = route.health || route.customize;

  return (
    <ClientContext.Provider value={{ client, version, session, refreshStatus, types }}>
      <div className="app">
        <header className="topbar">
          <div className="brand">
            <span className="brand-mark">M</span> Moat
            <span className="tenant-name">{tenantLabel(session.tenant)}</span>
          </div>
          <StatusBar
            status={status}
            error={syncError}
            owner={owner}
            onShowRejected={() => setShowRejected(true)}
            onShowPending={() => setShowPending(true)}
            onShowConflicts={() => setConflictsLater(false)}
            onToggleOnline={(online) => (online ? client?.goOnline() : client?.goOffline())}
          />
          <div className="user">
            <span className="avatar" aria-hidden="true">{session.name.slice(0, 1)}</span>
            <span className="user-name" data-testid="user-name">
              {session.name}
              <span className="muted small">{roleLabel(session.role)}</span>
            </span>
            <button className="link" onClick={onSignOut}>
              Sign out
            </button>
          </div>
        </header>
        <div className="body">
          <nav className="sidebar" data-testid="object-types" aria-label="Objects">
            <div className="sidebar-title">Objects</div>
            {types.map((t) => (
              <a
                key={t.object_type}
                href={`#/o/${t.object_type}`}
                className={t.object_type === current && !adminPage ? "nav-item active" : "nav-item"}
                aria-current={t.object_type === current && !adminPage ? "page" : undefined}
                data-testid={`type-${t.object_type}`}
              >
                <TypeIcon name={t.icon} label={t.label_plural} />
                <span className="nav-label">{t.label_plural}</span>
                <span className="nav-count">{t.count.toLocaleString()}</span>
              </a>
            ))}
            {client && types.length === 0 && <p className="muted small pad">Waiting for the first sync…</p>}
            {status?.admin && (
              <>
                <div className="sidebar-title">Admin</div>
                <a
                  href="#/sync-health"
                  className={route.health ? "nav-item active" : "nav-item"}
                  data-testid="nav-sync-health"
                >
                  <TypeIcon name="sync-health" label="Sync health" />
                  <span className="nav-label">Sync health</span>
                </a>
                <a
                  href="#/customize"
                  className={route.customize ? "nav-item active" : "nav-item"}
                  aria-current={route.customize ? "page" : undefined}
                  data-testid="nav-customize"
                >
                  <TypeIcon name="customize" label="Customize" />
                  <span className="nav-label">Customize</span>
                </a>
              </>
            )}
          </nav>
          <main className="main">
            {openError && <p className="error">Cannot open the local database: {openError}</p>}
            {!client && !openError && <p className="muted pad">Opening the local database…</p>}
            {client && route.health && <SyncHealthPage />}
            {client && route.customize && status?.admin && <CustomizePage />}
            {client && route.customize && !status?.admin && <p className="muted pad">Only the company's admins customize it.</p>}
            {client && !adminPage && current && <Page route={{ ...route, objectType: current }} navigate={navigate} />}
          </main>
        </div>
        {conflicts.length > 0 && client && !conflictsLater && (
          <ConflictDialog conflicts={conflicts} onDone={refreshStatus} onLater={() => setConflictsLater(true)} />
        )}
        {showRejected && client && <RejectedPanel onClose={() => setShowRejected(false)} />}
        {showPending && client && <PendingPanel onClose={() => setShowPending(false)} />}
      </div>
    </ClientContext.Provider>
  );
}

function Page({ route, navigate }: { route: Route & { objectType: string }; navigate: (r: Route) => void }) {
  if (route.create) {
    return <NewRecordPage key={`new/${route.objectType}`} objectType={route.objectType} navigate={navigate} />;
  }
  if (route.recordId) {
    return <DetailPage key={`${route.objectType}/${route.recordId}`} objectType={route.objectType} id={route.recordId} navigate={navigate} />;
  }
  return <ListPage key={route.objectType} objectType={route.objectType} navigate={navigate} />;
}

const tints = ["#0e7490", "#6d28d9", "#b45309", "#15803d", "#be185d", "#1d4ed8"];

/** A tile with the type's initial; its colour follows the icon name the metadata gives. */
function TypeIcon({ name, label }: { name: string | null; label: string }) {
  let h = 0;
  for (const ch of name ?? label) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return (
    <span className="type-icon" style={{ background: tints[h % tints.length] }} aria-hidden="true">
      {label.slice(0, 1).toUpperCase()}
    </span>
  );
}
