//! Seeded property test: several replicas (real SQLite files) and a model server make random
//! concurrent edits, go offline, crash and restart, replay pushes, and resolve conflicts at random.
//!
//! Checked on every seed:
//! - at every push, a conflict is raised exactly for the columns changed concurrently to different
//!   values, and every other column of the push is on the server afterwards (the model server's oracle);
//! - every conflict the server reported reaches the user (is resolved through the replica's API);
//! - once everyone is online and quiet, every replica's projection and golden state equal the server.
//!
//! `MOAT_SEEDS=n` runs more seeds; a failure names its seed, and `MOAT_SEED=s` replays just that one.

use std::collections::VecDeque;
use std::path::PathBuf;

use moat_tests::{ModelServer, Outcome, Rng, dump};
use sqlite_ext::{Fields, Mutation, Replica, Resolution, Schema, Value};

const SCHEMA: &str = "
CREATE TABLE items (
    id TEXT PRIMARY KEY NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    qty INTEGER,
    ratio REAL,
    data BLOB,
    extra ANY
) STRICT;
CREATE TABLE notes (
    owner TEXT NOT NULL,
    n INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (owner, n)
) STRICT;
";

const SEED_ROWS: &str = "
INSERT INTO items (id, label, qty, ratio) VALUES ('i1', 'one', 1, 0.5), ('i2', 'two', 2, NULL),
    ('i3', 'three', NULL, 1.5), ('i4', 'four', 4, 2.0);
INSERT INTO notes VALUES ('ann', 1, 'hello'), ('bob', 1, NULL), ('bob', 2, 'x');
";

const CHANNEL: &str = "all";

#[derive(Debug)]
enum Msg {
    /// Log entry `version` (1-based).
    Diff(usize),
    Outcome(String, Outcome),
}

struct Client {
    path: PathBuf,
    replica: Replica,
    online: bool,
    inbox: VecDeque<Msg>,
    /// Mutation ids sent on the current connection.
    sent: Vec<String>,
    /// Conflicts the server reported to this client (first outcome of each mutation).
    reported: usize,
    resolved: usize,
}

impl Client {
    fn cursor(&self) -> usize {
        self.replica.cursor(CHANNEL).unwrap().unwrap_or(0) as usize
    }
}

fn value_for(rng: &mut Rng, column: &str) -> Value {
    let pool: Vec<Value> = match column {
        "label" => vec!["a".into(), "b".into(), "c".into(), "".into()],
        "qty" => vec![Value::Null, 0i64.into(), 1i64.into(), 7i64.into(), Value::Integer(i64::MAX)],
        "ratio" => vec![Value::Null, 0.5f64.into(), (-2.25f64).into(), 1e300f64.into()],
        "data" => vec![Value::Null, Value::Blob(vec![]), Value::Blob(vec![0, 1, 255])],
        "extra" => vec![Value::Null, 3i64.into(), 3.0f64.into(), "3".into(), Value::Blob(vec![3])],
        "body" => vec![Value::Null, "x".into(), "y".into(), "üñí".into()],
        _ => unreachable!("{column}"),
    };
    rng.pick(&pool).clone()
}

