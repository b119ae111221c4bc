-- Migration 0002: a new object type, Vehicles. Its table (STRICT, TEXT key, routed by tenant_id), its
-- metadata and its layout, and a few vehicles. A platform migration runs in each tenant's database:
-- `moat_meta`'s `tenant` is the name of the tenant it is running for.
CREATE TABLE vehicles (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL,
    plate       TEXT NOT NULL,
    model       TEXT,
    assignee    TEXT,
    mileage_km  INTEGER,
    next_service TEXT,
    notes       TEXT
) STRICT;

INSERT INTO vehicles (id, tenant_id, plate, model, assignee, mileage_km, next_service)
SELECT printf('veh-%s-%02d', t.tag, n.i), t.tenant, printf('%s-%03d', upper(t.tag), 100 + n.i * 7),
    ('["Ford Transit","VW Crafter","Toyota Hilux","Renault Master"]' ->> (n.i % 4)),
    printf('tech-%s%d', t.tag, 1 + n.i % 4), 20000 + n.i * 3517, printf('2027-%02d-15', 1 + n.i % 12)
FROM (SELECT value AS tenant, substr(value, -1) AS tag FROM moat_meta WHERE key = 'tenant') AS t,
     (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 12) SELECT i FROM c) AS n;

INSERT INTO object_metadata
    (id, tenant_id, object_type, table_name, label, label_plural, icon, sort_order, title_field,
     list_columns, search_fields, default_sort, fields)
SELECT t.tenant || ':vehicles', t.tenant, 'vehicles', 'vehicles', 'Vehicle', 'Vehicles', 'truck', 4, 'plate',
    '["plate","model","assignee","next_service"]',
    '["plate","model","assignee"]',
    '{"field":"plate","dir":"asc"}',
    '[{"name":"plate","label":"Plate","type":"text","required":true},
      {"name":"model","label":"Model","type":"text"},
      {"name":"assignee","label":"Driver","type":"text"},
      {"name":"mileage_km","label":"Mileage (km)","type":"number","min":0},
      {"name":"next_service","label":"Next service","type":"date"},
      {"name":"notes","label":"Notes","type":"multiline"}]'
FROM (SELECT value AS tenant FROM moat_meta WHERE key = 'tenant') AS t;

INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':vehicles:detail', t.tenant, 'vehicles', 'detail', NULL,
    '[{"id":"vehicle","label":"Vehicle","columns":2,"fields":[
        {"field":"plate","widget":"text"},
        {"field":"model","widget":"text"},
        {"field":"assignee","widget":"text"},
        {"field":"mileage_km","widget":"number"},
        {"field":"next_service","widget":"date"}]},
      {"id":"notes","label":"Notes","columns":1,"fields":[{"field":"notes","widget":"multiline"}]}]'
FROM (SELECT value AS tenant FROM moat_meta WHERE key = 'tenant') AS t;
