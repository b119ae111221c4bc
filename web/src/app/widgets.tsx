// One control per widget kind of `layout_definition`. A field commits on change (choice, date) or
// when the input loses focus / Enter is pressed (text, numbers). The input starts from the core's
// editing text and hands back what the user typed: the core reads it (currency in major units with the
// field's scale), validates it, and the page shows its message next to the field. With the text goes
// the value the user started from: if a live change replaced it while they typed, the core raises the
// conflict alert instead of writing over it. A save takes a moment to reach the page; an edit begun
// meanwhile starts from what that save stored (the user's own), not from the value shown before it.
import { useEffect, useRef, useState, type ReactNode } from "react";
import type { FieldValue, FieldView, ReferenceOption } from "../sdk";
import { useClient } from "./hooks";

const palette = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#64748b"];

/** A choice as a chip: the metadata's colour (or one from the value) as its dot and border; the text
 * stays dark, so it reads at any colour (contrast above 4.5:1). */
export function Chip({ text, value, color }: { text: string; value?: FieldValue; color?: string | null }) {
  const key = value && value.type === "text" ? value.value : text;
  let h = 0;
  for (const ch of key) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  const c = color ?? palette[h % palette.length];
  return (
    <span className="chip" style={{ borderColor: `${c}99`, background: `${c}14` }}>
      <span className="chip-dot" style={{ background: c }} aria-hidden="true" />
      {text}
    </span>
  );
}

/** What an edit began from when it began before the user's previous save of the field showed. */
export const OWN_SAVE = "own save";
/** The value an edit began from (the core raises the conflict alert if the field no longer holds it). */
export type StartedFrom = FieldValue | typeof OWN_SAVE;

