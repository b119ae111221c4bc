-- Demo data for two tenants, Company-A and Company-B. Deterministic: the same rows on every run.
-- Loaded into a database that already has domain.sql. Row counts per tenant: 200 customers,
-- 400 inventory items, 5,000 jobs (10,000 jobs in all), enough that lists and sync do real work.

-- Object types. Company-B renamed "Jobs" to "Work orders": a tenant's vocabulary is data.
INSERT INTO object_metadata
    (id, tenant_id, object_type, table_name, label, label_plural, icon, sort_order, title_field,
     list_columns, search_fields, default_sort, fields)
SELECT t.tenant || ':jobs', t.tenant, 'jobs', 'jobs', t.job_label, t.job_label_plural, 'wrench', 1, 'title',
    '["title","status","scheduled_date","assignee","price_cents"]',
    '["title","notes","assignee"]',
    '{"field":"scheduled_date","dir":"desc"}',
    '[{"name":"title","label":"Title","type":"text","required":true},
      {"name":"status","label":"Status","type":"choice","required":true,"default":"open",
       "options":[{"value":"open","label":"Open","color":"#2563eb"},
                  {"value":"scheduled","label":"Scheduled","color":"#7c3aed"},
                  {"value":"in_progress","label":"In progress","color":"#d97706"},
                  {"value":"on_hold","label":"On hold","color":"#6b7280"},
                  {"value":"done","label":"Done","color":"#16a34a"}]},
      {"name":"price_cents","label":"Price","type":"currency","currency":"USD","scale":2,"min":0},
      {"name":"notes","label":"Notes","type":"multiline"},
      {"name":"internal_notes","label":"Internal notes","type":"multiline"},
      {"name":"line_items","label":"Line items","type":"line_items","currency":"USD",
       "items":[{"name":"sku","label":"SKU","type":"text"},
                {"name":"qty","label":"Qty","type":"number","min":0},
                {"name":"unit_price_cents","label":"Unit price","type":"currency","currency":"USD","scale":2,"min":0}]},
      {"name":"assignee","label":"Assignee","type":"reference","object_type":"people","mine":true},
      {"name":"customer_id","label":"Customer","type":"reference","object_type":"customers"},
      {"name":"scheduled_date","label":"Scheduled","type":"date"}]'
FROM (SELECT 'company-a' AS tenant, 'Job' AS job_label, 'Jobs' AS job_label_plural
      UNION ALL SELECT 'company-b', 'Work order', 'Work orders') AS t;

INSERT INTO object_metadata
    (id, tenant_id, object_type, table_name, label, label_plural, icon, sort_order, title_field,
     list_columns, search_fields, default_sort, fields)
