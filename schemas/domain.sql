-- Moat demo domain: a field-service company.
--
-- Every table here is a synced table: the server holds it, each client holds a `server_data_<name>`
-- copy (golden state) and a projection under the plain name. Rules every synced table follows:
--   * STRICT, so SQLite itself enforces the declared column types on every side;
--   * an explicit TEXT primary key, so a client can create rows offline without asking anyone;
--   * a `tenant_id` column, which the server's sync rules use to route rows to channels;
--   * money is INTEGER minor units (cents), never REAL;
--   * structured values (line items, metadata) are JSON in TEXT columns.
-- No foreign keys and no UNIQUE beyond the key: references are validated by the metadata layer, and a
-- changeset from the server must never be refused by a replica half-way.

CREATE TABLE customers (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    phone      TEXT,
    email      TEXT,
    address    TEXT
) STRICT;

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL,
    title          TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'open',
    price_cents    INTEGER NOT NULL DEFAULT 0,
    notes          TEXT,
    internal_notes TEXT,
    line_items     TEXT NOT NULL DEFAULT '[]',
    assignee       TEXT,
    customer_id    TEXT,
    scheduled_date TEXT
) STRICT;

-- The company's people: who jobs are assigned to (a job's `assignee` is a person's id, which is the
-- user id their sign-in token carries).
CREATE TABLE people (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT,
    phone      TEXT
) STRICT;

CREATE TABLE inventory_items (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL,
    sku        TEXT NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL DEFAULT 0,
    location   TEXT
) STRICT;

-- One row per object type a tenant has. `fields` is a JSON array describing every field:
--   {"name": "status", "label": "Status", "type": "choice", "required": true,
--    "options": [{"value": "open", "label": "Open", "color": "#2563eb"}, ...]}
-- Field types: text, multiline, number, currency, choice, date, reference, line_items, boolean.
-- A `reference` field names its target: {"type": "reference", "object_type": "customers"}; with
-- "mine": true it holds a user's id, and lists offer "Assigned to me".
-- A `line_items` field names its item columns: "items": [{"name": "qty", "label": "Qty", "type": "number"},
-- {"name": "unit_price_cents", "label": "Unit price", "type": "currency", "currency": "USD", "scale": 2}];
-- an item's amount is its currency column times its number columns, and the field shows their total.
-- "default" is the value a new record starts with, as the field's input reads it ("open", "12.50").
-- A `currency` field names its currency and scale: {"currency": "USD", "scale": 2}.
-- `list_columns` and `search_fields` are JSON arrays of field names; `default_sort` is
-- {"field": "...", "dir": "asc" | "desc"}.
CREATE TABLE object_metadata (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL,
    object_type   TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    label         TEXT NOT NULL,
    label_plural  TEXT NOT NULL,
    icon          TEXT,
    sort_order    INTEGER NOT NULL DEFAULT 0,
    title_field   TEXT NOT NULL,
    list_columns  TEXT NOT NULL DEFAULT '[]',
    search_fields TEXT NOT NULL DEFAULT '[]',
    default_sort  TEXT,
    fields        TEXT NOT NULL DEFAULT '[]',
    hidden        INTEGER
) STRICT;

-- One row per layout of an object type. `role` NULL means the layout applies to every role; a row
-- with a role wins over it for that role. `sections` is a JSON array:
--   [{"id": "summary", "label": "Summary", "columns": 2,
--     "fields": [{"field": "title", "widget": "text"},
--                {"field": "price_cents", "widget": "currency", "read_only": true,
--                 "label": "Quoted price"}]}]
-- Widgets: text, multiline, number, currency, choice, date, reference, line_items, boolean.
-- `label` overrides the field's label from object_metadata for this layout only.
CREATE TABLE layout_definition (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL,
    object_type  TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT 'detail',
    role         TEXT,
    sections     TEXT NOT NULL DEFAULT '[]'
) STRICT;

CREATE INDEX jobs_tenant_status ON jobs (tenant_id, status);
CREATE INDEX jobs_tenant_assignee ON jobs (tenant_id, assignee);
CREATE INDEX inventory_tenant_sku ON inventory_items (tenant_id, sku);
CREATE INDEX customers_tenant_name ON customers (tenant_id, name);
