//! A fuzzer of whole sessions: random sequences of valid and invalid frames from several clients of
//! two tenants (one user `sub` shared across them), against a real server. After each session:
//! no panic anywhere in the server, no frame to one tenant's client carries the other tenant's marker,
//! both databases pass `integrity_check`, and every acknowledged mutation is stored in its own
//! tenant's database.
//!
//! Property-based with a seeded generator: `MOAT_FUZZ_SESSIONS` sessions (40 by default, for CI) of
//! `MOAT_FUZZ_STEPS` frames (200); `MOAT_FUZZ_SEED` starts from another seed (longer runs by hand:
//! `MOAT_FUZZ_SESSIONS=500 cargo test -p moat-server --test session_fuzz -- --nocapture`). A seed that
//! ever failed goes into `REGRESSIONS`, which always run.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::{Client, TestServer, db_value_in, token};
use tokio_tungstenite::tungstenite::Message;

/// Seeds that once found a bug; they run first, every time.
const REGRESSIONS: &[u64] = &[];

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TENANTS: [(&str, &str); 2] = [("company-a", "MARKA"), ("company-b", "MARKB")];
const KEYS: [&str; 5] = ["job-1", "job-2", "only-a-1", "only-b-1", "nowhere"];
const COLUMNS: [&str; 8] = [
    "title",
    "status",
    "notes",
    "internal_notes",
    "price_cents",
    "tenant_id",
    "line_items",
    "no_such_column",
];

fn seed(tenant: &str, mark: &str) -> String {
    let only = if tenant == "company-a" { "only-a-1" } else { "only-b-1" };
    format!(
        "INSERT INTO jobs (id, tenant_id, title, notes, internal_notes, assignee) VALUES
           ('job-1', '{tenant}', '{mark} t1', '{mark} n1', '{mark} i1', '{mark} a1'),
           ('job-2', '{tenant}', '{mark} t2', '{mark} n2', '{mark} i2', NULL),
           ('{only}', '{tenant}', '{mark} t3', '{mark} n3', '{mark} i3', NULL);
         INSERT INTO customers (id, tenant_id, name, phone) VALUES ('cust-1', '{tenant}', '{mark} c', '{mark} p');"
    )
}

fn value(rng: &mut Rng, own_tenant: &str) -> Value {
    match rng.below(9) {
        0 => json!(null),
        1 => json!(rng.below(1000) as i64 - 500),
        2 => json!("open"),
        3 => json!(own_tenant),
        4 => json!("company-a"),
        5 => json!("company-b"),
        6 => json!(1.5),
        7 => json!({"nested": [1, 2]}),
        _ => json!("x".repeat(rng.below(3000))),
    }
}

/// One frame: mostly well-formed pushes of every kind, some broken ones.
fn frame(rng: &mut Rng, own_tenant: &str, n: usize) -> Message {
    let key = *rng.pick(&KEYS);
    let col = *rng.pick(&COLUMNS);
    let mutation_id = match rng.below(4) {
        0 => format!("m-{}", rng.below(8)), // the same ids from every client and tenant
        1 => String::new(),
        _ => format!("m-{n}-{}", rng.next() % 1000),
    };
    let change = match rng.below(4) {
        0 => json!({"table": "jobs", "op": "update", "pk": {"id": key},
                    "cols": {col: {"old": value(rng, own_tenant), "new": value(rng, own_tenant)}}}),
        1 => json!({"table": "jobs", "op": "insert", "pk": {"id": key},
                    "cols": {"tenant_id": {"new": value(rng, own_tenant)}, "title": {"new": "fuzz"},
                             "status": {"new": "open"}, "price_cents": {"new": 0}, "notes": {"new": null},
                             "internal_notes": {"new": null}, "line_items": {"new": "[]"}, "assignee": {"new": null},
                             "customer_id": {"new": null}, "scheduled_date": {"new": null}}}),
        2 => json!({"table": *rng.pick(&["jobs", "customers", "moat_log", "sqlite_master"]), "op": "delete",
                    "pk": {"id": key}, "cols": {"tenant_id": {"old": value(rng, own_tenant)}}}),
        _ => json!({"table": "customers", "op": "update", "pk": {"id": "cust-1"},
                    "cols": {"phone": {"old": value(rng, own_tenant), "new": "fuzz"}}}),
    };
    let text = match rng.below(12) {
        0 => "{".to_owned(),
        1 => json!({"type": "ping", "id": rng.below(100)}).to_string(),
        2 => json!({"type": "hello", "protocol": 1, "token": "x", "client_id": "again"}).to_string(),
        3 => json!({"type": *rng.pick(&["pull", "subscribe", "", "ack"]), "channel": "company-a/admin"})
            .to_string(),
        4 => json!({"type": "push", "mutation_id": mutation_id, "diff": {"changes": [change, change]}})
            .to_string(),
        5 => return Message::binary(vec![0u8; rng.below(64)]),
        6 => json!({"type": "push", "mutation_id": mutation_id, "diff": change, "extra": 1}).to_string(),
        _ => json!({"type": "push", "mutation_id": mutation_id, "diff": {"changes": [change]}}).to_string(),
    };
    Message::text(text)
}