export function Widget({
  field,
  objectType,
  onCommit,
}: {
  field: FieldView;
  /** The record's object type (the reference picker and line items ask the core about its fields). */
  objectType: string;
  /** Saves `text`; `startedFrom` is the value the user began from, or `OWN_SAVE`: what their previous
   * save of this field stored (begun before that save reached the page). */
  onCommit: (text: string, startedFrom: StartedFrom) => Promise<string | null>;
}) {
  const { widget, cell } = field;
  const stored = cell.edit_text;
  const [text, setText] = useState(stored);
  const [error, setError] = useState<string | null>(null);
  const [dirty, setDirty] = useState(false);
  /** The value when the user began typing (a live change may replace the field's value meanwhile). */
  const [startedFrom, setStartedFrom] = useState<StartedFrom | null>(null);
  /** Saves of this field not yet in the page's model: until they are, the input keeps the user's text
   * (the model still holds the value before it) and what they start from is their own save. */
  const [landing, setLanding] = useState(0);
  const lastSaved = useRef(stored);
  const from = (): StartedFrom => (landing > 0 ? OWN_SAVE : cell.value);
  const typing = (t: string) => {
    if (!dirty) setStartedFrom(from());
    setDirty(true);
    setText(t);
  };
  // A live change from elsewhere replaces the shown value unless the user is typing in it.
  useEffect(() => {
    if (!dirty && landing === 0) setText(stored);
  }, [stored, dirty, landing]);

  const commit = async (raw: string) => {
    const base = dirty && startedFrom !== null ? startedFrom : from();
    setDirty(false);
    setStartedFrom(null);
    if (raw === (landing > 0 ? lastSaved.current : stored)) return;
    lastSaved.current = raw;
    setLanding((n) => n + 1);
    try {
      setError(await onCommit(raw, base));
    } finally {
      setLanding((n) => n - 1);
    }
  };

  const testid = `field-${field.field}`;
  // The control's id, so that its label names it (screen readers, `getByLabel`).
  const controlId = `${testid}-control`;
  const errorId = `${testid}-error`;
  const shown = error ?? (dirty ? null : field.problem);
  // While the user types, someone else's saved value arrived: say so now, not only on save.
  const movedOn =
    dirty && startedFrom !== null && startedFrom !== OWN_SAVE && JSON.stringify(startedFrom) !== JSON.stringify(cell.value);
  const a11y = {
    id: controlId,
    "aria-required": field.required ? true : undefined,
    "aria-invalid": shown ? true : undefined,
    "aria-describedby": shown ? errorId : undefined,
  };
  const escape = (key: string) => {
    if (key !== "Escape") return;
    setDirty(false);
    setStartedFrom(null);
    setText(landing > 0 ? lastSaved.current : stored);
    setError(null);
  };
  let control: ReactNode;
  let labelled = true;
  if (field.read_only) {
    control = <ReadOnly field={field} />;
  } else {
    switch (widget) {
      case "choice":
        control = (
          <select
            {...a11y}
            data-testid={`${testid}-input`}
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              void commit(e.target.value);
            }}
          >
            {!field.required && <option value="">—</option>}
            {field.options.map((o) => (
              <option key={o.value} value={o.value}>
                {o.label}
              </option>
            ))}
          </select>
        );
        break;
      case "multiline":
        control = (
          <textarea
            {...a11y}
            data-testid={`${testid}-input`}
            rows={3}
            value={text}
            onChange={(e) => typing(e.target.value)}
            onBlur={() => void commit(text)}
            onKeyDown={(e) => escape(e.key)}
          />
        );
        break;
      case "boolean":
        control = (
          <input
            {...a11y}
            type="checkbox"
            data-testid={`${testid}-input`}
            checked={text === "1"}
            onChange={(e) => void commit(e.target.checked ? "1" : "0")}
          />
        );
        break;
      case "line_items":
        control = (
          <LineItemsEditor
            field={field}
            objectType={objectType}
            onCommit={async (json) => {
              const e = await onCommit(json, cell.value);
              setError(e);
              return e;
            }}
            onError={setError}
          />
        );
        labelled = false;
        break;
      case "reference":
        control = (
          <ReferencePicker
            field={field}
            objectType={objectType}
            a11y={a11y}
            onPick={(id) => void commit(id)}
          />
        );
        break;
      default:
        control = (
          <input
            {...a11y}
            data-testid={`${testid}-input`}
            type={widget === "date" ? "date" : "text"}
            inputMode={widget === "number" || widget === "currency" ? "decimal" : undefined}
            value={text}
            onChange={(e) => {
              if (widget === "date") {
                setText(e.target.value);
                void commit(e.target.value);
              } else typing(e.target.value);
            }}
            onBlur={() => void commit(text)}
            onKeyDown={(e) => {
              if (e.key === "Enter") (e.target as HTMLInputElement).blur();
              escape(e.key);
            }}
          />
        );
    }
  }
  // `shown`: the refusal of what the user typed, or a stored value the metadata's rules no longer
  // allow (shown as it is, marked, with the rule). Escape takes the input back to the stored value.
  return (
    <div className={`field widget-${widget}${shown ? " invalid" : ""}`} data-testid={testid} data-widget={widget}>
      <label htmlFor={labelled && !field.read_only ? controlId : undefined} id={`${testid}-label`}>
        {field.label}
        {field.required && !field.read_only && (
          <span className="required" aria-hidden="true">
            *
          </span>
        )}
        {field.pending && (
          <span className="unsynced" data-testid={`${testid}-unsynced`} title="Saved on this device; not yet on the server">
            not synced
          </span>
        )}
      </label>
      {widget === "currency" && !field.read_only ? <div className="currency">{control}</div> : control}
      {movedOn && (
        <div className="field-moved" role="status" data-testid={`${testid}-moved`}>
          Changed by someone else meanwhile to “{cell.display || "(empty)"}”. Saving asks which to keep.
        </div>
      )}
      {shown && <div className="field-error" role="alert" id={errorId} data-testid={errorId}>{shown}</div>}
    </div>
  );
}