SELECT t.tenant || ':inventory_items', t.tenant, 'inventory_items', 'inventory_items', 'Inventory item',
    'Inventory', 'box', 2, 'name',
    '["sku","name","quantity","location"]',
    '["sku","name","location"]',
    '{"field":"sku","dir":"asc"}',
    '[{"name":"sku","label":"SKU","type":"text","required":true},
      {"name":"name","label":"Name","type":"text","required":true},
      {"name":"quantity","label":"Quantity","type":"number","min":0},
      {"name":"location","label":"Location","type":"choice",
       "options":[{"value":"warehouse","label":"Warehouse"},{"value":"van-1","label":"Van 1"},
                  {"value":"van-2","label":"Van 2"},{"value":"van-3","label":"Van 3"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO object_metadata
    (id, tenant_id, object_type, table_name, label, label_plural, icon, sort_order, title_field,
     list_columns, search_fields, default_sort, fields)
SELECT t.tenant || ':customers', t.tenant, 'customers', 'customers', 'Customer', 'Customers', 'users', 3,
    'name',
    '["name","phone","email"]',
    '["name","email","address"]',
    '{"field":"name","dir":"asc"}',
    '[{"name":"name","label":"Name","type":"text","required":true},
      {"name":"phone","label":"Phone","type":"text"},
      {"name":"email","label":"Email","type":"text"},
      {"name":"address","label":"Address","type":"multiline"}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO object_metadata
    (id, tenant_id, object_type, table_name, label, label_plural, icon, sort_order, title_field,
     list_columns, search_fields, default_sort, fields)
SELECT t.tenant || ':people', t.tenant, 'people', 'people', 'Person', 'People', 'user', 5, 'name',
    '["name","role","phone"]',
    '["name","role"]',
    '{"field":"name","dir":"asc"}',
    '[{"name":"name","label":"Name","type":"text","required":true},
      {"name":"role","label":"Role","type":"text"},
      {"name":"phone","label":"Phone","type":"text"}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

-- Layouts. Admins get the full job layout; technicians get their own, with the price read-only.
INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':jobs:detail', t.tenant, 'jobs', 'detail', NULL,
    '[{"id":"summary","label":"Summary","columns":2,"fields":[
        {"field":"title","widget":"text"},
        {"field":"status","widget":"choice"},
        {"field":"scheduled_date","widget":"date"},
        {"field":"assignee","widget":"reference"},
        {"field":"customer_id","widget":"reference"},
        {"field":"price_cents","widget":"currency"}]},
      {"id":"work","label":"Work","columns":1,"fields":[
        {"field":"line_items","widget":"line_items"},
        {"field":"notes","widget":"multiline"},
        {"field":"internal_notes","widget":"multiline"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':jobs:detail:technician', t.tenant, 'jobs', 'detail', 'technician',
    '[{"id":"visit","label":"Visit","columns":2,"fields":[
        {"field":"title","widget":"text","read_only":true},
        {"field":"status","widget":"choice"},
        {"field":"scheduled_date","widget":"date","read_only":true},
        {"field":"customer_id","widget":"reference","read_only":true},
        {"field":"price_cents","widget":"currency","read_only":true,"label":"Quoted price"}]},
      {"id":"work","label":"Work done","columns":1,"fields":[
        {"field":"line_items","widget":"line_items"},
        {"field":"notes","widget":"multiline","label":"Technician notes"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':inventory_items:detail', t.tenant, 'inventory_items', 'detail', NULL,
    '[{"id":"item","label":"Item","columns":2,"fields":[
        {"field":"sku","widget":"text"},
        {"field":"name","widget":"text"},
        {"field":"quantity","widget":"number"},
        {"field":"location","widget":"choice"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':customers:detail', t.tenant, 'customers', 'detail', NULL,
    '[{"id":"contact","label":"Contact","columns":2,"fields":[
        {"field":"name","widget":"text"},
        {"field":"phone","widget":"text"},
        {"field":"email","widget":"text"},
        {"field":"address","widget":"multiline"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

INSERT INTO layout_definition (id, tenant_id, object_type, name, role, sections)
SELECT t.tenant || ':people:detail', t.tenant, 'people', 'detail', NULL,
    '[{"id":"person","label":"Person","columns":2,"fields":[
        {"field":"name","widget":"text"},
        {"field":"role","widget":"text"},
        {"field":"phone","widget":"text"}]}]'
FROM (SELECT 'company-a' AS tenant UNION ALL SELECT 'company-b') AS t;

-- People: each company's signed-in demo users (their ids are the tokens' subjects) and three more
-- technicians. Jobs are assigned to the technicians in turn.
INSERT INTO people (id, tenant_id, name, role, phone) VALUES
    ('alice', 'company-a', 'Alice Admin', 'Office admin', '+1-555-0100'),
    ('tom', 'company-a', 'Tom Technician', 'Field technician', '+1-555-0101'),
    ('maria', 'company-a', 'Maria Lopez', 'Field technician', '+1-555-0102'),
    ('dev', 'company-a', 'Dev Patel', 'Field technician', '+1-555-0103'),
    ('lena', 'company-a', 'Lena Fischer', 'Field technician', '+1-555-0104'),
    ('bella', 'company-b', 'Bella Admin', 'Office admin', '+1-555-0200'),
    ('tariq', 'company-b', 'Tariq Technician', 'Field technician', '+1-555-0201'),
    ('ines', 'company-b', 'Ines Moreau', 'Field technician', '+1-555-0202'),
    ('omar', 'company-b', 'Omar Haddad', 'Field technician', '+1-555-0203'),
    ('kofi', 'company-b', 'Kofi Mensah', 'Field technician', '+1-555-0204');

-- Records, generated from a counter. `t.tag` keeps the two tenants' ids apart.
WITH RECURSIVE
    n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200),
    t(tenant, tag) AS (SELECT 'company-a', 'a' UNION ALL SELECT 'company-b', 'b')
INSERT INTO customers (id, tenant_id, name, phone, email, address)
SELECT printf('cust-%s-%04d', t.tag, n.i), t.tenant,
    ('["Harbor","Maple","Summit","Riverside","Oakwood","Granite","Lakeview","Pioneer","Cedar","Northgate"]' ->> (n.i % 10))
        || ' ' ||
    ('["Bakery","Dental","Apartments","Hotel","Clinic","Brewery","School","Gym","Library","Market","Farms","Motors"]' ->> (n.i % 12)),
    printf('+1-555-%04d', (n.i * 37) % 10000),
    printf('contact%d@%s.example', n.i, t.tag),
    printf('%d %s St', 10 + (n.i * 13) % 990,
        ('["Elm","Pine","Main","Oak","Birch","Spruce","Walnut"]' ->> (n.i % 7)))
FROM n, t;

WITH RECURSIVE
    n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400),
    t(tenant, tag) AS (SELECT 'company-a', 'a' UNION ALL SELECT 'company-b', 'b')
INSERT INTO inventory_items (id, tenant_id, sku, name, quantity, location)
SELECT printf('inv-%s-%04d', t.tag, n.i), t.tenant, printf('SKU-%05d', 10000 + n.i * 7),
    ('["Copper pipe","PVC elbow","Ball valve","Thermostat","Filter","Fuse","Breaker","Gasket","Pump seal","Hose clamp"]' ->> (n.i % 10))
        || printf(' %d', 1 + n.i % 40),
    (n.i * 17) % 250,
    ('["warehouse","van-1","van-2","van-3"]' ->> (n.i % 4))
FROM n, t;

WITH RECURSIVE
    n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000 /* demo jobs */),
    t(tenant, tag) AS (SELECT 'company-a', 'a' UNION ALL SELECT 'company-b', 'b')
