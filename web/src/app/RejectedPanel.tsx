import { useEffect, useState } from "react";
import type { PendingView, RejectedView } from "../sdk";
import { useClient } from "./hooks";
import { Dialog } from "./Dialog";

/** Writes the server refused stay listed, with its reason, until the user dismisses them. */
export function RejectedPanel({ onClose }: { onClose: () => void }) {
  const { client, version, refreshStatus } = useClient();
  const [items, setItems] = useState<RejectedView[]>([]);
  useEffect(() => {
    client.rejected().then(setItems, () => setItems([]));
  }, [client, version]);
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
            <button
              className="link small"
              onClick={async () => {
                await client.dismissRejected(r.mutation_id);
                setItems(await client.rejected());
                refreshStatus();
              }}
            >
              Dismiss
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
