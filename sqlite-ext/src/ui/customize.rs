//! Customize: an admin's edit of the tenant's object types, fields and layouts, made in the app.
//!
//! The app edits a [`Customization`] (every `object_metadata` and `layout_definition` row, parsed),
//! read from the device with [`read`]. [`plan`] checks a draft and says what publishing it would do:
//! the problems that stop it (in the user's words), the changes, the storage it needs (a new object
//! type's table, a new field's column) and the data it would destroy (a removed field's values). The
//! app runs it before the user publishes; the server runs the same function on its own database when
//! the draft arrives, runs the storage statements and [`write()`]s the metadata rows in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{FieldKind, FieldMeta, LayoutSection, json, parse_input, validate};
use crate::error::Result;
use crate::schema::{ColumnType, Schema, quote};
use crate::value::Value;

/// Every object type and layout of a tenant, as an admin edits them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Customization {
    /// The object types, in their order.
    pub object_types: Vec<ObjectTypeDef>,
    /// The layouts of every object type.
    pub layouts: Vec<LayoutDef>,
    /// The [`fingerprint`] of the metadata this draft was read from ([`read`] fills it): a publish
    /// whose base is no longer what is published is refused, so that a draft made before someone
    /// else's publish never undoes it unseen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// One object type: an `object_metadata` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ObjectTypeDef {
    /// API name (`jobs`); never changes once published.
    pub object_type: String,
    /// The table holding its records; a new object type's table is created when it is published.
    pub table_name: String,
    /// Singular label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// Icon name.
    #[serde(default)]
    pub icon: Option<String>,
    /// Position in the object list.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub sort_order: i64,
    /// The field that names a record.
    pub title_field: String,
    /// The list's columns.
    #[serde(default)]
    pub list_columns: Vec<String>,
    /// The fields a search looks in.
    #[serde(default)]
    pub search_fields: Vec<String>,
    /// The list's order.
    #[serde(default)]
    pub default_sort: Option<SortDef>,
    /// The fields.
    pub fields: Vec<FieldMeta>,
    /// Left out of the object list (its records and its table stay).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

/// A list's default order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SortDef {
    /// The field.
    pub field: String,
    /// `asc` or `desc`.
    pub dir: String,
}

/// One layout: a `layout_definition` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LayoutDef {
    /// The object type it draws.
    pub object_type: String,
    /// Its name (`detail`).
    pub name: String,
    /// The role it is for; `None`: every role without a layout of its own.
    #[serde(default)]
    pub role: Option<String>,
    /// Its sections.
    pub sections: Vec<LayoutSection>,
}

/// What publishing a draft would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Plan {
    /// What stops it, in the user's words; nothing is published while there are any.
    pub problems: Vec<String>,
    /// What it changes, one line each ("Jobs: added the field Warranty expires").
    pub changes: Vec<String>,
    /// Data it would destroy ("Jobs: Warranty expires, 3 values"): publishing needs a second
    /// confirmation.
    pub lost: Vec<String>,
    /// The storage statements (SQL) it runs first.
    #[serde(default)]
    pub ddl: Vec<String>,
    /// Tables that get new columns (their earlier changes are refitted to the new schema).
    #[serde(default)]
    pub widened: Vec<String>,
    /// It drops a table or a column (clients then take a fresh copy).
    #[serde(default)]
    pub drops: bool,
    /// The [`fingerprint`] of the draft: once it is published, the base of the next draft.
    #[serde(default)]
    pub fingerprint: String,
}

/// Tables an object type may not use.
fn reserved_table(name: &str) -> bool {
    name.starts_with("moat_")
        || name.starts_with("sqlite_")
        || name.starts_with("server_data_")
        || matches!(name, "object_metadata" | "layout_definition" | "overlays")
}

