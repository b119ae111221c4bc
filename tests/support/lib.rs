//! Helpers shared by the cross-crate integration tests: a seeded random generator, a model server
//! built on `sqlite_ext::merge` over a real SQLite database, and table dumps for comparing states.
#![warn(unreachable_pub, missing_debug_implementations)]

use std::collections::HashMap;

use rusqlite::Connection;
use rusqlite::session::Session;
use sqlite_ext::{Conflict, ConflictKind, Diff, Fields, Mutation, Op, Schema, Value, merge};

/// A small, seeded generator (SplitMix64): the same seed gives the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5eed_0f0a_7000_0000)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Builds a `Fields` from `(name, value)` pairs.
pub fn fields<const N: usize>(entries: [(&str, Value); N]) -> Fields<Value> {
    Fields::from(entries)
}

/// A key of one text column `id`.
pub fn id(v: &str) -> Fields<Value> {
    fields([("id", Value::from(v))])
}

/// What the server answered a push with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied (maybe partly): the conflicts are what it could not merge.
    Ack(Vec<Conflict>),
    /// Refused as a whole, with the reason.
    Reject(String),
}

/// A model of the server's write path: one SQLite database, `merge` for every push, a log of what was
/// applied (the diffs to broadcast), and each mutation id applied at most once.
#[derive(Debug)]
pub struct ModelServer {
    /// The authoritative database.
    pub conn: Connection,
    /// The synced tables.
    pub schema: Schema,
    /// Every applied diff, in order; version `n` is `log[n - 1]`.
    pub log: Vec<Diff>,
    outcomes: HashMap<String, Outcome>,
    /// How many pushes arrived again after being applied once.
    pub replays: usize,
}

impl ModelServer {
    /// A server with `schema`, whose first log entry is what `seed_sql` inserted.
    pub fn new(schema: Schema, seed_sql: &str) -> Self {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(schema.sql()).unwrap();
        let mut server = ModelServer { conn, schema, log: Vec::new(), outcomes: HashMap::new(), replays: 0 };
        if !seed_sql.is_empty() {
            let diff = server.capture(|c| c.execute_batch(seed_sql).unwrap());
            server.log.push(diff);
        }
        server
    }

    /// Runs `f` on the server database and returns what it changed as a diff (the "server side
    /// edit" of an admin tool, say). The diff is appended to the log.
    pub fn edit(&mut self, f: impl FnOnce(&Connection)) -> Diff {
        let diff = self.capture(f);
        if !diff.is_empty() {
            self.log.push(diff.clone());
        }
        diff
    }

    fn capture(&self, f: impl FnOnce(&Connection)) -> Diff {
        let mut session = Session::new(&self.conn).unwrap();
        session.attach::<&str>(None).unwrap();
        f(&self.conn);
        let mut bytes = Vec::new();
        session.changeset_strm(&mut bytes).unwrap();
        Diff::from_changeset(&self.schema, &bytes).unwrap()
    }

    /// Applies a client's mutation once; a replay gets the first outcome again. Checks, as an oracle
    /// independent of `merge`, that a conflict is reported exactly for the columns whose server value
    /// moved away from the base to something other than the writer's value, and that every other
    /// column of the writer's change is on the server afterwards.
    pub fn push(&mut self, m: &Mutation) -> Outcome {
        if let Some(o) = self.outcomes.get(&m.mutation_id) {
            self.replays += 1;
            return o.clone();
        }
        let expected = self.expected_conflicts(&m.diff);
        let tx = self.conn.unchecked_transaction().unwrap();
        let outcome = match merge(&tx, &self.schema, &m.diff) {
            Ok(report) => {
                tx.commit().unwrap();
                assert_eq!(
                    normalise(&report.conflicts),
                    normalise(&expected),
                    "conflicts for {}",
                    m.diff.to_json()
                );
                self.check_applied(&m.diff, &report.conflicts);
                if !report.applied.is_empty() {
                    self.log.push(report.applied);
                }
                Outcome::Ack(report.conflicts)
            }
            Err(e) => {
                assert!(e.is_permanent(), "{e}");
                Outcome::Reject(e.to_string())
            }
        };
        self.outcomes.insert(m.mutation_id.clone(), outcome.clone());
        outcome
    }

