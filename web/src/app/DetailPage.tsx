import { useEffect, useRef, useState } from "react";
import type { DetailViewModel, FieldValue, HistoryEntryView } from "../sdk";
import { useClient, type Route } from "./hooks";
import { OWN_SAVE, Widget, type StartedFrom } from "./widgets";
import { Dialog } from "./Dialog";

/** A record's page, drawn only from the synced `layout_definition` for this role; live. */
export function DetailPage({
  objectType,
  id,
  navigate,
}: {
  objectType: string;
  id: string;
  navigate: (r: Route) => void;
}) {
  const { client, version, refreshStatus, types } = useClient();
  const type = types.find((t) => t.object_type === objectType);
  const [model, setModel] = useState<DetailViewModel | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  /** Who changed the record, when, which fields: asked of the server (null until it answers). */
  const [history, setHistory] = useState<HistoryEntryView[] | null>(null);

  useEffect(
    () =>
      client.on((ev) => {
        if (ev.type === "history" && ev.object_type === objectType && ev.id === id) setHistory(ev.entries);
      }),
    [client, objectType, id],
  );
  useEffect(() => {
    // Asked again after changes, once per burst of them (a server round trip each).
    const t = setTimeout(() => client.requestHistory(objectType, id).catch(() => undefined), 250);
    return () => clearTimeout(t);
  }, [client, version, objectType, id]);

  useEffect(() => {
    let live = true;
    client.detailView(objectType, id).then(
      (m) => live && (setModel(m), setError(null)),
      (e: Error) => live && setError(e.message),
    );
    return () => {
      live = false;
    };
  }, [client, version, objectType, id]);

  /** Saves run one after another, in the order the user made them. */
  const saving = useRef<Promise<unknown>>(Promise.resolve());
  /** What each field held right after this page's last save of it (an edit begun before that save
   * showed starts from it). */
  const afterSave = useRef(new Map<string, FieldValue>());
  const commit = (field: string, text: string, startedFrom: StartedFrom): Promise<string | null> => {
    const save = async () => {
      let error: string | null = null;
      try {
        const base = startedFrom === OWN_SAVE ? afterSave.current.get(field) : startedFrom;
        await client.editText(objectType, id, field, text, base);
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
      try {
        const m = await client.detailView(objectType, id);
        const value = m.sections.flatMap((s) => s.fields).find((f) => f.field === field)?.cell.value;
        if (value) afterSave.current.set(field, value);
        setModel(m);
      } catch (e) {
        error ??= e instanceof Error ? e.message : String(e);
      }
      refreshStatus();
      return error;
    };
    const saved = saving.current.then(save);
    saving.current = saved;
    return saved;
  };

  const remove = async () => {
    try {
      await client.delete(objectType, id);
      setConfirming(false);
      refreshStatus();
      navigate({ objectType, recordId: null });
    } catch (e) {
      setConfirming(false);
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  return (
    <section className="detail" data-testid="detail">
      <div className="crumbs">
        <a href={`#/o/${encodeURIComponent(objectType)}`}>← {type?.label_plural ?? model?.object_label ?? "Back"}</a>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {model && (
        <>
          <div className="page-head">
            <h1 data-testid="detail-title">{model.title}</h1>
            {type?.can_delete && (
              <button className="danger" data-testid="detail-delete" onClick={() => setConfirming(true)}>
                Delete
              </button>
            )}
          </div>
          {model.sections.map((s) => (
            <section key={s.id} className="card" data-testid={`section-${s.id}`} aria-labelledby={`section-${s.id}-title`}>
              <h2 id={`section-${s.id}-title`}>{s.label}</h2>
              <div className="grid" style={{ gridTemplateColumns: `repeat(${Math.max(1, s.columns)}, minmax(0, 1fr))` }}>
                {s.fields.map((f) => (
                  <Widget key={f.field} field={f} objectType={objectType} onCommit={(text, base) => commit(f.field, text, base)} />
                ))}
              </div>
            </section>
          ))}
          <section className="card" data-testid="history" aria-labelledby="history-title">
            <h2 id="history-title">History</h2>
            {history === null && <p className="muted small">The history comes from the server; it shows when online.</p>}
            {history?.length === 0 && <p className="muted small">No changes recorded yet.</p>}
            <ol className="history">
              {(history ?? []).map((h, i) => (
                <li key={i} data-testid="history-entry">
                  <strong>{h.action}</strong> by {h.who}
                  {h.labels.length > 0 && <span>: {h.labels.join(", ")}</span>}
                  <span className="muted small"> · {new Date(h.at_ms).toLocaleString()}</span>
                </li>
              ))}
            </ol>
          </section>
        </>
      )}
      {confirming && model && (
        <Dialog title={`Delete ${model.object_label.toLowerCase()} “${model.title}”?`} onClose={() => setConfirming(false)} testid="confirm-delete" alert>
          <p>It is removed from this device now and from everyone's when it syncs. This cannot be undone.</p>
          <div className="actions">
            <button data-autofocus onClick={() => setConfirming(false)}>
              Cancel
            </button>
            <button className="danger" data-testid="confirm-delete-yes" onClick={() => void remove()}>
              Delete
            </button>
          </div>
        </Dialog>
      )}
    </section>
  );
}
