//! Records as a field user works with them, in the core's UI model: a new record's form, creating
//! (keys made on the device, routing columns filled, every rule checked) and deleting, offline and
//! then merged by the server; the reference picker; line items with amounts and a total; the list's
//! views ("Assigned to me"), filters and counts; the pending-changes panel and the per-field mark.

use std::collections::BTreeMap;

use moat_tests::{ModelServer, Outcome, company_a_device, id};
use sqlite_ext::protocol::{Identity, Rights};
use sqlite_ext::ui::{self, FieldInput, ListFilter, ListQuery};
use sqlite_ext::{FieldValue, Replica, Value};

const SEED: &str = include_str!("../schemas/demo_seed.sql");
const RULES: &str = include_str!("../schemas/sync_rules.toml");

/// A company-a device signed in as `user` with `role` (its welcome stored), and the server.
fn device(user: &str, role: &str) -> (ModelServer, Replica) {
    let (server, r) = company_a_device(SEED);
    let route = BTreeMap::from([("tenant_id".to_owned(), "company-a".to_owned())]);
    r.set_identity(&Identity { user: user.to_owned(), route }).unwrap();
    r.set_rights(&rights_of(role)).unwrap();
    (server, r)
}

/// The demo's rights for `role`, read from the sync rules as the server sends them.
fn rights_of(role: &str) -> Rights {
    let rules: toml::Value = toml::from_str(RULES).unwrap();
    let Some(r) = rules["roles"].get(role) else { return Rights::default() };
    let list = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut read_only_columns = BTreeMap::new();
    if let Some(t) = r.get("read_only_columns").and_then(|t| t.as_table()) {
        for (table, cols) in t {
            read_only_columns.insert(table.clone(), list(Some(cols)));
        }
    }
    Rights { read_only_tables: list(r.get("read_only_tables")), read_only_columns }
}

fn input(field: &str, text: &str) -> FieldInput {
    FieldInput { field: field.to_owned(), text: text.to_owned() }
}

fn text(v: &str) -> Value {
    Value::Text(v.to_owned())
}

/// Sends every pending write to the server and acknowledges it, as a session would.
fn sync(server: &mut ModelServer, r: &mut Replica) {
    for m in r.pending().unwrap() {
        ui::check_diff(&server.conn, &server.schema, &m.diff).expect("the server's rules accept it");
        let seen = server.log.len();
        match server.push(&m) {
            Outcome::Ack(conflicts) => {
                // The broadcast of what was applied, then the ack (as the session delivers them).
                for d in &server.log[seen..] {
                    r.apply_server_diff(d).unwrap();
                }
                r.acknowledge(&m.mutation_id, &conflicts).unwrap();
            }
            Outcome::Reject(why) => panic!("rejected: {why}"),
        }
    }
}