    fn row(&self, table: &str, pk: &Fields<Value>) -> Option<Vec<(String, Value)>> {
        let t = self.schema.table(table).unwrap();
        let cols: Vec<String> = t.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
        let cond: Vec<String> =
            t.pk.iter()
                .enumerate()
                .map(|(n, &i)| format!("\"{}\" = ?{}", t.columns[i].name, n + 1))
                .collect();
        let sql = format!("SELECT {} FROM \"{table}\" WHERE {}", cols.join(","), cond.join(" AND "));
        let key: Vec<Value> = pk.iter().map(|(_, v)| v.clone()).collect();
        let mut stmt = self.conn.prepare(&sql).unwrap();
        let mut rows = stmt.query(rusqlite::params_from_iter(key)).unwrap();
        let row = rows.next().unwrap()?;
        Some(t.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), row.get(i).unwrap())).collect())
    }

    fn expected_conflicts(&self, diff: &Diff) -> Vec<Conflict> {
        let mut out = Vec::new();
        for c in &diff.changes {
            let current = self.row(&c.table, &c.pk);
            let value = |name: &str| {
                current.as_ref().and_then(|r| r.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            };
            let (kind, columns): (ConflictKind, Vec<sqlite_ext::ColumnConflict>) = match (c.op, &current) {
                (Op::Update, Some(_)) => (
                    ConflictKind::Field,
                    c.cols
                        .iter()
                        .filter_map(|(name, cc)| {
                            let (base, mine, theirs) = (cc.old.clone()?, cc.new.clone()?, value(name)?);
                            (!theirs.sql_eq(&base) && !theirs.sql_eq(&mine)).then(|| {
                                sqlite_ext::ColumnConflict {
                                    column: name.to_owned(),
                                    base: Some(base),
                                    theirs: Some(theirs),
                                    mine,
                                }
                            })
                        })
                        .collect(),
                ),
                (Op::Update, None) => (
                    ConflictKind::RowDeleted,
                    c.cols
                        .iter()
                        .map(|(name, cc)| sqlite_ext::ColumnConflict {
                            column: name.to_owned(),
                            base: cc.old.clone(),
                            theirs: None,
                            mine: cc.new.clone().unwrap(),
                        })
                        .collect(),
                ),
                (Op::Insert, Some(_)) => (
                    ConflictKind::RowExists,
                    c.cols
                        .iter()
                        .filter_map(|(name, cc)| {
                            let (mine, theirs) = (cc.new.clone()?, value(name)?);
                            (!theirs.sql_eq(&mine)).then(|| sqlite_ext::ColumnConflict {
                                column: name.to_owned(),
                                base: None,
                                theirs: Some(theirs),
                                mine,
                            })
                        })
                        .collect(),
                ),
                _ => continue,
            };
            if !columns.is_empty() {
                out.push(Conflict { kind, table: c.table.clone(), pk: c.pk.clone(), columns });
            }
        }
        out
    }

    fn check_applied(&self, diff: &Diff, conflicts: &[Conflict]) {
        for c in &diff.changes {
            let row = self.row(&c.table, &c.pk);
            let conflicted = |col: &str| {
                conflicts.iter().any(|k| {
                    k.table == c.table && k.pk == c.pk && k.columns.iter().any(|cc| cc.column == col)
                })
            };
            match c.op {
                Op::Delete => assert!(row.is_none(), "delete of {} not applied", c.key()),
                Op::Insert | Op::Update => {
                    for (name, cc) in c.cols.iter() {
                        if conflicted(name) {
                            continue;
                        }
                        let Some(row) = &row else { panic!("row {} missing after {:?}", c.key(), c.op) };
                        let now = &row.iter().find(|(n, _)| n == name).unwrap().1;
                        assert!(
                            now.sql_eq(cc.new.as_ref().unwrap()),
                            "{}.{name} lost: {now:?} vs {cc:?}",
                            c.key()
                        );
                    }
                }
            }
        }
    }
}

fn normalise(conflicts: &[Conflict]) -> Vec<String> {
    let mut v: Vec<String> = conflicts.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
    v.sort();
    v
}

/// Every row of every synced table, as `table name prefix + name`, ordered by key: for comparing a
/// replica's projection (`""`) or golden state (`"server_data_"`) with the server.
pub fn dump(conn: &Connection, schema: &Schema, prefix: &str) -> Vec<(String, Vec<Vec<Value>>)> {
    schema
        .tables()
        .iter()
        .map(|t| {
            let order: Vec<String> = t.pk.iter().map(|&i| format!("\"{}\"", t.columns[i].name)).collect();
            let sql = format!("SELECT * FROM \"{prefix}{}\" ORDER BY {}", t.name, order.join(","));
            let mut stmt = conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map([], |r| (0..t.columns.len()).map(|i| r.get::<_, Value>(i)).collect())
                .unwrap()
                .collect::<Result<Vec<Vec<Value>>, _>>()
                .unwrap();
            (t.name.clone(), rows)
        })
        .collect()
}

/// A company-a device holding the demo data (`seed` is `schemas/demo_seed.sql`), and the model server
/// it synced from (company-b's rows dropped there first, as its channel would).
pub fn company_a_device(seed: &str) -> (ModelServer, sqlite_ext::Replica) {
    let mut server = ModelServer::new(Schema::demo(), seed);
    let mut r = sqlite_ext::Replica::open_in_memory(Schema::demo()).unwrap();
    r.apply_server_diff(&server.log[0]).unwrap();
    let only_a = server.edit(|c| {
        for t in ["jobs", "customers", "inventory_items", "people", "object_metadata", "layout_definition"] {
            c.execute(&format!("DELETE FROM {t} WHERE tenant_id = 'company-b'"), []).unwrap();
        }
    });
    r.apply_server_diff(&only_a).unwrap();
    (server, r)
}
