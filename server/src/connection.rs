//! One WebSocket connection: hello and authentication, catch-up or snapshot, then the live loop
//! that forwards the channel's frames and dispatches the client's frames to their handlers.
//!
//! The socket is written by this task (its own frames) and by its channel's fan-out (channel frames),
//! always under the sink's lock, a frame at a time, so the socket has one order: a writer's own diff
//! is always sent before its ack (the writer thread publishes before it answers, and this loop hands
//! the socket the channel's newer frames before it sends an ack).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::auth::{Claims, now_secs};
use crate::cluster::Backend;
use crate::handlers;
use crate::hub::Subscription;
use crate::model::Model;
use crate::protocol::{ClientMsg, PROTOCOL_VERSION, SchemaInfo, ServerMsg, close};
use crate::rules::Profile;
use crate::server::AppState;
use crate::socket::{Failed, Recv, SinkEvent, Socket};
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
    /// The device's id (the tenant's device registry's copy).
    pub(crate) client_id: Arc<str>,
    /// The session's place in its channel; its id is its place in the server's sessions too.
    sub: Subscription,
    pub(crate) inflight: usize,
    /// Where the answers to this session's pushes come (made at its first push: a session that only
    /// reads holds no channel).
    replies: Option<mpsc::Sender<Box<PushReply>>>,
    /// The receiving end of `replies`.
    answers: Option<mpsc::Receiver<Box<PushReply>>>,
}

impl Conn {
    /// The user's profile: its channel's, shared by every session of the profile.
    pub(crate) fn profile(&self) -> &Arc<Profile> {
        self.sub.profile()
    }

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
        let answers = &mut self.answers;
        self.replies
            .get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(limit);
                *answers = Some(rx);
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

impl Drop for Conn {
    /// The tenant counts one session less, the device is marked disconnected, and the session leaves
    /// the server's sessions (its subscription leaves its channel after this).
    fn drop(&mut self) {
        self.tenant.connections().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.tenant.gone(&self.client_id);
        self.state.sessions.leave(self.sub.id());
    }
}

impl handlers::sync::Out for Conn {
    async fn text(&mut self, text: String) -> Result<(), End> {
        self.send_text(text).await
    }
}

/// How the opening of a session ended.
enum Opened {
    /// The HTTP upgrade failed: there is no socket.
    NoSocket,
    /// Refused before the session started (hello, token, tenant, limits).
    Refused(Socket, End),
    /// Ended during its welcome or initial sync.
    Ended(Conn, End),
    /// Live.
    Live(Conn),
}

/// Serves one WebSocket from its upgrade until it ends. The upgrade, hello, admission, initial sync
/// and close run boxed (large and short-lived); what an idle session keeps in memory is its
/// [`Conn`] and the few words of [`live`]'s loop. Not an `async fn`: its arguments would stay in
/// the session's future for its whole life; here only the boxed opening's pointer does.
pub(crate) fn run(upgrade: Upgrade, state: AppState) -> impl Future<Output = ()> + Send {
    let open = Box::pin(open_or_refuse(upgrade, state));
    async move {
        let Some(mut conn) = open.await else { return };
        let end = live(&mut conn).await.err().unwrap_or(End::Gone);
        Box::pin(finish(&mut conn.socket, end)).await;
        let metrics = Arc::clone(&conn.state.metrics);
        drop(conn);
        metrics.connections.add(-1);
    }
}

/// [`open`], closing the socket of a session refused or ended before it went live.
async fn open_or_refuse(upgrade: Upgrade, state: AppState) -> Option<Conn> {
    let metrics = Arc::clone(&state.metrics);
    match open(upgrade, state).await {
        Opened::Live(session) => return Some(session),
        Opened::NoSocket => return None,
        Opened::Refused(mut socket, end) => finish(&mut socket, end).await,
        Opened::Ended(mut conn, end) => finish(&mut conn.socket, end).await,
    }
    metrics.connections.add(-1);
    None
}

/// Closes the socket: with a close frame saying why, unless the peer is gone.
async fn finish(socket: &mut Socket, end: End) {
    let frame = match end {
        End::Close(code, reason) => {
            tracing::debug!(code, %reason, "closing connection");
            Some(ws::close_frame(code, &reason))
        }
        End::Gone => None,
    };
    socket.close(frame).await;
}

/// Where a session's socket comes from.
pub(crate) enum Upgrade {
    /// The HTTP server's upgrade of the connection (TLS, or a handshake it answered).
    Http(hyper::upgrade::OnUpgrade),
    /// A plain connection whose handshake the server answered itself ([`ws::opening`]).
    Plain(tokio::net::TcpStream),
}

/// The upgrade, the hello, admission, the subscription, the welcome and the initial sync.
async fn open(upgrade: Upgrade, state: AppState) -> Opened {
    let mut socket = match upgrade {
        Upgrade::Http(upgrade) => match upgrade.await {
            Ok(upgraded) => Socket::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "a WebSocket upgrade failed");
                return Opened::NoSocket;
            }
        },
        Upgrade::Plain(tcp) => Socket::plain(tcp),
    };
    state.metrics.connections.add(1);
    let Hello { mut claims, client_id, cursors, schema: client_schema, device, rows } =
        match hello(&mut socket, &state).await {
            Ok(hello) => hello,
            Err(end) => return Opened::Refused(socket, end),
        };
    // Each step boxed: a session waiting for its hello holds only that step's future.
    let (tenant, model, profile) = match Box::pin(admit(&state, &claims, client_schema.is_none())).await {
        Ok(admitted) => admitted,
        Err(end) => return Opened::Refused(socket, end),
    };
    let client_id = tenant.seen(&mut claims, &client_id, client_schema.as_deref(), device);
    let id = state.sessions.register(&socket.sink, claims.exp.saturating_sub(now_secs()));
    let sub = tenant.hub().subscribe(&profile, &socket.sink, id);
    let mut conn = Conn {
        socket,
        state,
        tenant,
        claims,
        model,
        client_id,
        sub,
        inflight: 0,
        replies: None,
        answers: None,
    };
    // A live migration between this session's hello and its subscription: start again on the new model.
    if !Arc::ptr_eq(&conn.model, &conn.tenant.models().get()) {
        let end = End::Close(close::SCHEMA_CHANGED, "the server's schema changed; reconnect".into());
        return Opened::Ended(conn, end);
    }
    tracing::info!(
        user = %conn.claims.sub, tenant = %conn.claims.tenant, role = %conn.claims.role,
        client_id = %conn.client_id, channel = %conn.profile().channel, "connected"
    );
    match Box::pin(start(&mut conn, cursors, client_schema, rows)).await {
        Ok(sent) => {
            conn.sub.go_live(&conn.socket.sink, sent);
            Opened::Live(conn)
        }
        Err(end) => Opened::Ended(conn, end),
    }
}

