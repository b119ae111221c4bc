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
        Command::Serve { config, listen, db, web_root, demo } => {
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
            cfg.demo |= demo;
            serve(cfg)
        }
        Command::Token { config, user, tenant, role, ttl, ed25519_private_key, demo } => {
            let mut cfg = Config::load(config.as_deref())?;
            cfg.demo |= demo;
            let mut auth = match &cfg.auth.hs256_secret {
                Some(s) => moat_server::auth::Auth::hs256(s.as_bytes())?,
                None if cfg.demo => {
                    moat_server::auth::Auth::hs256(moat_server::config::DEMO_SECRET.as_bytes())?
                }
                None => moat_server::auth::Auth::none(),
            };
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
