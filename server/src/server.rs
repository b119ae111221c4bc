//! The HTTP side: the router (`/sync` WebSocket, `/healthz`, `/metrics`, the demo sign-in, the web
//! client's files) and `run`, which serves until a shutdown signal and then closes every connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Auth, Claims, now_secs};
use crate::config::{Config, DEMO_SECRET, Limits};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::{Store, WriterConfig, Writers};
use crate::tenants::{Shared, Tenants};

/// The demo data: two companies, both in one script (a tenant keeps one company's rows).
pub const DEMO_SEED: &str = include_str!("../../schemas/demo_seed.sql");

/// The demo seed with `jobs` jobs per company (the seed's own 5,000 when `None`).
pub fn demo_seed(jobs: Option<u32>) -> String {
    match jobs {
        None => DEMO_SEED.to_owned(),
        Some(n) => DEMO_SEED.replace("i < 5000 /* demo jobs */", &format!("i < {n}")),
    }
}

/// The users the demo's sign-in offers: an admin and a technician of each company.
pub const DEMO_USERS: [(&str, &str, &str, &str); 4] = [
    ("alice", "Alice Admin", "company-a", "admin"),
    ("tom", "Tom Technician", "company-a", "technician"),
    ("bella", "Bella Admin", "company-b", "admin"),
    ("tariq", "Tariq Technician", "company-b", "technician"),
];

/// How long a shutdown waits for the sessions to send their close frames (a client that does not
/// read gets 2 s of it: `connection::close_with`).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The tenants `--demo` creates (with the demo data) when they do not exist yet.
pub const DEMO_TENANTS: [&str; 2] = ["company-a", "company-b"];

/// Everything a connection needs, shared (one pointer: a session holds it for its whole life).
#[derive(Debug, Clone)]
pub struct AppState(Arc<StateInner>);

impl std::ops::Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct StateInner {
    /// The tenants, each its own database, schema, rules and channels.
    pub(crate) tenants: Arc<Tenants>,
    pub(crate) auth: Arc<Auth>,
    /// Where `POST /admin/migrate` finds the platform's migration files.
    migrations: std::path::PathBuf,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
    demo: bool,
    web_root: std::path::PathBuf,
    backup: crate::config::BackupConfig,
    /// This node's place in a cluster (`None`: a single node).
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The sessions' sockets, for their pings, token expiry and the shutdown's close.
    pub(crate) sessions: Arc<crate::socket::Sessions>,
}

/// A server, opened and ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    shutdown: watch::Sender<bool>,
    /// Held while the server runs, so that `moat migrate` cannot change the schema under it.
    lock: std::fs::File,
    /// The TLS listener, if any, beside the plain one.
    tls: Option<crate::tls::TlsListener>,
}

