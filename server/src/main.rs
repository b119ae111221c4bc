//! `moat`: the Moat server's command line. It only parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat_server::{Config, Server};

#[derive(Parser)]
#[command(name = "moat", version, about = "Moat: offline-first live sync over SQLite and WebSockets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sync endpoint, /healthz, /metrics and the web client.
    Serve {
        /// A TOML config file.
        #[arg(long, env = "MOAT_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the file and MOAT_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// The data directory: platform.db and tenants/NAME.db (overrides the file and MOAT_DATA).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The built web client to serve at / (overrides the file and MOAT_WEB_ROOT).
        #[arg(long)]
        web_root: Option<PathBuf>,
        /// The migration files a live `moat migrate up --server` applies (overrides the file and
        /// MOAT_MIGRATIONS).
        #[arg(long)]
        migrations: Option<PathBuf>,
        /// Create the demo's tenants (company-a, company-b) with their data if they do not exist,
        /// and offer the demo users' sign-in.
        #[arg(long)]
        demo: bool,
        /// With --demo: jobs per demo company when its tenants are first created (5,000).
        #[arg(long, requires = "demo")]
        demo_jobs: Option<u32>,
        /// Also serve TLS on this address (needs tls.cert and tls.key; overrides MOAT_TLS_LISTEN).
        #[arg(long)]
        tls_listen: Option<String>,
        /// Run as one node of a cluster over this NATS server (with JetStream), sharing the data
        /// directory with the other nodes (overrides the file and MOAT_CLUSTER).
        #[arg(long)]
        cluster: Option<String>,
        /// This node's name in the cluster, unique (overrides the file and MOAT_NODE).
        #[arg(long)]
        node: Option<String>,
    },
    /// The nodes of a cluster.
    Node {
        /// The cluster's NATS server.
        #[arg(long, env = "MOAT_CLUSTER", global = true, default_value = "nats://127.0.0.1:4222")]
        cluster: String,
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Tenants: each is its own SQLite database.
    Tenant {
        /// A TOML config file (for the data directory, the base schema and the keys).
        #[arg(long, env = "MOAT_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The data directory (overrides the file and MOAT_DATA).
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Back up every tenant (or one) into a new folder under --to: consistent copies, checked,
    /// with a manifest (safe while the server runs).
    Backup {
        /// A TOML config file (for the data directory).
        #[arg(long, env = "MOAT_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (overrides the file and MOAT_DATA).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The folder backups go into (each one a new folder named by its UTC time).
        #[arg(long)]
        to: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Then keep only the newest N backups in --to.
        #[arg(long)]
        keep: Option<usize>,
    },
    /// Put a backup back (the server stopped): every tenant in it, or one. Clients that saw writes
    /// after the backup take a fresh snapshot when they reconnect, then replay their pending writes.
    Restore {
        /// A TOML config file (for the data directory).
        #[arg(long, env = "MOAT_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (overrides the file and MOAT_DATA).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The backup: a folder `moat backup` made (see `moat backup --to DIR` output).
        #[arg(long)]
        from: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Mint a token for development.
    Token {
        /// A TOML config file (for its keys).
        #[arg(long, env = "MOAT_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl: u64,
        /// Sign with this Ed25519 private key (PEM) instead of the HS256 secret.
        #[arg(long)]
        ed25519_private_key: Option<PathBuf>,
        /// Use the demo's secret (for a server started with --demo and no secret).
        #[arg(long)]
        demo: bool,
    },
    /// Schema migrations: numbered SQL files applied in order, each in one transaction.
    Migrate {
        /// A TOML config file (for the database and the base schema).
        #[arg(long, env = "MOAT_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// The data directory (overrides the file and MOAT_DATA).
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        /// The migrations folder.
        #[arg(long, global = true, default_value = "schemas/migrations")]
        dir: PathBuf,
        /// Only this tenant (every tenant when absent).
        #[arg(long, global = true)]
        tenant: Option<String>,
        /// `--dir` holds the tenant's own migrations (its custom objects and fields), numbered apart
        /// from the platform's; needs --tenant.
        #[arg(long, global = true)]
        own: bool,
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Subcommand)]
enum NodeAction {
    /// Moves every tenant the node holds to other nodes, one at a time, and makes it take no more
    /// (before stopping it); prints what moved where and how long each tenant's writes waited.
    Drain {
        /// The node's name.
        name: String,
    },
    /// Which node holds each tenant's lease.
    Leases,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Creates a tenant (safe while the server runs: it serves the tenant at once).
    Create {
        name: String,
        /// Fill it with the demo's data (Company-A's, routed to this tenant).
        #[arg(long)]
        demo_data: bool,
    },
    /// Lists the tenants: rows, size, connected clients (with --server), last write, migrations.
    List {
        /// Ask the running server at this address (`http://127.0.0.1:8080`), which knows who is
        /// connected; without it the server must not be running.
        #[arg(long)]
        server: Option<String>,
        /// Sign the operator token with the demo's secret (a server started with --demo).
        #[arg(long)]
        demo: bool,
    },
    /// Writes a consistent copy of a tenant's database (safe while the server runs).
    Export {
        name: String,
        /// The new file.
        #[arg(long)]
        to: PathBuf,
    },
    /// Deletes a tenant and its data; refused while it has connected clients unless --force.
    Delete {
        name: String,
        /// Delete even with clients connected (they are disconnected).
        #[arg(long)]
        force: bool,
        /// Ask the running server at this address; without it the server must not be running.
        #[arg(long)]
        server: Option<String>,
        /// Sign the operator token with the demo's secret.
        #[arg(long)]
        demo: bool,
    },
    /// Splits a server database of the shape before tenants had their own (one `moat.db` shared by
    /// all tenants) into one database per tenant, keeping every row, the change log, the versions
    /// and every stored mutation outcome a client may still replay. The server must be stopped.
    Split {
        /// The old shared database.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Lists every migration: applied, pending, changed since applied, or missing.
    Status,
    /// A dry run: what `up` would change (run in a transaction that is rolled back).
    Plan,
    /// Applies the pending migrations in order, with progress.
    Up {
        /// Allow dropping a table or column that holds data.
        #[arg(long)]
        allow_destructive: bool,
        /// Apply them inside the running server at this address (`http://127.0.0.1:8080`), with
        /// clients connected; without it the database must not be in use.
        #[arg(long)]
        server: Option<String>,
        /// Sign the operator token with the demo's secret (a server started with --demo).
        #[arg(long)]
        demo: bool,
    },
    /// Creates the next numbered migration file.
    New {
        /// Letters, digits and _.
        name: String,
    },
}

/// Two malloc arenas, where glibc makes up to eight per core: a session's long-lived allocations
/// come from whichever thread ran its handshake, and each arena keeps free pages of its own, so more
/// arenas hold more memory per idle connection (10,000 connections: ~2.4–2.5 KB each with glibc's
/// default, ~2.1–2.2 KB with two; the load tool's `memory`) for lock contention a server of two
/// runtime workers does not have. `MALLOC_ARENA_MAX` set in the environment is left to decide.
fn malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets a malloc parameter; called first thing, before any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    malloc_arenas();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `MOAT_LOG_FORMAT=json`: one JSON object per line, for a log shipper.
    if std::env::var("MOAT_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        // Colour only on a terminal: escape codes do not belong in log files.
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> moat_server::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data,
            web_root,
            migrations,
            demo,
            demo_jobs,
            tls_listen,
            cluster,
            node,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = cluster {
                cfg.cluster.url = Some(v);
            }
            if let Some(v) = node {
                cfg.cluster.node = Some(v);
            }
            if let Some(v) = tls_listen {
                cfg.tls.listen = Some(v);
            }
            if let Some(v) = listen {
                cfg.listen = v;
            }
            if let Some(v) = data {
                cfg.data = v;
            }
            if let Some(v) = web_root {
                cfg.web_root = v;
            }
            if let Some(v) = migrations {
                cfg.migrations = v;
            }
            cfg.demo |= demo;
            cfg.demo_jobs = demo_jobs.or(cfg.demo_jobs);
            serve(cfg)
        }
        Command::Migrate { config, data, dir, tenant, own, action } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = data {
                cfg.data = v;
            }
            migrate(&cfg, &dir, tenant.as_deref(), own, action)
        }
        Command::Node { cluster, action } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| moat_server::Error::Unavailable(format!("runtime: {e}")))?;
            runtime.block_on(async {
                match action {
                    NodeAction::Drain { name } => {
                        for m in moat_server::cluster::drain_node(&cluster, &name).await? {
                            let to = m.to.as_deref().unwrap_or("(none yet: the next client's node takes it)");
                            println!("{} -> {to}: writes waited {} ms", m.tenant, m.ms);
                        }
                        println!(
                            "{name} holds no tenant now and takes none; stop it when its clients have moved"
                        );
                    }
                    NodeAction::Leases => {
                        for (tenant, node) in moat_server::cluster::leases(&cluster).await? {
                            println!("{tenant}\t{node}");
                        }
                    }
                }
                Ok(())
            })
        }
        Command::Tenant { config, data, action } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = data {
                cfg.data = v;
            }
            tenant(&mut cfg, action)
        }
        Command::Backup { config, data, to, tenant, keep } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = data {
                cfg.data = v;
            }
            let started = std::time::Instant::now();
            let (folder, manifest) =
                moat_server::backup::backup(&cfg.data, &to, tenant.as_deref(), |name| {
                    eprintln!("copying {name}…")
                })?;
            let bytes: u64 = manifest.tenants.iter().map(|c| c.bytes).sum();
            println!(
                "backup {}: {} tenant(s), {:.1} MB, {:.1} s",
                folder.display(),
                manifest.tenants.len(),
                bytes as f64 / 1048576.0,
                started.elapsed().as_secs_f64()
            );
            if let Some(keep) = keep {
                for removed in moat_server::backup::prune(&to, keep.max(1))? {
                    println!("removed {}", removed.display());
                }
            }
            Ok(())
        }
        Command::Restore { config, data, from, tenant } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = data {
                cfg.data = v;
            }
            for line in moat_server::backup::restore(&from, &cfg.data, tenant.as_deref())? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Token { config, user, tenant, role, ttl, ed25519_private_key, demo } => {
            let mut cfg = Config::load(config.as_deref())?;
            cfg.demo |= demo;
            let mut auth = auth_for(&cfg)?;
            if let Some(p) = ed25519_private_key {
                let pem = std::fs::read(&p)
                    .map_err(|e| moat_server::Error::Config(format!("{}: {e}", p.display())))?;
                auth = auth.with_ed25519_private_pem(&pem)?;
            }
            println!("{}", moat_server::server::mint(&auth, &user, &tenant, &role, ttl)?);
            Ok(())
        }
    }
}

