//! One WebSocket connection: hello and authentication, catch-up or snapshot, then the live loop
//! that forwards the channel's frames and dispatches the client's frames to their handlers.
//!
//! The socket is written by this task (its own frames) and by its channel's fan-out (channel frames),
//! always under the sink's lock, a frame at a time, so the socket has one order: a writer's own diff
//! is always sent before its ack (the writer thread publishes before it answers, and this loop hands
//! the socket the channel's newer frames before it sends an ack).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::auth::{Claims, now_secs};
use crate::cluster::Backend;
use crate::handlers;
use crate::hub::Subscription;
use crate::model::Model;
use crate::protocol::{ClientMsg, PROTOCOL_VERSION, SchemaInfo, ServerMsg, close};
use crate::rules::Profile;
use crate::server::AppState;
use crate::socket::{Failed, Recv, Socket};
use crate::store::PushReply;
use crate::ws::{self, Bad, Incoming};

/// Why a connection ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer went away or the socket failed.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, String),
}

/// A connection after a good hello.
pub(crate) struct Conn {
    pub(crate) socket: Socket,
    pub(crate) state: AppState,
    /// The tenant's database, schema and channels: here, or on the node that owns the tenant.
    pub(crate) tenant: Backend,
    pub(crate) claims: Claims,
    /// The schema and rules this session runs on (taken at hello; a live migration closes it).
    pub(crate) model: Arc<Model>,
    pub(crate) client_id: String,
    pub(crate) profile: Profile,
    /// The last version sent on this connection's channel.
    pub(crate) sent: i64,
    pub(crate) inflight: usize,
    /// Where the answers to this session's pushes come (made at its first push: a session that only
    /// reads holds no channel).
    replies: Option<mpsc::Sender<Box<PushReply>>>,
    /// The receiving end of `replies`, until the live loop takes it.
    new_replies: Option<mpsc::Receiver<Box<PushReply>>>,
}

impl Conn {
    fn send_limit(&self) -> Duration {
        Duration::from_millis(self.state.limits.send_timeout_ms)
    }

    /// Writes everything queued on the socket; a client that does not take it in time is cut off.
    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        // Most writes are taken at once; only one that has to wait builds (and boxes) the waiting,
        // so an idle session's future does not carry it.
        match self.socket.try_flush() {
            Some(Ok(())) => return Ok(()),
            Some(Err(_)) => return Err(End::Gone),
            None => {}
        }
        let limit = self.send_limit();
        match Box::pin(self.socket.flush(limit)).await {
            Ok(()) => Ok(()),
            Err(Failed::Gone) => Err(End::Gone),
            Err(Failed::Late) => Err(self.slow()),
        }
    }

    /// Sends a text frame (after the channel frames already queued).
    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.socket.put(ws::text(text));
        self.flush().await
    }

    /// Where a push's answer is to be sent.
    pub(crate) fn reply_to(&mut self) -> mpsc::Sender<Box<PushReply>> {
        let limit = self.state.limits.max_inflight_pushes.max(1);
        let new_replies = &mut self.new_replies;
        self.replies
            .get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(limit);
                *new_replies = Some(rx);
                tx
            })
            .clone()
    }

    /// Sends a server message.
    pub(crate) async fn send(&mut self, msg: &ServerMsg<'_>) -> Result<(), End> {
        self.send_text(msg.to_json()).await
    }

    fn slow(&self) -> End {
        let (code, reason) = self.socket.sink.cut_off(&self.state.metrics);
        End::Close(code, reason.into())
    }

    /// An error frame; the connection stays open.
    pub(crate) async fn error(&mut self, e: &crate::error::Error) -> Result<(), End> {
        self.error_about(None, e).await
    }

    /// An error frame about one push (which was not applied).
    pub(crate) async fn error_for(&mut self, mutation_id: &str, e: &crate::error::Error) -> Result<(), End> {
        self.error_about(Some(mutation_id), e).await
    }

    async fn error_about(&mut self, mutation_id: Option<&str>, e: &crate::error::Error) -> Result<(), End> {
        self.send_text(handlers::error_frame(mutation_id, e)).await
    }
}

