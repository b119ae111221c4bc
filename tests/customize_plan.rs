//! The one check of an admin's draft (`ui::customize::plan`), run by the app as the admin types and by
//! the server when the draft is published: every field type the editor offers is accepted and gets
//! the storage its values need; the problems are named in the admin's words; a stored field's type
//! cannot change under its values; removing a field that holds values says what is lost; the
//! fingerprint names the content, whatever the order.

use moat_tests::company_a_device;
use sqlite_ext::ui::customize::{self, Customization, LayoutDef, ObjectTypeDef};
use sqlite_ext::ui::{FieldKind, FieldMeta, LayoutField, LayoutSection};

const SEED: &str = include_str!("../schemas/demo_seed.sql");

fn field(name: &str, kind: FieldKind) -> FieldMeta {
    let mut f: FieldMeta = serde_json::from_value(
        serde_json::json!({"name": name, "label": name.replace('_', " "), "type": kind}),
    )
    .unwrap();
    match kind {
        FieldKind::Choice => {
            f.options = vec![
                serde_json::from_value(serde_json::json!({"value": "a", "label": "A", "color": "#2563eb"}))
                    .unwrap(),
            ]
        }
        FieldKind::Currency => (f.currency, f.scale) = (Some("EUR".into()), Some(2)),
        FieldKind::Reference => f.object_type = Some("customers".into()),
        FieldKind::LineItems => {
            f.items = vec![field("what", FieldKind::Text), field("qty", FieldKind::Number)]
        }
        _ => {}
    }
    f
}

const EVERY_KIND: [(&str, FieldKind, &str); 9] = [
    ("plate", FieldKind::Text, "TEXT"),
    ("notes", FieldKind::Multiline, "TEXT"),
    ("mileage", FieldKind::Number, "ANY"),
    ("value", FieldKind::Currency, "INTEGER"),
    ("state", FieldKind::Choice, "TEXT"),
    ("next_service", FieldKind::Date, "TEXT"),
    ("owner", FieldKind::Reference, "TEXT"),
    ("parts", FieldKind::LineItems, "TEXT"),
    ("leased", FieldKind::Boolean, "INTEGER"),
];

fn with_vans(mut c: Customization) -> Customization {
    c.object_types.push(ObjectTypeDef {
        object_type: "vans".into(),
        table_name: "vans".into(),
        label: "Van".into(),
        label_plural: "Vans".into(),
        icon: None,
        sort_order: 9,
        title_field: "plate".into(),
        list_columns: vec!["plate".into()],
        search_fields: vec!["plate".into()],
        default_sort: None,
        fields: EVERY_KIND.iter().map(|(n, k, _)| field(n, *k)).collect(),
        hidden: false,
    });
    c.layouts.push(LayoutDef {
        object_type: "vans".into(),
        name: "detail".into(),
        role: None,
        sections: vec![LayoutSection {
            id: "van".into(),
            label: "Van".into(),
            columns: 2,
            fields: EVERY_KIND
                .iter()
                .map(|(n, k, _)| LayoutField {
                    field: (*n).into(),
                    widget: *k,
                    read_only: false,
                    label: None,
                })
                .collect(),
        }],
    });
    c
}

#[test]
fn every_field_type_is_accepted_and_stored_as_its_values_need() {
    let (_, r) = company_a_device(SEED);
    let draft = with_vans(customize::read(r.connection()).unwrap());
    let plan = customize::plan(r.connection(), r.schema(), &["tenant_id".into()], &draft).unwrap();
    assert_eq!(plan.problems, Vec::<String>::new());
    assert_eq!(plan.changes, ["Added the object type Vans", "Vans: added a layout for everyone"]);
    let [create] = plan.ddl.as_slice() else { panic!("{:?}", plan.ddl) };
    assert!(
        create.starts_with(
            "CREATE TABLE \"vans\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"tenant_id\" TEXT NOT NULL"
        )
    );
    for (name, _, ty) in EVERY_KIND {
        assert!(create.contains(&format!("\"{name}\" {ty}")), "{name} {ty}: {create}");
    }
    assert!(create.ends_with("STRICT"), "{create}");
    assert!(plan.lost.is_empty() && !plan.drops);
    // The same content in another order has the same fingerprint.
    let mut shuffled = draft.clone();
    shuffled.object_types.reverse();
    shuffled.layouts.reverse();
    assert_eq!(customize::fingerprint(&shuffled), plan.fingerprint);
}

