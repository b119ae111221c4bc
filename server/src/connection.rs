//! One WebSocket connection: hello and authentication, catch-up or snapshot, then the live loop
//! that forwards the channel's frames and dispatches the client's frames to their handlers.
//!
//! The socket is only ever written from this task, so frame order is this task's order: a writer's
//! own broadcast diff is always sent before its ack (the writer thread publishes before it answers,
//! and this loop drains the channel before sending an ack).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until, timeout};

use crate::auth::{Claims, now_secs};
use crate::cluster::Backend;
use crate::handlers;
use crate::hub::Frame;
use crate::model::Model;
use crate::protocol::{ClientMsg, PROTOCOL_VERSION, SchemaInfo, ServerMsg, close};
use crate::rules::Profile;
use crate::server::AppState;
use crate::store::PushReply;

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
    pub(crate) ws: WebSocket,
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
    pub(crate) replies: mpsc::Sender<Box<PushReply>>,
}

/// A burst of channel frames is written with one flush (one `send`) up to this many bytes (the
/// WebSocket's write buffer keeps its largest size, so this bounds what a busy connection holds)...
pub(crate) const BURST_BYTES: usize = 4 * 1024;
/// ...or this many frames.
const BURST_FRAMES: usize = 16;

/// Runs a socket operation, giving it `limit` only if it cannot complete at once. Most writes
/// complete at once (the socket has room): no timer for those. Only a write that has to wait gets a
/// deadline, so a client that stopped reading cannot hold its task.
async fn within<F>(limit: Duration, op: F) -> Result<Result<(), axum::Error>, tokio::time::error::Elapsed>
where
    F: Future<Output = Result<(), axum::Error>>,
{
    tokio::pin!(op);
    match futures_util::poll!(&mut op) {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => timeout(limit, op).await,
    }
}

impl Conn {
    fn send_limit(&self) -> Duration {
        Duration::from_millis(self.state.limits.send_timeout_ms)
    }

