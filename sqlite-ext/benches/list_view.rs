//! How fast a list page reads on the device, before and after the indexes the metadata asks for
//! (`ui::ensure_indexes`): a replica in a real file with the demo's metadata and 100,000 jobs (25,000
//! of them the signed-in technician's), timing the first page in the default order, "Assigned to me",
//! a status filter with its counts, page 200, and searches (with their counts); then the end of a later
//! snapshot of the same rows. Prints figures; never fails on a timing. `--quick`
//! uses 20,000 jobs and one run of each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlite_ext::protocol::Identity;
use sqlite_ext::ui::{self, ListFilter, ListQuery};
use sqlite_ext::{Replica, Schema};

const SEED: &str = include_str!("../../schemas/demo_seed.sql");

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rows, runs) = if quick { (20_000, 1) } else { (100_000, 5) };
    let dir = tempfile::tempdir().unwrap();
    let r = Replica::open(dir.path().join("bench.db"), Schema::demo()).unwrap();
    let conn = r.connection();
    conn.execute_batch(SEED).unwrap();
    conn.execute_batch(&format!(
        "DELETE FROM jobs;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO jobs (id, tenant_id, title, status, price_cents, line_items, assignee, customer_id, scheduled_date)
         SELECT printf('job-%06d', i), 'company-a', 'Service heat pump ' || i,
                '[\"open\",\"scheduled\",\"in_progress\",\"on_hold\",\"done\"]' ->> (i % 5), 1000 + i, '[]',
                '[\"tom\",\"maria\",\"dev\",\"lena\"]' ->> (i % 4), printf('cust-a-%04d', 1 + i % 200),
                date('2026-01-01', '+' || (i % 700) || ' days')
         FROM n"
    ))
    .unwrap();
    let route = BTreeMap::from([("tenant_id".to_owned(), "company-a".to_owned())]);
    r.set_identity(&Identity { user: "tom".into(), route }).unwrap();
    let schema = r.schema();
    println!("list_view: {rows} jobs in a file replica, best of {runs} run(s)");

    let queries: [(&str, ListQuery); 8] = [
        ("first page, default order", ListQuery::new("jobs")),
        ("Assigned to me", ListQuery { mine: Some(true), ..ListQuery::new("jobs") }),
        (
            "status = on hold (with counts)",
            ListQuery {
                filters: Some(vec![ListFilter {
                    field: "status".into(),
                    equals: Some("on_hold".into()),
                    min: None,
                    max: None,
                }]),
                ..ListQuery::new("jobs")
            },
        ),
        ("page 200", ListQuery { offset: Some(199 * 50), ..ListQuery::new("jobs") }),
        // The browser bench's sorted, filtered page (`web/bench/big-tenant.bench.ts`).
        (
            "by price desc, status open, page 10",
            ListQuery {
                sort_field: Some("price_cents".into()),
                ascending: Some(false),
                filters: Some(vec![ListFilter {
                    field: "status".into(),
                    equals: Some("open".into()),
                    min: None,
                    max: None,
                }]),
                offset: Some(450),
                ..ListQuery::new("jobs")
            },
        ),
        // A search that matches every record (a word of every title: scanned), one that matches 11%
        // (as "boiler" does in the browser bench: through the full-text index), and one that
        // matches one.
        ("search \"heat pump\"", ListQuery { search: Some("heat pump".into()), ..ListQuery::new("jobs") }),
        ("search \"pump 1\" (11%)", ListQuery { search: Some("pump 1".into()), ..ListQuery::new("jobs") }),
        (
            "search \"pump 4242\" (one match)",
            ListQuery { search: Some("pump 4242".into()), ..ListQuery::new("jobs") },
        ),
    ];
    let time = |q: &ListQuery| {
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let page = ui::list_view(conn, schema, q).unwrap();
                assert!(!page.rows.is_empty());
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let before: Vec<Duration> = queries.iter().map(|(_, q)| time(q)).collect();
    let t = Instant::now();
    let made = ui::make_indexes(conn, schema).unwrap();
    let made_in = t.elapsed();
    let fill_rows: usize =
        std::env::var("MOAT_FILL_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(ui::FILL_ROWS);
    let (mut steps, mut slowest) = (0, Duration::ZERO);
    loop {
        let step = Instant::now();
        let more = ui::index_step(conn, schema, fill_rows).unwrap();
        (steps, slowest) = (steps + 1, slowest.max(step.elapsed()));
        if !more {
            break;
        }
    }
    println!(
        "  {made} indexes: made in {:.1} ms, the others built and the full-text ones filled in {:.1} ms ({steps} steps, fills of {fill_rows} rows, the slowest {:.1} ms)",
        made_in.as_secs_f64() * 1e3,
        (t.elapsed() - made_in).as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    for ((what, q), b) in queries.iter().zip(before) {
        let a = time(q);
        println!(
            "  {what:<32} {:>8.2} ms -> {:>6.2} ms with indexes ({:.0}x)",
            b.as_secs_f64() * 1e3,
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64().max(1e-9)
        );
    }

    // A later snapshot of the same rows (a device that holds them: after a destructive migration, or
    // offline past the log): its end makes the projection again from the golden state.
    let mut r = r;
    let tables: Vec<String> = r.schema().tables().iter().map(|t| t.name.clone()).collect();
    r.begin_snapshot("company-a/technician").unwrap();
    for t in &tables {
        r.connection().execute_batch(&format!("INSERT INTO server_data_{t} SELECT * FROM {t}")).unwrap();
    }
    let t = Instant::now();
    r.finish_snapshot("company-a/technician", 1).unwrap();
    let finished = t.elapsed();
    let t = Instant::now();
    let made = ui::ensure_indexes(r.connection(), r.schema()).unwrap();
    println!(
        "  a later snapshot's end: {:.0} ms, then {made} indexes made again in {:.0} ms",
        finished.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
