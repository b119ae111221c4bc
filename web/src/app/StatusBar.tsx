import type { SyncStatus } from "../sdk";

function ago(ms: number | null): string {
  if (!ms) return "never synced";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return "synced just now";
  if (s < 3600) return `synced ${Math.round(s / 60)} min ago`;
  return `synced ${new Date(ms).toLocaleString()}`;
}

/** Always visible: online / syncing (with progress) / offline, and what is waiting. */
export function StatusBar({
  status,
  error,
  owner,
  onShowRejected,
  onShowPending,
  onShowConflicts,
  onToggleOnline,
}: {
  status: SyncStatus | null;
  /** The last sync failure, in words for the user. */
  error?: string | null;
  /** Whether this tab holds the database (null until known); other tabs go through the one that does. */
  owner: boolean | null;
  onShowRejected: () => void;
  onShowPending: () => void;
  onShowConflicts: () => void;
  onToggleOnline: (online: boolean) => void;
}) {
  const phase = status?.phase ?? "connecting";
  const pct = status && status.rows > 0 ? Math.min(100, Math.round((100 * status.rows_done) / status.rows)) : null;
  return (
    <div
      className="status"
      data-testid="status"
      data-phase={phase}
      data-owner={owner === null ? undefined : String(owner)}
      title={owner === false ? "Syncing through another tab of this browser" : undefined}
    >
      <span className={`pill pill-${phase}`} data-testid="status-phase" title={status?.message ?? undefined}>
        <span className="dot" />
        {status?.label ?? "Connecting…"}
      </span>
      {phase === "syncing" && (
        <span className="progress" title={`${status?.rows_done ?? 0} of ${status?.rows ?? 0} rows`}>
          <span className="progress-bar" style={{ width: `${pct ?? 30}%` }} />
          <span className="progress-text">{pct !== null ? `${pct}%` : "catching up"}</span>
        </span>
      )}
      {status?.message && <span className="muted small" data-testid="status-message">{status.message}</span>}
      {status?.indexing && (
        <span className="muted small" data-testid="status-indexing" title="Searches work meanwhile, a little slower">
          Preparing search…
        </span>
      )}
      {error && (
        <span className="muted small" role="status" data-testid="status-error">
          {error}
        </span>
      )}
      {status && status.pending > 0 ? (
        <button className="pending link" data-testid="status-pending" data-count={status.pending} onClick={onShowPending}>
          {status.pending} pending
        </button>
      ) : (
        <span className="pending" data-testid="status-pending" data-count={0}>
          All changes saved
        </span>
      )}
      {status && status.rejected > 0 && (
        <button className="badge badge-danger" data-testid="status-rejected" onClick={onShowRejected}>
          {status.rejected} rejected
        </button>
      )}
      {status && status.conflicts > 0 && (
        <button className="badge badge-warn" data-testid="status-conflicts" onClick={onShowConflicts}>
          {status.conflicts} conflict{status.conflicts > 1 ? "s" : ""}
        </button>
      )}
      <span className="muted small last-sync">{status && phase !== "live" ? ago(status.last_sync_ms) : ""}</span>
      {phase === "offline" && !status?.held_offline && (
        <button className="link small" data-testid="reconnect" onClick={() => onToggleOnline(true)}>
          Try now
        </button>
      )}
      {/* The user's own switch: what they chose, whatever the network does meanwhile. */}
      <button
        className="link small"
        data-testid="toggle-online"
        onClick={() => onToggleOnline(!!status?.held_offline)}
      >
        {status?.held_offline ? "Go online" : "Work offline"}
      </button>
    </div>
  );
}
