//! The dynamic UI model, computed only from the synced metadata and the projection: object types,
//! list views, detail views per role, validated edits, and live changes of the metadata.

use moat_tests::{ModelServer, company_a_device, fields, id};
use sqlite_ext::FieldValue;
use sqlite_ext::ui::{self, FieldKind, ListQuery};
use sqlite_ext::{Error, Replica, Schema};

const SEED: &str = include_str!("../schemas/demo_seed.sql");

/// A company-a device with the demo data, and the server it syncs from.
fn device() -> (ModelServer, Replica) {
    company_a_device(SEED)
}

#[test]
fn object_types_come_from_object_metadata_and_change_with_it() {
    let (mut server, mut r) = device();
    let types = ui::object_types(r.connection(), r.schema(), "admin").unwrap();
    let names: Vec<(&str, i64)> = types.iter().map(|t| (t.label_plural.as_str(), t.count)).collect();
    assert_eq!(names, [("Jobs", 5000), ("Inventory", 400), ("Customers", 200), ("People", 5)]);

    let d = server.edit(|c| {
        c.execute_batch(
            "UPDATE object_metadata SET label_plural = 'Visits', sort_order = 9 WHERE id = 'company-a:jobs';
             DELETE FROM object_metadata WHERE id = 'company-a:inventory_items';",
        )
        .unwrap();
    });
    r.apply_server_diff(&d).unwrap();
    let types = ui::object_types(r.connection(), r.schema(), "admin").unwrap();
    let names: Vec<&str> = types.iter().map(|t| t.label_plural.as_str()).collect();
    assert_eq!(names, ["Customers", "People", "Visits"], "renamed, reordered and removed by data alone");
}

#[test]
fn list_views_page_sort_search_and_format() {
    let (_, r) = device();
    let (conn, schema) = (r.connection(), r.schema());
    let page = ui::list_view(conn, schema, &ListQuery { limit: Some(25), ..ListQuery::new("jobs") }).unwrap();
    assert_eq!(page.title, "Jobs");
    let cols: Vec<&str> = page.columns.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(cols, ["Title", "Status", "Scheduled", "Assignee", "Price"]);
    assert_eq!((page.total, page.rows.len()), (5000, 25));
    let dates: Vec<FieldValue> = page.rows.iter().map(|r| r.cells[2].value.clone()).collect();
    let FieldValue::Text { value: first_date } = &dates[0] else { panic!("{dates:?}") };
    let shown = &page.rows[0].cells[2].display;
    assert!(shown.ends_with(&first_date[..4]) && !shown.contains('-'), "{shown}: the month by name");
    let dates: Vec<String> = dates
        .into_iter()
        .map(|v| match v {
            FieldValue::Text { value } => value,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "default sort: scheduled date, newest first");

    let first = &page.rows[0];
    let price = &first.cells[4];
    let FieldValue::Integer { value: cents } = price.value else { panic!("{price:?}") };
    assert_eq!(price.display, format!("${}.{:02}", group(cents / 100), cents % 100));
    let status = &first.cells[1];
    assert!(
        ["Open", "Scheduled", "In progress", "On hold", "Done"].contains(&status.display.as_str()),
        "{status:?}"
    );

    let found = ui::list_view(
        conn,
        schema,
        &ListQuery { search: Some("boiler".into()), limit: Some(500), ..ListQuery::new("jobs") },
    )
    .unwrap();
    let expected: i64 = conn
        .query_row("SELECT count(*) FROM jobs WHERE title LIKE '%boiler%' OR notes LIKE '%boiler%' OR assignee LIKE '%boiler%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(found.total, expected);
    assert!(found.rows.iter().all(|r| r.title.contains("boiler")));
    let none = ui::list_view(
        conn,
        schema,
        &ListQuery { search: Some("100%_".into()), limit: Some(10), ..ListQuery::new("jobs") },
    )
    .unwrap();
    assert_eq!(none.total, 0, "LIKE wildcards in the search text are literal");

    let by_price = ui::list_view(
        conn,
        schema,
        &ListQuery {
            sort_field: Some("price_cents".into()),
            limit: Some(3),
            offset: Some(2),
            ..ListQuery::new("jobs")
        },
    )
    .unwrap();
    let min3: Vec<i64> = conn
        .prepare("SELECT price_cents FROM jobs ORDER BY price_cents, id LIMIT 3 OFFSET 2")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: Vec<FieldValue> = by_price.rows.iter().map(|r| r.cells[4].value.clone()).collect();
    assert_eq!(got, min3.into_iter().map(|value| FieldValue::Integer { value }).collect::<Vec<_>>());
    let bad = ui::list_view(
        conn,
        schema,
        &ListQuery {
            sort_field: Some("price_cents; DROP TABLE jobs".into()),
            limit: Some(3),
            ..ListQuery::new("jobs")
        },
    );
    assert!(matches!(bad, Err(Error::UnknownColumn { .. })));
}

fn group(n: i64) -> String {
    let s = n.to_string();
    s.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
        out
    })
}