fn migrate(
    cfg: &Config,
    dir: &std::path::Path,
    only: Option<&str>,
    own: bool,
    action: MigrateAction,
) -> moat_server::Result<()> {
    use moat_server::migrate::{self, Scope, State};
    use moat_server::tenants;
    if let MigrateAction::New { name } = &action {
        println!("created {}", migrate::new_file(dir, name)?.display());
        return Ok(());
    }
    if own && only.is_none() {
        return Err(moat_server::Error::Config("--own migrations belong to one tenant: add --tenant".into()));
    }
    let scope = if own { Scope::Tenant } else { Scope::Platform };
    let base = cfg.base_schema()?;
    let files = migrate::load_dir(dir)?;
    if let MigrateAction::Up { allow_destructive, server: Some(url), demo } = &action {
        let mut cfg = cfg.clone();
        cfg.demo |= *demo;
        let token = moat_server::server::mint(&auth_for(&cfg)?, "moat-migrate", "*", "operator", 300)?;
        let mut path = format!("/admin/migrate?allow_destructive={allow_destructive}");
        if let Some(t) = only {
            tenants::check_name(t)?;
            path.push_str(&format!("&tenant={t}"));
        }
        if own {
            let abs = std::fs::canonicalize(dir)
                .map_err(|e| moat_server::Error::Config(format!("{}: {e}", dir.display())))?;
            path.push_str(&format!("&own={}", percent(&abs.to_string_lossy())));
        }
        let (status, body) = request_local("POST", url, &path, &token)?;
        print!("{body}");
        return if status == 200 {
            Ok(())
        } else {
            Err(moat_server::Error::Internal(format!("the server refused the migration ({status})")))
        };
    }
    if !tenants::platform_path(&cfg.data).exists() {
        return Err(moat_server::Error::Config(format!(
            "{}: no data directory (start `moat serve` once, or `moat tenant create`)",
            cfg.data.display()
        )));
    }
    let _lock = match action {
        MigrateAction::Up { .. } => Some(migrate::writer_lock(&tenants::platform_path(&cfg.data))?),
        _ => None,
    };
    let names = match only {
        Some(t) => vec![t.to_owned()],
        None => tenants::list(&cfg.data, &base)?.into_iter().map(|t| t.name).collect(),
    };
    for name in names {
        tenants::check_name(&name)?;
        let path = tenants::tenant_path(&cfg.data, &name);
        if !path.exists() {
            return Err(moat_server::Error::Config(format!("there is no tenant {name}")));
        }
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        println!("== {name}");
        match action {
            MigrateAction::Status => {
                for (version, mname, state) in migrate::status(&conn, &files, scope)? {
                    let s = match state {
                        State::Applied => "applied",
                        State::Pending => "pending",
                        State::Tampered => "CHANGED SINCE APPLIED",
                        State::Missing => "applied, FILE MISSING",
                    };
                    println!("{version:04}_{mname}  {s}");
                }
            }
            MigrateAction::Plan => {
                let plan = migrate::plan(&mut conn, &base, &files, scope)?;
                if plan.is_empty() {
                    println!("nothing to apply");
                }
                for (m, effect) in plan {
                    let warn =
                        if effect.destructive() { "  (DESTRUCTIVE: needs --allow-destructive)" } else { "" };
                    println!("{:04}_{}{warn}\n{}", m.version, m.name, effect.describe());
                }
            }
            MigrateAction::Up { allow_destructive, .. } => {
                let done = migrate::up(&mut conn, &base, &files, scope, allow_destructive, None, |line| {
                    println!("{line}")
                })?;
                println!("{} migration(s) applied; its clients take a fresh snapshot", done.len());
            }
            MigrateAction::New { .. } => unreachable!("handled above"),
        }
    }
    Ok(())
}