/// After a good hello: the tenant's database (the token's tenant; nothing else is ever read for this
/// session), its model and the user's profile in it, within the tenant's connection limit. In a
/// cluster the tenant is this node's if it holds its lease, else the owner's through NATS.
async fn admit(
    state: &AppState,
    claims: &Claims,
    names_no_schema: bool,
) -> Result<(Backend, Arc<Model>, Profile), End> {
    // Boxed, so that an admission's future is small (a wave of handshakes holds one each): a tenant
    // already open here needs no waiting at all.
    let found = match &state.cluster {
        Some(cluster) => Box::pin(cluster.route(&claims.tenant)).await,
        None => match state.tenants.get_open(&claims.tenant) {
            Some(open) => Ok(Some(open)),
            None => Box::pin(state.tenants.get(&claims.tenant)).await,
        }
        .map(|s| s.map(Backend::Local)),
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
    let text = match timeout(wait, socket.recv(state.limits.max_frame_bytes)).await {
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
    let claims = Box::pin(state.auth.verify(&token))
        .await
        .map_err(|e| End::Close(close::UNAUTHORIZED, e.to_string()))?;
    let schema = schema.map(|s| s.into_owned());
    let rows = accept.iter().any(|a| a == sqlite_ext::protocol::ACCEPT_SNAPSHOT_ROWS);
    Ok(Hello { claims, client_id: client_id.into_owned(), cursors, schema, device, rows })
}

/// The welcome, revokes and the initial sync; returns the channel version the client has after it.
async fn start(
    conn: &mut Conn,
    cursors: Cursors,
    client_schema: Option<String>,
    rows: bool,
) -> Result<i64, End> {
    let profile = conn.profile().clone();
    let claims = conn.claims.clone();
    let model = Arc::clone(&conn.model);
    conn.send(&ServerMsg::Welcome {
        protocol: PROTOCOL_VERSION,
        user: claims.sub.as_ref().into(),
        tenant: claims.tenant.as_ref().into(),
        role: claims.role.as_ref().into(),
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

/// What wakes a live session.
enum Event {
    Sink(SinkEvent),
    Reply(Box<PushReply>),
    Read(Result<Incoming, Recv>),
}

/// The next thing a live session has to do, in this order: close or write what its sink holds,
/// send a push's answer, read the client. Registers the session to be woken for each.
fn next_event(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Event> {
    if let Poll::Ready(event) = conn.socket.sink.poll_event(cx) {
        return Poll::Ready(Event::Sink(event));
    }
    // Polled only while pushes are out.
    if conn.inflight > 0
        && let Some(rx) = &mut conn.answers
        && let Poll::Ready(Some(reply)) = rx.poll_recv(cx)
    {
        return Poll::Ready(Event::Reply(reply));
    }
    conn.socket.poll_recv(cx, conn.state.limits.max_frame_bytes).map(Event::Read)
}

/// What a live session's event leaves to do.
enum Step<'a> {
    /// Nothing: wait for the next event.
    Done,
    /// The session ends (`Ok`: the client left).
    End(Result<(), End>),
    /// Work that has to wait (a write, a handler): boxed, so the loop's own state stays a few words.
    Wait(Pin<Box<dyn Future<Output = Result<(), End>> + Send + 'a>>),
}

/// The live loop. Between events it holds no future of its own: a session's pings, token expiry
/// and the server's shutdown come through its sink (from [`Sessions`](crate::socket::Sessions)).
/// What an event asks is started by [`step`] and anything that has to wait is boxed, so the task of
/// an idle session is its [`Conn`] and a few words (the whole session's future is 264 bytes, a
/// 384-byte task; `docs/server.md`).
async fn live(conn: &mut Conn) -> Result<(), End> {
    loop {
        let event = std::future::poll_fn(|cx| next_event(conn, cx)).await;
        match step(conn, event) {
            Step::Done => {}
            Step::End(end) => return end,
            Step::Wait(work) => work.await?,
        }
    }
}

/// Starts what a live session's event asks.
fn step(conn: &mut Conn, event: Event) -> Step<'_> {
    match event {
        // The hub, the ticker or the shutdown closing the session (a live migration, the tenant
        // moving, a subscriber too far behind, an unanswered ping, the token's expiry).
        Event::Sink(SinkEvent::End(code, reason)) => Step::End(Err(End::Close(code, reason.into()))),
        // Frames the socket could not take at once, or the ticker's ping.
        Event::Sink(SinkEvent::Flush) => Step::Wait(Box::pin(conn.flush())),
        Event::Reply(reply) => {
            // The writer published before it answered: its diff goes out before its ack.
            conn.sub.catch_up(&conn.socket.sink);
            Step::Wait(Box::pin(handlers::push::answer(conn, *reply)))
        }
        Event::Read(Err(Recv::Bad(bad))) => Step::End(Err(refused(bad, conn.state.limits.max_frame_bytes))),
        Event::Read(Err(Recv::Gone) | Ok(Incoming::Close(_))) => Step::End(Ok(())),
        Event::Read(Ok(Incoming::Text(text))) => {
            Step::Wait(Box::pin(async move { handlers::dispatch(conn, &text).await }))
        }
        Event::Read(Ok(Incoming::Binary)) => Step::Wait(Box::pin(async move {
            let e = crate::error::Error::Protocol("binary frames are not part of the protocol".into());
            conn.error(&e).await
        })),
        Event::Read(Ok(Incoming::Pong)) => {
            conn.socket.sink.pong();
            Step::Done
        }
        Event::Read(Ok(Incoming::Ping(payload))) => {
            conn.socket.put([ws::frame(ws::PONG, &payload)]);
            Step::Wait(Box::pin(conn.flush()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokio's task is a 32-byte header, 16 bytes of core, the future behind a word of stage tag and
    /// a 48-byte trailer, rounded up to 128 bytes: a session future of at most 280 bytes makes a
    /// 384-byte task (at 376 bytes it was 512, ~0.13 KB more per idle connection).
    #[tokio::test]
    async fn a_sessions_task_fits_in_three_of_tokios_cache_line_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data: dir.path().join("data"),
            web_root: dir.path().join("no-web"),
            auth: crate::config::AuthConfig {
                hs256_secret: Some("a test secret, long enough".into()),
                ..Default::default()
            },
            ..crate::config::Config::default()
        };
        let server = crate::server::Server::open(&config).unwrap();
        let session = run(Upgrade::Http(hyper::upgrade::on(hyper::Request::new(()))), server.state().clone());
        let size = std::mem::size_of_val(&session);
        assert!(size <= 280, "a session's future is {size} bytes");
    }
}