/// The close for a client's frame the reader refused: 1009 for one above `max_frame_bytes` (the
/// reader stops at its header, so the socket can still take the close frame), 4002 for one that is
/// not RFC 6455 WebSocket.
fn refused(bad: Bad, max_frame_bytes: usize) -> End {
    match bad {
        Bad::TooBig => End::Close(close::TOO_BIG, format!("a frame above {max_frame_bytes} bytes")),
        Bad::Protocol(why) => End::Close(close::PROTOCOL, format!("not a WebSocket frame: {why}")),
        Bad::NotUtf8 => End::Close(close::PROTOCOL, "a text frame that is not UTF-8".into()),
    }
}

/// Counts a tenant's open session for as long as it lives, and marks its device disconnected after.
struct Session(Backend, String);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.connections().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.gone(&self.1);
    }
}

impl handlers::sync::Out for Conn {
    async fn text(&mut self, text: String) -> Result<(), End> {
        self.send_text(text).await
    }
}

/// Serves one upgraded socket until it ends.
pub(crate) async fn run(socket: Socket, state: AppState) {
    state.metrics.connections.add(1);
    let metrics = Arc::clone(&state.metrics);
    let mut socket = socket;
    let end = match Box::pin(hello(&mut socket, &state)).await {
        Ok(Hello { claims, client_id, cursors, schema: client_schema, device, rows }) => {
            // Boxed: opening a tenant is short-lived work; the session's future stays small.
            match Box::pin(admit(&state, &claims, client_schema.is_none())).await {
                Err(end) => end,
                Ok((tenant, model, profile)) => {
                    tenant.seen(&claims, &client_id, client_schema.as_deref(), device);
                    let _session = Session(tenant.clone(), client_id.clone());
                    let mut conn = Conn {
                        socket,
                        state,
                        tenant,
                        claims,
                        model,
                        client_id,
                        profile,
                        sent: 0,
                        inflight: 0,
                        replies: None,
                        new_replies: None,
                    };
                    let end = session(&mut conn, cursors, client_schema, rows).await;
                    socket = conn.socket;
                    end
                }
            }
        }
        Err(end) => end,
    };
    let close = match end {
        End::Close(code, reason) => {
            tracing::debug!(code, %reason, "closing connection");
            Some(ws::close_frame(code, &reason))
        }
        End::Gone => None,
    };
    socket.close(close).await;
    metrics.connections.add(-1);
}

/// After a good hello: the tenant's database (the token's tenant; nothing else is ever read for this
/// session), its model and the user's profile in it, within the tenant's connection limit. In a
/// cluster the tenant is this node's if it holds its lease, else the owner's through NATS.
async fn admit(
    state: &AppState,
    claims: &Claims,
    names_no_schema: bool,
) -> Result<(Backend, Arc<Model>, Profile), End> {
    let found = match &state.cluster {
        Some(cluster) => cluster.route(&claims.tenant).await,
        None => state.tenants.get(&claims.tenant).await.map(|s| s.map(Backend::Local)),
    };
    let store = match found {
        Ok(Some(s)) => s,
        // The token is signed by the server's keys: naming the tenant is not an oracle.
        Ok(None) => {
            return Err(End::Close(
                close::UNAUTHORIZED,
                format!("there is no tenant {} here", claims.tenant),
            ));
        }
        // In a cluster: the tenant is between two nodes, or its owner does not answer (yet).
        Err(e) if e.retryable() => {
            tracing::info!(tenant = %claims.tenant, error = %e, "tenant not reachable now");
            return Err(End::Close(
                close::SCHEMA_CHANGED,
                "your company's data is moving between server nodes; reconnect".into(),
            ));
        }
        Err(e) => {
            tracing::error!(tenant = %claims.tenant, error = %e, "cannot open a tenant");
            return Err(End::Close(close::INTERNAL, "the server could not open your company's data".into()));
        }
    };
    let model = store.models().get();
    if names_no_schema && model.migrated {
        return Err(End::Close(
            close::OUTDATED,
            "this app is too old for the server's schema (it was migrated); update the app".into(),
        ));
    }
    let profile = model.rules.profile(claims).map_err(|e| End::Close(close::UNAUTHORIZED, e.to_string()))?;
    let limit = state.limits.tenant_max_connections;
    let open = store.connections().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if limit > 0 && open >= limit {
        store.connections().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        return Err(End::Close(
            close::TENANT_LIMIT,
            format!("{} has reached its limit of {limit} connected clients", claims.tenant),
        ));
    }
    Ok((store, model, profile))
}