#[test]
fn a_new_job_is_made_on_the_device_with_defaults_and_merged_by_the_server() {
    let (mut server, mut r) = device("alice", "admin");
    let types = ui::object_types(r.connection(), r.schema(), "admin").unwrap();
    let jobs = types.iter().find(|t| t.object_type == "jobs").unwrap();
    assert!(jobs.can_create && jobs.can_delete);

    let form = ui::new_record(r.connection(), r.schema(), "jobs", "admin").unwrap();
    assert_eq!(form.title, "New Job");
    let fields: Vec<_> = form.sections.iter().flat_map(|s| &s.fields).collect();
    let status = fields.iter().find(|f| f.field == "status").unwrap();
    assert_eq!(status.cell.edit_text, "open", "the metadata's default");
    assert!(fields.iter().all(|f| f.problem.is_none()), "an empty form is not yet wrong");

    // The picker finds customers on the device; the job points to one.
    let options =
        ui::reference_options(r.connection(), r.schema(), "jobs", "customer_id", "harbor", 10).unwrap();
    assert!(
        !options.is_empty() && options.iter().all(|o| o.title.to_lowercase().contains("harbor")),
        "{options:?}"
    );
    let customer = options[0].clone();

    let made = ui::create(
        &mut r,
        "jobs",
        &[
            input("title", "Fit a new boiler"),
            input("customer_id", &customer.id),
            input("price_cents", "1,250.50"),
            input("assignee", "tom"),
            input("scheduled_date", "2026-12-24"),
        ],
        "admin",
    )
    .unwrap();
    assert_eq!(made.len(), 20, "a key made here: {made}");
    let row = r.row("jobs", &id(&made)).unwrap().unwrap();
    let get = |c: &str| row.get(c).cloned().unwrap();
    assert_eq!(get("tenant_id"), text("company-a"), "the routing column, from the welcome");
    assert_eq!(get("status"), text("open"));
    assert_eq!(get("price_cents"), Value::Integer(125_050));
    assert_eq!(get("line_items"), text("[]"), "the table's own default");

    let pending = ui::pending(&r).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].action.as_str(), pending[0].object_label.as_str()), ("Created", "Job"));
    assert_eq!(pending[0].title, "Fit a new boiler");
    assert_eq!(pending[0].object_type, "jobs");

    let detail = ui::detail_view(r.connection(), r.schema(), "jobs", &id(&made), "admin").unwrap();
    let customer_field =
        detail.sections.iter().flat_map(|s| &s.fields).find(|f| f.field == "customer_id").unwrap();
    assert_eq!(customer_field.cell.display, customer.title, "a reference shows the record's title");
    let link = customer_field.link.as_ref().unwrap();
    assert_eq!((link.object_type.as_str(), link.id.as_str()), ("customers", customer.id.as_str()));
    let assignee = detail.sections.iter().flat_map(|s| &s.fields).find(|f| f.field == "assignee").unwrap();
    assert_eq!(assignee.cell.display, "Tom Technician", "people by name");
    assert!(assignee.pending, "not yet on the server");

    sync(&mut server, &mut r);
    assert!(ui::pending(&r).unwrap().is_empty());
    let on_server: String =
        server.conn.query_row("SELECT title FROM jobs WHERE id = ?1", [&made], |row| row.get(0)).unwrap();
    assert_eq!(on_server, "Fit a new boiler");
    let detail = ui::detail_view(r.connection(), r.schema(), "jobs", &id(&made), "admin").unwrap();
    assert!(detail.sections.iter().flat_map(|s| &s.fields).all(|f| !f.pending), "confirmed");
}

#[test]
fn a_new_record_breaking_a_rule_or_a_right_is_refused_with_the_field_named() {
    let (_, mut r) = device("alice", "admin");
    let e = ui::create(&mut r, "jobs", &[input("price_cents", "10")], "admin").unwrap_err();
    assert_eq!(e.for_user(), "Title: a value is required");
    let e =
        ui::create(&mut r, "jobs", &[input("title", "x"), input("price_cents", "-1")], "admin").unwrap_err();
    assert!(e.for_user().contains("Price: must be at least 0.00"), "{e}");
    let e = ui::create(&mut r, "jobs", &[input("title", "x"), input("customer_id", "cust-b-0001")], "admin")
        .unwrap_err();
    assert!(e.for_user().contains("Customer: \"cust-b-0001\" is not a record of customers"), "{e}");
    let e =
        ui::create(&mut r, "jobs", &[input("title", "x"), input("status", "bogus")], "admin").unwrap_err();
    assert!(e.for_user().contains("Status: \"bogus\" is not one of the choices"), "{e}");
    assert_eq!(r.pending_count().unwrap(), 0, "nothing was written");

    let (_, mut tech) = device("tom", "technician");
    let types = ui::object_types(tech.connection(), tech.schema(), "technician").unwrap();
    let can = |t: &str| {
        let v = types.iter().find(|v| v.object_type == t).unwrap();
        (v.can_create, v.can_delete)
    };
    assert_eq!(can("customers"), (false, false), "read-only for the role");
    assert_eq!(can("jobs"), (false, false), "a technician cannot set a job's title, nor remove it");
    let e = ui::delete(&mut tech, "jobs", &id("job-a-00001")).unwrap_err();
    assert_eq!(e.for_user(), "Jobs cannot be deleted by your role");
    assert_eq!(can("inventory_items"), (true, true));
    let e = ui::create(&mut tech, "customers", &[input("name", "New")], "technician").unwrap_err();
    assert_eq!(e.for_user(), "Customers are read-only for your role");
    let e = ui::delete(&mut tech, "customers", &id("cust-a-0001")).unwrap_err();
    assert_eq!(e.for_user(), "Customers are read-only for your role");
}

