import { useEffect, useState } from "react";
import type { PendingView, RejectedView } from "../sdk";
import { useClient } from "./hooks";
import { Dialog } from "./Dialog";

/** Writes the server refused stay listed, with its reason, until the user dismisses them. */
export function RejectedPanel({ onClose }: { onClose: () => void }) {
  const { client, version, refreshStatus } = useClient();
  const [items, setItems] = useState<RejectedView[]>([]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  useEffect(() => {
    client.rejected().then(setItems, () => setItems([]));
  }, [client, version]);
  const act = async (id: string, what: () => Promise<void>) => {
    try {
      await what();
      setErrors((e) => ({ ...e, [id]: "" }));
    } catch (e) {
      setErrors((all) => ({ ...all, [id]: e instanceof Error ? e.message : String(e) }));
    }
    setItems(await client.rejected());
    refreshStatus();
  };
  return (
    <Dialog title="Changes the server refused" onClose={onClose} testid="rejected">
      {items.length === 0 && <p className="muted">None.</p>}
      <ul className="rejected-list">
        {items.map((r) => (
          <li key={r.mutation_id} data-testid={`rejected-${r.mutation_id}`}>
            <div data-testid="rejected-what">
              {r.object_label} <strong>{r.title}</strong>:{" "}
              {r.labels.map((label, i) => `${label}: ${r.values[i] || "(empty)"}`).join(", ")} was not saved
            </div>
            <div className="error small">{r.reason}</div>
            {errors[r.mutation_id] && (
              <div className="error small" role="alert" data-testid="rejected-retry-error">
                Still refused: {errors[r.mutation_id]}
              </div>
            )}
            <button className="link small" data-testid="rejected-retry" onClick={() => void act(r.mutation_id, () => client.retryRejected(r.mutation_id))}>
              Try again
            </button>
            <button className="link small" data-testid="rejected-dismiss" onClick={() => void act(r.mutation_id, () => client.dismissRejected(r.mutation_id))}>
              Discard
            </button>
          </li>
        ))}
      </ul>
      <div className="actions">
        <button onClick={onClose}>Close</button>
      </div>
    </Dialog>
  );
}

/** What this device changed and the server has not confirmed yet: what, when, which record. */
export function PendingPanel({ onClose }: { onClose: () => void }) {
  const { client, version } = useClient();
  const [items, setItems] = useState<PendingView[] | null>(null);
  useEffect(() => {
    client.pending().then(setItems, () => setItems([]));
  }, [client, version]);
  return (
    <Dialog title="Changes waiting to sync" onClose={onClose} testid="pending-panel">
      {items?.length === 0 && <p className="muted">Every change is on the server.</p>}
      <ul className="rejected-list">
        {(items ?? []).map((p) => (
          <li key={p.mutation_id} data-testid="pending-item">
            <div>
              <span className="tag">{p.action}</span> {p.object_label}{" "}
              {p.object_type && p.action !== "Deleted" ? (
                <a href={`#/o/${encodeURIComponent(p.object_type)}/${encodeURIComponent(p.record_id)}`} onClick={onClose}>
                  {p.title}
                </a>
              ) : (
                <strong>{p.title}</strong>
              )}
            </div>
            {p.labels.length > 0 && p.action === "Changed" && (
              <div className="small">{p.labels.map((l, i) => `${l}: ${p.values[i] || "(empty)"}`).join(", ")}</div>
            )}
            <div className="muted small">Saved on this device at {new Date(Number(p.created_ms)).toLocaleTimeString()}; sent when online</div>
          </li>
        ))}
      </ul>
      <div className="actions">
        <button onClick={onClose}>Close</button>
      </div>
    </Dialog>
  );
}