#[test]
fn detail_views_follow_the_layout_of_the_role() {
    let (_, r) = device();
    let (conn, schema) = (r.connection(), r.schema());
    let admin = ui::detail_view(conn, schema, "jobs", &id("job-a-00007"), "admin").unwrap();
    let layout: Vec<(&str, Vec<&str>)> = admin
        .sections
        .iter()
        .map(|s| (s.label.as_str(), s.fields.iter().map(|f| f.label.as_str()).collect()))
        .collect();
    assert_eq!(
        layout,
        [
            ("Summary", vec!["Title", "Status", "Scheduled", "Assignee", "Customer", "Price"]),
            ("Work", vec!["Line items", "Notes", "Internal notes"]),
        ]
    );
    let customer = &admin.sections[0].fields[4];
    assert_eq!(customer.widget, FieldKind::Reference);
    let name: String = conn
        .query_row(
            "SELECT c.name FROM jobs j JOIN customers c ON c.id = j.customer_id WHERE j.id = 'job-a-00007'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(customer.cell.display, name, "a reference shows the referenced record's title");
    assert_eq!(admin.sections[0].fields[1].options.len(), 5);

    let tech = ui::detail_view(conn, schema, "jobs", &id("job-a-00007"), "technician").unwrap();
    assert_eq!(tech.sections[0].label, "Visit");
    let price = tech.sections[0].fields.iter().find(|f| f.field == "price_cents").unwrap();
    assert_eq!((price.label.as_str(), price.read_only), ("Quoted price", true));
    assert!(tech.sections.iter().flat_map(|s| &s.fields).all(|f| f.field != "internal_notes"));
}

#[test]
fn edits_are_checked_against_the_metadata_and_layout() {
    let (_, mut r) = device();
    let pk = id("job-a-00007");
    for (role, values, why) in [
        ("admin", fields([("status", "exploded".into())]), "not one of the choices"),
        ("admin", fields([("title", "  ".into())]), "a value is required"),
        ("admin", fields([("scheduled_date", "next tuesday".into())]), "YYYY-MM-DD"),
        ("admin", fields([("price_cents", "free".into())]), "not a valid currency"),
        ("admin", fields([("line_items", "{oops".into())]), "JSON list"),
        ("admin", fields([("tenant_id", "company-b".into())]), "not a field"),
        ("technician", fields([("price_cents", 1i64.into())]), "cannot be edited"),
        ("technician", fields([("internal_notes", "x".into())]), "cannot be edited"),
    ] {
        let err = ui::edit(&mut r, "jobs", &pk, &values, role).unwrap_err();
        assert!(err.to_string().contains(why), "{values:?} as {role}: {err}");
    }
    assert_eq!(r.pending_count().unwrap(), 0, "no refused edit was written");

    let m = ui::edit(
        &mut r,
        "jobs",
        &pk,
        &fields([("status", "scheduled".into()), ("notes", "fixed".into())]),
        "technician",
    )
    .unwrap()
    .unwrap();
    assert_eq!(m.diff.changes[0].cols.0.len(), 2);
    let view = ui::detail_view(r.connection(), r.schema(), "jobs", &pk, "technician").unwrap();
    let status = view.sections[0].fields.iter().find(|f| f.field == "status").unwrap();
    assert_eq!(status.cell.display, "Scheduled", "the projection shows the edit at once");
}

#[test]
fn a_layout_change_reaches_an_open_detail_view() {
    let (mut server, mut r) = device();
    let before =
        ui::detail_view(r.connection(), r.schema(), "jobs", &id("job-a-00001"), "technician").unwrap();
    let d = server.edit(|c| {
        c.execute(
            "UPDATE layout_definition SET sections = json_insert(sections, '$[0].fields[#]',
                 json_object('field', 'assignee', 'widget', 'text', 'read_only', json('true')))
             WHERE id = 'company-a:jobs:detail:technician'",
            [],
        )
        .unwrap();
    });
    r.apply_server_diff(&d).unwrap();
    let after =
        ui::detail_view(r.connection(), r.schema(), "jobs", &id("job-a-00001"), "technician").unwrap();
    assert_eq!(after.sections[0].fields.len(), before.sections[0].fields.len() + 1);
    let added = after.sections[0].fields.last().unwrap();
    assert_eq!((added.field.as_str(), added.label.as_str(), added.read_only), ("assignee", "Assignee", true));
}

