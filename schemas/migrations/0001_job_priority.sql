-- Migration 0001: a priority for jobs. A new nullable column, the field in each tenant's job metadata
-- (with its choices), a list column, and the field on the job layouts (admins and technicians).
ALTER TABLE jobs ADD COLUMN priority TEXT;

UPDATE jobs SET priority = CASE WHEN status = 'open' THEN 'high' ELSE 'normal' END;

UPDATE object_metadata
SET fields = json_insert(fields, '$[#]', json('{"name":"priority","label":"Priority","type":"choice",
        "options":[{"value":"low","label":"Low","color":"#64748b"},
                   {"value":"normal","label":"Normal","color":"#2563eb"},
                   {"value":"high","label":"High","color":"#dc2626"}]}')),
    list_columns = json_insert(list_columns, '$[#]', 'priority')
WHERE object_type = 'jobs';

UPDATE layout_definition
SET sections = json_insert(sections, '$[0].fields[#]', json('{"field":"priority","widget":"choice"}'))
WHERE object_type = 'jobs' AND name = 'detail';