INSERT INTO jobs (id, tenant_id, title, status, price_cents, notes, internal_notes, line_items, assignee,
                  customer_id, scheduled_date)
SELECT printf('job-%s-%05d', t.tag, n.i), t.tenant,
    ('["Repair","Install","Inspect","Replace","Service","Maintain"]' ->> (n.i % 6)) || ' ' ||
    ('["boiler","water heater","AC unit","furnace","sump pump","thermostat","heat pump","ductwork"]' ->> (n.i % 8)),
    ('["open","scheduled","in_progress","on_hold","done"]' ->> ((n.i * 7) % 5)),
    5000 + (n.i * 7919) % 150000,
    CASE WHEN n.i % 3 = 0 THEN 'Customer asked for a call 30 minutes before arrival.' END,
    CASE WHEN n.i % 4 = 0 THEN 'Margin is thin on this one; no discounts.' END,
    json_array(
        json_object('sku', printf('SKU-%05d', 10000 + ((n.i % 400) + 1) * 7), 'qty', 1 + n.i % 3,
                    'unit_price_cents', 500 + (n.i * 131) % 9000)),
    CASE t.tag WHEN 'a' THEN '["tom","maria","dev","lena"]' ELSE '["tariq","ines","omar","kofi"]' END ->> (n.i % 4),
    printf('cust-%s-%04d', t.tag, 1 + n.i % 200),
    date('2026-09-01', printf('+%d days', n.i % 150))
FROM n, t;