impl Server {
    /// What the server's handlers share.
    #[cfg(test)]
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Opens the data directory (creating it and, with `demo`, the demo's tenants), loads the base
    /// schema, the rules and the keys, and starts the writers. Tenants open on demand.
    pub fn open(config: &Config) -> Result<Server> {
        std::fs::create_dir_all(&config.data)
            .map_err(|e| Error::Config(format!("{}: {e}", config.data.display())))?;
        // A cluster's nodes share the data directory: each holds the lock shared (a migration takes it
        // alone); a tenant's file is locked by its one writer (`crate::cluster`).
        let platform = crate::tenants::platform_path(&config.data);
        let lock = match config.cluster.url {
            Some(_) => crate::migrate::shared_lock(&platform)?,
            None => crate::migrate::writer_lock(&platform)?,
        };
        let base = config.base_schema()?;
        let rules_text = config.rules_text()?;
        // The rules must fit the base schema (each tenant's schema is checked when it opens).
        crate::rules::Rules::from_toml(&rules_text, &base)?;
        if config.demo {
            let platform = crate::tenants::open_platform(&config.data)?;
            for tenant in DEMO_TENANTS {
                if !crate::tenants::exists(&platform, tenant)? {
                    let seed =
                        crate::tenants::demo_seed_for(&base, &demo_seed(config.demo_jobs), tenant, tenant);
                    crate::tenants::create(&config.data, tenant, &base, Some(&seed))?;
                }
            }
        }
        let auth = Arc::new(auth_from(config)?);
        let limits = Arc::new(config.limits.clone());
        let metrics = Arc::new(Metrics::default());
        let threads = match limits.writer_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2),
            n => n,
        };
        let writers = Writers::start(threads, limits.max_batch)?;
        let tenants = Arc::new(Tenants::new(
            &config.data,
            Shared {
                base,
                rules_text,
                writers,
                channel_buffer: limits.channel_buffer,
                metrics: Arc::clone(&metrics),
                writer: WriterConfig {
                    log_retention: limits.log_retention,
                    max_writes_per_second: limits.tenant_max_writes_per_second,
                    max_database_bytes: limits.tenant_max_database_mb * 1024 * 1024,
                },
                cluster: config.cluster.url.is_some(),
            },
        )?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let sessions = crate::socket::Sessions::new(&limits, &metrics);
        if !limits.fanout_io_uring {
            crate::uring::disable();
        }
        let state = AppState(Arc::new(StateInner {
            tenants,
            auth,
            migrations: config.migrations.clone(),
            limits,
            metrics,
            shutdown: shutdown_rx,
            demo: config.demo,
            web_root: config.web_root.clone(),
            backup: config.backup.clone(),
            cluster: None,
            sessions,
        }));
        Ok(Server { state, shutdown, lock, tls: None })
    }

    /// Joins the cluster `config.cluster` names (connects to NATS, starts renewing leases); a server
    /// opened with a cluster URL serves only after this.
    pub async fn join_cluster(mut self, config: &Config) -> Result<Server> {
        let s = &self.state;
        let (tenants, limits, metrics) =
            (Arc::clone(&s.tenants), Arc::clone(&s.limits), Arc::clone(&s.metrics));
        let cluster = crate::cluster::Cluster::join(&config.cluster, tenants, limits, metrics).await?;
        Arc::get_mut(&mut self.state.0).expect("the state is not shared before the server serves").cluster =
            Some(cluster);
        Ok(self)
    }