    /// The outcome of a socket operation: a failed one means the peer is gone, a late one that the
    /// client does not read.
    fn outcome(&self, r: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>) -> Result<(), End> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(self.slow()),
        }
    }

    /// Sends a text frame, cutting off a client that does not take it in time.
    pub(crate) async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), End> {
        let r = within(self.send_limit(), self.ws.send(Message::Text(text.into()))).await;
        self.outcome(r)
    }

    /// Sends a server message.
    pub(crate) async fn send(&mut self, msg: &ServerMsg<'_>) -> Result<(), End> {
        self.send_text(msg.to_json()).await
    }

    /// Sends channel frames: `first`, then those already waiting behind it in the channel buffer,
    /// as one burst (one write), skipping versions this connection already has. Under load a
    /// subscriber thus gets several frames per system call instead of one.
    pub(crate) async fn forward(
        &mut self,
        first: Arc<Frame>,
        rx: &mut broadcast::Receiver<Arc<Frame>>,
    ) -> Result<(), End> {
        let limit = self.send_limit();
        let mut published = [None; BURST_FRAMES];
        let (mut frames, mut bytes) = (0, 0);
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if frame.version > self.sent {
                let r = within(limit, self.ws.feed(Message::Text(frame.text.clone()))).await;
                self.outcome(r)?;
                self.sent = frame.version;
                published[frames] = Some(frame.published);
                frames += 1;
                bytes += frame.text.len();
            }
            if frames < BURST_FRAMES && bytes < BURST_BYTES {
                next = match rx.try_recv() {
                    Ok(frame) => Some(frame),
                    // Closed: the live loop's next receive sees it and closes the session.
                    Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                        None
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(self.slow()),
                };
            }
        }
        if frames > 0 {
            let r = within(limit, self.ws.flush()).await;
            self.outcome(r)?;
            let metrics = &self.state.metrics;
            metrics.deliveries.add(frames as u64);
            for at in published.iter().flatten() {
                metrics.fanout_latency.observe(at.elapsed());
            }
        }
        Ok(())
    }

    /// Forwards every frame already waiting in the channel buffer.
    pub(crate) async fn drain(&mut self, rx: &mut broadcast::Receiver<Arc<Frame>>) -> Result<(), End> {
        loop {
            match rx.try_recv() {
                Ok(frame) => self.forward(frame, rx).await?,
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                    return Ok(());
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(self.slow()),
            }
        }
    }

    fn slow(&self) -> End {
        self.state.metrics.slow_consumers.inc();
        End::Close(
            close::SLOW_CONSUMER,
            "too far behind the channel: reconnect to resume from your cursor".into(),
        )
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

/// The 1009 close for a read that failed because the peer's frame or message is above
/// `max_frame_bytes` (the WebSocket layer stops at the frame's header, so the socket can still take
/// the close frame); `None` for any other failure.
fn too_big(e: &axum::Error, max_frame_bytes: usize) -> Option<End> {
    let text = e.to_string();
    (text.contains("Message too long") || text.contains("Space limit exceeded"))
        .then(|| End::Close(close::TOO_BIG, format!("a frame above {max_frame_bytes} bytes")))
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
pub(crate) async fn run(ws: WebSocket, state: AppState) {
    state.metrics.connections.add(1);
    let metrics = Arc::clone(&state.metrics);
    let mut ws = ws;
    let end = match Box::pin(hello(&mut ws, &state)).await {
        Ok(Hello { claims, client_id, cursors, schema: client_schema, device, rows }) => {
            match admit(&state, &claims, client_schema.is_none()).await {
                Err(end) => end,
                Ok((tenant, model, profile)) => {
                    tenant.seen(&claims, &client_id, client_schema.as_deref(), device);
                    let _session = Session(tenant.clone(), client_id.clone());
                    let (replies, replies_rx) = mpsc::channel(state.limits.max_inflight_pushes.max(1));
                    let mut conn = Conn {
                        ws,
                        state,
                        tenant,
                        claims,
                        model,
                        client_id,
                        profile,
                        sent: 0,
                        inflight: 0,
                        replies,
                    };
                    let end = session(&mut conn, cursors, client_schema, rows, replies_rx).await;
                    ws = conn.ws;
                    end
                }
            }
        }
        Err(end) => end,
    };
    if let End::Close(code, reason) = end {
        tracing::debug!(code, %reason, "closing connection");
        let _ = close_with(&mut ws, code, &reason).await;
    }
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

async fn close_with(ws: &mut WebSocket, code: u16, reason: &str) -> Result<(), axum::Error> {
    // A close reason is at most 123 bytes.
    let mut reason = reason.to_owned();
    while reason.len() > 123 {
        reason.pop();
    }
    // A client that does not read may never take the close frame: do not wait for it.
    let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    match timeout(Duration::from_secs(2), ws.send(frame)).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
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
async fn hello(ws: &mut WebSocket, state: &AppState) -> Result<Hello, End> {
    let wait = Duration::from_millis(state.limits.hello_timeout_ms);
    let protocol_error = |m: &str| End::Close(close::PROTOCOL, m.to_owned());
    let text = match timeout(wait, ws.next()).await {
        Err(_) => return Err(protocol_error("no hello in time")),
        Ok(Some(Err(e))) => return Err(too_big(&e, state.limits.max_frame_bytes).unwrap_or(End::Gone)),
        Ok(None) => return Err(End::Gone),
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Close(_)))) => return Err(End::Gone),
        Ok(Some(Ok(_))) => return Err(protocol_error("the first frame must be a text hello")),
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

/// After a good hello: welcome, revokes, initial sync, then the live loop.
async fn session(
    conn: &mut Conn,
    cursors: Cursors,
    client_schema: Option<String>,
    rows: bool,
    mut replies: mpsc::Receiver<Box<PushReply>>,
) -> End {
    let mut rx = conn.tenant.hub().subscribe(&conn.profile);
    // A live migration between this session's hello and its subscription: start again on the new model.
    if !Arc::ptr_eq(&conn.model, &conn.tenant.models().get()) {
        return End::Close(close::SCHEMA_CHANGED, "the server's schema changed; reconnect".into());
    }
    tracing::info!(
        user = %conn.claims.sub, tenant = %conn.claims.tenant, role = %conn.claims.role,
        client_id = %conn.client_id, channel = %conn.profile.channel, "connected"
    );
    let result: Result<(), End> = async {
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
        // Boxed: the initial sync's state is large and short-lived; the live loop's stays small.
        Box::pin(handlers::sync::start(conn, cursors.get(&profile.channel).copied(), rows)).await?;
        live(conn, &mut rx, &mut replies).await
    }
    .await;
    match result {
        Ok(()) => End::Gone,
        Err(end) => end,
    }
}

async fn live(
    conn: &mut Conn,
    rx: &mut broadcast::Receiver<Arc<Frame>>,
    replies: &mut mpsc::Receiver<Box<PushReply>>,
) -> Result<(), End> {
    // One timer and one shutdown watch for the whole session, not one per frame.
    let expiry =
        sleep_until(Instant::now() + Duration::from_secs(conn.claims.exp.saturating_sub(now_secs())));
    tokio::pin!(expiry);
    let mut shutdown = conn.state.shutdown.clone();
    let stopping = shutdown.changed();
    tokio::pin!(stopping);
    // The ping deadline: one timer per session, reset on each ping.
    let every = Duration::from_millis(conn.state.limits.ping_interval_ms);
    let pinging = !every.is_zero();
    let ping_at = sleep_until(Instant::now() + every);
    tokio::pin!(ping_at);
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut stopping => {
                return Err(End::Close(close::GOING_AWAY, "server shutting down".into()));
            }
            _ = &mut expiry => {
                return Err(End::Close(close::UNAUTHORIZED, "token expired".into()));
            }
            _ = &mut ping_at, if pinging => {
                if awaiting_pong {
                    conn.state.metrics.slow_consumers.inc();
                    return Err(End::Close(close::SLOW_CONSUMER, "no answer to the server's ping: reconnect to resume from your cursor".into()));
                }
                let r = within(conn.send_limit(), conn.ws.send(Message::Ping(Default::default()))).await;
                conn.outcome(r)?;
                awaiting_pong = true;
                ping_at.as_mut().reset(Instant::now() + every);
            }
            frame = rx.recv() => match frame {
                Ok(frame) => conn.forward(frame, rx).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(conn.slow()),
                // The hub dropped the channel: the server's model changed (a live migration), or
                // the tenant moved to another node.
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(End::Close(close::SCHEMA_CHANGED, conn.tenant.hub().reset_reason().into()));
                }
            },
            // Polled only while pushes are out: an idle channel is not polled on every frame.
            Some(reply) = replies.recv(), if conn.inflight > 0 => {
                conn.drain(rx).await?;
                Box::pin(handlers::push::answer(conn, *reply)).await?;
            }
            msg = conn.ws.next() => match msg {
                Some(Err(e)) => match too_big(&e, conn.state.limits.max_frame_bytes) {
                    Some(end) => return Err(end),
                    None => return Ok(()),
                },
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(Message::Text(text))) => Box::pin(handlers::dispatch(conn, &text)).await?,
                Some(Ok(Message::Binary(_))) => {
                    conn.error(&crate::error::Error::Protocol("binary frames are not part of the protocol".into())).await?
                }
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Ping(_))) => {}
            },
        }
    }
}
