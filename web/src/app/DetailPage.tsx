import { useEffect, useState } from "react";
import type { DetailViewModel, FieldValue } from "../sdk";
import { useClient, type Route } from "./hooks";
import { Widget } from "./widgets";

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
  const { client, version, refreshStatus } = useClient();
  const [model, setModel] = useState<DetailViewModel | null>(null);
  const [error, setError] = useState<string | null>(null);

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

  const commit = async (field: string, text: string, startedFrom: FieldValue): Promise<string | null> => {
    try {
      await client.editText(objectType, id, field, text, startedFrom);
      setModel(await client.detailView(objectType, id));
      refreshStatus();
      return null;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  };

  return (
    <section className="detail" data-testid="detail">
      <div className="crumbs">
        <a href={`#/o/${objectType}`} onClick={() => navigate({ objectType, recordId: null })}>
          ← {model?.object_label ?? "Back"}
        </a>
      </div>
      {error && <p className="error">{error}</p>}
      {model && (
        <>
          <h1 data-testid="detail-title">{model.title}</h1>
          {model.sections.map((s) => (
            <div key={s.id} className="card" data-testid={`section-${s.id}`}>
              <h2>{s.label}</h2>
              <div className="grid" style={{ gridTemplateColumns: `repeat(${Math.max(1, s.columns)}, minmax(0, 1fr))` }}>
                {s.fields.map((f) => (
                  <Widget key={f.field} field={f} onCommit={(text, base) => commit(f.field, text, base)} />
                ))}
              </div>
            </div>
          ))}
        </>
      )}
    </section>
  );
}
