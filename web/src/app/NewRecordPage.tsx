import { useEffect, useRef, useState } from "react";
import type { DetailViewModel } from "../sdk";
import { useClient, type Route } from "./hooks";
import { Widget } from "./widgets";

/**
 * A new record: the layout's fields for this role with the metadata's defaults. Nothing is written
 * until "Create": the core then reads and checks every field (as the server will) and makes the key
 * on the device, so it works offline.
 */
export function NewRecordPage({ objectType, navigate }: { objectType: string; navigate: (r: Route) => void }) {
  const { client, refreshStatus } = useClient();
  const [model, setModel] = useState<DetailViewModel | null>(null);
  const [values, setValues] = useState<Record<string, string>>({});
  // What "Create" sends: updated as each field commits, so an Enter that commits and submits at once
  // sends the value just typed.
  const typed = useRef<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    client.newRecord(objectType).then(
      (m) => {
        setModel(m);
        const start: Record<string, string> = {};
        for (const f of m.sections.flatMap((s) => s.fields)) if (!f.read_only) start[f.field] = f.cell.edit_text;
        typed.current = start;
        setValues(start);
      },
      (e: Error) => setError(e.message),
    );
  }, [client, objectType]);

  const create = async () => {
    setSaving(true);
    try {
      const id = await client.create(
        objectType,
        Object.entries(typed.current).map(([field, text]) => ({ field, text })),
      );
      refreshStatus();
      navigate({ objectType, recordId: id });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setSaving(false);
    }
  };

  return (
    <section className="detail" data-testid="new-record">
      <div className="crumbs">
        <a href={`#/o/${encodeURIComponent(objectType)}`}>← Back to the list</a>
      </div>
      {model && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void create();
          }}
        >
          <h1 data-testid="detail-title">{model.title}</h1>
          {model.sections.map((s) => (
            <section key={s.id} className="card" aria-labelledby={`new-${s.id}-title`}>
              <h2 id={`new-${s.id}-title`}>{s.label}</h2>
              <div className="grid" style={{ gridTemplateColumns: `repeat(${Math.max(1, s.columns)}, minmax(0, 1fr))` }}>
                {s.fields
                  .filter((f) => !f.read_only)
                  .map((f) => (
                    <Widget
                      key={f.field}
                      objectType={objectType}
                      field={{ ...f, cell: { ...f.cell, edit_text: values[f.field] ?? "" } }}
                      onCommit={async (text) => {
                        typed.current = { ...typed.current, [f.field]: text };
                        setValues(typed.current);
                        return null;
                      }}
                    />
                  ))}
              </div>
            </section>
          ))}
          {error && (
            <p className="error" role="alert" data-testid="new-error">
              {error}
            </p>
          )}
          <div className="actions">
            <a className="button" href={`#/o/${encodeURIComponent(objectType)}`}>
              Cancel
            </a>
            <button type="submit" className="primary" disabled={saving} data-testid="new-create">
              Create {model.object_label.toLowerCase()}
            </button>
          </div>
        </form>
      )}
      {!model && error && <p className="error">{error}</p>}
    </section>
  );
}