async fn session(seed_value: u64, steps: usize) {
    let server = TestServer::start_with(|c| c.limits.max_inflight_pushes = 64).await;
    server.store.exec(&seed(TENANTS[0].0, TENANTS[0].1)).await.unwrap();
    server.store_b.exec(&seed(TENANTS[1].0, TENANTS[1].1)).await.unwrap();
    let mut rng = Rng(seed_value.max(1));
    let mut clients = Vec::new();
    for (tenant, _) in TENANTS {
        for (user, role) in [("sam", "admin"), ("sam", "technician"), ("tess", "technician")] {
            let mut c = Client::connect(&server.url(), &token(user, tenant, role), json!({})).await;
            c.until("synced").await;
            clients.push((tenant, user, c));
        }
    }
    let mut open = vec![true; clients.len()];
    for n in 0..steps {
        let i = rng.below(clients.len());
        if !open[i] {
            continue;
        }
        let (tenant, _, c) = &mut clients[i];
        let msg = frame(&mut rng, tenant, n);
        if futures_util::SinkExt::send(&mut c.ws, msg).await.is_err() {
            open[i] = false;
        }
        // Now and then, read what came back (a client that floods without reading gets cut off,
        // which is the server's right).
        if rng.below(4) == 0
            && futures_util::SinkExt::send(
                &mut c.ws,
                Message::text(json!({"type": "ping", "id": 7}).to_string()),
            )
            .await
            .is_ok()
        {
            open[i] = read_until_pong(c).await;
        }
    }
    for (i, (_, _, c)) in clients.iter_mut().enumerate() {
        if open[i]
            && futures_util::SinkExt::send(
                &mut c.ws,
                Message::text(json!({"type": "ping", "id": 7}).to_string()),
            )
            .await
            .is_ok()
        {
            read_until_pong(c).await;
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "seed {seed_value}: the server panicked");
    for (tenant, user, c) in &clients {
        let foreign = TENANTS.iter().find(|(t, _)| t != tenant).unwrap().1;
        for f in &c.frames {
            assert!(!f.contains(foreign), "seed {seed_value}: {tenant} received {foreign}'s data: {f}");
        }
        // Every acknowledged mutation is stored in its own tenant's database.
        for f in &c.frames {
            let v: Value = serde_json::from_str(f).unwrap();
            if v["type"] == "ack" {
                let id = v["mutation_id"].as_str().unwrap().replace('\'', "''");
                let sql = format!(
                    "SELECT count(*) FROM moat_mutations WHERE user_id = '{user}' AND mutation_id = '{id}'"
                );
                assert_eq!(
                    db_value_in(&server, tenant, &sql),
                    1i64.into(),
                    "seed {seed_value}: ack of {id} not durable"
                );
            }
        }
    }
    for (tenant, _) in TENANTS {
        assert_eq!(db_value_in(&server, tenant, "PRAGMA integrity_check"), "ok".to_owned().into());
        let sql = format!("SELECT count(*) FROM jobs WHERE tenant_id IS NOT '{tenant}'");
        assert_eq!(
            db_value_in(&server, tenant, &sql),
            0i64.into(),
            "seed {seed_value}: a row left its tenant"
        );
    }
}

/// Reads until the pong; false when the server closed the connection.
async fn read_until_pong(c: &mut Client) -> bool {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                c.frames.push(t.to_string());
                if t.contains("\"pong\"") {
                    return true;
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("no answer to a ping within 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_keep_every_invariant() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let sessions = env("MOAT_FUZZ_SESSIONS", 40);
    let steps = env("MOAT_FUZZ_STEPS", 200) as usize;
    let first = env("MOAT_FUZZ_SEED", 0x5eed);
    let seeds: Vec<u64> =
        REGRESSIONS.iter().copied().chain((0..sessions).map(|i| first.wrapping_add(i * 7919))).collect();
    for s in &seeds {
        session(*s, steps).await;
    }
    println!("{} sessions of {steps} frames: every invariant held", seeds.len());
}