#[test]
fn a_field_kind_from_newer_metadata_reads_as_unknown() {
    for kind in
        ["text", "multiline", "number", "currency", "choice", "date", "reference", "line_items", "boolean"]
    {
        let k: FieldKind = serde_json::from_str(&format!("{kind:?}")).unwrap();
        assert_ne!(k, FieldKind::Unknown);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("{kind:?}"), "names round-trip");
    }
    let k: FieldKind = serde_json::from_str("\"signature\"").unwrap();
    assert_eq!(k, FieldKind::Unknown);
}

/// A company's own tables, with keys the demo does not have: one INTEGER column, and two columns.
const OWN_TABLES: &str = "
CREATE TABLE vans (num INTEGER PRIMARY KEY NOT NULL, tenant_id TEXT NOT NULL, plate TEXT NOT NULL) STRICT;
CREATE TABLE shifts (crew INTEGER NOT NULL, day TEXT NOT NULL, tenant_id TEXT NOT NULL, note TEXT,
                     PRIMARY KEY (crew, day)) STRICT;";

const OWN_METADATA: &str = r#"
INSERT INTO object_metadata (id, tenant_id, object_type, table_name, label, label_plural, title_field,
                             list_columns, search_fields, fields) VALUES
  ('a:vans', 'company-a', 'vans', 'vans', 'Van', 'Vans', 'plate', '["plate"]', '[]',
   '[{"name":"plate","label":"Plate","type":"text","required":true}]'),
  ('a:shifts', 'company-a', 'shifts', 'shifts', 'Shift', 'Shifts', 'day', '["day","note"]', '[]',
   '[{"name":"day","label":"Day","type":"date"},{"name":"note","label":"Note","type":"text"}]');
INSERT INTO layout_definition (id, tenant_id, object_type, sections) VALUES
  ('a:vans', 'company-a', 'vans', '[{"id":"s","label":"Van","fields":[{"field":"plate","widget":"text"}]}]'),
  ('a:shifts', 'company-a', 'shifts', '[{"id":"s","label":"Shift","fields":[{"field":"note","widget":"text"}]}]');
INSERT INTO vans VALUES (7, 'company-a', 'AB-123');
INSERT INTO shifts VALUES (7, '2026-12-01', 'company-a', 'early'), (7, '2026-12-02', 'company-a', NULL);"#;