    /// A tenant's database, opened if needed (for tests and tools in this crate's users).
    pub async fn tenant(&self, name: &str) -> Result<Arc<Store>> {
        self.state.tenants.get(name).await?.ok_or_else(|| Error::Config(format!("there is no tenant {name}")))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Mints a token with this server's keys (the `moat token` command, tests).
    pub fn mint(&self, user: &str, tenant: &str, role: &str, ttl_secs: u64) -> Result<String> {
        mint(&self.state.auth, user, tenant, role, ttl_secs)
    }

    /// Also serves TLS connections from `listener`, with `certs` (which the caller may reload).
    pub fn with_tls(mut self, listener: TcpListener, certs: Arc<crate::tls::Certificates>) -> Result<Server> {
        self.tls = Some(crate::tls::TlsListener::new(listener, certs)?);
        Ok(self)
    }

    /// Serves on `listener` (and the TLS listener, if any) until `signal` resolves; then closes
    /// every WebSocket (1001) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Server { state, shutdown, lock, tls } = self;
        let metrics = Arc::clone(&state.metrics);
        // Tenants with no session close their files after a while.
        let idle_ms = state.limits.tenant_idle_secs.saturating_mul(1000);
        let reaper = {
            let tenants = Arc::clone(&state.tenants);
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(std::time::Duration::from_millis((idle_ms / 4).clamp(250, 10_000)));
                loop {
                    tick.tick().await;
                    tenants.flush_devices().await;
                    tenants.close_idle(idle_ms);
                }
            })
        };
        let backups = state.backup.dir.clone().map(|dir| {
            let (tenants, metrics, every, keep) = (
                Arc::clone(&state.tenants),
                Arc::clone(&state.metrics),
                std::time::Duration::from_secs(state.backup.interval_secs.max(1)),
                state.backup.keep.max(1),
            );
            tokio::spawn(scheduled_backups(tenants, metrics, dir, every, keep))
        });
        let pinger = tokio::spawn(Arc::clone(&state.sessions).run());
        let sessions = Arc::clone(&state.sessions);
        let stopped = state.shutdown.clone();
        let draining = Arc::clone(&state.tenants);
        let cluster = state.cluster.clone();
        let router = app(state.clone());
        let notify = async move {
            signal.await;
            // In a cluster, first hand this node's tenants to other nodes: their writes pause for the
            // move, not for a lease to run out.
            if let Some(cluster) = cluster {
                tracing::info!("shutting down: moving this node's tenants to other nodes");
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, cluster.drain()).await;
            }
            tracing::info!("shutting down: closing connections");
            let _ = shutdown.send(true);
            sessions.close_all(crate::protocol::close::GOING_AWAY, "server shutting down");
        };
        let stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            crate::tls::tune(tcp)
        });
        let plain = serve_http(listener, router.clone(), Some(state), stopped());
        let secure = async {
            // Sockets are tuned before their handshake.
            if let Some(tls) = tls {
                serve_http(tls, router, None, stopped()).await;
            }
        };
        tokio::join!(plain, secure, notify);
        // Upgraded WebSockets are not the HTTP server's to wait for: each session saw the shutdown
        // and is sending its 1001 close frame (all in parallel). Wait for them, within a bound, so
        // that no socket ends with a bare FIN because the process went away first.
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while metrics.connections.get() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if metrics.connections.get() > 0 {
            tracing::warn!(
                left = metrics.connections.get(),
                "connections still open at the end of the shutdown grace"
            );
        }
        draining.flush_devices().await;
        // Then the writers finish what is queued (every such write's client is gone; committing it
        // now means its replay is answered from the stored outcome rather than applied late).
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while draining.queue_depth() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // An empty queue can still have its last batch in the middle of its commit: wait for it.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, draining.settle()).await;
        reaper.abort();
        pinger.abort();
        if let Some(b) = backups {
            b.abort();
        }
        drop(lock);
        Ok(())
    }
}

/// Takes a backup of every tenant every `every` (the first one `every` after start) and keeps the
/// newest `keep`. A failure is logged and counted (`moat_backup_failures_total`); the next one is
/// tried on time.
async fn scheduled_backups(
    tenants: Arc<Tenants>,
    metrics: Arc<Metrics>,
    dir: std::path::PathBuf,
    every: std::time::Duration,
    keep: usize,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (data, dir) = (tenants.data().to_path_buf(), dir.clone());
        let took = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let (folder, manifest) = crate::backup::backup(&data, &dir, None, |_| {})?;
            let removed = crate::backup::prune(&dir, keep)?;
            Ok::<_, Error>((folder, manifest.tenants.len(), removed.len()))
        })
        .await;
        match done {
            Ok(Ok((folder, n, removed))) => {
                metrics.backups.inc();
                metrics.backup_last_success.set(now_secs() as i64);
                tracing::info!(folder = %folder.display(), tenants = n, removed, ms = took.elapsed().as_millis() as u64, "backup taken");
            }
            Ok(Err(e)) => {
                metrics.backup_failures.inc();
                tracing::error!("scheduled backup failed: {e}");
            }
            Err(e) => {
                metrics.backup_failures.inc();
                tracing::error!("scheduled backup failed: {e}");
            }
        }
    }
}