#[test]
fn a_drafts_problems_are_named_in_the_admins_words() {
    let (_, r) = company_a_device(SEED);
    let mut draft = with_vans(customize::read(r.connection()).unwrap());
    let vans = draft.object_types.last_mut().unwrap();
    vans.fields[4].options.clear();
    vans.fields[6].object_type = Some("boats".into());
    vans.fields[2].min = Some(10);
    vans.fields[2].max = Some(1);
    vans.fields[5].default = Some("soon".into());
    vans.title_field = "nothing".into();
    draft.layouts.last_mut().unwrap().sections[0].fields[0].widget = FieldKind::Date;
    let jobs = draft.object_types.iter_mut().find(|t| t.object_type == "jobs").unwrap();
    jobs.fields.iter_mut().find(|f| f.name == "price_cents").unwrap().kind = FieldKind::Text;
    let plan = customize::plan(r.connection(), r.schema(), &["tenant_id".into()], &draft).unwrap();
    let said = plan.problems.join("\n");
    for expected in [
        "Vans: state: a choice needs at least one option",
        "Vans: owner: choose the object type it refers to",
        "Vans: mileage: the smallest value is above the largest",
        "Vans: next service: the default value \"soon\" is not allowed",
        "Vans: choose the field that names a record (its title)",
        "Vans, layout for everyone: plate cannot be drawn as Date",
        "Jobs: Price holds integer values; it cannot become a text field (add a new field instead)",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }
}

#[test]
fn removing_a_field_that_holds_values_says_what_is_lost() {
    let (_, r) = company_a_device(SEED);
    let mut draft = customize::read(r.connection()).unwrap();
    let jobs = draft.object_types.iter_mut().find(|t| t.object_type == "jobs").unwrap();
    jobs.fields.retain(|f| f.name != "notes");
    jobs.search_fields.retain(|f| f != "notes");
    for l in draft.layouts.iter_mut().filter(|l| l.object_type == "jobs") {
        l.sections.iter_mut().for_each(|s| s.fields.retain(|f| f.field != "notes"));
    }
    let plan = customize::plan(r.connection(), r.schema(), &["tenant_id".into()], &draft).unwrap();
    assert_eq!(plan.problems, Vec::<String>::new());
    assert_eq!(plan.ddl, ["ALTER TABLE \"jobs\" DROP COLUMN \"notes\""]);
    let held: i64 = r.connection().query_row("SELECT count(notes) FROM jobs", [], |row| row.get(0)).unwrap();
    assert!(held > 0);
    assert_eq!(plan.lost, [format!("Jobs: Notes, {held} values")]);
    assert!(plan.drops);
    assert!(plan.changes.contains(&"Jobs: removed the field Notes".to_owned()), "{:?}", plan.changes);
}

#[test]
fn a_hidden_object_type_leaves_the_object_list_and_keeps_its_records() {
    let (mut server, mut r) = company_a_device(SEED);
    let mut draft = customize::read(r.connection()).unwrap();
    draft.object_types.iter_mut().find(|t| t.object_type == "inventory_items").unwrap().hidden = true;
    let plan = customize::plan(r.connection(), r.schema(), &["tenant_id".into()], &draft).unwrap();
    assert_eq!(plan.changes, ["Inventory: hidden from the object list"]);
    assert!(plan.ddl.is_empty() && plan.lost.is_empty());
    // What publishing writes: the flag, and nothing else.
    let d =
        server.edit(|c| customize::write(c, &draft, &[("tenant_id".into(), "company-a".into())]).unwrap());
    assert_eq!(d.changes.len(), 1, "{d:?}");
    r.apply_server_diff(&d).unwrap();
    let types: Vec<String> = sqlite_ext::ui::object_types(r.connection(), r.schema(), "admin")
        .unwrap()
        .into_iter()
        .map(|t| t.object_type)
        .collect();
    assert_eq!(types, ["jobs", "customers", "people"]);
    assert!(
        customize::read(r.connection())
            .unwrap()
            .object_types
            .iter()
            .any(|t| t.object_type == "inventory_items" && t.hidden)
    );
    let kept: i64 =
        r.connection().query_row("SELECT count(*) FROM inventory_items", [], |row| row.get(0)).unwrap();
    assert_eq!(kept, 400);
}
