//! The demo domain: the seed loads, reaches a replica as one server diff, and its metadata only names
//! tables, columns, field types and widgets that exist, so the UIs can render purely from it.

use std::collections::HashSet;

use moat_tests::ModelServer;
use serde_json::Value as Json;
use sqlite_ext::{Replica, Schema};

const SEED: &str = include_str!("../schemas/demo_seed.sql");
const FIELD_TYPES: [&str; 9] =
    ["text", "multiline", "number", "currency", "choice", "date", "reference", "line_items", "boolean"];

fn json(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<Json>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                let v: rusqlite::types::Value = r.get(i)?;
                Ok(match v {
                    rusqlite::types::Value::Text(t) => serde_json::from_str(&t).unwrap_or(Json::String(t)),
                    rusqlite::types::Value::Null => Json::Null,
                    rusqlite::types::Value::Integer(i) => Json::from(i),
                    other => panic!("unexpected {other:?}"),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn the_seed_syncs_to_a_replica_in_one_diff() {
    let server = ModelServer::new(Schema::demo(), SEED);
    let diff = &server.log[0];
    let mut replica = Replica::open_in_memory(Schema::demo()).unwrap();
    replica.apply_server_diff(diff).unwrap();
    for (table, per_tenant) in [("jobs", 5000), ("customers", 200), ("inventory_items", 400), ("people", 5)] {
        let n: i64 = replica
            .connection()
            .query_row(&format!("SELECT count(*) FROM {table} WHERE tenant_id = 'company-b'"), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, per_tenant, "{table}");
    }
    assert_eq!(
        moat_tests::dump(replica.connection(), replica.schema(), ""),
        moat_tests::dump(&server.conn, &server.schema, "")
    );
}

#[test]
fn metadata_names_only_what_exists() {
    let schema = Schema::demo();
    let server = ModelServer::new(schema.clone(), SEED);
    let objects = json(
        &server.conn,
        "SELECT tenant_id, object_type, table_name, title_field, list_columns, search_fields, default_sort, fields
         FROM object_metadata ORDER BY id",
    );
    assert_eq!(objects.len(), 8, "four object types for each of two tenants");
    let mut known = HashSet::new();
    for o in &objects {
        let (tenant, object_type, table_name) = (&o[0], o[1].as_str().unwrap(), o[2].as_str().unwrap());
        let table = schema.table(table_name).unwrap();
        let fields = o[7].as_array().unwrap();
        let names: HashSet<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
        for f in fields {
            let name = f["name"].as_str().unwrap();
            assert!(table.column_index(name).is_some(), "{object_type}.{name} is not a column");
            let ty = f["type"].as_str().unwrap();
            assert!(FIELD_TYPES.contains(&ty), "{object_type}.{name}: type {ty}");
            if ty == "choice" {
                assert!(!f["options"].as_array().unwrap().is_empty(), "{object_type}.{name} has no options");
            }
            if ty == "reference" {
                known.insert((tenant.clone(), f["object_type"].as_str().unwrap().to_owned()));
            }
        }
        assert!(names.contains(o[3].as_str().unwrap()), "{object_type}: title field");
        for list in [&o[4], &o[5]] {
            for c in list.as_array().unwrap() {
                assert!(names.contains(c.as_str().unwrap()), "{object_type}: {c} is not a field");
            }
        }
        assert!(names.contains(o[6]["field"].as_str().unwrap()), "{object_type}: sort field");
    }
    for (tenant, target) in known {
        assert!(
            objects.iter().any(|o| o[0] == tenant && o[1] == target.as_str()),
            "reference to unknown object type {target}"
        );
    }

    let layouts = json(&server.conn, "SELECT tenant_id, object_type, sections FROM layout_definition");
    assert_eq!(layouts.len(), 10);
    for l in &layouts {
        let object =
            objects.iter().find(|o| o[0] == l[0] && o[1] == l[1]).expect("layout of a known object type");
        let fields = object[7].as_array().unwrap();
        for section in l[2].as_array().unwrap() {
            assert!(section["label"].is_string());
            for f in section["fields"].as_array().unwrap() {
                let name = f["field"].as_str().unwrap();
                assert!(fields.iter().any(|d| d["name"] == name), "layout names unknown field {name}");
                assert!(FIELD_TYPES.contains(&f["widget"].as_str().unwrap()), "widget of {name}");
            }
        }
    }
}