fn auth_from(config: &Config) -> Result<Auth> {
    let mut auth = match (&config.auth.hs256_secret, config.demo) {
        (Some(secret), _) => Auth::hs256(secret.as_bytes())?,
        (None, true) => Auth::hs256(DEMO_SECRET.as_bytes())?,
        (None, false) => Auth::none(),
    };
    let a = &config.auth;
    if let Some(p) = &a.ed25519_public_key {
        let pem = std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
        auth = auth.with_ed25519_public_pem(&pem)?;
    }
    let jwks = match (&a.jwks_url, &a.jwks_file) {
        (Some(_), Some(_)) => return Err(Error::Config("auth: jwks_url or jwks_file, not both".into())),
        (Some(url), None) => Some(crate::jwks::Source::Url(url.clone())),
        (None, Some(file)) => Some(crate::jwks::Source::File(file.clone())),
        (None, None) => None,
    };
    if let Some(source) = jwks {
        let jwks = crate::jwks::Jwks::new(source);
        // Read now, in the background: the provider may be slow or down at start; tokens are
        // refused until the keys are read, and an unknown key id reads them again.
        let first = Arc::clone(&jwks);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("the identity provider's keys are read on the server's runtime".into())
        })?;
        runtime.spawn(async move {
            match first.refresh().await {
                Ok(n) => tracing::info!(keys = n, "identity provider keys read"),
                Err(e) => tracing::warn!("identity provider keys: {e}"),
            }
        });
        auth = auth.with_jwks(jwks);
    }
    auth = auth
        .with_checks(
            a.issuer.clone(),
            a.audience.clone(),
            a.leeway_secs.unwrap_or(crate::auth::DEFAULT_LEEWAY_SECS),
        )
        .with_claims(a.claims.clone());
    if auth.is_empty() {
        return Err(Error::Config(
            "no token key: set auth.jwks_url, auth.ed25519_public_key or auth.hs256_secret (MOAT_HS256_SECRET)"
                .into(),
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

/// Serves HTTP/1.1 on `listener` until `stop` resolves, then ends each connection's keep-alive and
/// waits for the requests under way. Each request carries its peer's address (`ConnectInfo`). A
/// WebSocket upgrade hands the connection's own stream to the session (no HTTP layer under it).
/// With `sessions` (the plain listener), a connection whose first request is a WebSocket handshake
/// for `/sync` is answered without the HTTP server ([`sync_opening`]).
async fn serve_http<L>(
    mut listener: L,
    router: Router,
    sessions: Option<AppState>,
    stop: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: Plain,
{
    use hyper_util::rt::TokioIo;
    let (stopping, stopping_rx) = watch::channel(false);
    let (done, _) = watch::channel(());
    tokio::pin!(stop);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(
            tower_http::add_extension::AddExtension::new(router.clone(), axum::extract::ConnectInfo(addr)),
        );
        let (mut stopping, held) = (stopping_rx.clone(), done.subscribe());
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let io = match (sessions, io.tcp()) {
                (Some(state), Some(tcp)) => {
                    // A server stopping does not wait for a first request still to come.
                    let opened = tokio::select! {
                        opened = Box::pin(sync_opening(tcp, &state)) => opened,
                        _ = stopping.wait_for(|s| *s) => Some(false),
                    };
                    match opened {
                        Some(answered) => {
                            if answered {
                                let tcp = io.into_tcp().expect("a plain connection");
                                tokio::spawn(crate::connection::run(
                                    crate::connection::Upgrade::Plain(tcp),
                                    state,
                                ));
                            }
                            return;
                        }
                        None => io,
                    }
                }
                _ => io,
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(held);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // A request under way finishes; a client that never completes one does not hold the stop.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, done.closed()).await;
}

/// A listener's connection: a plain TCP one or not (TLS).
trait Plain: Sized {
    fn tcp(&self) -> Option<&tokio::net::TcpStream>;
    fn into_tcp(self) -> Option<tokio::net::TcpStream>;
}

impl Plain for tokio::net::TcpStream {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }

    fn into_tcp(self) -> Option<tokio::net::TcpStream> {
        Some(self)
    }
}

impl Plain for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }

    fn into_tcp(self) -> Option<tokio::net::TcpStream> {
        None
    }
}

/// The largest request head the server's own handshake reads ([`crate::ws::opening`]); a longer
/// one goes to the HTTP server.
const OPENING_BYTES: usize = 4096;

/// Looks at a plain connection's first request without taking it (`MSG_PEEK`) and, if it is a
/// well-formed WebSocket handshake for `/sync`, takes it and answers it: the connection is then a
/// session's, with none of the HTTP server's buffers or tasks made for it (three 8 KB buffers per
/// connection, which a wave of reconnecting clients left scattered over the heap). `Some(true)`:
/// answered; `Some(false)`: the peer went away; `None`: the HTTP server's to answer (anything
/// else, or no whole head within the hello timeout), with nothing taken from the socket.
async fn sync_opening(tcp: &tokio::net::TcpStream, state: &AppState) -> Option<bool> {
    use crate::ws::Opening;
    use tokio::io::Interest;
    let wait = std::time::Duration::from_millis(state.limits.hello_timeout_ms);
    let peeked = tokio::time::timeout(wait, async {
        loop {
            // A peer that closed its side keeps the socket readable for good, with the bytes it
            // sent (a peek never takes them): the HTTP server reads those and the end.
            match tcp.ready(Interest::READABLE).await {
                Ok(ready) if !ready.is_read_closed() => {}
                _ => return Some(Opening::Http),
            }
            // Each look reads the whole head again: a head not complete yet counts as "would block",
            // so the next look waits for more bytes.
            let look = tcp.try_io(Interest::READABLE, || {
                let mut head = [0u8; OPENING_BYTES];
                let n = peek(tcp, &mut head)?;
                if n == 0 {
                    return Ok(None);
                }
                match crate::ws::opening(&head[..n], n == head.len()) {
                    Opening::Partial => Err(std::io::ErrorKind::WouldBlock.into()),
                    opening => Ok(Some(opening)),
                }
            });
            match look {
                Ok(opening) => return opening,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return None,
            }
        }
    })
    .await;
    let (len, answer) = match peeked {
        Ok(Some(Opening::Sync { len, answer })) => (len, answer),
        // The peer closed before a whole request: nobody to answer.
        Ok(None) => return Some(false),
        _ => return None,
    };
    if !take(tcp, len) {
        return Some(false);
    }
    let mut answer = answer.as_bytes();
    while !answer.is_empty() {
        if tcp.writable().await.is_err() {
            return Some(false);
        }
        match tcp.try_write(answer) {
            Ok(n) => answer = &answer[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Some(false),
        }
    }
    Some(true)
}

/// Takes the `len` bytes a peek just saw in `tcp` (they are there); false if the socket failed.
fn take(tcp: &tokio::net::TcpStream, len: usize) -> bool {
    let mut head = [0u8; OPENING_BYTES];
    let mut taken = 0;
    while taken < len {
        match tcp.try_read(&mut head[..len - taken]) {
            Ok(n @ 1..) => taken += n,
            _ => return false,
        }
    }
    true
}

/// The bytes waiting in `tcp`, left there (`MSG_PEEK`).
fn peek(tcp: &tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: recv into a buffer of `buf.len()` bytes this function borrows mutably.
    let n = unsafe {
        libc::recv(tcp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// The router: everything the server answers.
pub fn app(state: AppState) -> Router {
    let web_root = state.web_root.clone();
    let router = Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/demo/users", get(demo_users))
        .route("/admin/migrate", axum::routing::post(admin_migrate))
        .route("/admin/tenants", get(admin_tenants))
        .route("/admin/tenants/{name}", axum::routing::delete(admin_delete_tenant));
    let router = if web_root.join("index.html").is_file() {
        router.fallback_service(tower_http::services::ServeDir::new(web_root))
    } else {
        router.route("/", get(no_web_client))
    };
    router.with_state(state)
}

/// The WebSocket handshake (RFC 6455): a GET asking to upgrade, version 13, with a key. The socket
/// is then the session's ([`crate::socket::Socket`]).
async fn sync(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    use axum::http::{HeaderValue, Method, header};
    let (mut parts, _) = request.into_parts();
    let values = |name: &str| parts.headers.get_all(name).iter().map(|v| v.as_bytes()).collect::<Vec<_>>();
    let accept = match crate::ws::handshake(parts.method == Method::GET, values) {
        Ok(accept) => accept,
        Err(refused @ crate::ws::Refused::Version) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"))],
                format!("{}\n", refused.reason()),
            )
                .into_response();
        }
        Err(refused) => return (StatusCode::BAD_REQUEST, format!("{}\n", refused.reason())).into_response(),
    };
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "this connection cannot be upgraded\n").into_response();
    };
    tokio::spawn(crate::connection::run(crate::connection::Upgrade::Http(on_upgrade), state));
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    response
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the platform database reads, and no open tenant's database is failing (its last batch
/// failed to commit for the database's reasons, or a reader cannot read it). 503 with the reasons.
async fn readyz(State(state): State<AppState>) -> Response {
    let tenants = Arc::clone(&state.tenants);
    let platform = tokio::task::spawn_blocking(move || -> Result<i64> {
        Ok(tenants.platform().query_row("SELECT count(*) FROM moat_tenants", [], |r| r.get(0))?)
    });
    let mut problems = Vec::new();
    match platform.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("platform database: {e}")),
        Err(e) => problems.push(format!("platform database: {e}")),
    }
    for store in state.tenants.open_now_list() {
        if let Err(e) = store.ready().await {
            problems.push(e.to_string());
        }
    }
    if let Some(cluster) = &state.cluster
        && !cluster.connected()
    {
        problems.push("the cluster's NATS server is not reachable".into());
    }
    if problems.is_empty() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", problems.join("\n"))).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let open = state.tenants.open_now_list();
    let channels = open.iter().map(|t| t.hub.channel_count()).sum();
    if let Some(cluster) = &state.cluster {
        let (owned, remote) = cluster.figures();
        state.metrics.cluster_leases.set(owned as i64);
        state.metrics.cluster_remote_tenants.set(remote as i64);
    }
    let mut body = state.metrics.render(channels, state.tenants.queue_depth());
    crate::metrics::render_tenants(&mut body, &open, state.limits.metrics_tenants);
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
    /// One tenant; all of them when absent.
    tenant: Option<String>,
    /// The tenant's own migrations from this folder (with `tenant`), instead of the platform's.
    own: Option<std::path::PathBuf>,
}

/// Admin endpoints answer only requests from this machine carrying a token of role `operator`
/// signed with the server's own keys (HS256 or Ed25519; never an identity provider's key set, whose
/// tokens name a key id).
async fn operator_only(
    state: &AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    if !peer.ip().is_loopback() {
        return Some(
            (StatusCode::FORBIDDEN, "admin requests come from the server's own machine\n").into_response(),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let own = token.and_then(|t| jsonwebtoken::decode_header(t).ok()).is_some_and(|h| h.kid.is_none());
    let claims = match token {
        Some(t) if own => state.auth.verify(t).await.ok(),
        _ => None,
    };
    match claims {
        Some(claims) if &*claims.role == "operator" => None,
        _ => {
            let msg = "an operator token is needed (moat token --role operator)\n";
            Some((StatusCode::UNAUTHORIZED, msg).into_response())
        }
    }
}

/// Applies the pending migrations inside the running server (`moat migrate up --server URL`): the
/// platform's to one tenant or to every tenant, or one tenant's own. Only the migrated tenants'
/// clients reconnect.
/// What a cluster node does not do yet: it would write tenants other nodes own (`docs/scaling.md`).
fn single_node_only(state: &AppState, what: &str) -> Option<Response> {
    state.cluster.as_ref().map(|_| {
        let msg = format!("{what} is not done through a cluster node yet: stop the nodes and run it with `moat` on the data directory\n");
        (StatusCode::CONFLICT, msg).into_response()
    })
}

async fn admin_migrate(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    axum::extract::Query(q): axum::extract::Query<MigrateQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = operator_only(&state, peer, &headers).await {
        return refused;
    }
    let (dir, scope) = match (&q.own, &q.tenant) {
        (Some(dir), Some(_)) => (dir.clone(), crate::migrate::Scope::Tenant),
        (Some(_), None) => {
            return (StatusCode::BAD_REQUEST, "a tenant's own migrations need --tenant\n").into_response();
        }
        (None, _) => (state.migrations.clone(), crate::migrate::Scope::Platform),
    };
    let files = match crate::migrate::load_dir(&dir) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let names = match &q.tenant {
        Some(t) => vec![t.clone()],
        None => match state.tenants.names() {
            Ok(n) => n,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        },
    };
    let mut out = String::new();
    for name in names {
        // In a cluster each tenant is migrated by the node that owns it (this one, if nobody does).
        let found = match &state.cluster {
            Some(cluster) => cluster.route(&name).await,
            None => state.tenants.get(&name).await.map(|s| s.map(crate::cluster::Backend::Local)),
        };
        let store = match found {
            Ok(Some(s)) => s,
            Ok(None) => {
                return (StatusCode::NOT_FOUND, format!("{out}there is no tenant {name}\n")).into_response();
            }
            Err(e) => return (StatusCode::CONFLICT, format!("{out}{name}: {e}\n")).into_response(),
        };
        let migrated = match store {
            crate::cluster::Backend::Local(store) => {
                store.migrate(files.clone(), scope, q.allow_destructive).await
            }
            crate::cluster::Backend::Remote(remote) => {
                remote.migrate(files.clone(), scope, q.allow_destructive).await
            }
        };
        match migrated {
            Ok(text) => out.push_str(&text),
            Err(e) => return (StatusCode::CONFLICT, format!("{out}{name}: {e}\n")).into_response(),
        }
    }
    out.into_response()
}

/// `GET /admin/tenants`: every tenant with its rows, size, open sessions and last write.
async fn admin_tenants(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = operator_only(&state, peer, &headers).await {
        return refused;
    }
    let tenants = Arc::clone(&state.tenants);
    let listed = tokio::task::spawn_blocking(move || {
        let mut list = crate::tenants::list(tenants.data(), tenants.base())?;
        // The server knows who is connected: a tenant that is not open has no one.
        list.iter_mut().for_each(|t| t.connections = Some(0));
        for store in tenants.open_now_list() {
            if let Some(t) = list.iter_mut().find(|t| *t.name == *store.tenant) {
                t.connections = Some(store.connections.load(std::sync::atomic::Ordering::Relaxed));
            }
        }
        Ok::<_, Error>(list)
    })
    .await;
    match listed {
        Ok(Ok(list)) => axum::Json(list).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /admin/tenants/NAME`: refused while the tenant has sessions, unless `force` (its
/// sessions are then closed (1012) and their reconnection is refused (4001): the tenant is gone).
async fn admin_delete_tenant(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = operator_only(&state, peer, &headers).await {
        return refused;
    }
    if let Some(refused) = single_node_only(&state, "deleting a tenant") {
        return refused;
    }
    if let Some(store) = state.tenants.open_now_list().into_iter().find(|s| *s.tenant == *name) {
        let n = store.connections.load(std::sync::atomic::Ordering::Relaxed);
        if n > 0 && !q.force {
            let msg = format!("{name} has {n} connected client(s); stop them first or use --force\n");
            return (StatusCode::CONFLICT, msg).into_response();
        }
    }
    let tenants = Arc::clone(&state.tenants);
    let deleted = tokio::task::spawn_blocking(move || {
        // Unregistered first, so no session opens it again; then its channels close.
        let r = crate::tenants::delete_files(tenants.data(), &name);
        tenants.forget(&name);
        r.map(|()| name)
    })
    .await;
    match deleted {
        Ok(Ok(name)) => format!("tenant {name} deleted\n").into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
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