type Cursors = std::collections::BTreeMap<String, i64>;

/// A good hello.
struct Hello {
    claims: Claims,
    client_id: String,
    cursors: Cursors,
    schema: Option<String>,
    device: Option<sqlite_ext::protocol::DeviceReport>,
    /// The client takes snapshot chunks as `snapshot_rows`.
    rows: bool,
}

/// Waits for the hello and checks it.
async fn hello(socket: &mut Socket, state: &AppState) -> Result<Hello, End> {
    let wait = Duration::from_millis(state.limits.hello_timeout_ms);
    let protocol_error = |m: &str| End::Close(close::PROTOCOL, m.to_owned());
    let text = match timeout(wait, socket.recv()).await {
        Err(_) => return Err(protocol_error("no hello in time")),
        Ok(Err(Recv::Bad(bad))) => return Err(refused(bad, state.limits.max_frame_bytes)),
        Ok(Err(Recv::Gone) | Ok(Incoming::Close(_))) => return Err(End::Gone),
        Ok(Ok(Incoming::Text(t))) => t,
        Ok(Ok(_)) => return Err(protocol_error("the first frame must be a text hello")),
    };
    let msg: ClientMsg =
        serde_json::from_str(&text).map_err(|e| protocol_error(&format!("bad hello: {e}")))?;
    let ClientMsg::Hello { protocol, token, client_id, cursors, schema, device, accept } = msg else {
        return Err(protocol_error("the first frame must be hello"));
    };
    if protocol != PROTOCOL_VERSION {
        return Err(protocol_error(&format!(
            "protocol {protocol} is not spoken here; this server speaks {PROTOCOL_VERSION}"
        )));
    }
    if client_id.is_empty() || client_id.len() > 128 {
        return Err(protocol_error("client_id must be 1 to 128 characters"));
    }
    if let Some(Err(e)) = device.as_ref().map(|d| d.check()) {
        return Err(protocol_error(&format!("bad device report: {e}")));
    }
    let claims =
        state.auth.verify(&token).await.map_err(|e| End::Close(close::UNAUTHORIZED, e.to_string()))?;
    let schema = schema.map(|s| s.into_owned());
    let rows = accept.iter().any(|a| a == sqlite_ext::protocol::ACCEPT_SNAPSHOT_ROWS);
    Ok(Hello { claims, client_id: client_id.into_owned(), cursors, schema, device, rows })
}

/// The welcome, revokes and the initial sync.
async fn start(
    conn: &mut Conn,
    cursors: Cursors,
    client_schema: Option<String>,
    rows: bool,
) -> Result<(), End> {
    let profile = conn.profile.clone();
    let claims = conn.claims.clone();
    let model = Arc::clone(&conn.model);
    conn.send(&ServerMsg::Welcome {
        protocol: PROTOCOL_VERSION,
        user: claims.sub.as_str().into(),
        tenant: claims.tenant.as_str().into(),
        role: claims.role.as_str().into(),
        channels: vec![profile.channel.clone()],
        max_inflight_pushes: conn.state.limits.max_inflight_pushes,
        // A client that names no schema is on the base one (else hello closed it with 4010).
        schema: client_schema.filter(|c| *c != model.fingerprint).map(|_| SchemaInfo {
            fingerprint: model.fingerprint.as_str().into(),
            sql: model.schema.sql().into(),
        }),
        admin: profile.role.admin,
        rights: profile.role.rights.clone(),
        route: model.rules.route_of(&profile).collect(),
    })
    .await?;
    // Data of channels this user no longer has leaves the device.
    for channel in cursors.keys().filter(|c| **c != profile.channel) {
        conn.send(&ServerMsg::Revoke { channel: channel.into() }).await?;
    }
    handlers::sync::start(conn, cursors.get(&profile.channel).copied(), rows).await
}