#[test]
fn records_are_keyed_by_the_schema_integer_and_composite_keys_included() {
    let schema = Schema::from_sql(&format!("{}{OWN_TABLES}", Schema::demo().sql())).unwrap();
    let server = ModelServer::new(schema.clone(), OWN_METADATA);
    let mut r = Replica::open_in_memory(schema).unwrap();
    r.apply_server_diff(&server.log[0]).unwrap();

    let vans = ui::list_view(r.connection(), r.schema(), &ListQuery::new("vans")).unwrap();
    assert_eq!(vans.rows[0].id, "7");
    let key = ui::record_key(&r, "vans", &vans.rows[0].id).unwrap();
    assert_eq!(key.get("num"), Some(&sqlite_ext::Value::Integer(7)), "an INTEGER key is a number");
    let van = ui::detail_view(r.connection(), r.schema(), "vans", &key, "admin").unwrap();
    assert_eq!(van.title, "AB-123");

    let shifts = ui::list_view(r.connection(), r.schema(), &ListQuery::new("shifts")).unwrap();
    let ids: Vec<&str> = shifts.rows.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, [r#"[7,"2026-12-01"]"#, r#"[7,"2026-12-02"]"#], "a key of two columns");
    let key = ui::record_key(&r, "shifts", ids[1]).unwrap();
    ui::edit_text_of(&mut r, "shifts", &key, "note", "late", "admin", None).unwrap();
    let shift = ui::detail_view(r.connection(), r.schema(), "shifts", &key, "admin").unwrap();
    assert_eq!(shift.sections[0].fields[0].cell.display, "late");
    let [m] = r.pending_head(10).unwrap().try_into().unwrap();
    assert_eq!(m.diff.changes[0].pk.get("crew"), Some(&sqlite_ext::Value::Integer(7)));

    for bad in ["[7]", "7", r#"[7,"2026-12-01","x"]"#, "not json"] {
        assert!(matches!(ui::record_key(&r, "shifts", bad), Err(Error::NotFound(_))), "{bad}");
    }
    assert!(matches!(ui::record_key(&r, "vans", "seven"), Err(Error::NotFound(_))));
}

#[test]
fn an_edit_is_not_written_over_a_change_that_arrived_while_the_user_typed() {
    use sqlite_ext::{Resolution, Value};
    let (mut server, mut r) = device();
    let pk = id("job-a-00007");
    let notes_now = |r: &Replica| {
        let v = ui::detail_view(r.connection(), r.schema(), "jobs", &pk, "technician").unwrap();
        v.sections.iter().flat_map(|s| &s.fields).find(|f| f.field == "notes").unwrap().cell.value.clone()
    };
    // Tom starts typing in Notes; meanwhile Alice's notes arrive from the server.
    let started = Value::from(notes_now(&r));
    let alices = server.edit(|c| {
        c.execute("UPDATE jobs SET notes = 'Alice: gate code 4411' WHERE id = 'job-a-00007'", []).unwrap();
    });
    r.apply_server_diff(&alices).unwrap();
    let typed = "Tom: dog is friendly";
    let done = ui::edit_text_of(&mut r, "jobs", &pk, "notes", typed, "technician", Some(&started)).unwrap();
    assert_eq!(done, ui::Edited::Conflict, "not written over Alice's notes");
    assert_eq!(r.pending_count().unwrap(), 0);
    assert_eq!(notes_now(&r), FieldValue::Text { value: "Alice: gate code 4411".into() });
    let [c] = ui::conflicts(&r).unwrap().try_into().unwrap();
    let col = &c.columns[0];
    assert_eq!((c.object_label.as_str(), col.label.as_str()), ("Job", "Notes"));
    assert_eq!(col.base, Some(started.clone().into()));
    assert_eq!(col.theirs_display.as_deref(), Some("Alice: gate code 4411"));
    assert_eq!(col.mine_display, typed);
    // Keep mine: an ordinary edit, now based on Alice's value.
    let m = r.resolve(c.id, Resolution::KeepMine).unwrap().unwrap();
    let old = m.diff.changes[0].cols.get("notes").unwrap().old.clone();
    assert_eq!(old, Some(Value::from("Alice: gate code 4411")));

    // Started from the value still there, or typed what is there now: a plain edit.
    let now = Value::from(notes_now(&r));
    let done = ui::edit_text_of(&mut r, "jobs", &pk, "notes", "again", "technician", Some(&now)).unwrap();
    assert_eq!(done, ui::Edited::Saved);
    let done = ui::edit_text_of(&mut r, "jobs", &pk, "notes", "again", "technician", Some(&started)).unwrap();
    assert_eq!(done, ui::Edited::Saved, "the same value on both sides is no conflict");
}

/// Every search `list_view` answers: total, ids in order and facet counts.
fn searched(r: &Replica, text: &str) -> (i64, Vec<String>, Vec<i64>) {
    let page = ui::list_view(
        r.connection(),
        r.schema(),
        &ListQuery { search: Some(text.into()), limit: Some(500), ..ListQuery::new("jobs") },
    )
    .unwrap();
    let facets = page.facets.iter().flat_map(|f| f.options.iter().map(|o| o.count)).collect();
    (page.total, page.rows.into_iter().map(|r| r.id).collect(), facets)
}

#[test]
fn the_full_text_index_finds_what_the_scan_finds_and_follows_every_change() {
    let (mut server, mut r) = device();
    // Before the device builds its indexes the search scans (LIKE); after, it asks the trigram index.
    let texts =
        ["boiler", "BOILER", "call 30", "Install water", "ai", "x\"y", "30 minutes before", "qqxz", "job"];
    let scanned: Vec<_> = texts.iter().map(|t| searched(&r, t)).collect();
    assert!(ui::ensure_indexes(r.connection(), r.schema()).unwrap() > 0);
    let fts: String = r
        .connection()
        .query_row("SELECT sql FROM sqlite_master WHERE name = 'moat_fts_jobs'", [], |row| row.get(0))
        .unwrap();
    assert!(fts.contains("trigram"), "{fts}");
    for (text, expected) in texts.iter().zip(&scanned) {
        assert_eq!(&searched(&r, text), expected, "searching {text:?}");
    }
    assert!(scanned[0].0 > 0 && scanned[7].0 == 0);
    assert_eq!(ui::ensure_indexes(r.connection(), r.schema()).unwrap(), 0, "built once");

    // A server change and a local edit reach the index.
    let diff = server.edit(|c| {
        c.execute_batch("UPDATE jobs SET title = 'Zanzibar valve' WHERE id = 'job-a-00007'").unwrap();
    });
    r.apply_server_diff(&diff).unwrap();
    r.update("jobs", &id("job-a-00008"), &fields([("notes", "Gate code quokka".into())])).unwrap();
    assert_eq!(searched(&r, "zanzibar").1, ["job-a-00007"]);
    assert_eq!(searched(&r, "quokka").1, ["job-a-00008"]);
    let before = searched(&r, "Install water").0;
    r.delete("jobs", &id("job-a-00001")).unwrap();
    assert_eq!(searched(&r, "Install water").0, before - 1, "a deleted row leaves the index");

    // A migration that drops a searched column: the derived index goes first, and comes back.
    let sql = r.schema().sql().replace("    notes          TEXT,\n", "");
    assert_ne!(sql, r.schema().sql(), "the demo schema has a notes column");
    r.migrate_schema(Schema::from_sql(&sql).unwrap()).unwrap();
    ui::ensure_indexes(r.connection(), r.schema()).unwrap();
    assert_eq!(searched(&r, "zanzibar").1, ["job-a-00007"]);
    assert_eq!(searched(&r, "quokka").0, 0, "the notes column is gone");
}

#[test]
fn an_index_is_built_whole_or_not_at_all() {
    let (_server, r) = device();
    let missing = ui::missing_indexes(r.connection(), r.schema()).unwrap();
    assert!(
        matches!(missing.last(), Some(ui::IndexJob::Search { .. })),
        "the list indexes come first, the full-text index last: {missing:?}"
    );
    // A search field the table lacks: the full-text table and its triggers would be made before the
    // fill fails; none of them stays (left there, its triggers would refuse every write to jobs).
    let bad = ui::IndexJob::Search {
        object_type: "jobs".into(),
        table: "jobs".into(),
        fields: vec!["no_such".into()],
    };
    assert!(bad.build(r.connection()).is_err());
    let left: i64 = r
        .connection()
        .query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE 'moat_fts_jobs%'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(left, 0, "nothing of it is left");
    r.connection()
        .execute_batch("UPDATE jobs SET title = 'still writable' WHERE id = 'job-a-00001'")
        .unwrap();
    assert_eq!(ui::ensure_indexes(r.connection(), r.schema()).unwrap(), missing.len());
    assert!(ui::missing_indexes(r.connection(), r.schema()).unwrap().is_empty());
}

#[test]
fn a_search_index_filled_a_step_at_a_time_holds_every_row_written_meanwhile() {
    let (_server, r) = device();
    let conn = r.connection();
    let boilers = searched(&r, "boiler");
    assert!(boilers.0 > 0);
    assert!(ui::make_indexes(conn, r.schema()).unwrap() > 0);
    assert!(ui::search_fill_pending(conn).unwrap(), "the full-text index is made empty");
    // After each of the first steps (1,000 rows each, in rowid order), a write to rows it took and to
    // rows it had not reached yet.
    let writes = [
        "UPDATE jobs SET title = 'Zanzibar valve' WHERE rowid = (SELECT rowid FROM jobs ORDER BY rowid LIMIT 1 OFFSET 9)",
        "UPDATE jobs SET title = 'Zanzibar pump' WHERE rowid = (SELECT rowid FROM jobs ORDER BY rowid LIMIT 1 OFFSET 3999)",
        "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs ORDER BY rowid LIMIT 1 OFFSET 10)
           OR rowid IN (SELECT rowid FROM jobs ORDER BY rowid LIMIT 1 OFFSET 4000)",
        "CREATE TEMP TABLE w AS SELECT * FROM jobs WHERE rowid = (SELECT max(rowid) FROM jobs);
         UPDATE w SET id = 'job-new', title = 'Walrus gasket';
         INSERT INTO jobs SELECT * FROM w; DROP TABLE w",
        "UPDATE jobs SET notes = 'Walrus on site' WHERE rowid = (SELECT rowid FROM jobs ORDER BY rowid LIMIT 1 OFFSET 19)",
    ];
    let mut steps = 0;
    while ui::fill_search_step(conn, 1000).unwrap() {
        if let Some(w) = writes.get(steps) {
            conn.execute_batch(w).unwrap();
        }
        steps += 1;
        // Meanwhile the lists scan: the whole answer, never the part indexed so far.
        assert_eq!(searched(&r, "boiler"), boilers, "after step {steps}");
    }
    assert!(steps >= writes.len(), "{steps} steps");
    assert!(!ui::search_fill_pending(conn).unwrap());
    // The index holds exactly the table's rows (FTS5 checks it against its content table).
    conn.execute_batch("INSERT INTO moat_fts_jobs (moat_fts_jobs, rank) VALUES ('integrity-check', 1)")
        .unwrap();
    let matching = |text: &str| -> i64 {
        conn.query_row("SELECT count(*) FROM moat_fts_jobs WHERE moat_fts_jobs MATCH ?1", [text], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert_eq!((matching("zanzibar"), matching("walrus")), (2, 2));
    assert_eq!(searched(&r, "boiler"), boilers, "the index finds what the scan found");
    assert_eq!(searched(&r, "walrus").0, 2);
    // The list indexes a first page does not need were left for later steps.
    let left = ui::missing_indexes(conn, r.schema()).unwrap();
    assert!(
        left.iter()
            .all(|j| matches!(j, ui::IndexJob::List { first: false, .. } | ui::IndexJob::Tally { .. })),
        "{left:?}"
    );
    assert!(!left.is_empty() && ui::indexes_pending(conn, r.schema()).unwrap());
    while ui::index_step(conn, r.schema(), ui::FILL_ROWS).unwrap() {}
    assert!(!ui::indexes_pending(conn, r.schema()).unwrap());
    assert_eq!(ui::ensure_indexes(conn, r.schema()).unwrap(), 0, "made once");
}

#[test]
fn a_sorted_filtered_page_is_the_same_whether_it_walks_the_sort_index_or_sorts_the_matches() {
    let (_server, r) = device();
    let filter = |field: &str, equals: Option<&str>, min: Option<&str>, max: Option<&str>| ui::ListFilter {
        field: field.into(),
        equals: equals.map(Into::into),
        min: min.map(Into::into),
        max: max.map(Into::into),
    };
    // (filters, descending, offset): a page near the top of many matches (walked once the price
    // index exists), one deep in them, and one of a few matches (read through the filters' index).
    let cases = [
        (vec![filter("status", Some("open"), None, None)], true, 0),
        (vec![filter("status", Some("open"), None, None)], false, 450),
        (
            vec![
                filter("status", Some("open"), None, None),
                filter("price_cents", None, Some("50.00"), Some("60.00")),
            ],
            true,
            0,
        ),
    ];
    let pages = |r: &Replica| -> Vec<(i64, Vec<String>)> {
        cases
            .iter()
            .map(|(filters, desc, offset)| {
                let q = ListQuery {
                    sort_field: Some("price_cents".into()),
                    ascending: Some(!desc),
                    filters: Some(filters.clone()),
                    offset: Some(*offset),
                    limit: Some(50),
                    ..ListQuery::new("jobs")
                };
                let page = ui::list_view(r.connection(), r.schema(), &q).unwrap();
                (page.total, page.rows.into_iter().map(|row| row.id).collect())
            })
            .collect()
    };
    let scanned = pages(&r);
    ui::ensure_indexes(r.connection(), r.schema()).unwrap();
    let indexed = pages(&r);
    assert_eq!(indexed, scanned);
    // What SQL's own order says, ties by the key the same way as the sort.
    let expected = |sql: &str| -> Vec<String> {
        let mut stmt = r.connection().prepare(sql).unwrap();
        stmt.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(
        indexed[0].1,
        expected("SELECT id FROM jobs WHERE status = 'open' ORDER BY price_cents DESC, id DESC LIMIT 50")
    );
    assert_eq!(
        indexed[1].1,
        expected("SELECT id FROM jobs WHERE status = 'open' ORDER BY price_cents, id LIMIT 50 OFFSET 450")
    );
    assert_eq!(
        indexed[2].1,
        expected(
            "SELECT id FROM jobs WHERE status = 'open' AND price_cents BETWEEN 5000 AND 6000 \
             ORDER BY price_cents DESC, id DESC LIMIT 50"
        )
    );
    assert!(indexed[0].0 > 500 && indexed[1].1.len() == 50 && !indexed[2].1.is_empty(), "{indexed:?}");
}

#[test]
fn a_lists_counts_are_what_sql_counts_with_any_search_scope_and_filters() {
    counted_device();
}

/// A device signed in as tom whose lists' counts were checked against SQL before and after its
/// indexes and tallies were made (every search, "assigned to me" and filter combination).
fn counted_device() -> (ModelServer, Replica) {
    let (server, r) = device();
    let route = std::collections::BTreeMap::from([("tenant_id".to_owned(), "company-a".to_owned())]);
    r.set_identity(&sqlite_ext::protocol::Identity { user: "tom".into(), route }).unwrap();
    assert_counts(&r, "scanned");
    ui::ensure_indexes(r.connection(), r.schema()).unwrap();
    let tallied: i64 = r
        .connection()
        .query_row(
            "SELECT n FROM moat_tally WHERE kind = 'jobs' AND col = 'status' AND val = 'open'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let open: i64 = r
        .connection()
        .query_row("SELECT count(*) FROM jobs WHERE status = 'open'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(tallied, open, "the lists count from a tally");
    assert_counts(&r, "indexed");
    (server, r)
}

/// Every count `list_view` shows, for every combination of search, "assigned to me" and filters,
/// against what SQL counts in the rows.
fn assert_counts(r: &Replica, phase: &str) {
    let filter = |field: &str, equals: Option<&str>, min: Option<&str>, max: Option<&str>| ui::ListFilter {
        field: field.into(),
        equals: equals.map(Into::into),
        min: min.map(Into::into),
        max: max.map(Into::into),
    };
    // Searches: none, one the trigram index answers, one too short for it, one too common for it
    // (a quarter of the rows: scanned), one with no match. Filters: none, a facet's, a range, both.
    let searches = [None, Some("boiler"), Some("ai"), Some("job"), Some("qqxz")];
    let filter_sets = [
        vec![],
        vec![filter("status", Some("open"), None, None)],
        vec![filter("price_cents", None, Some("500.00"), Some("900.00"))],
        vec![filter("status", Some("done"), None, None), filter("price_cents", None, Some("100.00"), None)],
    ];
    let count = |sql: &str| -> i64 { r.connection().query_row(sql, [], |row| row.get(0)).unwrap() };
    for search in searches {
        for mine in [false, true] {
            for filters in &filter_sets {
                let q = ListQuery {
                    search: search.map(Into::into),
                    mine: Some(mine),
                    filters: Some(filters.clone()),
                    limit: Some(500),
                    ..ListQuery::new("jobs")
                };
                let page = ui::list_view(r.connection(), r.schema(), &q).unwrap();
                let found = search.map_or("1".to_owned(), |s| {
                    format!("(title LIKE '%{s}%' OR notes LIKE '%{s}%' OR assignee LIKE '%{s}%')")
                });
                let scope = if mine { format!("{found} AND assignee = 'tom'") } else { found.clone() };
                let filtered: String = filters
                    .iter()
                    .map(|f| match (&f.equals, &f.min, &f.max) {
                        (Some(v), _, _) => format!(" AND {} = '{v}'", f.field),
                        (_, min, max) => {
                            let cents = |t: &Option<String>| {
                                t.as_deref().map(|t| (t.parse::<f64>().unwrap() * 100.0) as i64)
                            };
                            cents(min).map(|c| format!(" AND price_cents >= {c}")).unwrap_or_default()
                                + &cents(max).map(|c| format!(" AND price_cents <= {c}")).unwrap_or_default()
                        }
                    })
                    .collect();
                let what = format!("{phase}: {search:?}, mine {mine}, {} filters", filters.len());
                assert_eq!(page.all_count, count("SELECT count(*) FROM jobs"), "{what}");
                assert_eq!(
                    page.mine_count,
                    Some(count(&format!("SELECT count(*) FROM jobs WHERE {found} AND assignee = 'tom'"))),
                    "{what}"
                );
                let total = count(&format!("SELECT count(*) FROM jobs WHERE {scope}{filtered}"));
                assert_eq!(page.total, total, "{what}");
                assert_eq!(page.rows.len() as i64, total.min(500), "{what}");
                let status = page.facets.iter().find(|f| f.field == "status").expect("a status facet");
                for o in &status.options {
                    let n =
                        count(&format!("SELECT count(*) FROM jobs WHERE {scope} AND status = '{}'", o.value));
                    assert_eq!(o.count, n, "{what}: {}", o.label);
                }
            }
        }
    }
}

#[test]
fn a_lists_tally_follows_every_change_of_its_rows() {
    let (mut server, mut r) = counted_device();
    // The server's changes: statuses and assignees changed, records added and removed.
    let diff = server.edit(|c| {
        c.execute_batch(
            "UPDATE jobs SET status = 'done' WHERE id IN ('job-a-00001', 'job-a-00002', 'job-a-00003');
             UPDATE jobs SET assignee = 'tom' WHERE id = 'job-a-00004';
             UPDATE jobs SET assignee = NULL WHERE id = 'job-a-00008';
             UPDATE jobs SET title = 'Boiler, the big one' WHERE id = 'job-a-00005';
             DELETE FROM jobs WHERE id IN ('job-a-00010', 'job-a-00011');
             INSERT INTO jobs (id, tenant_id, title, status, price_cents, line_items, assignee, customer_id)
             SELECT 'job-a-new', tenant_id, 'New boiler', 'on_hold', 70000, '[]', 'tom', customer_id
             FROM jobs WHERE id = 'job-a-00012';",
        )
        .unwrap();
    });
    r.apply_server_diff(&diff).unwrap();
    assert_counts(&r, "after a server diff");
    // The user's own edits (pending overlays over the server's rows), and their undoing.
    r.update(
        "jobs",
        &id("job-a-00020"),
        &fields([("status", "scheduled".into()), ("assignee", "tom".into())]),
    )
    .unwrap();
    r.delete("jobs", &id("job-a-00021")).unwrap();
    assert_counts(&r, "after local edits");
    let pending = r.pending().unwrap();
    for m in &pending {
        r.reject(&m.mutation_id, "refused").unwrap();
    }
    assert_counts(&r, "after the edits were refused");
    // A row replaced in place (a snapshot's `INSERT OR REPLACE`) counts once.
    r.connection()
        .execute_batch("INSERT OR REPLACE INTO jobs SELECT * FROM jobs WHERE id = 'job-a-00030'")
        .unwrap();
    r.connection()
        .execute_batch("UPDATE jobs SET assignee = NULL, status = 'on_hold' WHERE id = 'job-a-00031'")
        .unwrap();
    assert_counts(&r, "after a replace");
}