/// A random local edit: mostly updates of existing rows, some inserts and deletes.
fn local_edit(rng: &mut Rng, c: &mut Client, who: usize, counter: &mut usize) {
    let table = if rng.chance(0.7) { "items" } else { "notes" };
    let schema = c.replica.schema().clone();
    let t = schema.table(table).unwrap();
    let keys: Vec<Vec<Value>> = {
        let cols: Vec<String> = t.pk.iter().map(|&i| t.columns[i].name.clone()).collect();
        let sql = format!("SELECT {} FROM {table}", cols.join(","));
        let mut stmt = c.replica.connection().prepare(&sql).unwrap();
        stmt.query_map([], |r| (0..cols.len()).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let key_of = |k: &Vec<Value>| {
        Fields(t.pk.iter().zip(k).map(|(&i, v)| (t.columns[i].name.clone(), v.clone())).collect())
    };
    let data_cols: Vec<&str> = t.columns.iter().filter(|c| c.pk == 0).map(|c| c.name.as_str()).collect();
    let roll = rng.below(100);
    if roll < 70 && !keys.is_empty() {
        let pk = key_of(rng.pick(&keys));
        let n = 1 + rng.below(data_cols.len());
        let mut set = Vec::new();
        for _ in 0..n {
            let col = *rng.pick(&data_cols);
            if set.iter().any(|(name, _)| name == col) {
                continue;
            }
            let v = value_for(rng, col);
            if col == "label" && v == Value::Null {
                continue;
            }
            set.push((col.to_owned(), v));
        }
        c.replica.update(table, &pk, &Fields(set)).unwrap();
    } else if roll < 85 || keys.is_empty() {
        *counter += 1;
        let mut row: Vec<(String, Value)> = match table {
            // Some inserts reuse a small key space on purpose, so two replicas insert the same key.
            "items" if rng.chance(0.3) => vec![("id".into(), format!("shared-{}", rng.below(3)).into())],
            "items" => vec![("id".into(), format!("r{who}-{counter}").into())],
            _ => vec![
                ("owner".into(), format!("r{who}").into()),
                ("n".into(), Value::Integer(*counter as i64)),
            ],
        };
        for col in &data_cols {
            if *col == "label" {
                row.push(((*col).into(), Value::from(format!("new{}", rng.below(2)))));
            } else if rng.chance(0.7) {
                row.push(((*col).into(), value_for(rng, col)));
            }
        }
        let exists = keys.iter().any(|k| k.iter().zip(&row).all(|(a, (_, b))| a == b));
        if !exists {
            c.replica.insert(table, &Fields(row)).unwrap();
        }
    } else {
        let pk = key_of(rng.pick(&keys));
        c.replica.delete(table, &pk).unwrap();
    }
}

fn push(server: &mut ModelServer, clients: &mut [Client], who: usize, replay: bool) {
    if !clients[who].online {
        return;
    }
    let pending: Vec<Mutation> = clients[who].replica.pending().unwrap();
    for m in pending {
        let already = clients[who].sent.contains(&m.mutation_id);
        if already && !replay {
            continue;
        }
        let before = server.log.len();
        let outcome = server.push(&m);
        broadcast(server, clients, before);
        clients[who].sent.push(m.mutation_id.clone());
        clients[who].inbox.push_back(Msg::Outcome(m.mutation_id, outcome));
    }
}

/// Queues log entries after `before` for every connected client.
fn broadcast(server: &ModelServer, clients: &mut [Client], before: usize) {
    for v in before + 1..=server.log.len() {
        for c in clients.iter_mut().filter(|c| c.online) {
            c.inbox.push_back(Msg::Diff(v));
        }
    }
}

fn deliver(server: &ModelServer, c: &mut Client, n: usize) {
    for _ in 0..n {
        let Some(msg) = c.inbox.pop_front() else { return };
        match msg {
            Msg::Diff(v) => {
                assert_eq!(v, c.cursor() + 1, "diffs arrive in order");
                c.replica.apply_server_diff_at(CHANNEL, v as i64, &server.log[v - 1]).unwrap();
            }
            Msg::Outcome(id, Outcome::Ack(conflicts)) => {
                if c.replica.acknowledge(&id, &conflicts).unwrap() {
                    c.reported += conflicts.len();
                }
            }
            Msg::Outcome(id, Outcome::Reject(reason)) => {
                c.replica.reject(&id, &reason).unwrap();
            }
        }
    }
}

fn connect(server: &ModelServer, c: &mut Client) {
    c.online = true;
    c.sent.clear();
    c.inbox.clear();
    for v in c.cursor() + 1..=server.log.len() {
        c.inbox.push_back(Msg::Diff(v));
    }
}

fn disconnect(c: &mut Client) {
    c.online = false;
    c.inbox.clear();
    c.sent.clear();
}

fn resolve_one(rng: &mut Rng, c: &mut Client) {
    let conflicts = c.replica.conflicts().unwrap();
    if conflicts.is_empty() {
        return;
    }
    let k = rng.pick(&conflicts).clone();
    let resolution = match rng.below(3) {
        0 => Resolution::KeepMine,
        1 => Resolution::TakeTheirs,
        _ => {
            let col = &k.conflict.columns[0];
            let v = match &col.mine {
                Value::Text(_) => Value::from("edited"),
                _ => Value::Null,
            };
            Resolution::Edit(Fields(vec![(col.column.clone(), v)]))
        }
    };
    match c.replica.resolve(k.id, resolution) {
        Ok(_) => c.resolved += 1,
        // A row deleted on the server cannot be written; the user takes theirs instead.
        Err(sqlite_ext::Error::NotFound(_)) => {
            c.replica.resolve(k.id, Resolution::TakeTheirs).unwrap();
            c.resolved += 1;
        }
        Err(e) => panic!("resolve: {e}"),
    }
}

/// What a run exercised, summed over seeds and printed, so a weakened generator shows.
#[derive(Debug, Default)]
struct Stats {
    conflicts: usize,
    replays: usize,
    rejected: usize,
    log: usize,
}

fn run(seed: u64, dir: &std::path::Path, stats: &mut Stats) {
    let mut rng = Rng::new(seed);
    let schema = Schema::from_sql(SCHEMA).unwrap();
    let mut server = ModelServer::new(schema.clone(), SEED_ROWS);
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let path = dir.join(format!("seed{seed}-client{i}.db"));
            let replica = Replica::open(&path, schema.clone()).unwrap();
            let mut c = Client {
                path,
                replica,
                online: false,
                inbox: VecDeque::new(),
                sent: Vec::new(),
                reported: 0,
                resolved: 0,
            };
            connect(&server, &mut c);
            c
        })
        .collect();
    let mut counter = 0;

    for _step in 0..250 {
        let who = rng.below(clients.len());
        match rng.below(100) {
            0..=39 => local_edit(&mut rng, &mut clients[who], who, &mut counter),
            40..=59 => push(&mut server, &mut clients, who, rng.chance(0.1)),
            60..=79 => {
                let n = 1 + rng.below(4);
                deliver(&server, &mut clients[who], n)
            }
            80..=86 => {
                if clients[who].online {
                    disconnect(&mut clients[who]);
                } else {
                    connect(&server, &mut clients[who]);
                }
            }
            87..=90 => {
                // The app is killed and started again from its file.
                let c = &mut clients[who];
                disconnect(c);
                c.replica = Replica::open(&c.path, schema.clone()).unwrap();
            }
            91..=94 => {
                // An edit made on the server itself (an admin tool, a migration).
                let before = server.log.len();
                let label = format!("server{}", rng.below(3));
                server.edit(|conn| {
                    conn.execute("UPDATE items SET label = ?1 WHERE id = 'i1'", [label]).unwrap();
                });
                broadcast(&server, &mut clients, before);
            }
            _ => resolve_one(&mut rng, &mut clients[who]),
        }
    }

    // Everyone comes online and the system goes quiet: push, deliver, resolve, until nothing is left.
    for c in clients.iter_mut().filter(|c| !c.online) {
        connect(&server, c);
    }
    for round in 0.. {
        assert!(round < 50, "seed {seed}: no quiescence");
        for who in 0..clients.len() {
            push(&mut server, &mut clients, who, false);
        }
        for c in clients.iter_mut() {
            deliver(&server, c, usize::MAX);
        }
        let mut busy = false;
        for c in clients.iter_mut() {
            while !c.replica.conflicts().unwrap().is_empty() {
                resolve_one(&mut rng, c);
                busy = true;
            }
            for r in c.replica.rejected().unwrap() {
                stats.rejected += 1;
                c.replica.dismiss_rejected(&r.mutation.mutation_id).unwrap();
            }
            busy |= c.replica.pending_count().unwrap() > 0;
        }
        if !busy {
            break;
        }
    }

    stats.replays += server.replays;
    stats.log += server.log.len();
    stats.conflicts += clients.iter().map(|c| c.reported).sum::<usize>();
    let truth = dump(&server.conn, &schema, "");
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(dump(c.replica.connection(), &schema, ""), truth, "seed {seed}: projection of client {i}");
        assert_eq!(
            dump(c.replica.connection(), &schema, "server_data_"),
            truth,
            "seed {seed}: golden of client {i}"
        );
        assert_eq!(c.reported, c.resolved, "seed {seed}: client {i} saw every conflict");
    }
}

#[test]
fn replicas_converge_and_no_edit_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<u64> = match std::env::var("MOAT_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (0..std::env::var("MOAT_SEEDS").map(|s| s.parse().unwrap()).unwrap_or(40)).collect(),
    };
    let mut stats = Stats::default();
    let n = seeds.len();
    for seed in seeds {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed, dir.path(), &mut stats)));
        if let Err(e) = result {
            eprintln!("failed on seed {seed}; replay with MOAT_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
    println!(
        "convergence: {n} seeds, {} applied diffs, {} conflicts resolved, {} replayed pushes, {} rejected",
        stats.log, stats.conflicts, stats.replays, stats.rejected
    );
    assert!(stats.conflicts > 0 && stats.replays > 0, "the generator no longer makes conflicts or replays");
}