#[test]
fn a_deleted_record_leaves_the_device_at_once_and_the_server_when_synced() {
    let (mut server, mut r) = device("alice", "admin");
    ui::delete(&mut r, "jobs", &id("job-a-00010")).unwrap();
    assert!(r.row("jobs", &id("job-a-00010")).unwrap().is_none());
    let pending = ui::pending(&r).unwrap();
    assert_eq!(pending[0].action, "Deleted");
    assert_eq!(pending[0].title, "Service AC unit", "named by the title it had");
    let e = ui::delete(&mut r, "jobs", &id("job-a-00010")).unwrap_err();
    assert!(matches!(e, sqlite_ext::Error::NotFound(_)), "{e}");
    sync(&mut server, &mut r);
    let left: i64 = server
        .conn
        .query_row("SELECT count(*) FROM jobs WHERE id = 'job-a-00010'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn line_items_show_amounts_and_a_total_and_are_edited_in_major_units() {
    let (mut server, mut r) = device("tom", "technician");
    let detail =
        ui::detail_view(r.connection(), r.schema(), "jobs", &id("job-a-00002"), "technician").unwrap();
    let f = detail.sections.iter().flat_map(|s| &s.fields).find(|f| f.field == "line_items").unwrap();
    let li = f.line_items.as_ref().unwrap();
    let labels: Vec<&str> = li.columns.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["SKU", "Qty", "Unit price"]);
    // Seeded: qty 1 + 2 % 3 = 3, unit price 500 + 2 * 131 = 762 cents.
    assert_eq!(li.rows[0].cells[2].display, "$7.62");
    assert_eq!(li.rows[0].cells[2].edit_text, "7.62");
    assert_eq!(li.rows[0].amount.as_deref(), Some("$22.86"));
    assert_eq!(li.total.as_deref(), Some("$22.86"));

    let rows = vec![
        vec!["SKU-10014".to_owned(), "3".to_owned(), "7.62".to_owned()],
        vec!["Labour".to_owned(), "1.5".to_owned(), "80".to_owned()],
        vec![String::new(), String::new(), String::new()],
    ];
    let json = ui::line_items_text(r.connection(), r.schema(), "jobs", "line_items", &rows).unwrap();
    assert_eq!(
        json,
        r#"[{"qty":3,"sku":"SKU-10014","unit_price_cents":762},{"qty":1.5,"sku":"Labour","unit_price_cents":8000}]"#
    );
    let bad = vec![vec!["x".to_owned(), "1".to_owned(), "12.345".to_owned()]];
    let e = ui::line_items_text(r.connection(), r.schema(), "jobs", "line_items", &bad).unwrap_err();
    assert_eq!(e.for_user(), "Line items, item 1: Unit price: at most 2 decimal places");
    let negative = vec![vec!["x".to_owned(), "-1".to_owned(), "1".to_owned()]];
    let e = ui::line_items_text(r.connection(), r.schema(), "jobs", "line_items", &negative).unwrap_err();
    assert!(e.for_user().contains("item 1: Qty: must be at least 0"), "{e}");

    let before = FieldValue::from(
        r.row("jobs", &id("job-a-00002")).unwrap().unwrap().get("line_items").cloned().unwrap(),
    );
    let saved = ui::edit_text_of(
        &mut r,
        "jobs",
        &id("job-a-00002"),
        "line_items",
        &json,
        "technician",
        Some(&before.into()),
    )
    .unwrap();
    assert_eq!(saved, ui::Edited::Saved);
    let detail =
        ui::detail_view(r.connection(), r.schema(), "jobs", &id("job-a-00002"), "technician").unwrap();
    let f = detail.sections.iter().flat_map(|s| &s.fields).find(|f| f.field == "line_items").unwrap();
    assert_eq!(f.line_items.as_ref().unwrap().total.as_deref(), Some("$142.86"), "22.86 + 1.5 × 80.00");
    assert!(f.pending);
    sync(&mut server, &mut r);
}