/// Lower-case letters, digits and `_`, starting with a letter, at most 63 characters.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A name made from a label (`Warranty expires` → `warranty_expires`), for new fields and types.
pub fn name_from_label(label: &str) -> String {
    let mut out = String::new();
    for c in label.trim().chars() {
        match c {
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_lowercase()),
            _ if !out.ends_with('_') && !out.is_empty() => out.push('_'),
            _ => {}
        }
    }
    let out = out.trim_end_matches('_').to_owned();
    match out.chars().next() {
        Some(c) if c.is_ascii_lowercase() => out.chars().take(63).collect(),
        Some(_) => format!("f_{out}").chars().take(63).collect(),
        None => "field".to_owned(),
    }
}

/// The storage class a field of `kind` is kept in.
fn storage_of(kind: FieldKind) -> ColumnType {
    match kind {
        FieldKind::Currency | FieldKind::Boolean => ColumnType::Integer,
        // A number may be whole or not: ANY keeps either exactly as typed.
        FieldKind::Number => ColumnType::Any,
        _ => ColumnType::Text,
    }
}

fn storage_fits(kind: FieldKind, ty: ColumnType) -> bool {
    match (kind, ty) {
        (_, ColumnType::Any) => true,
        (FieldKind::Number, ColumnType::Integer | ColumnType::Real) => true,
        (k, t) => storage_of(k) == t,
    }
}

fn type_sql(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "INTEGER",
        ColumnType::Real => "REAL",
        ColumnType::Text => "TEXT",
        ColumnType::Blob => "BLOB",
        ColumnType::Any => "ANY",
    }
}

