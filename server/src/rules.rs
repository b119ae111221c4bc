//! Declarative sync rules (`schemas/sync_rules.toml`): a token's claims give a profile, a profile gives
//! one channel; rows are routed to channels by routing columns; roles can have hidden columns,
//! read-only tables and read-only columns. Every name is checked against the schema when the rules
//! are loaded, so nothing unchecked ever reaches SQL or the wire.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::Connection;
use serde::Deserialize;
use sqlite_ext::{BorrowedValue, Change, Diff, Fields, Op, Schema, Table, Value};

use crate::auth::Claims;
use crate::error::{Error, Result};

/// A table's columns as a snapshot sends them to one profile ([`Rules::insert_columns`]): in the
/// order its inserts carry them ([`Table::insert_order`]), those hidden from the role as NULL.
#[derive(Debug)]
pub struct InsertColumns<'t> {
    /// Each column's index in the table's row, and whether the role may not see it.
    columns: Vec<(usize, bool)>,
    names: Vec<&'t str>,
}

impl<'t> InsertColumns<'t> {
    /// The columns' names, in order.
    pub fn names(&self) -> &[&'t str] {
        &self.names
    }

    /// The values sent of `row` (the table's row, all columns in declaration order).
    pub fn values<'a, 'v>(
        &'a self,
        row: &'a [BorrowedValue<'v>],
    ) -> impl Iterator<Item = BorrowedValue<'v>> + 'a {
        self.columns.iter().map(|&(i, hidden)| if hidden { BorrowedValue::Null } else { row[i] })
    }
}

/// The rules file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    channel: String,
    route: BTreeMap<String, String>,
    roles: BTreeMap<String, RoleFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    hidden: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    read_only_tables: Vec<String>,
    #[serde(default)]
    read_only_columns: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    admin: bool,
}

/// What one role may see and write.
#[derive(Debug, Default)]
pub struct Role {
    hidden: HashMap<String, HashSet<String>>,
    read_only_tables: HashSet<String>,
    read_only_columns: HashMap<String, HashSet<String>>,
    /// The role administers its tenant (Sync health; customising, later).
    pub admin: bool,
    /// What the role may not write, as the welcome tells the client (made once, at load).
    pub rights: sqlite_ext::protocol::Rights,
}

impl Role {
    /// What this role may not write, sorted (for `rights`).
    fn make_rights(&self) -> sqlite_ext::protocol::Rights {
        let mut tables: Vec<String> = self.read_only_tables.iter().cloned().collect();
        tables.sort();
        let columns = self
            .read_only_columns
            .iter()
            .map(|(t, c)| {
                let mut c: Vec<String> = c.iter().cloned().collect();
                c.sort();
                (t.clone(), c)
            })
            .collect();
        sqlite_ext::protocol::Rights { read_only_tables: tables, read_only_columns: columns }
    }

    /// A delete removes every field: a role that may not write some of a table's columns (read-only
    /// or hidden) may not delete its rows.
    fn may_delete(&self, table: &str) -> bool {
        self.read_only_columns.get(table).is_none_or(|c| c.is_empty())
            && self.hidden.get(table).is_none_or(|c| c.is_empty())
    }

    pub(crate) fn hides(&self, table: &str, column: &str) -> bool {
        self.hidden.get(table).is_some_and(|c| c.contains(column))
    }
}

/// The rules, checked against the schema.
#[derive(Debug)]
pub struct Rules {
    channel: String,
    /// (column, claim) pairs, in a fixed order.
    route: Vec<(String, String)>,
    roles: HashMap<String, Arc<Role>>,
}

/// A user's profile: the channel they receive and what their role allows.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The channel's name, e.g. `company-a/admin`.
    pub channel: String,
    /// The values of the routing columns for this profile, in route order.
    pub route: Vec<Value>,
    /// The role's rights.
    pub role: Arc<Role>,
}

const CLAIMS: [&str; 3] = ["sub", "tenant", "role"];

fn claim<'a>(claims: &'a Claims, name: &str) -> &'a str {
    match name {
        "sub" => &claims.sub,
        "tenant" => &claims.tenant,
        "role" => &claims.role,
        _ => unreachable!("claim names are checked when the rules load"),
    }
}

