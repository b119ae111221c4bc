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
        /// The SQLite database file (overrides the file and MOAT_DATABASE).
        #[arg(long)]
        db: Option<PathBuf>,
        /// The built web client to serve at / (overrides the file and MOAT_WEB_ROOT).
        #[arg(long)]
        web_root: Option<PathBuf>,
        /// The migration files a live `moat migrate up --server` applies (overrides the file and
        /// MOAT_MIGRATIONS).
        #[arg(long)]
        migrations: Option<PathBuf>,
        /// Seed a new database with the demo data and offer the demo users' sign-in.
        #[arg(long)]
        demo: bool,
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
        /// The SQLite database file (overrides the file and MOAT_DATABASE).
        #[arg(long, global = true)]
        db: Option<PathBuf>,
        /// The migrations folder.
        #[arg(long, global = true, default_value = "schemas/migrations")]
        dir: PathBuf,
        #[command(subcommand)]
        action: MigrateAction,
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Command::Serve { config, listen, db, web_root, migrations, demo } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = listen {
                cfg.listen = v;
            }
            if let Some(v) = db {
                cfg.database = v;
            }
            if let Some(v) = web_root {
                cfg.web_root = v;
            }
            if let Some(v) = migrations {
                cfg.migrations = v;
            }
            cfg.demo |= demo;
            serve(cfg)
        }
        Command::Migrate { config, db, dir, action } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(v) = db {
                cfg.database = v;
            }
            migrate(&cfg, &dir, action)
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

fn migrate(cfg: &Config, dir: &std::path::Path, action: MigrateAction) -> moat_server::Result<()> {
    use moat_server::migrate::{self, State};
    if let MigrateAction::New { name } = &action {
        println!("created {}", migrate::new_file(dir, name)?.display());
        return Ok(());
    }
    let base = cfg.base_schema()?;
    if !cfg.database.exists() {
        return Err(moat_server::Error::Config(format!(
            "{}: no such database (start `moat serve` once to create it)",
            cfg.database.display()
        )));
    }
    let files = migrate::load_dir(dir)?;
    if let MigrateAction::Up { allow_destructive, server: Some(url), demo } = &action {
        let mut cfg = cfg.clone();
        cfg.demo |= *demo;
        let token = moat_server::server::mint(&auth_for(&cfg)?, "moat-migrate", "*", "operator", 300)?;
        let path = format!("/admin/migrate?allow_destructive={allow_destructive}");
        let (status, body) = post_local(url, &path, &token)?;
        print!("{body}");
        return if status == 200 {
            Ok(())
        } else {
            Err(moat_server::Error::Internal(format!("the server refused the migration ({status})")))
        };
    }
    let _lock = match action {
        MigrateAction::Up { .. } => Some(migrate::writer_lock(&cfg.database)?),
        _ => None,
    };
    let mut conn = rusqlite::Connection::open(&cfg.database)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    match action {
        MigrateAction::Status => {
            for (version, name, state) in migrate::status(&conn, &files)? {
                let s = match state {
                    State::Applied => "applied",
                    State::Pending => "pending",
                    State::Tampered => "CHANGED SINCE APPLIED",
                    State::Missing => "applied, FILE MISSING",
                };
                println!("{version:04}_{name}  {s}");
            }
        }
        MigrateAction::Plan => {
            let plan = migrate::plan(&mut conn, &base, &files)?;
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
            let done = migrate::up(&mut conn, &base, &files, allow_destructive, |line| println!("{line}"))?;
            println!("{} migration(s) applied; connected clients take a fresh snapshot", done.len());
        }
        MigrateAction::New { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// The keys `moat token` and `moat migrate --server` sign with.
fn auth_for(cfg: &Config) -> moat_server::Result<moat_server::auth::Auth> {
    match &cfg.auth.hs256_secret {
        Some(s) => moat_server::auth::Auth::hs256(s.as_bytes()),
        None if cfg.demo => moat_server::auth::Auth::hs256(moat_server::config::DEMO_SECRET.as_bytes()),
        None => Ok(moat_server::auth::Auth::none()),
    }
}

/// One HTTP/1.1 POST to a server on this machine (`http://host:port`); returns the status and body.
fn post_local(url: &str, path: &str, token: &str) -> moat_server::Result<(u16, String)> {
    use std::io::{Read, Write};
    let bad = |e: std::io::Error| moat_server::Error::Unavailable(format!("{url}: {e}"));
    let host = url
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/'))
        .ok_or_else(|| moat_server::Error::Config(format!("{url}: expected http://host:port")))?;
    let mut s = std::net::TcpStream::connect(host).map_err(bad)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
        .build()
        .map_err(|e| moat_server::Error::Unavailable(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let server = Server::open(&cfg)?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| moat_server::Error::Config(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = listener.local_addr().map_err(|e| moat_server::Error::Config(e.to_string()))?;
        tracing::info!(%addr, database = %cfg.database.display(), demo = cfg.demo, "moat serving");
        println!("Moat is serving on http://{addr}/  (sync: ws://{addr}/sync)");
        if cfg.demo {
            println!("Demo users and their tokens: http://{addr}/demo/users");
        }
        server.serve(listener, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