/// After a good hello: welcome, revokes, initial sync, then the live loop.
async fn session(conn: &mut Conn, cursors: Cursors, client_schema: Option<String>, rows: bool) -> End {
    let sub = conn.tenant.hub().subscribe(&conn.profile, &conn.socket.sink);
    // A live migration between this session's hello and its subscription: start again on the new model.
    if !Arc::ptr_eq(&conn.model, &conn.tenant.models().get()) {
        return End::Close(close::SCHEMA_CHANGED, "the server's schema changed; reconnect".into());
    }
    tracing::info!(
        user = %conn.claims.sub, tenant = %conn.claims.tenant, role = %conn.claims.role,
        client_id = %conn.client_id, channel = %conn.profile.channel, "connected"
    );
    // Boxed: the welcome and the initial sync are large and short-lived; the live loop stays small.
    let result = match Box::pin(start(conn, cursors, client_schema, rows)).await {
        Ok(()) => {
            sub.go_live(conn.sent);
            live(conn, &sub).await
        }
        Err(end) => Err(end),
    };
    match result {
        Ok(()) => End::Gone,
        Err(end) => end,
    }
}

/// The next answer to a push, once there is a channel for them.
async fn next_reply(replies: &mut Option<mpsc::Receiver<Box<PushReply>>>) -> Option<Box<PushReply>> {
    match replies {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn live(conn: &mut Conn, sub: &Subscription) -> Result<(), End> {
    let mut replies = None;
    // One timer and one shutdown watch for the whole session, not one per frame.
    let mut shutdown = conn.state.shutdown.clone();
    let stopping = shutdown.changed();
    tokio::pin!(stopping);
    // One timer for the session: the token's expiry or the next ping, whichever comes first.
    let now = Instant::now();
    let expires = now
        .checked_add(Duration::from_secs(conn.claims.exp.saturating_sub(now_secs())))
        .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
    let every = Duration::from_millis(conn.state.limits.ping_interval_ms);
    let mut ping_due = (!every.is_zero()).then(|| now + every);
    let next = |ping_due: Option<Instant>| ping_due.map_or(expires, |p| p.min(expires));
    let timer = sleep_until(next(ping_due));
    tokio::pin!(timer);
    let mut awaiting_pong = false;
    let sink = Arc::clone(&conn.socket.sink);
    loop {
        if let Some(rx) = conn.new_replies.take() {
            replies = Some(rx);
        }
        tokio::select! {
            biased;
            _ = &mut stopping => {
                return Err(End::Close(close::GOING_AWAY, "server shutting down".into()));
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= expires {
                    return Err(End::Close(close::UNAUTHORIZED, "token expired".into()));
                }
                if ping_due.is_some_and(|due| now >= due) {
                    if awaiting_pong {
                        conn.state.metrics.slow_consumers.inc();
                        return Err(End::Close(close::SLOW_CONSUMER, "no answer to the server's ping: reconnect to resume from your cursor".into()));
                    }
                    conn.socket.put([ws::frame(ws::PING, b"")]);
                    conn.flush().await?;
                    awaiting_pong = true;
                    ping_due = Some(now + every);
                }
                timer.as_mut().reset(next(ping_due));
            }
            // Channel frames the socket could not take at once, or the hub closing the session (a
            // live migration, the tenant moving, a subscriber too far behind).
            _ = sink.wake.notified() => match sink.ended() {
                Some((code, reason)) => return Err(End::Close(code, reason.into())),
                None => conn.flush().await?,
            },
            // Polled only while pushes are out: an idle channel is not polled on every frame.
            Some(reply) = next_reply(&mut replies), if conn.inflight > 0 => {
                // The writer published before it answered: its diff goes out before its ack.
                sub.catch_up();
                Box::pin(handlers::push::answer(conn, *reply)).await?;
            }
            msg = conn.socket.recv() => match msg {
                Err(Recv::Bad(bad)) => return Err(refused(bad, conn.state.limits.max_frame_bytes)),
                Err(Recv::Gone) | Ok(Incoming::Close(_)) => return Ok(()),
                Ok(Incoming::Text(text)) => Box::pin(handlers::dispatch(conn, &text)).await?,
                Ok(Incoming::Binary) => {
                    conn.error(&crate::error::Error::Protocol("binary frames are not part of the protocol".into())).await?
                }
                Ok(Incoming::Pong) => awaiting_pong = false,
                Ok(Incoming::Ping(payload)) => {
                    conn.socket.put([ws::frame(ws::PONG, &payload)]);
                    conn.flush().await?;
                }
            },
        }
    }
}
