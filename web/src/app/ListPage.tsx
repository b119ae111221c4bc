import { useEffect, useState } from "react";
import type { CellView, ListViewModel } from "../sdk";
import { useClient, type Route } from "./hooks";
import { Chip } from "./widgets";

const PAGE = 50;

/** An object type's records, with the columns its metadata names; live. */
export function ListPage({ objectType, navigate }: { objectType: string; navigate: (r: Route) => void }) {
  const { client, version } = useClient();
  const [model, setModel] = useState<ListViewModel | null>(null);
  const [search, setSearch] = useState("");
  const [sort, setSort] = useState<{ field: string; asc: boolean } | null>(null);
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    const started = performance.now();
    client
      .listView({
        object_type: objectType,
        search: search || undefined,
        sort_field: sort?.field,
        ascending: sort?.asc ?? true,
        offset,
        limit: PAGE,
      })
      .then(
        (m) => {
          if (!live) return;
          setModel(m);
          setError(null);
          performance.measure?.("moat:list", { start: started });
        },
        (e: Error) => live && setError(e.message),
      );
    return () => {
      live = false;
    };
  }, [client, version, objectType, search, sort, offset]);

  if (error) return <p className="error pad">{error}</p>;
  if (!model) return <p className="muted pad">Loading…</p>;
  const last = Math.min(model.total, offset + model.rows.length);
  return (
    <section className="list" data-testid="list">
      <div className="page-head">
        <h1 data-testid="list-title">{model.title}</h1>
        <span className="muted">{model.total.toLocaleString()} records</span>
        <input
          className="search"
          type="search"
          placeholder="Search…"
          value={search}
          data-testid="list-search"
          onChange={(e) => {
            setSearch(e.target.value);
            setOffset(0);
          }}
        />
      </div>
      <div className="table-wrap">
        <table className="table">
          <thead>
            <tr>
              {model.columns.map((c) => (
                <th
                  key={c.field}
                  data-testid={`col-${c.field}`}
                  onClick={() => setSort((s) => ({ field: c.field, asc: s?.field === c.field ? !s.asc : true }))}
                  className={c.kind === "currency" || c.kind === "number" ? "num" : ""}
                >
                  {c.label}
                  {sort?.field === c.field ? (sort.asc ? " ▲" : " ▼") : ""}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {model.rows.map((r) => (
              <tr
                key={r.id}
                data-testid={`row-${r.id}`}
                onClick={() => navigate({ objectType, recordId: r.id })}
              >
                {r.cells.map((cell, i) => (
                  <td
                    key={cell.field}
                    data-field={cell.field}
                    className={numeric(model.columns[i]?.kind) ? "num" : ""}
                  >
                    <Cell cell={cell} kind={model.columns[i]?.kind ?? "text"} />
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        {model.rows.length === 0 && <p className="muted pad">No records.</p>}
      </div>
      <div className="pager">
        <span className="muted small">
          {model.total === 0 ? "0" : `${offset + 1}–${last}`} of {model.total.toLocaleString()}
        </span>
        <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          ← Previous
        </button>
        <button disabled={last >= model.total} onClick={() => setOffset(offset + PAGE)}>
          Next →
        </button>
      </div>
    </section>
  );
}

function numeric(kind: string | undefined): boolean {
  return kind === "currency" || kind === "number";
}

function Cell({ cell, kind }: { cell: CellView; kind: string }) {
  if (kind === "choice" && cell.display) return <Chip text={cell.display} value={cell.value} />;
  return <>{cell.display}</>;
}