function ReadOnly({ field }: { field: FieldView }) {
  const { widget, cell } = field;
  if (widget === "choice" && cell.display) {
    const o = field.options.find((x) => cell.value.type === "text" && x.value === cell.value.value);
    return <div className="value" data-testid={`field-${field.field}-value`}><Chip text={cell.display} color={o?.color} /></div>;
  }
  if (widget === "line_items" && field.line_items) {
    const li = field.line_items;
    const amounts = li.total !== null;
    return (
      <table className="line-items" data-testid={`field-${field.field}-value`} aria-label={field.label}>
        <thead>
          <tr>
            {li.columns.map((c) => (
              <th key={c.field} scope="col" className={numericKind(c.kind) ? "num" : ""}>{c.label}</th>
            ))}
            {amounts && <th scope="col" className="num">Amount</th>}
          </tr>
        </thead>
        <tbody>
          {li.rows.map((r, n) => (
            <tr key={n}>
              {r.cells.map((c, i) => (
                <td key={c.field} className={numericKind(li.columns[i]?.kind) ? "num" : ""}>{c.display}</td>
              ))}
              {amounts && <td className="num">{r.amount ?? ""}</td>}
            </tr>
          ))}
        </tbody>
        {amounts && (
          <tfoot>
            <tr>
              <th scope="row" colSpan={li.columns.length}>Total</th>
              <td className="num" data-testid={`field-${field.field}-total`}>{li.total}</td>
            </tr>
          </tfoot>
        )}
      </table>
    );
  }
  if (field.link && cell.display) {
    return (
      <div className="value" data-testid={`field-${field.field}-value`}>
        <a href={`#/o/${encodeURIComponent(field.link.object_type)}/${encodeURIComponent(field.link.id)}`}>{cell.display}</a>
      </div>
    );
  }
  return (
    <div className="value" data-testid={`field-${field.field}-value`}>
      {cell.display || <span className="muted">—</span>}
    </div>
  );
}

function numericKind(kind: string | undefined): boolean {
  return kind === "currency" || kind === "number";
}

/**
 * A reference as a combobox: type to search the referenced object type on the device (its search
 * fields), pick with the mouse or the arrow keys and Enter; Escape puts back the current record. The
 * current record is a link beside it.
 */