/// Escapes a query value.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tenant(cfg: &mut Config, action: TenantAction) -> moat_server::Result<()> {
    use moat_server::tenants;
    let base = cfg.base_schema()?;
    let operator = |cfg: &mut Config, demo: bool| {
        cfg.demo |= demo;
        moat_server::server::mint(&auth_for(cfg)?, "moat-tenant", "*", "operator", 300)
    };
    match action {
        TenantAction::Create { name, demo_data } => {
            let seed = demo_data
                .then(|| tenants::demo_seed_for(&base, moat_server::server::DEMO_SEED, "company-a", &name));
            tenants::create(&cfg.data, &name, &base, seed.as_deref())?;
            println!("tenant {name} created: {}", tenants::tenant_path(&cfg.data, &name).display());
            println!("platform migrations are applied with `moat migrate up --tenant {name}`");
        }
        TenantAction::List { server: Some(url), demo } => {
            let token = operator(cfg, demo)?;
            let (status, body) = request_local("GET", &url, "/admin/tenants", &token)?;
            if status != 200 {
                return Err(moat_server::Error::Internal(format!("the server answered {status}: {body}")));
            }
            let list: Vec<tenants::TenantInfo> = serde_json::from_str(&body)
                .map_err(|e| moat_server::Error::Internal(format!("the server's answer: {e}")))?;
            print_tenants(&list);
        }
        TenantAction::List { server: None, .. } => {
            let _lock = moat_server::migrate::writer_lock(&tenants::platform_path(&cfg.data))?;
            print_tenants(&tenants::list(&cfg.data, &base)?);
        }
        TenantAction::Export { name, to } => {
            tenants::export(&cfg.data, &name, &to)?;
            println!("tenant {name} exported to {}", to.display());
        }
        TenantAction::Delete { name, force, server: Some(url), demo } => {
            tenants::check_name(&name)?;
            let token = operator(cfg, demo)?;
            let (status, body) =
                request_local("DELETE", &url, &format!("/admin/tenants/{name}?force={force}"), &token)?;
            print!("{body}");
            if status != 200 {
                return Err(moat_server::Error::Internal(format!("the server refused ({status})")));
            }
        }
        TenantAction::Delete { name, server: None, .. } => {
            // No server runs on this data (the lock says so): nobody is connected.
            let _lock = moat_server::migrate::writer_lock(&tenants::platform_path(&cfg.data))?;
            tenants::delete_files(&cfg.data, &name)?;
            println!("tenant {name} deleted");
        }
        TenantAction::Split { from } => {
            std::fs::create_dir_all(&cfg.data)
                .map_err(|e| moat_server::Error::Config(format!("{}: {e}", cfg.data.display())))?;
            let _lock = moat_server::migrate::writer_lock(&tenants::platform_path(&cfg.data))?;
            let report =
                moat_server::split::split(&from, &cfg.data, &cfg.rules_text()?, |line| println!("{line}"))?;
            println!("{report}");
        }
    }
    Ok(())
}

