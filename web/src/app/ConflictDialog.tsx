import { useState } from "react";
import type { ConflictView, FieldValue } from "../sdk";
import { useClient } from "./hooks";
import { Dialog } from "./Dialog";

function show(absent: FieldValue | null, text: string | null): string {
  if (absent === null || text === null) return "(deleted)";
  return text || "(empty)";
}

/** Someone else changed the same field while this device was editing it: the user decides. */
export function ConflictDialog({
  conflicts,
  onDone,
  onLater,
}: {
  conflicts: ConflictView[];
  onDone: () => void;
  /** Escape: decide later (the conflicts badge opens it again). */
  onLater: () => void;
}) {
  const { client } = useClient();
  const c = conflicts[0];
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (!c) return null;
  const col = c.columns[0];

  const settle = async (choice: Parameters<typeof client.resolve>[1]) => {
    try {
      await client.resolve(c.id, choice);
      setEditing(null);
      setError(null);
      onDone();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  const heading =
    c.kind === "field" ? "Someone else changed this too" : c.kind === "row_deleted" ? "This record was deleted" : "This record already exists";
  return (
    <Dialog title={heading} onClose={onLater} testid="conflict" alert>
      <p className="muted">
        {c.object_label} <strong>{c.title}</strong> changed on the server while you were editing it.
        {conflicts.length > 1 && ` (${conflicts.length - 1} more after this one)`}
      </p>
      <table className="conflict-table">
        <thead>
          <tr>
            <th scope="col">Field</th>
            <th scope="col">Before</th>
            <th scope="col">Theirs</th>
            <th scope="col">Mine</th>
          </tr>
        </thead>
        <tbody>
          {c.columns.map((k) => (
            <tr key={k.column} data-testid={`conflict-${k.column}`}>
              <td>{k.label}</td>
              <td data-testid="conflict-base">{show(k.base, k.base_display)}</td>
              <td data-testid="conflict-theirs" className="theirs">{show(k.theirs, k.theirs_display)}</td>
              <td data-testid="conflict-mine" className="mine">{show(k.mine, k.mine_display)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing !== null && col && (
        <div className="edit-row">
          <label className="sr-only" htmlFor="conflict-edit-input">
            New value of {col.label}
          </label>
          <input
            id="conflict-edit-input"
            data-testid="conflict-edit-input"
            data-autofocus
            autoFocus
            value={editing}
            onChange={(e) => setEditing(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter") void settle({ type: "edit", column: col.column, text: editing });
            }}
          />
          <button
            className="primary"
            data-testid="conflict-edit-save"
            onClick={() => void settle({ type: "edit", column: col.column, text: editing })}
          >
            Save this value
          </button>
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button data-testid="conflict-take-theirs" onClick={() => void settle({ type: "take_theirs" })}>
          Take theirs
        </button>
        {col && c.kind === "field" && (
          <button data-testid="conflict-edit" onClick={() => setEditing(col.mine_edit_text)}>
            Edit…
          </button>
        )}
        <button className="primary" data-testid="conflict-keep-mine" data-autofocus onClick={() => void settle({ type: "keep_mine" })}>
          Keep mine
        </button>
      </div>
    </Dialog>
  );
}