#[test]
fn lists_offer_assigned_to_me_filters_and_counts() {
    let (_, r) = device("tom", "technician");
    let (conn, schema) = (r.connection(), r.schema());
    let all = ui::list_view(conn, schema, &ListQuery::new("jobs")).unwrap();
    assert_eq!((all.all_count, all.total), (5000, 5000));
    assert_eq!(all.mine_count, Some(1250), "every fourth job is Tom's");
    let status = all.facets.iter().find(|f| f.field == "status").unwrap();
    assert_eq!(status.options.iter().map(|o| o.count).sum::<i64>(), 5000);
    assert_eq!(status.options[0].color.as_deref(), Some("#2563eb"));
    assert_eq!(all.date_fields.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["scheduled_date"]);

    let mine =
        ui::list_view(conn, schema, &ListQuery { mine: Some(true), ..ListQuery::new("jobs") }).unwrap();
    assert_eq!(mine.total, 1250);
    let assignee = mine.columns.iter().position(|c| c.field == "assignee").unwrap();
    assert!(mine.rows.iter().all(|r| r.cells[assignee].display == "Tom Technician"));

    let open_in_december = ListQuery {
        mine: Some(true),
        filters: Some(vec![
            ListFilter { field: "status".into(), equals: Some("open".into()), min: None, max: None },
            ListFilter {
                field: "scheduled_date".into(),
                equals: None,
                min: Some("2026-12-01".into()),
                max: Some("2026-12-31".into()),
            },
        ]),
        ..ListQuery::new("jobs")
    };
    let page = ui::list_view(conn, schema, &open_in_december).unwrap();
    let expected: i64 = conn
        .query_row(
            "SELECT count(*) FROM jobs WHERE assignee = 'tom' AND status = 'open' \
             AND scheduled_date BETWEEN '2026-12-01' AND '2026-12-31'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(expected > 0);
    assert_eq!(page.total, expected);
    let mine_status = page.facets.iter().find(|f| f.field == "status").unwrap();
    assert_eq!(
        mine_status.options.iter().map(|o| o.count).sum::<i64>(),
        1250,
        "facets count within the view"
    );

    let bad = ListQuery {
        filters: Some(vec![ListFilter {
            field: "nope".into(),
            equals: Some("x".into()),
            min: None,
            max: None,
        }]),
        ..ListQuery::new("jobs")
    };
    assert!(ui::list_view(conn, schema, &bad).is_err(), "a filter names a field of the metadata");
    let none = ui::list_view(conn, schema, &ListQuery::new("customers")).unwrap();
    assert_eq!(none.mine_count, None, "customers are assigned to no one");
}

#[test]
fn lists_are_indexed_on_the_device_as_the_metadata_sorts_and_filters_them() {
    let (mut server, mut r) = device("tom", "technician");
    let indexes = |r: &Replica| -> Vec<String> {
        let mut stmt = r
            .connection()
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'moat_ix_jobs%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    };
    // Fifteen list indexes (each object type's sort, "mine" and filter fields, and each list column
    // with the key), the tally of each of the four object types, and the full-text index of each
    // one's search fields.
    assert_eq!(ui::ensure_indexes(r.connection(), r.schema()).unwrap(), 15 + 4 + 4);
    assert_eq!(
        indexes(&r),
        [
            "moat_ix_jobs_assignee_scheduled_date_id",
            "moat_ix_jobs_price_cents_id",
            "moat_ix_jobs_scheduled_date_id",
            "moat_ix_jobs_status",
            "moat_ix_jobs_title_id"
        ]
    );
    assert_eq!(ui::ensure_indexes(r.connection(), r.schema()).unwrap(), 0, "idempotent");
    let plan: String = r
        .connection()
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE assignee = 'tom' ORDER BY scheduled_date DESC, id LIMIT 50",
            [],
            |row| row.get(3),
        )
        .unwrap();
    assert!(plan.contains("moat_ix_jobs_assignee_scheduled_date_id"), "{plan}");
    // The metadata sorts jobs by customer now (no list column): the device indexes that too, alone
    // and after "mine".
    let d = server.edit(|c| {
        c.execute(
            "UPDATE object_metadata SET default_sort = '{\"field\":\"customer_id\",\"dir\":\"asc\"}' WHERE id = 'company-a:jobs'",
            [],
        )
        .unwrap();
    });
    r.apply_server_diff(&d).unwrap();
    assert_eq!(ui::ensure_indexes(r.connection(), r.schema()).unwrap(), 2);
    assert!(indexes(&r).contains(&"moat_ix_jobs_customer_id_id".to_owned()));
    assert!(indexes(&r).contains(&"moat_ix_jobs_assignee_customer_id_id".to_owned()));
}