/// The tenant's object types and layouts as the device (or the server) holds them.
pub fn read(conn: &Connection) -> Result<Customization> {
    let mut stmt = conn.prepare(
        "SELECT object_type, table_name, label, label_plural, icon, sort_order, title_field, list_columns, \
         search_fields, default_sort, fields, coalesce(hidden, 0) FROM object_metadata \
         ORDER BY sort_order, label_plural, id",
    )?;
    // The JSON columns (list, search, fields; the sort) are parsed once the row is read.
    let rows: Vec<(ObjectTypeDef, [String; 3], Option<String>)> = stmt
        .query_map([], |r| {
            let t = ObjectTypeDef {
                object_type: r.get(0)?,
                table_name: r.get(1)?,
                label: r.get(2)?,
                label_plural: r.get(3)?,
                icon: r.get(4)?,
                sort_order: r.get(5)?,
                title_field: r.get(6)?,
                list_columns: Vec::new(),
                search_fields: Vec::new(),
                default_sort: None,
                fields: Vec::new(),
                hidden: r.get(11)?,
            };
            Ok((t, [r.get(7)?, r.get(8)?, r.get(10)?], r.get(9)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut object_types = Vec::new();
    for (mut t, [list, search, fields], sort) in rows {
        t.list_columns = json(&list, "list_columns")?;
        t.search_fields = json(&search, "search_fields")?;
        t.default_sort = sort.map(|s| json(&s, "default_sort")).transpose()?;
        t.fields = json(&fields, "fields")?;
        object_types.push(t);
    }
    let mut stmt = conn.prepare(
        "SELECT object_type, name, role, sections FROM layout_definition ORDER BY object_type, role IS NOT NULL, role, name",
    )?;
    let rows: Vec<(String, String, Option<String>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let layouts = rows
        .into_iter()
        .map(|(object_type, name, role, sections)| {
            Ok(LayoutDef { sections: json(&sections, "sections")?, object_type, name, role })
        })
        .collect::<Result<_>>()?;
    let mut c = Customization { object_types, layouts, base: None };
    c.base = Some(fingerprint(&c));
    Ok(c)
}

/// A short, stable name of a customization's content (FNV-1a 64 of its JSON, `base` left out, object
/// types and layouts in a canonical order, so that the same metadata always has the same name).
pub fn fingerprint(c: &Customization) -> String {
    let mut types: Vec<&ObjectTypeDef> = c.object_types.iter().collect();
    types.sort_by(|a, b| a.object_type.cmp(&b.object_type));
    let mut layouts: Vec<&LayoutDef> = c.layouts.iter().collect();
    layouts.sort_by(|a, b| (&a.object_type, &a.name, &a.role).cmp(&(&b.object_type, &b.name, &b.role)));
    let json = serde_json::to_string(&(types, layouts)).expect("metadata serialises");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// "for technicians" / "for everyone", as a change line names a layout.
fn for_whom(role: &Option<String>) -> String {
    match role {
        Some(r) => format!("for the role {r}"),
        None => "for everyone".to_owned(),
    }
}

/// Checks one object type's definition; problems are pushed in the user's words.
fn check_type(t: &ObjectTypeDef, draft: &Customization, problems: &mut Vec<String>) {
    let who = if t.label_plural.trim().is_empty() { t.object_type.clone() } else { t.label_plural.clone() };
    let mut bad = |why: String| problems.push(format!("{who}: {why}"));
    if t.label.trim().is_empty() || t.label_plural.trim().is_empty() {
        bad("a label and a plural label are needed".into());
    }
    if !is_name(&t.object_type) {
        bad(format!("the API name {:?} must be lower-case letters, digits and _", t.object_type));
    }
    if !is_name(&t.table_name) || reserved_table(&t.table_name) {
        bad(format!("{:?} cannot be used as a table name", t.table_name));
    }
    if t.fields.is_empty() {
        bad("an object type needs at least one field".into());
    }
    let mut names = BTreeSet::new();
    for f in &t.fields {
        check_field(f, draft, false).into_iter().for_each(&mut bad);
        if !names.insert(f.name.as_str()) {
            bad(format!("two fields are named {:?}", f.name));
        }
    }
    let is_field = |n: &str| t.fields.iter().any(|f| f.name == n);
    if !is_field(&t.title_field) {
        bad("choose the field that names a record (its title)".into());
    }
    for c in t.list_columns.iter().chain(&t.search_fields) {
        if !is_field(c) {
            bad(format!("the list or the search names {c:?}, which is not one of its fields"));
        }
    }
    if let Some(s) = &t.default_sort
        && (!is_field(&s.field) || !matches!(s.dir.as_str(), "asc" | "desc"))
    {
        bad("the default order must be one of its fields, ascending or descending".into());
    }
}

/// The problems of one field (of a line-items field's column with `item`).
fn check_field(f: &FieldMeta, draft: &Customization, item: bool) -> Vec<String> {
    let label = if f.label.trim().is_empty() { f.name.as_str() } else { f.label.as_str() };
    let mut out = Vec::new();
    let mut say = |why: &str| out.push(format!("{label}: {why}"));
    if f.label.trim().is_empty() {
        say("a label is needed");
    }
    if !is_name(&f.name) || f.name == "id" {
        say(&format!("the API name {:?} must be lower-case letters, digits and _ (not id)", f.name));
    }
    match f.kind {
        FieldKind::Unknown => say("choose a field type"),
        FieldKind::Choice => {
            let mut seen = BTreeSet::new();
            if f.options.is_empty() {
                say("a choice needs at least one option");
            }
            for o in &f.options {
                if o.value.trim().is_empty() || o.label.trim().is_empty() {
                    say("every option needs a value and a label");
                } else if !seen.insert(o.value.as_str()) {
                    say(&format!("two options are {:?}", o.value));
                }
                if let Some(c) = &o.color {
                    let hex =
                        c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit());
                    if !hex {
                        say(&format!("the colour {c:?} must be #rrggbb"));
                    }
                }
            }
        }
        FieldKind::Reference => match &f.object_type {
            Some(target) if draft.object_types.iter().any(|t| t.object_type == *target) => {}
            _ => say("choose the object type it refers to"),
        },
        FieldKind::Currency => {
            if f.currency.as_ref().is_some_and(|c| c.len() != 3 || !c.chars().all(|x| x.is_ascii_uppercase()))
            {
                say("the currency is a three-letter code such as EUR");
            }
            if f.scale.is_some_and(|s| s > 6) {
                say("at most 6 decimal places");
            }
        }
        FieldKind::LineItems if item => say("line items cannot hold line items"),
        FieldKind::LineItems => {
            if f.items.is_empty() {
                say("line items need at least one column");
            }
            let mut seen = BTreeSet::new();
            for i in &f.items {
                if !matches!(i.kind, FieldKind::Text | FieldKind::Number | FieldKind::Currency) {
                    say(&format!("the column {} must be text, a number or money", i.label));
                }
                if !seen.insert(i.name.as_str()) {
                    say(&format!("two columns are named {:?}", i.name));
                }
                for p in check_field(i, draft, true) {
                    say(&p);
                }
            }
        }
        _ => {}
    }
    if let (Some(lo), Some(hi)) = (f.min, f.max)
        && lo > hi
    {
        say("the smallest value is above the largest");
    }
    if let Some(d) = &f.default {
        let ok = parse_input(f, d).and_then(|v| validate(f, &v));
        if let Err(e) = ok {
            say(&format!("the default value {d:?} is not allowed ({})", e.for_user()));
        }
    }
    out
}

fn check_layouts(draft: &Customization, problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for l in &draft.layouts {
        let Some(t) = draft.object_types.iter().find(|t| t.object_type == l.object_type) else {
            problems.push(format!("a layout is for {:?}, which is not an object type", l.object_type));
            continue;
        };
        let whose = format!("{}, layout {}", t.label_plural, for_whom(&l.role));
        if !seen.insert((&l.object_type, &l.name, &l.role)) {
            problems.push(format!("{whose}: there are two of it"));
        }
        if l.role.as_deref().is_some_and(|r| !is_name(r)) || !is_name(&l.name) {
            problems.push(format!("{whose}: its name and role must be lower-case letters"));
        }
        let mut placed = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for s in &l.sections {
            if s.label.trim().is_empty() || s.id.trim().is_empty() {
                problems.push(format!("{whose}: every section needs a title"));
            }
            if !ids.insert(s.id.as_str()) {
                problems.push(format!("{whose}: two sections are called {:?}", s.id));
            }
            if !(1..=3).contains(&s.columns) {
                problems.push(format!("{whose}: a section has 1 to 3 columns"));
            }
            for lf in &s.fields {
                let Some(f) = t.fields.iter().find(|f| f.name == lf.field) else {
                    problems.push(format!("{whose}: {:?} is not one of its fields", lf.field));
                    continue;
                };
                if !placed.insert(lf.field.as_str()) {
                    problems.push(format!("{whose}: {} is placed twice", f.label));
                }
                let fits = lf.widget == f.kind
                    || matches!(
                        (f.kind, lf.widget),
                        (FieldKind::Text, FieldKind::Multiline) | (FieldKind::Multiline, FieldKind::Text)
                    );
                if !fits {
                    problems.push(format!("{whose}: {} cannot be drawn as {}", f.label, lf.widget.label()));
                }
            }
        }
    }
    for t in &draft.object_types {
        let shared = draft
            .layouts
            .iter()
            .any(|l| l.object_type == t.object_type && l.name == "detail" && l.role.is_none());
        if !shared {
            problems.push(format!("{}: a detail layout for everyone is needed", t.label_plural));
        }
    }
}

/// What publishing `next` over the metadata in `conn` does, for a tenant whose rows carry
/// `route_columns` (each a TEXT column a new table gets too). `schema` is the database's schema.
pub fn plan(
    conn: &Connection,
    schema: &Schema,
    route_columns: &[String],
    next: &Customization,
) -> Result<Plan> {
    let current = read(conn)?;
    let mut p = Plan { fingerprint: fingerprint(next), ..Plan::default() };
    let mut types = BTreeSet::new();
    let mut tables = BTreeSet::new();
    for t in &next.object_types {
        check_type(t, next, &mut p.problems);
        if !types.insert(t.object_type.as_str()) {
            p.problems.push(format!("two object types are named {:?}", t.object_type));
        }
        if !tables.insert(t.table_name.as_str()) {
            p.problems.push(format!("two object types keep their records in {:?}", t.table_name));
        }
        if route_columns.iter().any(|r| t.fields.iter().any(|f| f.name == *r))
            || t.fields.iter().any(|f| f.name == "id")
        {
            p.problems.push(format!(
                "{}: a field may not be named id or {}",
                t.label_plural,
                route_columns.join(", ")
            ));
        }
    }
    check_layouts(next, &mut p.problems);
    // Storage: what each object type needs, beside what the schema has.
    for t in &next.object_types {
        let before = current.object_types.iter().find(|c| c.object_type == t.object_type);
        match before {
            Some(b) if b.table_name != t.table_name => {
                p.problems.push(format!("{}: an object type keeps its table", t.label_plural));
                continue;
            }
            None => p.changes.push(format!("Added the object type {}", t.label_plural)),
            Some(b) => describe_type_changes(b, t, &mut p.changes),
        }
        match schema.table(&t.table_name) {
            Err(_) => {
                if before.is_none() && !reserved_table(&t.table_name) && is_name(&t.table_name) {
                    let mut cols = vec!["\"id\" TEXT PRIMARY KEY NOT NULL".to_owned()];
                    cols.extend(route_columns.iter().map(|r| format!("{} TEXT NOT NULL", quote(r))));
                    cols.extend(
                        t.fields
                            .iter()
                            .map(|f| format!("{} {}", quote(&f.name), type_sql(storage_of(f.kind)))),
                    );
                    p.ddl.push(format!("CREATE TABLE {} ({}) STRICT", quote(&t.table_name), cols.join(", ")));
                }
            }
            Ok(table) => {
                if before.is_none() {
                    p.problems
                        .push(format!("{}: the table {:?} is already in use", t.label_plural, t.table_name));
                    continue;
                }
                for f in &t.fields {
                    match table.columns.iter().find(|c| c.name == f.name) {
                        Some(c) if c.pk > 0 || route_columns.contains(&c.name) => {
                            p.problems
                                .push(format!("{}: {:?} is not free for a field", t.label_plural, f.name));
                        }
                        Some(c) if !storage_fits(f.kind, c.ty) => p.problems.push(format!(
                            "{}: {} holds {} values; it cannot become a {} field (add a new field instead)",
                            t.label_plural,
                            f.label,
                            type_sql(c.ty).to_lowercase(),
                            f.kind.label().to_lowercase()
                        )),
                        Some(_) => {}
                        None => {
                            p.ddl.push(format!(
                                "ALTER TABLE {} ADD COLUMN {} {}",
                                quote(&t.table_name),
                                quote(&f.name),
                                type_sql(storage_of(f.kind))
                            ));
                            if !p.widened.contains(&t.table_name) {
                                p.widened.push(t.table_name.clone());
                            }
                        }
                    }
                }
                // A removed field's column goes, and with it its values.
                let b = before.expect("checked above");
                for f in b.fields.iter().filter(|f| !t.fields.iter().any(|n| n.name == f.name)) {
                    let Some(c) = table.columns.iter().find(|c| c.name == f.name && c.pk == 0) else {
                        continue;
                    };
                    if route_columns.contains(&c.name) {
                        continue;
                    }
                    let sql = format!("SELECT count({}) FROM {}", quote(&c.name), quote(&table.name));
                    let n: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
                    if n > 0 {
                        p.lost.push(format!(
                            "{}: {}, {n} value{}",
                            t.label_plural,
                            f.label,
                            if n == 1 { "" } else { "s" }
                        ));
                    }
                    p.ddl.push(format!("ALTER TABLE {} DROP COLUMN {}", quote(&table.name), quote(&c.name)));
                    p.drops = true;
                }
            }
        }
    }
    for b in current
        .object_types
        .iter()
        .filter(|b| !next.object_types.iter().any(|t| t.object_type == b.object_type))
    {
        p.changes.push(format!("Removed the object type {}", b.label_plural));
        if let Ok(table) = schema.table(&b.table_name) {
            let n = table.count(conn, &[])?;
            if n > 0 {
                p.lost.push(format!("{}: {n} record{}", b.label_plural, if n == 1 { "" } else { "s" }));
            }
            p.ddl.push(format!("DROP TABLE {}", quote(&table.name)));
            p.drops = true;
        }
    }
    describe_layout_changes(&current, next, &mut p.changes);
    Ok(p)
}

fn describe_type_changes(b: &ObjectTypeDef, t: &ObjectTypeDef, changes: &mut Vec<String>) {
    let name = &t.label_plural;
    if b.label != t.label || b.label_plural != t.label_plural {
        changes.push(format!("{}: now called {} / {}", b.label_plural, t.label, t.label_plural));
    }
    if b.icon != t.icon || b.sort_order != t.sort_order {
        changes.push(format!("{name}: icon or position changed"));
    }
    if b.hidden != t.hidden {
        changes.push(format!(
            "{name}: {}",
            if t.hidden { "hidden from the object list" } else { "shown in the object list again" }
        ));
    }
    for f in &t.fields {
        match b.fields.iter().find(|x| x.name == f.name) {
            None => changes.push(format!("{name}: added the field {}", f.label)),
            Some(x) if x != f => changes.push(format!("{name}: changed the field {}", f.label)),
            Some(_) => {}
        }
    }
    for f in b.fields.iter().filter(|f| !t.fields.iter().any(|x| x.name == f.name)) {
        changes.push(format!("{name}: removed the field {}", f.label));
    }
    if b.fields.iter().map(|f| &f.name).ne(t.fields.iter().map(|f| &f.name))
        && b.fields.len() == t.fields.len()
    {
        changes.push(format!("{name}: fields reordered"));
    }
    if b.title_field != t.title_field
        || b.list_columns != t.list_columns
        || b.search_fields != t.search_fields
        || b.default_sort != t.default_sort
    {
        changes.push(format!("{name}: list, search or order changed"));
    }
}

fn describe_layout_changes(current: &Customization, next: &Customization, changes: &mut Vec<String>) {
    let label = |ot: &str| {
        next.object_types
            .iter()
            .chain(&current.object_types)
            .find(|t| t.object_type == ot)
            .map(|t| t.label_plural.clone())
            .unwrap_or_else(|| ot.to_owned())
    };
    let key = |l: &LayoutDef| (l.object_type.clone(), l.name.clone(), l.role.clone());
    let before: BTreeMap<_, _> = current.layouts.iter().map(|l| (key(l), l)).collect();
    let after: BTreeMap<_, _> = next.layouts.iter().map(|l| (key(l), l)).collect();
    for (k, l) in &after {
        match before.get(k) {
            None => changes.push(format!("{}: added a layout {}", label(&k.0), for_whom(&k.2))),
            Some(b) if b.sections != l.sections => {
                changes.push(format!("{}: changed the layout {}", label(&k.0), for_whom(&k.2)))
            }
            Some(_) => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        // A removed object type's layouts go with it, said once above.
        if next.object_types.iter().any(|t| t.object_type == k.0) {
            changes.push(format!("{}: removed the layout {}", label(&k.0), for_whom(&k.2)));
        }
    }
}

/// Writes `next`'s metadata rows over the ones in `conn`: changed rows are updated, new ones
/// inserted (with the routing values `route`, and an id made from them), rows of removed object
/// types and layouts deleted. Unchanged rows are not touched, so the change log holds only what
/// changed.
pub fn write(conn: &Connection, next: &Customization, route: &[(String, String)]) -> Result<()> {
    let current = read(conn)?;
    let prefix: String = route.iter().map(|(_, v)| format!("{v}:")).collect();
    for b in current
        .object_types
        .iter()
        .filter(|b| !next.object_types.iter().any(|t| t.object_type == b.object_type))
    {
        conn.execute("DELETE FROM layout_definition WHERE object_type = ?1", [&b.object_type])?;
        conn.execute("DELETE FROM object_metadata WHERE object_type = ?1", [&b.object_type])?;
    }
    for t in &next.object_types {
        if current.object_types.iter().any(|b| b == t) {
            continue;
        }
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM object_metadata WHERE object_type = ?1 ORDER BY id LIMIT 1",
                [&t.object_type],
                |r| r.get(0),
            )
            .optional()?;
        let values: Vec<Value> = vec![
            Value::Text(t.object_type.clone()),
            Value::Text(t.table_name.clone()),
            Value::Text(t.label.clone()),
            Value::Text(t.label_plural.clone()),
            t.icon.clone().map(Value::Text).unwrap_or(Value::Null),
            Value::Integer(t.sort_order),
            Value::Text(t.title_field.clone()),
            Value::Text(to_json(&t.list_columns)),
            Value::Text(to_json(&t.search_fields)),
            t.default_sort.as_ref().map(|s| Value::Text(to_json(s))).unwrap_or(Value::Null),
            Value::Text(to_json(&t.fields)),
            if t.hidden { Value::Integer(1) } else { Value::Null },
        ];
        const COLS: [&str; 12] = [
            "object_type",
            "table_name",
            "label",
            "label_plural",
            "icon",
            "sort_order",
            "title_field",
            "list_columns",
            "search_fields",
            "default_sort",
            "fields",
            "hidden",
        ];
        let id = id.unwrap_or_else(|| format!("{prefix}{}", t.object_type));
        upsert(conn, "object_metadata", &id, route, &COLS, values)?;
    }
    let key = |l: &LayoutDef| (l.object_type.clone(), l.name.clone(), l.role.clone());
    let wanted: BTreeSet<_> = next.layouts.iter().map(key).collect();
    for b in current.layouts.iter().filter(|b| !wanted.contains(&key(b))) {
        conn.execute(
            "DELETE FROM layout_definition WHERE object_type = ?1 AND name = ?2 AND role IS ?3",
            rusqlite::params![b.object_type, b.name, b.role],
        )?;
    }
    for l in &next.layouts {
        if current.layouts.iter().any(|b| b == l) {
            continue;
        }
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM layout_definition WHERE object_type = ?1 AND name = ?2 AND role IS ?3 ORDER BY id LIMIT 1",
                rusqlite::params![l.object_type, l.name, l.role],
                |r| r.get(0),
            )
            .optional()?;
        let mut made = format!("{prefix}{}:{}", l.object_type, l.name);
        if let Some(r) = &l.role {
            let _ = write!(made, ":{r}");
        }
        let values = vec![
            Value::Text(l.object_type.clone()),
            Value::Text(l.name.clone()),
            l.role.clone().map(Value::Text).unwrap_or(Value::Null),
            Value::Text(to_json(&l.sections)),
        ];
        upsert(
            conn,
            "layout_definition",
            &id.unwrap_or(made),
            route,
            &["object_type", "name", "role", "sections"],
            values,
        )?;
    }
    Ok(())
}

/// A metadata column's JSON text.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata serialises")
}

/// Inserts row `id` of `table` or updates the columns that differ.
fn upsert(
    conn: &Connection,
    table: &str,
    id: &str,
    route: &[(String, String)],
    cols: &[&str],
    values: Vec<Value>,
) -> Result<()> {
    let mut names: Vec<String> = vec![quote("id")];
    names.extend(route.iter().map(|(c, _)| quote(c)));
    names.extend(cols.iter().map(|c| quote(c)));
    let mut params: Vec<Value> = vec![Value::Text(id.to_owned())];
    params.extend(route.iter().map(|(_, v)| Value::Text(v.clone())));
    params.extend(values);
    let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
    let set: Vec<String> = cols.iter().map(|c| format!("{0} = excluded.{0}", quote(c))).collect();
    let differs: Vec<String> = cols.iter().map(|c| format!("{0} IS NOT excluded.{0}", quote(c))).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (\"id\") DO UPDATE SET {} WHERE {}",
        quote(table),
        names.join(", "),
        marks.join(", "),
        set.join(", "),
        differs.join(" OR ")
    );
    conn.execute(&sql, rusqlite::params_from_iter(params.iter()))?;
    Ok(())
}