function ReferencePicker({
  field,
  objectType,
  a11y,
  onPick,
}: {
  field: FieldView;
  objectType: string;
  a11y: Record<string, unknown>;
  onPick: (id: string) => void;
}) {
  const { client } = useClient();
  /** The chosen record's title: the stored one, or the one just picked (a form keeps no model). */
  const [title, setTitle] = useState(field.cell.display);
  const [text, setText] = useState(field.cell.display);
  const [open, setOpen] = useState(false);
  const [options, setOptions] = useState<ReferenceOption[]>([]);
  const [active, setActive] = useState(0);
  const listId = `field-${field.field}-options`;
  useEffect(() => {
    setTitle(field.cell.display);
    setText(field.cell.display);
  }, [field.cell.display]);
  useEffect(() => {
    if (!open) return;
    let live = true;
    const search = text === title ? "" : text;
    client.referenceOptions(objectType, field.field, search, 20).then(
      (o) => live && (setOptions(o), setActive(0)),
      () => live && setOptions([]),
    );
    return () => {
      live = false;
    };
  }, [client, objectType, field.field, title, text, open]);
  const pick = (o: ReferenceOption) => {
    setOpen(false);
    setTitle(o.title);
    setText(o.title);
    if (o.id !== (field.cell.value.type === "text" ? field.cell.value.value : "")) onPick(o.id);
  };
  return (
    <div className="picker">
      <input
        {...a11y}
        data-testid={`field-${field.field}-input`}
        role="combobox"
        aria-expanded={open}
        aria-controls={listId}
        aria-autocomplete="list"
        aria-activedescendant={open && options[active] ? `${listId}-${active}` : undefined}
        value={text}
        placeholder="Search…"
        onFocus={() => setOpen(true)}
        onChange={(e) => {
          setText(e.target.value);
          setOpen(true);
        }}
        onBlur={() => {
          setOpen(false);
          setText(title);
        }}
        onKeyDown={(e) => {
          if (e.key === "ArrowDown") {
            e.preventDefault();
            setOpen(true);
            setActive((a) => Math.min(a + 1, Math.max(0, options.length - 1)));
          } else if (e.key === "ArrowUp") {
            e.preventDefault();
            setActive((a) => Math.max(0, a - 1));
          } else if (e.key === "Enter" && open && options[active]) {
            e.preventDefault();
            pick(options[active]);
          } else if (e.key === "Escape") {
            setOpen(false);
            setText(title);
          }
        }}
      />
      {field.link && (
        <a
          className="picker-open small"
          href={`#/o/${encodeURIComponent(field.link.object_type)}/${encodeURIComponent(field.link.id)}`}
          data-testid={`field-${field.field}-link`}
        >
          Open {field.cell.display}
        </a>
      )}
      {open && (
        <ul className="options" id={listId} role="listbox" aria-label={field.label}>
          {options.length === 0 && <li className="muted small">No match</li>}
          {options.map((o, i) => (
            <li
              key={o.id}
              id={`${listId}-${i}`}
              role="option"
              aria-selected={i === active}
              className={i === active ? "active" : ""}
              data-testid={`field-${field.field}-option`}
              onMouseDown={(e) => {
                e.preventDefault();
                pick(o);
              }}
            >
              {o.title}
              {o.detail && <span className="muted small"> · {o.detail}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/**
 * Line items as a small table of inputs, one column per item field of the metadata, with each item's
 * amount and the total in the field's currency (computed by the core). A change is saved when focus
 * leaves the table; the core reads every cell (a unit price in major units) and names the item and
 * column of a mistake.
 */
function LineItemsEditor({
  field,
  objectType,
  onCommit,
  onError,
}: {
  field: FieldView;
  objectType: string;
  onCommit: (json: string) => Promise<string | null>;
  onError: (message: string | null) => void;
}) {
  const { client } = useClient();
  const li = field.line_items;
  const stored = (li?.rows ?? []).map((r) => r.cells.map((c) => c.edit_text));
  const [rows, setRows] = useState<string[][]>(stored);
  const [dirty, setDirty] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  const storedKey = JSON.stringify(stored);
  useEffect(() => {
    if (!dirty) setRows(JSON.parse(storedKey) as string[][]);
  }, [storedKey, dirty]);
  if (!li) return null;
  const cols = li.columns;
  const save = async (next: string[][]) => {
    if (JSON.stringify(next) === storedKey) {
      setDirty(false);
      return;
    }
    try {
      const json = await client.lineItemsText(objectType, field.field, next);
      const e = await onCommit(json);
      if (!e) setDirty(false);
    } catch (e) {
      onError(e instanceof Error ? e.message : String(e));
    }
  };
  const set = (r: number, c: number, v: string) => {
    setDirty(true);
    setRows((all) => all.map((row, i) => (i === r ? row.map((x, j) => (j === c ? v : x)) : row)));
  };
  return (
    <div
      ref={box}
      className="line-items-editor"
      data-testid={`field-${field.field}-editor`}
      onBlur={(e) => {
        if (!box.current?.contains(e.relatedTarget as Node | null)) void save(rows);
      }}
    >
      <table className="line-items" aria-label={field.label}>
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c.field} scope="col" className={numericKind(c.kind) ? "num" : ""}>{c.label}</th>
            ))}
            {li.total !== null && <th scope="col" className="num">Amount</th>}
            <th scope="col"><span className="sr-only">Remove</span></th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row, r) => (
            <tr key={r} data-testid="line-item">
              {cols.map((c, i) => (
                <td key={c.field}>
                  <input
                    aria-label={`${c.label}, item ${r + 1}`}
                    data-testid={`line-item-${r}-${c.field}`}
                    className={numericKind(c.kind) ? "num" : ""}
                    inputMode={numericKind(c.kind) ? "decimal" : undefined}
                    value={row[i] ?? ""}
                    onChange={(e) => set(r, i, e.target.value)}
                    onKeyDown={(e) => {
                      if (e.key === "Enter") void save(rows);
                      if (e.key === "Escape") {
                        setDirty(false);
                        setRows(JSON.parse(storedKey) as string[][]);
                      }
                    }}
                  />
                </td>
              ))}
              {li.total !== null && <td className="num">{dirty ? "" : (li.rows[r]?.amount ?? "")}</td>}
              <td>
                <button
                  className="link small"
                  aria-label={`Remove item ${r + 1}`}
                  onClick={() => {
                    const next = rows.filter((_, i) => i !== r);
                    setRows(next);
                    setDirty(true);
                    void save(next);
                  }}
                >
                  ✕
                </button>
              </td>
            </tr>
          ))}
        </tbody>
        {li.total !== null && (
          <tfoot>
            <tr>
              <th scope="row" colSpan={cols.length}>Total</th>
              <td className="num" data-testid={`field-${field.field}-total`}>{dirty ? "…" : li.total}</td>
              <td />
            </tr>
          </tfoot>
        )}
      </table>
      <button
        className="link small"
        data-testid={`field-${field.field}-add`}
        onClick={() => {
          setDirty(true);
          setRows((all) => [...all, cols.map(() => "")]);
        }}
      >
        + Add item
      </button>
    </div>
  );
}
