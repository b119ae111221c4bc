// Small helpers between `FieldValue` and what an input holds.
import type { FieldValue } from "./types";

/** A value as an input shows it (currency in major units, e.g. 12.50). */
export function displayValue(v: FieldValue | null | undefined, widget?: string): string {
  if (!v || v.type === "null") return "";
  if (widget === "currency" && v.type === "integer") return (v.value / 100).toFixed(2);
  return String(v.value);
}

/** What an input holds, as the value the field stores; `null` when it is not a valid number. */
export function fieldValue(text: string, widget: string): FieldValue | null {
  const t = text.trim();
  if (t === "") return { type: "null" };
  switch (widget) {
    case "number": {
      const n = Number(t);
      if (!Number.isFinite(n)) return null;
      return Number.isInteger(n) ? { type: "integer", value: n } : { type: "real", value: n };
    }
    case "currency": {
      const n = Number(t.replace(/[, ]/g, ""));
      if (!Number.isFinite(n)) return null;
      return { type: "integer", value: Math.round(n * 100) };
    }
    case "boolean":
      return { type: "integer", value: t === "true" || t === "1" ? 1 : 0 };
    default:
      return { type: "text", value: text };
  }
}