fn print_tenants(list: &[moat_server::tenants::TenantInfo]) {
    println!(
        "{:<24} {:>10} {:>10} {:>9} {:>22} {:>10}",
        "TENANT", "ROWS", "SIZE", "CLIENTS", "LAST WRITE", "MIGRATIONS"
    );
    for t in list {
        let (name, rows, last, migrations) = (&t.name, t.rows, t.last_write_ms, t.migrations.len());
        let size = format!("{:.1} MB", t.bytes as f64 / 1048576.0);
        let clients = t.connections.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let last = if last == 0 {
            "never".to_owned()
        } else {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .saturating_sub(last / 1000);
            format!("{secs} s ago")
        };
        println!("{name:<24} {rows:>10} {size:>10} {clients:>9} {last:>22} {migrations:>10}");
    }
}

/// The keys `moat token` and `moat migrate --server` sign with.
fn auth_for(cfg: &Config) -> moat_server::Result<moat_server::auth::Auth> {
    match &cfg.auth.hs256_secret {
        Some(s) => moat_server::auth::Auth::hs256(s.as_bytes()),
        None if cfg.demo => moat_server::auth::Auth::hs256(moat_server::config::DEMO_SECRET.as_bytes()),
        None => Ok(moat_server::auth::Auth::none()),
    }
}

