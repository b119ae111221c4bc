import { useEffect, useState } from "react";
import type { CellView, ListFilter, ListViewModel } from "../sdk";
import { useClient, type Route } from "./hooks";
import { Chip } from "./widgets";

const PAGE = 50;

/**
 * An object type's records, with the columns its metadata names; live. Views ("All", "Assigned to
 * me"), a filter per choice column (with counts) and a date range come from the metadata too; the
 * list pages from SQLite, with page numbers. Every row opens by keyboard (its title is a link).
 */
export function ListPage({ objectType, navigate }: { objectType: string; navigate: (r: Route) => void }) {
  const { client, version, types } = useClient();
  const type = types.find((t) => t.object_type === objectType);
  const [model, setModel] = useState<ListViewModel | null>(null);
  const [search, setSearch] = useState("");
  const [sort, setSort] = useState<{ field: string; asc: boolean } | null>(null);
  const [page, setPage] = useState(0);
  const [mine, setMine] = useState(false);
  const [equals, setEquals] = useState<Record<string, string>>({});
  const [range, setRange] = useState<{ from: string; to: string }>({ from: "", to: "" });
  const [error, setError] = useState<string | null>(null);
  const dateField = model?.date_fields[0]?.field;

  useEffect(() => {
    let live = true;
    const started = performance.now();
    const filters: ListFilter[] = Object.entries(equals)
      .filter(([, v]) => v)
      .map(([field, v]) => ({ field, equals: v }));
    if (dateField && (range.from || range.to)) {
      filters.push({ field: dateField, min: range.from || undefined, max: range.to || undefined });
    }
    client
      .listView({
        object_type: objectType,
        search: search || undefined,
        sort_field: sort?.field,
        ascending: sort?.asc ?? true,
        offset: page * PAGE,
        limit: PAGE,
        mine: mine || undefined,
        filters,
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
  }, [client, version, objectType, search, sort, page, mine, equals, range, dateField]);

  if (error) return <p className="error pad">{error}</p>;
  if (!model) return <p className="muted pad">Loading…</p>;
  const pages = Math.max(1, Math.ceil(model.total / PAGE));
  const last = Math.min(model.total, page * PAGE + model.rows.length);
  const colorOf = (field: string, value: CellView["value"]) =>
    model.facets.find((f) => f.field === field)?.options.find((o) => value.type === "text" && o.value === value.value)?.color;
  const reset = () => setPage(0);
  return (
    <section className="list" data-testid="list" aria-labelledby="list-title">
      <div className="page-head">
        <h1 id="list-title" data-testid="list-title">{model.title}</h1>
        <span className="muted" data-testid="list-count">{model.total.toLocaleString()} records</span>
        {type?.can_create && (
          <a className="button primary" href={`#/new/${encodeURIComponent(objectType)}`} data-testid="list-new">
            New {type.label}
          </a>
        )}
        <label className="sr-only" htmlFor="list-search">Search {model.title}</label>
        <input
          id="list-search"
          className="search"
          type="search"
          placeholder="Search…"
          value={search}
          data-testid="list-search"
          onChange={(e) => {
            setSearch(e.target.value);
            reset();
          }}
        />
      </div>
      <div className="views" role="group" aria-label="Views">
        <button aria-pressed={!mine} data-testid="view-all" onClick={() => (setMine(false), reset())}>
          All <span className="count">{model.all_count.toLocaleString()}</span>
        </button>
        {model.mine_count !== null && (
          <button aria-pressed={mine} data-testid="view-mine" onClick={() => (setMine(true), reset())}>
            Assigned to me <span className="count">{model.mine_count.toLocaleString()}</span>
          </button>
        )}
        {model.facets.map((f) => (
          <label key={f.field} className="filter">
            <span>{f.label}</span>
            <select
              data-testid={`filter-${f.field}`}
              value={equals[f.field] ?? ""}
              onChange={(e) => {
                setEquals((all) => ({ ...all, [f.field]: e.target.value }));
                reset();
              }}
            >
              <option value="">Any</option>
              {f.options.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label} ({o.count.toLocaleString()})
                </option>
              ))}
            </select>
          </label>
        ))}
        {model.date_fields[0] && (
          <>
            <label className="filter">
              <span>{model.date_fields[0].label} from</span>
              <input type="date" data-testid="filter-from" value={range.from} onChange={(e) => (setRange((r) => ({ ...r, from: e.target.value })), reset())} />
            </label>
            <label className="filter">
              <span>to</span>
              <input type="date" data-testid="filter-to" value={range.to} onChange={(e) => (setRange((r) => ({ ...r, to: e.target.value })), reset())} />
            </label>
          </>
        )}
      </div>
      <div className="table-wrap">
        <table className="table" aria-labelledby="list-title">
          <thead>
            <tr>
              {model.columns.map((c) => {
                const sorted = sort?.field === c.field;
                return (
                  <th
                    key={c.field}
                    scope="col"
                    data-testid={`col-${c.field}`}
                    aria-sort={sorted ? (sort.asc ? "ascending" : "descending") : undefined}
                    className={numeric(c.kind) ? "num" : ""}
                  >
                    <button
                      className="sort"
                      onClick={() => setSort((s) => ({ field: c.field, asc: s?.field === c.field ? !s.asc : true }))}
                    >
                      {c.label}
                      <span aria-hidden="true">{sorted ? (sort.asc ? " ▲" : " ▼") : ""}</span>
                    </button>
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {model.rows.map((r) => {
              const href = `#/o/${encodeURIComponent(objectType)}/${encodeURIComponent(r.id)}`;
              return (
                <tr key={r.id} data-testid={`row-${r.id}`} onClick={() => navigate({ objectType, recordId: r.id })}>
                  {r.cells.map((cell, i) => (
                    <td
                      key={cell.field}
                      data-field={cell.field}
                      data-label={model.columns[i]?.label}
                      className={numeric(model.columns[i]?.kind) ? "num" : ""}
                    >
                      {i === 0 ? (
                        <a href={href} className="row-link" onClick={(e) => e.stopPropagation()}>
                          {cell.display || r.title || "(untitled)"}
                        </a>
                      ) : (
                        <Cell cell={cell} kind={model.columns[i]?.kind ?? "text"} color={colorOf(cell.field, cell.value)} />
                      )}
                    </td>
                  ))}
                </tr>
              );
            })}
          </tbody>
        </table>
        {model.rows.length === 0 && <p className="muted pad">No records.</p>}
      </div>
      <nav className="pager" aria-label="Pages">
        <span className="muted small" data-testid="list-range">
          {model.total === 0 ? "0" : `${page * PAGE + 1}–${last}`} of {model.total.toLocaleString()}
        </span>
        <button disabled={page === 0} onClick={() => setPage(page - 1)} aria-label="Previous page">
          ←
        </button>
        {pageNumbers(page, pages).map((n, i) =>
          n === null ? (
            <span key={`gap-${i}`} className="muted" aria-hidden="true">…</span>
          ) : (
            <button
              key={n}
              aria-current={n === page ? "page" : undefined}
              aria-label={`Page ${n + 1}`}
              data-testid={`page-${n + 1}`}
              onClick={() => setPage(n)}
            >
              {n + 1}
            </button>
          ),
        )}
        <button disabled={page + 1 >= pages} onClick={() => setPage(page + 1)} aria-label="Next page">
          →
        </button>
      </nav>
    </section>
  );
}

/** The first, the last and the pages around the current one, with gaps (`null`). */
function pageNumbers(current: number, pages: number): (number | null)[] {
  const shown = [...new Set([0, current - 1, current, current + 1, pages - 1])]
    .filter((n) => n >= 0 && n < pages)
    .sort((a, b) => a - b);
  const out: (number | null)[] = [];
  shown.forEach((n, i) => {
    const prev = shown[i - 1];
    if (i > 0 && prev !== undefined && n - prev > 1) out.push(null);
    out.push(n);
  });
  return out;
}

function numeric(kind: string | undefined): boolean {
  return kind === "currency" || kind === "number";
}

function Cell({ cell, kind, color }: { cell: CellView; kind: string; color?: string | null }) {
  if (kind === "choice" && cell.display) return <Chip text={cell.display} value={cell.value} color={color} />;
  return <>{cell.display}</>;
}
