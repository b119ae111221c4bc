// Customize mode, for the company's admins: object types, fields, list settings and layouts are
// edited as a draft (the metadata as this device holds it), checked by the core as the user types
// (`planCustomization`: the same check the server runs when the draft is published), and published
// in one action. Each publish is a version; any version can be published again (roll back).
import { createContext, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type {
  Customization,
  CustomizationVersion,
  CustomizeAnswer,
  CustomizeRequest,
  FieldKind,
  FieldMeta,
  KindChoice,
  LayoutDef,
  LayoutField,
  LayoutSection,
  ObjectTypeDef,
  Plan,
} from "../sdk";
import { useClient } from "./hooks";
import { Dialog } from "./Dialog";

/** The field types an admin can choose, named by the core (`fieldKinds`). */
const KindsContext = createContext<KindChoice[]>([]);
function useKinds(): { kinds: KindChoice[]; kindLabel: (k: FieldKind) => string } {
  const kinds = useContext(KindsContext);
  return { kinds, kindLabel: (k) => kinds.find((c) => c.kind === k)?.label ?? k };
}
/** The widgets a field of a kind may be drawn with. */
const widgetsFor = (k: FieldKind): FieldKind[] => (k === "text" || k === "multiline" ? ["text", "multiline"] : [k]);
const COLORS = ["#64748b", "#2563eb", "#16a34a", "#b45309", "#dc2626", "#7c3aed"];

function fieldOf(name: string, label: string, kind: FieldKind, types: ObjectTypeDef[]): FieldMeta {
  const f: FieldMeta = { name, label, type: kind, required: false };
  if (kind === "choice") f.options = [{ value: "option_1", label: "Option 1", color: COLORS[1]! }];
  if (kind === "currency") Object.assign(f, { currency: "EUR", scale: 2 });
  if (kind === "reference") f.object_type = types[0]?.object_type ?? null;
  if (kind === "line_items") {
    f.items = [
      { name: "description", label: "Description", type: "text", required: false },
      { name: "quantity", label: "Quantity", type: "number", required: false },
    ];
  }
  return f;
}

/** A deep copy to edit (the draft is plain JSON). */
const copy = <T,>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

export function CustomizePage() {
  const { client, version, session } = useClient();
  const [draft, setDraft] = useState<Customization | null>(null);
  const [plan, setPlan] = useState<Plan | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [versions, setVersions] = useState<CustomizationVersion[]>([]);
  const [roles, setRoles] = useState<string[]>([]);
  const [message, setMessage] = useState<{ text: string; error?: boolean } | null>(null);
  const [confirm, setConfirm] = useState<{ lost: string[]; request: CustomizeRequest } | null>(null);
  const [busy, setBusy] = useState(false);
  const [newType, setNewType] = useState(false);
  const [kinds, setKinds] = useState<KindChoice[]>([]);

  const load = async () => {
    const d = await client.customization();
    setDraft(d);
    setSelected((s) => (s && d.object_types.some((t) => t.object_type === s) ? s : d.object_types[0]?.object_type ?? null));
  };
  /** Until then, the draft is read again whenever synced data changes (after a rollback). */
  const reloadUntil = useRef(0);
  useEffect(() => {
    if (Date.now() < reloadUntil.current) void load();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version]);
  /** The versions must be asked for again (after a publish, or when the asking found no connection). */
  const versionsStale = useRef(true);
  const loadVersions = async () => {
    versionsStale.current = true;
    const a = await client.customize({ action: "versions" }).catch(() => null);
    if (a?.result === "versions") {
      versionsStale.current = false;
      setVersions(a.versions);
      setRoles(a.roles);
    }
  };
  useEffect(() => {
    void load();
    void loadVersions();
    void client.fieldKinds().then(setKinds);
    // A publish that changed the storage reconnects every session, this one too: once live again,
    // the versions are asked for again.
    return client.on((ev) => {
      if (ev.type === "status" && ev.status.phase === "live" && versionsStale.current) void loadVersions();
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client]);

  // The core checks the draft as it changes (and as the synced metadata moves under it).
  useEffect(() => {
    if (!draft) return;
    let stale = false;
    const t = setTimeout(() => {
      client.planCustomization(draft).then(
        (p) => !stale && setPlan(p),
        (e: Error) => !stale && setPlan({ problems: [e.message], changes: [], lost: [], ddl: [], widened: [], drops: false, fingerprint: "" }),
      );
    }, 120);
    return () => {
      stale = true;
      clearTimeout(t);
    };
  }, [client, draft, version]);

  const send = async (request: CustomizeRequest) => {
    setBusy(true);
    setMessage(null);
    const started = performance.now();
    let answer: CustomizeAnswer;
    try {
      answer = await client.customize(request);
    } catch (e) {
      answer = { result: "refused", code: "error", reason: e instanceof Error ? e.message : String(e) };
    }
    setBusy(false);
    if (answer.result === "published") {
      setConfirm(null);
      const ms = Math.round(performance.now() - started);
      setMessage({ text: `Published version ${answer.version} (${ms} ms). Every open app of the company follows.` });
      void loadVersions();
      if (request.action === "publish" && plan) {
        // What was published is the base of the next edits.
        setDraft((d) => (d ? { ...d, base: plan.fingerprint } : d));
      } else {
        // A rollback's metadata arrives with the sync: the draft is read again as it does.
        reloadUntil.current = Date.now() + 5000;
        void load();
      }
    } else if (answer.result === "refused" && answer.code === "destructive") {
      setConfirm({ lost: answer.lost ?? [], request: { ...request, destroy: true } as CustomizeRequest });
    } else if (answer.result === "refused") {
      setConfirm(null);
      setMessage({ text: answer.reason, error: true });
    }
  };

  if (!draft) return <p className="muted pad">Reading the metadata…</p>;
  const type = draft.object_types.find((t) => t.object_type === selected) ?? null;
  const update = (f: (d: Customization) => void) => {
    const next = copy(draft);
    f(next);
    setDraft(next);
  };
  const canPublish = !busy && plan !== null && plan.problems.length === 0 && plan.changes.length > 0;

  return (
    <KindsContext.Provider value={kinds}>
    <section className="customize" data-testid="customize">
      <div className="page-head">
        <h1>Customize</h1>
        <span className="muted">Changes are a draft until you publish them.</span>
      </div>
      <div className="customize-body">
        <nav className="customize-types" aria-label="Object types to customize">
          <ul>
            {draft.object_types.map((t) => (
              <li key={t.object_type}>
                <button
                  className={t.object_type === selected ? "type-choice active" : "type-choice"}
                  aria-pressed={t.object_type === selected}
                  onClick={() => setSelected(t.object_type)}
                  data-testid={`customize-type-${t.object_type}`}
                >
                  {t.label_plural}
                </button>
              </li>
            ))}
          </ul>
          <button onClick={() => setNewType(true)} data-testid="new-object-type">
            New object type
          </button>
        </nav>
        <div className="customize-main">
          {type ? (
            <TypeEditor
              key={type.object_type}
              type={type}
              draft={draft}
              roles={roles.length ? roles : [session.role]}
              update={update}
            />
          ) : (
            <p className="muted">Choose an object type.</p>
          )}
        </div>
      </div>
      <div className="publish-bar" data-testid="publish-bar">
        <div className="publish-text">
          {plan && plan.problems.length > 0 && (
            <div role="alert" className="error" data-testid="draft-problems">
              <strong>Fix before publishing:</strong>
              <ul>
                {plan.problems.map((p) => (
                  <li key={p}>{p}</li>
                ))}
              </ul>
            </div>
          )}
          {plan && plan.problems.length === 0 && (
            <div data-testid="draft-changes" aria-live="polite">
              {plan.changes.length === 0 ? (
                <span className="muted">No changes.</span>
              ) : (
                <>
                  <strong>{plan.changes.length === 1 ? "1 change" : `${plan.changes.length} changes`}:</strong>{" "}
                  {plan.changes.join("; ")}
                  {plan.lost.length > 0 && <span className="error"> — deletes data: {plan.lost.join("; ")}</span>}
                </>
              )}
            </div>
          )}
          {message && (
            <div role="status" className={message.error ? "error" : "ok"} data-testid="publish-message">
              {message.text}
            </div>
          )}
        </div>
        <button onClick={() => void load()} disabled={busy}>
          Discard changes
        </button>
        <button
          className="primary"
          disabled={!canPublish}
          onClick={() => void send({ action: "publish", customization: draft, destroy: false })}
          data-testid="publish"
        >
          {busy ? "Publishing…" : "Publish"}
        </button>
      </div>
      <History versions={versions} onRollback={(v) => void send({ action: "rollback", version: v, destroy: false })} busy={busy} />
      {confirm && (
        <Dialog title="This deletes data for good" alert onClose={() => setConfirm(null)} testid="confirm-destroy">
          <p>Publishing removes these, and their values cannot be brought back:</p>
          <ul data-testid="lost">
            {confirm.lost.map((l) => (
              <li key={l}>{l}</li>
            ))}
          </ul>
          <div className="actions">
            <button onClick={() => setConfirm(null)} data-autofocus>
              Cancel
            </button>
            <button className="danger" onClick={() => void send(confirm.request)} data-testid="confirm-destroy-button">
              Delete the data and publish
            </button>
          </div>
        </Dialog>
      )}
      {newType && (
        <NewTypeDialog
          draft={draft}
          onClose={() => setNewType(false)}
          onCreate={(t, layout) => {
            update((d) => {
              d.object_types.push(t);
              d.layouts.push(layout);
            });
            setSelected(t.object_type);
            setNewType(false);
          }}
        />
      )}
    </section>
    </KindsContext.Provider>
  );
}

function NewTypeDialog({
  draft,
  onClose,
  onCreate,
}: {
  draft: Customization;
  onClose: () => void;
  onCreate: (t: ObjectTypeDef, layout: LayoutDef) => void;
}) {
  const { client } = useClient();
  const [label, setLabel] = useState("");
  const [plural, setPlural] = useState("");
  const [error, setError] = useState<string | null>(null);
  const create = async () => {
    const one = label.trim();
    const many = plural.trim() || `${one}s`;
    if (!one) return setError("A label is needed.");
    let name = await client.nameFromLabel(many);
    const taken = (n: string) => draft.object_types.some((t) => t.object_type === n || t.table_name === n);
    for (let i = 2; taken(name); i++) name = `${await client.nameFromLabel(many)}_${i}`;
    const order = Math.max(0, ...draft.object_types.map((t) => t.sort_order)) + 1;
    onCreate(
      {
        object_type: name,
        table_name: name,
        label: one,
        label_plural: many,
        icon: null,
        sort_order: order,
        title_field: "name",
        list_columns: ["name"],
        search_fields: ["name"],
        default_sort: { field: "name", dir: "asc" },
        fields: [{ name: "name", label: "Name", type: "text", required: true }],
      },
      { object_type: name, name: "detail", role: null, sections: [{ id: "main", label: one, columns: 2, fields: [{ field: "name", widget: "text" }] }] },
    );
  };
  return (
    <Dialog title="New object type" onClose={onClose} testid="new-type-dialog">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <div className="field">
          <label htmlFor="nt-label">Label (one record)</label>
          <input id="nt-label" value={label} onChange={(e) => setLabel(e.target.value)} data-autofocus placeholder="Vehicle" />
        </div>
        <div className="field">
          <label htmlFor="nt-plural">Plural label</label>
          <input id="nt-plural" value={plural} onChange={(e) => setPlural(e.target.value)} placeholder={label ? `${label}s` : "Vehicles"} />
        </div>
        {error && <p className="error">{error}</p>}
        <p className="muted small">It starts with a Name field; add more fields, then publish to create it.</p>
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" data-testid="create-object-type">
            Add object type
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function Section({ title, children, testid }: { title: string; children: ReactNode; testid?: string }) {
  return (
    <section className="card" aria-label={title} data-testid={testid}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

/** What an object type's editors work on: the type, the whole draft, the roles, and how to change it. */
interface EditorProps {
  type: ObjectTypeDef;
  draft: Customization;
  roles: string[];
  update: (f: (d: Customization) => void) => void;
}

function TypeEditor({ type, draft, roles, update }: EditorProps) {
  const { client } = useClient();
  const { kinds } = useKinds();
  const ot = type.object_type;
  const edit = (f: (t: ObjectTypeDef) => void) => update((d) => f(d.object_types.find((t) => t.object_type === ot)!));
  const [newLabel, setNewLabel] = useState("");
  const [newKind, setNewKind] = useState<FieldKind>("text");
  const [open, setOpen] = useState<string | null>(null);

  const addField = async () => {
    const label = newLabel.trim();
    if (!label) return;
    let name = await client.nameFromLabel(label);
    for (let i = 2; type.fields.some((f) => f.name === name); i++) name = `${await client.nameFromLabel(label)}_${i}`;
    edit((t) => t.fields.push(fieldOf(name, label, newKind, draft.object_types)));
    setNewLabel("");
    setOpen(name);
  };
  const removeField = (name: string) =>
    update((d) => {
      const t = d.object_types.find((x) => x.object_type === ot)!;
      t.fields = t.fields.filter((f) => f.name !== name);
      t.list_columns = t.list_columns.filter((c) => c !== name);
      t.search_fields = t.search_fields.filter((c) => c !== name);
      if (t.default_sort?.field === name) t.default_sort = null;
      for (const l of d.layouts.filter((x) => x.object_type === ot)) {
        for (const s of l.sections) s.fields = s.fields.filter((f) => f.field !== name);
      }
    });
  const move = <T,>(list: T[], from: number, to: number) => {
    if (to < 0 || to >= list.length) return;
    const [x] = list.splice(from, 1);
    list.splice(to, 0, x!);
  };

  return (
    <div className="type-editor">
      <Section title={`${type.label_plural}: object`}>
        <div className="grid cols-4">
          <Text label="Label" value={type.label} onChange={(v) => edit((t) => (t.label = v))} id={`${ot}-label`} />
          <Text label="Plural label" value={type.label_plural} onChange={(v) => edit((t) => (t.label_plural = v))} id={`${ot}-plural`} />
          <Text label="Icon" value={type.icon ?? ""} onChange={(v) => edit((t) => (t.icon = v || null))} id={`${ot}-icon`} />
          <Text
            label="Position in the list"
            value={String(type.sort_order)}
            onChange={(v) => edit((t) => (t.sort_order = Number.parseInt(v, 10) || 0))}
            id={`${ot}-order`}
            inputMode="numeric"
          />
        </div>
        <Check
          label="Hidden from the object list (its records stay)"
          checked={type.hidden ?? false}
          onChange={(on) => edit((t) => (t.hidden = on))}
        />
      </Section>
      <Section title="Fields" testid="fields-editor">
        <div className="scroll-x">
        <table className="fields-table">
          <thead>
            <tr>
              <th scope="col">Label</th>
              <th scope="col">Type</th>
              <th scope="col">Required</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {type.fields.map((f, i) => (
              <FieldRow
                key={f.name}
                field={f}
                index={i}
                count={type.fields.length}
                types={draft.object_types}
                open={open === f.name}
                onToggle={() => setOpen(open === f.name ? null : f.name)}
                onChange={(g) => edit((t) => g(t.fields[i]!))}
                onMove={(to) => edit((t) => move(t.fields, i, to))}
                onRemove={() => removeField(f.name)}
              />
            ))}
          </tbody>
        </table>
        </div>
        <form
          className="add-field"
          onSubmit={(e) => {
            e.preventDefault();
            void addField();
          }}
        >
          <div className="field">
            <label htmlFor={`${ot}-new-field`}>New field</label>
            <input id={`${ot}-new-field`} value={newLabel} onChange={(e) => setNewLabel(e.target.value)} placeholder="Label, e.g. Warranty expires" />
          </div>
          <div className="field">
            <label htmlFor={`${ot}-new-kind`}>Type</label>
            <select id={`${ot}-new-kind`} value={newKind} onChange={(e) => setNewKind(e.target.value as FieldKind)}>
              {kinds.map(({ kind: k, label: l }) => (
                <option key={k} value={k}>
                  {l}
                </option>
              ))}
            </select>
          </div>
          <button type="submit" disabled={!newLabel.trim()} data-testid="add-field">
            Add field
          </button>
        </form>
      </Section>
      <Section title="List and search">
        <div className="grid cols-3">
          <div className="field">
            <label htmlFor={`${ot}-title`}>Title field</label>
            <select id={`${ot}-title`} value={type.title_field} onChange={(e) => edit((t) => (t.title_field = e.target.value))}>
              {type.fields.map((f) => (
                <option key={f.name} value={f.name}>
                  {f.label}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={`${ot}-sort`}>Default order</label>
            <select
              id={`${ot}-sort`}
              value={type.default_sort ? `${type.default_sort.field}:${type.default_sort.dir}` : ""}
              onChange={(e) =>
                edit((t) => {
                  const [field, dir] = e.target.value.split(":");
                  t.default_sort = field ? { field, dir: dir ?? "asc" } : null;
                })
              }
            >
              <option value="">As created</option>
              {type.fields.flatMap((f) => [
                <option key={`${f.name}:asc`} value={`${f.name}:asc`}>
                  {f.label}, ascending
                </option>,
                <option key={`${f.name}:desc`} value={`${f.name}:desc`}>
                  {f.label}, descending
                </option>,
              ])}
            </select>
          </div>
        </div>
        <fieldset className="checks">
          <legend>List columns</legend>
          {type.fields.map((f) => (
            <Check
              key={f.name}
              label={f.label}
              checked={type.list_columns.includes(f.name)}
              onChange={(on) => edit((t) => (t.list_columns = on ? [...t.list_columns, f.name] : t.list_columns.filter((c) => c !== f.name)))}
            />
          ))}
        </fieldset>
        <fieldset className="checks">
          <legend>Search looks in</legend>
          {type.fields.map((f) => (
            <Check
              key={f.name}
              label={f.label}
              checked={type.search_fields.includes(f.name)}
              onChange={(on) =>
                edit((t) => (t.search_fields = on ? [...t.search_fields, f.name] : t.search_fields.filter((c) => c !== f.name)))
              }
            />
          ))}
        </fieldset>
      </Section>
      <LayoutEditor type={type} draft={draft} roles={roles} update={update} />
    </div>
  );
}

function Text({
  label,
  value,
  onChange,
  id,
  inputMode,
}: {
  label: string;
  value: string;
  onChange: (v: string) => void;
  id: string;
  inputMode?: "numeric" | "decimal";
}) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} value={value} inputMode={inputMode} onChange={(e) => onChange(e.target.value)} />
    </div>
  );
}

function Check({ label, checked, onChange }: { label: string; checked: boolean; onChange: (on: boolean) => void }) {
  return (
    <label className="check">
      <input type="checkbox" checked={checked} onChange={(e) => onChange(e.target.checked)} /> {label}
    </label>
  );
}

function FieldRow({
  field: f,
  index,
  count,
  types,
  open,
  onToggle,
  onChange,
  onMove,
  onRemove,
}: {
  field: FieldMeta;
  index: number;
  count: number;
  types: ObjectTypeDef[];
  open: boolean;
  onToggle: () => void;
  onChange: (g: (f: FieldMeta) => void) => void;
  onMove: (to: number) => void;
  onRemove: () => void;
}) {
  const id = `fd-${f.name}`;
  const { kinds, kindLabel } = useKinds();
  const num = (v: string) => (v.trim() === "" ? null : Number.parseInt(v, 10));
  return (
    <>
      <tr data-testid={`field-row-${f.name}`}>
        <td>
          <label className="sr-only" htmlFor={`${id}-label`}>
            Label of {f.label}
          </label>
          <input id={`${id}-label`} value={f.label} onChange={(e) => onChange((x) => (x.label = e.target.value))} />
        </td>
        <td>
          <label className="sr-only" htmlFor={`${id}-type`}>
            Type of {f.label}
          </label>
          <select id={`${id}-type`} value={f.type} onChange={(e) => onChange((x) => (x.type = e.target.value as FieldKind))}>
            {kinds.map(({ kind: k, label: l }) => (
              <option key={k} value={k}>
                {l}
              </option>
            ))}
          </select>
        </td>
        <td>
          <input
            type="checkbox"
            aria-label={`${f.label} is required`}
            checked={f.required}
            onChange={(e) => onChange((x) => (x.required = e.target.checked))}
          />
        </td>
        <td className="row-actions">
          <button className="link" onClick={onToggle} aria-expanded={open} aria-label={`Settings of ${f.label}`}>
            Settings
          </button>
          <button className="link" onClick={() => onMove(index - 1)} disabled={index === 0} aria-label={`Move ${f.label} up`}>
            ↑
          </button>
          <button className="link" onClick={() => onMove(index + 1)} disabled={index === count - 1} aria-label={`Move ${f.label} down`}>
            ↓
          </button>
          <button className="link danger-link" onClick={onRemove} aria-label={`Remove ${f.label}`} data-testid={`remove-field-${f.name}`}>
            Remove
          </button>
        </td>
      </tr>
      {open && (
        <tr className="field-settings">
          <td colSpan={4}>
            <div className="grid cols-4">
              <div className="field">
                <label htmlFor={`${id}-name`}>API name</label>
                <input id={`${id}-name`} value={f.name} readOnly aria-readonly="true" />
              </div>
              <Text label="Default value" id={`${id}-default`} value={f.default ?? ""} onChange={(v) => onChange((x) => (x.default = v || null))} />
              {(f.type === "number" || f.type === "currency") && (
                <>
                  <Text label="Smallest value" id={`${id}-min`} value={f.min?.toString() ?? ""} inputMode="numeric" onChange={(v) => onChange((x) => (x.min = num(v)))} />
                  <Text label="Largest value" id={`${id}-max`} value={f.max?.toString() ?? ""} inputMode="numeric" onChange={(v) => onChange((x) => (x.max = num(v)))} />
                </>
              )}
              {f.type === "currency" && (
                <>
                  <Text label="Currency (e.g. EUR)" id={`${id}-cur`} value={f.currency ?? ""} onChange={(v) => onChange((x) => (x.currency = v.toUpperCase() || null))} />
                  <Text label="Decimal places" id={`${id}-scale`} value={f.scale?.toString() ?? ""} inputMode="numeric" onChange={(v) => onChange((x) => (x.scale = num(v)))} />
                </>
              )}
              {f.type === "reference" && (
                <div className="field">
                  <label htmlFor={`${id}-target`}>Refers to</label>
                  <select id={`${id}-target`} value={f.object_type ?? ""} onChange={(e) => onChange((x) => (x.object_type = e.target.value || null))}>
                    <option value="">Choose…</option>
                    {types.map((t) => (
                      <option key={t.object_type} value={t.object_type}>
                        {t.label_plural}
                      </option>
                    ))}
                  </select>
                </div>
              )}
            </div>
            {f.type === "choice" && <OptionsEditor field={f} onChange={onChange} />}
            {f.type === "line_items" && (
              <p className="muted small">
                Columns: {(f.items ?? []).map((i) => `${i.label} (${kindLabel(i.type)})`).join(", ")}
              </p>
            )}
          </td>
        </tr>
      )}
    </>
  );
}

function OptionsEditor({ field: f, onChange }: { field: FieldMeta; onChange: (g: (f: FieldMeta) => void) => void }) {
  const options = f.options ?? [];
  return (
    <fieldset className="options">
      <legend>Options of {f.label}</legend>
      {options.map((o, i) => (
        <div className="option-row" key={i}>
          <input aria-label={`Option ${i + 1} label`} value={o.label} onChange={(e) => onChange((x) => (x.options![i]!.label = e.target.value))} />
          <input aria-label={`Option ${i + 1} stored value`} value={o.value} onChange={(e) => onChange((x) => (x.options![i]!.value = e.target.value))} />
          <input
            type="color"
            aria-label={`Option ${i + 1} colour`}
            value={o.color ?? "#64748b"}
            onChange={(e) => onChange((x) => (x.options![i]!.color = e.target.value))}
          />
          <button className="link danger-link" onClick={() => onChange((x) => x.options!.splice(i, 1))} aria-label={`Remove option ${o.label}`}>
            Remove
          </button>
        </div>
      ))}
      <button
        className="link"
        onClick={() =>
          onChange((x) => {
            const n = (x.options ?? []).length + 1;
            x.options = [...(x.options ?? []), { value: `option_${n}`, label: `Option ${n}`, color: COLORS[n % COLORS.length]! }];
          })
        }
      >
        Add option
      </button>
    </fieldset>
  );
}

const roleName = (r: string | null) => (r === null ? "everyone" : r.charAt(0).toUpperCase() + r.slice(1).replace(/_/g, " "));

function LayoutEditor({ type, draft, roles, update }: EditorProps) {
  const ot = type.object_type;
  const [role, setRole] = useState<string | null>(null);
  const layout = draft.layouts.find((l) => l.object_type === ot && l.name === "detail" && l.role === role) ?? null;
  const shared = draft.layouts.find((l) => l.object_type === ot && l.name === "detail" && l.role === null) ?? null;
  const seen = layout ?? shared;
  const editLayout = (f: (l: LayoutDef) => void) =>
    update((d) => f(d.layouts.find((l) => l.object_type === ot && l.name === "detail" && l.role === role)!));
  const placed = new Set(layout?.sections.flatMap((s) => s.fields.map((f) => f.field)) ?? []);
  const unplaced = type.fields.filter((f) => !placed.has(f.name));
  const dragging = useRef<{ section: number; index: number } | null>(null);
  const label = (name: string) => type.fields.find((f) => f.name === name)?.label ?? name;

  const moveField = (from: { section: number; index: number }, to: { section: number; index: number }) =>
    editLayout((l) => {
      const [lf] = l.sections[from.section]!.fields.splice(from.index, 1);
      const target = l.sections[to.section]!.fields;
      target.splice(Math.min(to.index, target.length), 0, lf!);
    });

  return (
    <div className="layout-area">
      <Section title="Layout" testid="layout-editor">
        <div className="field layout-role">
          <label htmlFor={`${ot}-role`}>Layout for</label>
          <select id={`${ot}-role`} value={role ?? ""} onChange={(e) => setRole(e.target.value || null)} data-testid="layout-role">
            <option value="">Everyone (the shared layout)</option>
            {roles.map((r) => (
              <option key={r} value={r}>
                {roleName(r)}
              </option>
            ))}
          </select>
        </div>
        {!layout && role !== null && (
          <p>
            {roleName(role)} use the shared layout.{" "}
            <button
              onClick={() => update((d) => d.layouts.push({ ...copy(shared ?? { sections: [] as LayoutSection[] }), object_type: ot, name: "detail", role }))}
              data-testid="own-layout"
            >
              Give {roleName(role).toLowerCase()} a layout of their own
            </button>
          </p>
        )}
        {layout && (
          <>
            {layout.sections.map((s, si) => (
              <fieldset className="layout-section" key={si} data-testid={`layout-section-${si}`}>
                <legend>
                  Section {si + 1}: {s.label || "untitled"}
                </legend>
                <div className="grid section-head">
                  <Text label="Section title" id={`${ot}-${role}-s${si}-label`} value={s.label} onChange={(v) => editLayout((l) => (l.sections[si]!.label = v))} />
                  <div className="field">
                    <label htmlFor={`${ot}-${role}-s${si}-cols`}>Columns</label>
                    <select
                      id={`${ot}-${role}-s${si}-cols`}
                      value={s.columns}
                      onChange={(e) => editLayout((l) => (l.sections[si]!.columns = Number(e.target.value)))}
                    >
                      {[1, 2, 3].map((n) => (
                        <option key={n}>{n}</option>
                      ))}
                    </select>
                  </div>
                  <button className="link danger-link" onClick={() => editLayout((l) => l.sections.splice(si, 1))} aria-label={`Remove section ${s.label}`}>
                    Remove section
                  </button>
                </div>
                <ol className="layout-fields">
                  {s.fields.map((lf, fi) => (
                    <LayoutFieldRow
                      key={lf.field}
                      lf={lf}
                      label={label(lf.field)}
                      kind={type.fields.find((f) => f.name === lf.field)?.type ?? "text"}
                      first={fi === 0}
                      last={fi === s.fields.length - 1}
                      onChange={(g) => editLayout((l) => g(l.sections[si]!.fields[fi]!))}
                      onMove={(d) => moveField({ section: si, index: fi }, { section: si, index: fi + d })}
                      onRemove={() => editLayout((l) => l.sections[si]!.fields.splice(fi, 1))}
                      onDragStart={() => (dragging.current = { section: si, index: fi })}
                      onDrop={() => {
                        const from = dragging.current;
                        dragging.current = null;
                        if (from && (from.section !== si || from.index !== fi)) moveField(from, { section: si, index: fi });
                      }}
                    />
                  ))}
                </ol>
                {unplaced.length > 0 && (
                  <div className="field add-to-section">
                    <label htmlFor={`${ot}-${role}-s${si}-add`}>Add a field to this section</label>
                    <select
                      id={`${ot}-${role}-s${si}-add`}
                      value=""
                      onChange={(e) => {
                        const f = type.fields.find((x) => x.name === e.target.value);
                        if (f) editLayout((l) => l.sections[si]!.fields.push({ field: f.name, widget: f.type }));
                      }}
                      data-testid={`add-to-section-${si}`}
                    >
                      <option value="">Choose a field…</option>
                      {unplaced.map((f) => (
                        <option key={f.name} value={f.name}>
                          {f.label}
                        </option>
                      ))}
                    </select>
                  </div>
                )}
              </fieldset>
            ))}
            <div className="layout-actions">
              <button
                onClick={() =>
                  editLayout((l) => {
                    let n = l.sections.length + 1;
                    while (l.sections.some((s) => s.id === `section_${n}`)) n++;
                    l.sections.push({ id: `section_${n}`, label: `Section ${n}`, columns: 2, fields: [] });
                  })
                }
              >
                Add section
              </button>
              {role !== null && (
                <button
                  className="link danger-link"
                  onClick={() => update((d) => (d.layouts = d.layouts.filter((l) => !(l.object_type === ot && l.name === "detail" && l.role === role))))}
                >
                  Use the shared layout for {roleName(role).toLowerCase()}
                </button>
              )}
            </div>
          </>
        )}
      </Section>
      <Preview type={type} layout={seen} role={role} />
    </div>
  );
}

function LayoutFieldRow({
  lf,
  label,
  kind,
  first,
  last,
  onChange,
  onMove,
  onRemove,
  onDragStart,
  onDrop,
}: {
  lf: LayoutField;
  label: string;
  kind: FieldKind;
  first: boolean;
  last: boolean;
  onChange: (g: (f: LayoutField) => void) => void;
  onMove: (d: number) => void;
  onRemove: () => void;
  onDragStart: () => void;
  onDrop: () => void;
}) {
  const widgets = widgetsFor(kind);
  const { kindLabel } = useKinds();
  return (
    <li
      className="layout-field"
      draggable
      onDragStart={(e) => {
        e.dataTransfer.effectAllowed = "move";
        onDragStart();
      }}
      onDragOver={(e) => e.preventDefault()}
      onDrop={(e) => {
        e.preventDefault();
        onDrop();
      }}
      data-testid={`layout-field-${lf.field}`}
    >
      <span className="drag-handle" aria-hidden="true">
        ⋮⋮
      </span>
      <span className="layout-field-name">{label}</span>
      {widgets.length > 1 && (
        <select aria-label={`${label} is drawn as`} value={lf.widget} onChange={(e) => onChange((x) => (x.widget = e.target.value as FieldKind))}>
          {widgets.map((w) => (
            <option key={w} value={w}>
              {kindLabel(w)}
            </option>
          ))}
        </select>
      )}
      <input
        className="label-override"
        aria-label={`Label of ${label} in this layout`}
        placeholder="Label here (optional)"
        value={lf.label ?? ""}
        onChange={(e) => onChange((x) => (x.label = e.target.value || null))}
      />
      <label className="check">
        <input type="checkbox" checked={lf.read_only ?? false} onChange={(e) => onChange((x) => (x.read_only = e.target.checked))} /> Read-only
      </label>
      <button className="link" onClick={() => onMove(-1)} disabled={first} aria-label={`Move ${label} earlier in the section`}>
        ↑
      </button>
      <button className="link" onClick={() => onMove(1)} disabled={last} aria-label={`Move ${label} later in the section`}>
        ↓
      </button>
      <button className="link danger-link" onClick={onRemove} aria-label={`Remove ${label} from the layout`}>
        Remove
      </button>
    </li>
  );
}

const SAMPLE: Partial<Record<FieldKind, string>> = {
  text: "Some text",
  multiline: "A few lines of text…",
  number: "12",
  currency: "1,250.00",
  choice: "",
  date: "3 Sep 2026",
  reference: "A linked record",
  line_items: "2 items",
  boolean: "Yes",
};

/** The detail page as the chosen role will see it, drawn from the draft. */
function Preview({ type, layout, role }: { type: ObjectTypeDef; layout: LayoutDef | null; role: string | null }) {
  const sections = useMemo(() => layout?.sections ?? [], [layout]);
  return (
    <aside className="preview" aria-label="Preview" data-testid="layout-preview">
      <h2>
        Preview: {type.label} as {role === null ? "everyone sees it" : `${roleName(role).toLowerCase()}s see it`}
      </h2>
      {sections.length === 0 && <p className="muted">No sections yet.</p>}
      {sections.map((s) => (
        <div className="card preview-section" key={s.id}>
          <h3>{s.label}</h3>
          <div className={`grid cols-${s.columns}`}>
            {s.fields.map((lf) => {
              const f = type.fields.find((x) => x.name === lf.field);
              if (!f) return null;
              const sample = f.type === "choice" ? f.options?.[0]?.label ?? "" : SAMPLE[f.type] ?? "";
              return (
                <div className={`field widget-${lf.widget}`} key={lf.field} data-testid={`preview-${lf.field}`}>
                  <div className="preview-label">
                    {lf.label ?? f.label}
                    {f.required && (
                      <span className="required" aria-label="required">
                        *
                      </span>
                    )}
                    {lf.read_only && <span className="muted small"> (read-only)</span>}
                  </div>
                  <div className={lf.read_only ? "value" : "value preview-input"}>{sample}</div>
                </div>
              );
            })}
          </div>
        </div>
      ))}
    </aside>
  );
}

function History({ versions, onRollback, busy }: { versions: CustomizationVersion[]; onRollback: (v: number) => void; busy: boolean }) {
  if (versions.length === 0) return null;
  const newest = versions[0]!.version;
  return (
    <section className="card history" aria-label="Published versions" data-testid="customize-history">
      <h2>Published versions</h2>
      <ol>
        {versions.map((v) => (
          <li key={v.version} data-testid={`version-${v.version}`}>
            <strong>Version {v.version}</strong>{" "}
            <span className="muted small">
              {v.user ? `by ${v.user}` : "as it was"}, {new Date(v.at_ms).toLocaleString()}
            </span>
            <div className="small">{v.changes.join("; ")}</div>
            {v.version !== newest && (
              <button className="link" disabled={busy} onClick={() => onRollback(v.version)} data-testid={`rollback-${v.version}`}>
                Roll back to version {v.version}
              </button>
            )}
          </li>
        ))}
      </ol>
    </section>
  );
}