/// One HTTP/1.1 request to a server on this machine (`http://host:port`); returns the status and body.
fn request_local(method: &str, url: &str, path: &str, token: &str) -> moat_server::Result<(u16, String)> {
    use std::io::{Read, Write};
    let bad = |e: std::io::Error| moat_server::Error::Unavailable(format!("{url}: {e}"));
    let host = url
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/'))
        .ok_or_else(|| moat_server::Error::Config(format!("{url}: expected http://host:port")))?;
    let mut s = std::net::TcpStream::connect(host).map_err(bad)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(bad)?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(bad)?;
    let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn serve(cfg: Config) -> moat_server::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking threads (SQLite reads, a tenant's opening) that idle a second end: a wave of
        // handshakes starts dozens, each keeping its stack's pages and a malloc cache (tokio's
        // default keeps them ten seconds; ~0.1 KB per idle connection after 10,000 handshakes).
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .map_err(|e| moat_server::Error::Unavailable(format!("runtime: {e}")))?;
    runtime.block_on(async {
        // The address first: a server that cannot listen creates nothing (no data directory, no
        // demo tenants) and says that it could not listen.
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| moat_server::Error::Listen(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = listener.local_addr().map_err(|e| moat_server::Error::Listen(e.to_string()))?;
        let tls = match cfg.tls.parts()? {
            Some((listen, cert, key)) => {
                let certs = moat_server::tls::Certificates::load(cert, key)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| moat_server::Error::Listen(format!("cannot listen on {listen}: {e}")))?;
                Some((listener, certs))
            }
            None => None,
        };
        let stop = shutdown_signal();
        let mut server = Server::open(&cfg)?;
        if cfg.cluster.url.is_some() {
            server = server.join_cluster(&cfg).await?;
        }
        tracing::info!(%addr, data = %cfg.data.display(), demo = cfg.demo, "moat serving");
        println!("Moat is serving on http://{addr}/  (sync: ws://{addr}/sync)");
        if let Some((listener, certs)) = tls {
            let tls_addr = listener.local_addr().map_err(|e| moat_server::Error::Listen(e.to_string()))?;
            println!("TLS on https://{tls_addr}/  (sync: wss://{tls_addr}/sync)");
            reload_on_sighup(std::sync::Arc::clone(&certs));
            server = server.with_tls(listener, certs)?;
        }
        if cfg.demo {
            println!("Demo users and their tokens: http://{addr}/demo/users");
        }
        server.serve(listener, stop).await
    })
}

/// `SIGHUP` reloads the TLS certificate and key (after a renewal); open connections keep theirs.
fn reload_on_sighup(certs: std::sync::Arc<moat_server::tls::Certificates>) {
    #[cfg(unix)]
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!("TLS certificate not reloaded, the old one stays: {e}"),
            }
        }
    });
}

/// SIGTERM or SIGINT. The handlers are installed when this is called (before the server says it
/// is serving), not when the future is first polled: a SIGTERM right after start is a clean stop.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
