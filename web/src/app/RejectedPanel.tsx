import { useEffect, useState } from "react";
import type { RejectedView } from "../sdk";
import { useClient } from "./hooks";

/** Writes the server refused stay listed, with its reason, until the user dismisses them. */
export function RejectedPanel({ onClose }: { onClose: () => void }) {
  const { client, version, refreshStatus } = useClient();
  const [items, setItems] = useState<RejectedView[]>([]);
  useEffect(() => {
    client.rejected().then(setItems, () => setItems([]));
  }, [client, version]);
  return (
    <div className="overlay" onClick={onClose}>
      <div className="dialog" data-testid="rejected" onClick={(e) => e.stopPropagation()}>
        <h2>Changes the server refused</h2>
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
      </div>
    </div>
  );
}