impl Rules {
    /// Parses and checks rules against `schema`.
    pub fn from_toml(text: &str, schema: &Schema) -> Result<Rules> {
        let file: RulesFile = toml::from_str(text).map_err(|e| Error::Config(format!("sync rules: {e}")))?;
        let bad = |m: String| Error::Config(format!("sync rules: {m}"));
        if file.route.is_empty() {
            return Err(bad("`route` must name at least one routing column".into()));
        }
        for (column, c) in &file.route {
            if !CLAIMS.contains(&c.as_str()) {
                return Err(bad(format!("route {column} uses unknown claim {c:?}")));
            }
            if !file.channel.contains(&format!("{{{c}}}")) {
                return Err(bad(format!("the channel template must contain {{{c}}}: rows are routed by it")));
            }
            for t in schema.tables() {
                let i = t
                    .column_index(column)
                    .ok_or_else(|| bad(format!("table {} has no routing column {column}", t.name)))?;
                if t.columns[i].pk > 0 {
                    return Err(bad(format!(
                        "routing column {}.{column} may not be part of the key",
                        t.name
                    )));
                }
            }
        }
        let mut roles = HashMap::new();
        for (name, rf) in file.roles {
            let mut role = Role { admin: rf.admin, ..Role::default() };
            for (table, cols) in rf.hidden {
                let t =
                    schema.table(&table).map_err(|_| bad(format!("role {name}: unknown table {table}")))?;
                for c in &cols {
                    let col = t
                        .column_index(c)
                        .map(|i| &t.columns[i])
                        .ok_or_else(|| bad(format!("role {name}: unknown column {table}.{c}")))?;
                    if col.pk > 0 || col.not_null || file.route.contains_key(c) {
                        return Err(bad(format!(
                            "role {name}: hidden column {table}.{c} must be nullable, not a key, not routing"
                        )));
                    }
                }
                role.hidden.insert(table, cols.into_iter().collect());
            }
            for table in rf.read_only_tables {
                schema.table(&table).map_err(|_| bad(format!("role {name}: unknown table {table}")))?;
                role.read_only_tables.insert(table);
            }
            for (table, cols) in rf.read_only_columns {
                let t =
                    schema.table(&table).map_err(|_| bad(format!("role {name}: unknown table {table}")))?;
                for c in &cols {
                    t.column_index(c)
                        .ok_or_else(|| bad(format!("role {name}: unknown column {table}.{c}")))?;
                }
                role.read_only_columns.insert(table, cols.into_iter().collect());
            }
            role.rights = role.make_rights();
            roles.insert(name, Arc::new(role));
        }
        let placeholders = file.channel.matches('{').count();
        if placeholders != CLAIMS.iter().filter(|c| file.channel.contains(&format!("{{{c}}}"))).count() {
            return Err(bad(format!(
                "channel template {:?} may only use {{sub}}, {{tenant}} and {{role}}",
                file.channel
            )));
        }
        Ok(Rules { channel: file.channel, route: file.route.into_iter().collect(), roles })
    }

    /// The profile of a token's bearer; a role without rules has no profile.
    pub fn profile(&self, claims: &Claims) -> Result<Profile> {
        let role = self
            .roles
            .get(&*claims.role)
            .ok_or_else(|| Error::Unauthorized(format!("role {:?} has no sync rules", claims.role)))?;
        let mut channel = self.channel.clone();
        for c in CLAIMS {
            channel = channel.replace(&format!("{{{c}}}"), claim(claims, c));
        }
        let route = self.route.iter().map(|(_, c)| Value::from(claim(claims, c))).collect();
        Ok(Profile { channel, route, role: Arc::clone(role) })
    }

    /// The routing column filled from the tenant claim, and its place in the route, if any.
    pub fn tenant_route(&self) -> Option<(&str, usize)> {
        self.route.iter().position(|(_, c)| c == "tenant").map(|i| (self.route[i].0.as_str(), i))
    }

