//! The HTTP side: the router (`/sync` WebSocket, `/healthz`, `/metrics`, the demo sign-in, the web
//! client's files) and `run`, which serves until a shutdown signal and then closes every connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Auth, Claims, now_secs};
use crate::config::{Config, DEMO_SECRET, Limits};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::Models;
use crate::store::{Store, WriterConfig};

const DEMO_SEED: &str = include_str!("../../schemas/demo_seed.sql");
const DEFAULT_RULES: &str = include_str!("../../schemas/sync_rules.toml");

/// The users the demo's sign-in offers: an admin and a technician of each company.
pub const DEMO_USERS: [(&str, &str, &str, &str); 4] = [
    ("alice", "Alice Admin", "company-a", "admin"),
    ("tom", "Tom Technician", "company-a", "technician"),
    ("bella", "Bella Admin", "company-b", "admin"),
    ("tariq", "Tariq Technician", "company-b", "technician"),
];

/// Everything a connection needs, shared.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) auth: Arc<Auth>,
    /// The schema and rules now; replaced by a live migration.
    pub(crate) models: Arc<Models>,
    /// Where `POST /admin/migrate` finds the migration files.
    migrations: std::path::PathBuf,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
    demo: bool,
    web_root: std::path::PathBuf,
}

/// A server, opened and ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    shutdown: watch::Sender<bool>,
    /// Held while the server runs, so that `moat migrate` cannot change the schema under it.
    lock: std::fs::File,
}

impl Server {
    /// Opens the database (creating and, with `demo`, seeding it), loads schema, rules and keys.
    pub fn open(config: &Config) -> Result<Server> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
        };
        let lock = crate::migrate::writer_lock(&config.database)?;
        let base = config.base_schema()?;
        // The base schema plus every migration applied to this database (`moat migrate`).
        let schema = if config.database.exists() {
            let conn = rusqlite::Connection::open(&config.database)?;
            crate::migrate::effective_schema(&conn, &base)?
        } else {
            base.clone()
        };
        let rules_text = match &config.rules {
            Some(p) => read(p)?,
            None => DEFAULT_RULES.to_owned(),
        };
        let models = Arc::new(Models::new(base, schema, rules_text)?);
        let auth = Arc::new(auth_from(config)?);
        let limits = Arc::new(config.limits.clone());
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(limits.channel_buffer));
        let store = Store::open(
            &config.database,
            Arc::clone(&models),
            config.demo.then_some(DEMO_SEED),
            Arc::clone(&hub),
            Arc::clone(&metrics),
            WriterConfig { max_batch: limits.max_batch, log_retention: limits.log_retention },
        )?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = AppState {
            store,
            hub,
            auth,
            models,
            migrations: config.migrations.clone(),
            limits,
            metrics,
            shutdown: shutdown_rx,
            demo: config.demo,
            web_root: config.web_root.clone(),
        };
        Ok(Server { state, shutdown, lock })
    }

    /// The shared state (for tests and tools in this crate's users).
    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Mints a token with this server's keys (the `moat token` command, tests).
    pub fn mint(&self, user: &str, tenant: &str, role: &str, ttl_secs: u64) -> Result<String> {
        mint(&self.state.auth, user, tenant, role, ttl_secs)
    }

    /// Serves on `listener` until `signal` resolves; then closes every WebSocket (1001) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Server { state, shutdown, lock } = self;
        let router = app(state);
        let notify = async move {
            signal.await;
            tracing::info!("shutting down: closing connections");
            let _ = shutdown.send(true);
        };
        // Frames are small and latency matters: no Nagle delay behind a client's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        });
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(notify)
            .await
            .map_err(|e| Error::Unavailable(format!("serve: {e}")))?;
        drop(lock);
        Ok(())
    }
}

fn auth_from(config: &Config) -> Result<Auth> {
    let mut auth = match (&config.auth.hs256_secret, config.demo) {
        (Some(secret), _) => Auth::hs256(secret.as_bytes())?,
        (None, true) => Auth::hs256(DEMO_SECRET.as_bytes())?,
        (None, false) => Auth::none(),
    };
    if let Some(p) = &config.auth.ed25519_public_key {
        let pem = std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
        auth = auth.with_ed25519_public_pem(&pem)?;
    }
    if auth.is_empty() {
        return Err(Error::Config(
            "no token key: set auth.hs256_secret (or MOAT_HS256_SECRET) or auth.ed25519_public_key".into(),
        ));
    }
    Ok(auth)
}

/// Mints a token valid for `ttl_secs`.
pub fn mint(auth: &Auth, user: &str, tenant: &str, role: &str, ttl_secs: u64) -> Result<String> {
    let now = now_secs();
    auth.mint(&Claims {
        sub: user.into(),
        tenant: tenant.into(),
        role: role.into(),
        exp: now + ttl_secs,
        iat: now,
    })
}

/// The router: everything the server answers.
pub fn app(state: AppState) -> Router {
    let web_root = state.web_root.clone();
    let router = Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/demo/users", get(demo_users))
        .route("/admin/migrate", axum::routing::post(admin_migrate));
    let router = if web_root.join("index.html").is_file() {
        router.fallback_service(tower_http::services::ServeDir::new(web_root))
    } else {
        router.route("/", get(no_web_client))
    };
    router.with_state(state)
}

async fn sync(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let limits = &state.limits;
    ws.max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .read_buffer_size(1024)
        // Frames are buffered until a flush, so a burst of channel frames goes out in one write.
        .write_buffer_size(crate::connection::BURST_BYTES)
        .on_upgrade(move |socket| crate::connection::run(socket, state))
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(state.hub.channel_count(), state.store.queue_depth());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Serialize)]
struct DemoUser {
    user: &'static str,
    name: &'static str,
    tenant: &'static str,
    role: &'static str,
    token: String,
}

/// In demo mode only: the seeded users with fresh tokens, for the web client's sign-in.
async fn demo_users(State(state): State<AppState>) -> Response {
    if !state.demo {
        return (StatusCode::NOT_FOUND, "the demo sign-in is only on with --demo\n").into_response();
    }
    let users: Result<Vec<DemoUser>> = DEMO_USERS
        .iter()
        .map(|&(user, name, tenant, role)| {
            Ok(DemoUser {
                user,
                name,
                tenant,
                role,
                token: mint(&state.auth, user, tenant, role, 12 * 3600)?,
            })
        })
        .collect();
    match users {
        Ok(u) => axum::Json(u).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct MigrateQuery {
    #[serde(default)]
    allow_destructive: bool,
}

/// Applies the pending migrations inside the running server (`moat migrate up --server URL`). Only
/// from this machine, and only with a token of role `operator` signed with the server's keys.
async fn admin_migrate(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    axum::extract::Query(q): axum::extract::Query<MigrateQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "migrations are applied from the server's own machine\n")
            .into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.map(|t| state.auth.verify(t)) {
        Some(Ok(claims)) if claims.role == "operator" => {}
        _ => {
            let msg = "an operator token is needed (moat token --role operator)\n";
            return (StatusCode::UNAUTHORIZED, msg).into_response();
        }
    }
    let files = match crate::migrate::load_dir(&state.migrations) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match state.store.migrate(files, q.allow_destructive).await {
        Ok(text) => text.into_response(),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

async fn no_web_client() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Moat</title><h1>Moat server</h1>\
         <p>The web client is not built into this server's web root yet. \
         The sync endpoint is <code>/sync</code>; see <a href=\"/healthz\">/healthz</a> and \
         <a href=\"/metrics\">/metrics</a>.</p>",
    )
}
