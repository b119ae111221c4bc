// One control per widget kind of `layout_definition`. A field commits on change (choice, date) or
// when the input loses focus / Enter is pressed (text, numbers). The input starts from the core's
// editing text and hands back what the user typed: the core reads it (currency in major units with the
// field's scale), validates it, and the page shows its message next to the field. With the text goes
// the value the user started from: if a live change replaced it while they typed, the core raises the
// conflict alert instead of writing over it.
import { useEffect, useState, type ReactNode } from "react";
import type { FieldValue, FieldView } from "../sdk";

const palette = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#64748b"];

export function Chip({ text, value, color }: { text: string; value?: FieldValue; color?: string | null }) {
  const key = value && value.type === "text" ? value.value : text;
  let h = 0;
  for (const ch of key) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  const c = color ?? palette[h % palette.length];
  return (
    <span className="chip" style={{ color: c, borderColor: `${c}55`, background: `${c}12` }}>
      {text}
    </span>
  );
}

export function Widget({
  field,
  onCommit,
}: {
  field: FieldView;
  onCommit: (text: string, startedFrom: FieldValue) => Promise<string | null>;
}) {
  const { widget, cell } = field;
  const stored = cell.edit_text;
  const [text, setText] = useState(stored);
  const [error, setError] = useState<string | null>(null);
  const [dirty, setDirty] = useState(false);
  /** The value when the user began typing (a live change may replace the field's value meanwhile). */
  const [startedFrom, setStartedFrom] = useState<FieldValue | null>(null);
  const typing = (t: string) => {
    if (!dirty) setStartedFrom(cell.value);
    setDirty(true);
    setText(t);
  };
  // A live change from elsewhere replaces the shown value unless the user is typing in it.
  useEffect(() => {
    if (!dirty) setText(stored);
  }, [stored, dirty]);

  const commit = async (raw: string) => {
    const base = dirty && startedFrom ? startedFrom : cell.value;
    setDirty(false);
    setStartedFrom(null);
    if (raw === stored) return;
    setError(await onCommit(raw, base));
  };

  const testid = `field-${field.field}`;
  // The control's id, so that its label names it (screen readers, `getByLabel`).
  const controlId = `${testid}-control`;
  const errorId = `${testid}-error`;
  const shown = error ?? (dirty ? null : field.problem);
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
    setText(stored);
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
      case "reference":
        control = <ReadOnly field={field} />;
        labelled = false;
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
      <label htmlFor={labelled && !field.read_only ? controlId : undefined}>
        {field.label}
        {field.required && !field.read_only && (
          <span className="required" aria-hidden="true">
            *
          </span>
        )}
      </label>
      {widget === "currency" && !field.read_only ? <div className="currency">{control}</div> : control}
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
  if (widget === "line_items" && cell.value.type === "text") {
    let items: Record<string, unknown>[] = [];
    try {
      const parsed: unknown = JSON.parse(cell.value.value);
      if (Array.isArray(parsed)) items = parsed as Record<string, unknown>[];
    } catch {
      items = [];
    }
    const keys = [...new Set(items.flatMap((i) => Object.keys(i)))];
    return (
      <table className="line-items" data-testid={`field-${field.field}-value`}>
        <thead>
          <tr>{keys.map((k) => <th key={k}>{k.replace(/_/g, " ")}</th>)}</tr>
        </thead>
        <tbody>
          {items.map((it, n) => (
            <tr key={n}>{keys.map((k) => <td key={k}>{String(it[k] ?? "")}</td>)}</tr>
          ))}
        </tbody>
      </table>
    );
  }
  return (
    <div className="value" data-testid={`field-${field.field}-value`}>
      {cell.display || <span className="muted">—</span>}
    </div>
  );
}