    /// The roles, sorted (a layout may be made for each).
    pub(crate) fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.roles.keys().cloned().collect();
        names.sort();
        names
    }

    /// The routing columns a new row of `profile` carries, with its values (`tenant_id` → the
    /// tenant): what the welcome tells the client, and what a customization's new metadata rows get.
    pub(crate) fn route_of<'a>(
        &'a self,
        profile: &'a Profile,
    ) -> impl Iterator<Item = (String, String)> + 'a {
        self.route_columns().zip(&profile.route).filter_map(|(c, v)| match v {
            Value::Text(t) => Some((c.to_owned(), t.clone())),
            _ => None,
        })
    }

    /// The routing columns, in route order.
    pub fn route_columns(&self) -> impl Iterator<Item = &str> {
        self.route.iter().map(|(c, _)| c.as_str())
    }

    /// Checks that a writer with `profile` may make every change of a push, on the database `conn`
    /// as it is now: an insert must stay in the writer's channel; an update or delete is checked
    /// against the row's channel as the database says, never as the client claims.
    pub(crate) fn check_push(
        &self,
        conn: &Connection,
        schema: &Schema,
        profile: &Profile,
        diff: &Diff,
    ) -> Result<()> {
        let route_cols: Vec<&str> = self.route_columns().collect();
        for change in &diff.changes {
            let table = schema.table(&change.table)?;
            // A refusal speaks the user's words: the object type's and the fields' labels.
            let names = || sqlite_ext::ui::Names::of(conn, &change.table);
            let route = match change.op {
                Op::Insert => {
                    let r = self.route_of_change(change).ok_or_else(|| {
                        Error::Forbidden(format!("a new {} must name its channel", names().label()))
                    })?;
                    if r != profile.route {
                        return Err(Error::Forbidden(format!(
                            "this {} would leave your channel",
                            names().label()
                        )));
                    }
                    None
                }
                Op::Update | Op::Delete => table.read_columns(conn, &change.pk, &route_cols)?,
            };
            self.check_write(profile, change, route.as_deref()).map_err(|e| match e {
                Error::Forbidden(_) => Error::Forbidden(self.refusal(profile, change, &names())),
                e => e,
            })?;
        }
        Ok(())
    }

    /// Why `check_write` refused `change`, in the user's words.
    fn refusal(&self, profile: &Profile, change: &Change, names: &sqlite_ext::ui::Names) -> String {
        let role = &profile.role;
        if role.read_only_tables.contains(&change.table) {
            return format!("{} are read-only for your role", names.plural());
        }
        if change.op == Op::Delete && !role.may_delete(&change.table) {
            return format!("{} cannot be deleted by your role", names.plural());
        }
        for (name, cc) in change.cols.iter() {
            if self.route.iter().any(|(c, _)| c == name) {
                if change.op == Op::Update {
                    return format!("{} cannot change", names.field(name));
                }
                continue;
            }
            let writes = match change.op {
                Op::Update => true,
                Op::Insert => !matches!(cc.new, Some(Value::Null)),
                Op::Delete => false,
            };
            let read_only = role.read_only_columns.get(&change.table).is_some_and(|c| c.contains(name));
            if writes && (role.hides(&change.table, name) || read_only) {
                return format!("{} is read-only for your role", names.field(name));
            }
        }
        format!("this {} is not in your channel", names.label())
    }

    /// Checks that a writer with `profile` may make `change`, whose row's routing values are `route`
    /// (from the database for an update or delete; from the change for an insert).
    pub fn check_write(&self, profile: &Profile, change: &Change, route: Option<&[Value]>) -> Result<()> {
        let role = &profile.role;
        let deny = |m: String| Err(Error::Forbidden(m));
        if role.read_only_tables.contains(&change.table) {
            return deny(format!("{} is read-only for this role", change.table));
        }
        if let Some(route) = route
            && route != profile.route.as_slice()
        {
            return deny(format!("row {} of {} is not in your channel", change.key(), change.table));
        }
        if change.op == Op::Delete && !role.may_delete(&change.table) {
            return deny(format!("{} cannot be deleted by this role", change.table));
        }
        let read_only = role.read_only_columns.get(&change.table);
        for (name, cc) in change.cols.iter() {
            let is_route = self.route.iter().any(|(c, _)| c == name);
            let writes = match change.op {
                Op::Update => true,
                Op::Insert => !matches!(cc.new, Some(Value::Null)),
                Op::Delete => false,
            };
            if is_route && change.op == Op::Update {
                return deny(format!("{name} routes rows to channels and cannot change"));
            }
            if is_route {
                continue;
            }
            if writes && (role.hides(&change.table, name) || read_only.is_some_and(|c| c.contains(name))) {
                return deny(format!("{}.{name} is read-only for this role", change.table));
            }
        }
        Ok(())
    }

    /// This profile's view of a change whose row has routing values `route`: `None` when the row is not
    /// in the channel or nothing visible changed; hidden columns are dropped from updates and sent as
    /// NULL in inserts and deletes (they are nullable, checked at load).
    pub fn view(&self, profile: &Profile, change: &Change, route: &[Value]) -> Option<Change> {
        if route != profile.route.as_slice() {
            return None;
        }
        self.view_owned(profile, change.clone(), route)
    }

    /// [`view`](Self::view) of a change the caller gives up (a snapshot's row as a diff): not copied.
    pub fn view_owned(&self, profile: &Profile, mut change: Change, route: &[Value]) -> Option<Change> {
        if route != profile.route.as_slice() {
            return None;
        }
        let Some(hidden) = profile.role.hidden.get(&change.table) else { return Some(change) };
        match change.op {
            Op::Update => {
                change.cols.0.retain(|(name, _)| !hidden.contains(name));
                if change.cols.0.is_empty() {
                    return None;
                }
            }
            Op::Insert | Op::Delete => {
                for (name, cc) in &mut change.cols.0 {
                    if hidden.contains(name) {
                        for v in [&mut cc.old, &mut cc.new].into_iter().flatten() {
                            *v = Value::Null;
                        }
                    }
                }
            }
        }
        Some(change)
    }

    /// What [`view_owned`](Self::view_owned) makes of an insert of a whole row of `table` in the
    /// profile's channel, column by column, for a snapshot's rows (see [`InsertColumns`]).
    pub fn insert_columns<'t>(&self, profile: &Profile, table: &'t Table) -> InsertColumns<'t> {
        let (mut columns, mut names) = (Vec::new(), Vec::new());
        for i in table.insert_order() {
            let name = table.columns[i].name.as_str();
            columns.push((i, profile.role.hides(&table.name, name)));
            names.push(name);
        }
        InsertColumns { columns, names }
    }

    /// The conflicts a profile may see: hidden columns are removed.
    pub fn visible_conflicts(
        &self,
        profile: &Profile,
        conflicts: Vec<sqlite_ext::Conflict>,
    ) -> Vec<sqlite_ext::Conflict> {
        conflicts
            .into_iter()
            .filter_map(|mut c| {
                c.columns.retain(|col| !profile.role.hides(&c.table, &col.column));
                (!c.columns.is_empty()).then_some(c)
            })
            .collect()
    }

    /// The routing values of a change's row when the change itself carries them (insert, delete).
    pub fn route_of_change(&self, change: &Change) -> Option<Vec<Value>> {
        self.route
            .iter()
            .map(|(col, _)| {
                let cc = change.cols.get(col)?;
                cc.new.clone().or_else(|| cc.old.clone())
            })
            .collect()
    }

    /// The routing values a profile's rows have, by column (for snapshot queries).
    pub fn route_filter<'p>(&self, profile: &'p Profile) -> Fields<&'p Value> {
        Fields(self.route.iter().zip(&profile.route).map(|((c, _), v)| (c.clone(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlite_ext::RowsWriter;

    /// A snapshot's rows written column by column say what its inserts, seen by each role, say.
    #[test]
    fn a_snapshots_rows_are_each_roles_view_of_their_inserts() {
        let schema = Schema::demo();
        let rules = Rules::from_toml(include_str!("../../schemas/sync_rules.toml"), &schema).unwrap();
        for role in ["admin", "technician"] {
            let claims =
                Claims { sub: "u1".into(), tenant: "company-a".into(), role: role.into(), exp: 0, iat: 0 };
            let profile = rules.profile(&claims).unwrap();
            let (mut by_change, mut by_row) = (RowsWriter::default(), RowsWriter::default());
            for table in schema.tables() {
                let columns = rules.insert_columns(&profile, table);
                for n in 0..2 {
                    // A value in every column, so that one sent as NULL shows.
                    let row: Vec<Value> =
                        (0..table.columns.len()).map(|i| Value::Text(format!("v{n}-{i}"))).collect();
                    let change =
                        rules.view_owned(&profile, table.insert_change(row.clone()), &profile.route).unwrap();
                    by_change.push(&change);
                    let row: Vec<BorrowedValue> = row.iter().map(BorrowedValue::of).collect();
                    by_row.push_row(&table.name, columns.names(), columns.values(&row));
                }
            }
            let (a, b) = (by_change.finish(), by_row.finish());
            assert_eq!(a, b, "{role}");
            assert_eq!(a.contains("null"), role == "technician", "{role}: {a}");
        }
    }
}
