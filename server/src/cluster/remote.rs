//! A tenant another node owns, as this node serves it: the owner's model, a local hub that fans the
//! owner's frames out to this node's sockets, and requests to the owner for everything that reads or
//! writes the tenant's database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::wire::{
    self, Call, CallAns, MigrateAns, MigrateReq, ModelAns, PushAns, PushReq, SyncAns, SyncReq,
};
use super::{Cluster, send_wait};
use crate::auth::Claims;
use crate::config::Limits;
use crate::connection::{Conn, End};
use crate::error::{Error, Result};
use crate::hub::{Frame, Hub, MOVED, SCHEMA_CHANGED};
use crate::metrics::Metrics;
use crate::model::Models;
use crate::protocol::close;
use crate::store::{Outcome, PushReply};

/// How often this node tells an owner which of its channels it still has sessions on...
const INTEREST_EVERY: Duration = Duration::from_secs(10);
/// ...and how long the owner keeps sending a channel's frames without hearing so.
pub(super) const INTEREST_MS: u64 = 30_000;

/// Another node's tenant, served here.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) tenant: String,
    /// The node that holds its lease.
    pub(crate) owner: String,
    link: Arc<Link>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) models: Arc<Models>,
    /// This node's sessions of the tenant.
    pub(crate) connections: AtomicUsize,
    /// The owner's last watermark: every frame up to it has reached the hub.
    seen: watch::Receiver<i64>,
    /// Channels this node's sessions are on, with a token's claims for each (to tell the owner).
    interest: Arc<Mutex<HashMap<String, Claims>>>,
    listener: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    wait: Duration,
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The way to the owner, and what this node does when it is gone.
#[derive(Debug)]
struct Link {
    tenant: String,
    owner: String,
    client: async_nats::Client,
    leases: async_nats::jetstream::kv::Store,
    hub: Arc<Hub>,
    /// The owner let the tenant go or stopped answering: sessions reconnect and route again.
    dead: AtomicBool,
    /// While a request waits, how often the lease is read (a third of a lease's life).
    check_every: Duration,
}

impl Link {
    /// The owner is gone: this node's sessions of the tenant reconnect and find the new one.
    fn gone(&self) {
        if !self.dead.swap(true, Ordering::Relaxed) {
            self.hub.reset_for(MOVED);
        }
    }

    fn moving(&self) -> Error {
        Error::Unavailable(format!("{} is moving between server nodes; retry", self.tenant))
    }

    /// Whether the owner still holds the lease (`true` when the bucket cannot be read: not known).
    async fn holds(&self) -> bool {
        match self.leases.entry(&self.tenant).await {
            Ok(Some(e)) => {
                e.operation == async_nats::jetstream::kv::Operation::Put && e.value == self.owner.as_bytes()
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Asks the owner (`op`: `push`, `call`, `model`) and waits up to `wait`; meanwhile the lease is
    /// read now and then, so that an owner that stalled or was cut off is given up on as soon as its
    /// lease runs out, not at the end of the wait. A body larger than NATS carries goes in pieces.
    async fn ask(&self, op: &str, body: Vec<u8>, wait: Duration) -> Result<async_nats::Message> {
        let subject = wire::owner(&self.tenant, op);
        let most = self.client.server_info().max_payload;
        let ask = async {
            match most > 0 && body.len() > most {
                true => self.ask_in_pieces(subject, body.into(), most).await,
                false => self
                    .client
                    .request(subject, body.into())
                    .await
                    .map_err(|e| e.kind() == async_nats::client::RequestErrorKind::NoResponders),
            }
        };
        tokio::pin!(ask);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let first = tokio::time::Instant::now() + self.check_every;
        let mut check = tokio::time::interval_at(first, self.check_every);
        loop {
            tokio::select! {
                answer = &mut ask => return match answer {
                    Ok(m) => Ok(m),
                    Err(none) => {
                        if none || !self.holds().await {
                            self.gone();
                        }
                        Err(self.moving())
                    }
                },
                _ = &mut deadline => {
                    return Err(Error::Unavailable(format!("node {} did not answer in time; retry", self.owner)));
                }
                _ = check.tick() => if !self.holds().await {
                    self.gone();
                    return Err(self.moving());
                }
            }
        }
    }

    /// A request too large for one NATS message: its pieces, one after another, all answered to one
    /// inbox (the owner puts them back together by it). `Err(true)`: nobody serves the subject.
    async fn ask_in_pieces(
        &self,
        subject: String,
        body: bytes::Bytes,
        most: usize,
    ) -> std::result::Result<async_nats::Message, bool> {
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.map_err(|_| false)?;
        for (piece, more) in wire::pieces(&body, most) {
            let mut headers = async_nats::HeaderMap::new();
            if more {
                headers.insert(wire::HEADER_MORE, "1");
            }
            let piece = body.slice_ref(piece);
            let sent =
                self.client.publish_with_reply_and_headers(subject.clone(), inbox.clone(), headers, piece);
            sent.await.map_err(|_| false)?;
        }
        let answer = answers.next().await.ok_or(false)?;
        match answer.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            true => Err(true),
            false => Ok(answer),
        }
    }
}

impl Remote {
    /// Starts serving `tenant`, owned by `owner`: listens to its frames first (so nothing published
    /// after a session's initial sync is missed), then takes its model.
    pub(super) async fn start(cluster: &Arc<Cluster>, tenant: &str, owner: &str) -> Result<Arc<Remote>> {
        let client = cluster.client.clone();
        let frames = client
            .subscribe(wire::frames_of(tenant))
            .await
            .map_err(|e| Error::Unavailable(format!("subscribing to {tenant}: {e}")))?;
        let wait = send_wait(&cluster.limits);
        let hub = Arc::new(Hub::new(cluster.limits.channel_buffer, Arc::clone(&cluster.metrics)));
        let link = Arc::new(Link {
            tenant: tenant.to_owned(),
            owner: owner.to_owned(),
            client: client.clone(),
            leases: cluster.leases.clone(),
            hub: Arc::clone(&hub),
            dead: AtomicBool::new(false),
            check_every: Duration::from_millis(cluster.ttl_ms / 3),
        });
        let answer = link.ask("model", Vec::new(), wait).await?;
        let model: ModelAns = serde_json::from_slice(&answer.payload)
            .map_err(|e| Error::Internal(format!("node {owner}'s model of {tenant}: {e}")))?;
        let schema = sqlite_ext::Schema::from_sql(&model.schema_sql)
            .map_err(|e| Error::Internal(format!("node {owner}'s schema of {tenant}: {e}")))?;
        let tenants = &cluster.tenants;
        let models = Arc::new(Models::new(tenants.base().clone(), schema, tenants.rules_text().to_owned())?);
        let (seen_tx, seen) = watch::channel(0);
        let interest = Arc::new(Mutex::new(HashMap::new()));
        let listener = tokio::spawn(listen(Listener {
            frames,
            hub: Arc::clone(&hub),
            seen: seen_tx,
            link: Arc::clone(&link),
            interest: Arc::clone(&interest),
            client: client.clone(),
            tenant: tenant.to_owned(),
            metrics: Arc::clone(&cluster.metrics),
            joiner: wire::Joiner::default(),
        }));
        tracing::info!(node = %cluster.node, tenant, owner, "serving a tenant another node owns");
        Ok(Arc::new(Remote {
            tenant: tenant.to_owned(),
            owner: owner.to_owned(),
            link,
            hub,
            models,
            connections: AtomicUsize::new(0),
            seen,
            interest,
            listener,
            metrics: Arc::clone(&cluster.metrics),
            wait,
        }))
    }

    /// Whether the owner still serves the tenant (as far as this node knows).
    pub(super) fn alive(&self) -> bool {
        !self.link.dead.load(Ordering::Relaxed)
    }

    /// The owner is gone: this node's sessions of the tenant reconnect and find the new one.
    pub(super) fn gone(&self) {
        self.link.gone();
    }

    /// Forwards a push to the owner; the answer goes to `replies` like a local writer's, after the
    /// frames of its version have reached this node's hub (a writer's own diff before its ack).
    pub(crate) fn push(
        &self,
        claims: &Claims,
        mutation_id: String,
        diff: &sqlite_ext::Diff,
        replies: mpsc::Sender<Box<PushReply>>,
        limits: &Limits,
    ) {
        self.metrics.cluster_pushes_forwarded.inc();
        let body = PushReq {
            claims: claims.clone(),
            mutation_id: mutation_id.clone(),
            diff: serde_json::to_value(diff).expect("diffs serialise"),
        };
        let body = serde_json::to_vec(&body).expect("pushes serialise");
        let wait = Duration::from_millis(limits.send_timeout_ms.max(1000)) + self.wait;
        let (mut seen, link) = (self.seen.clone(), Arc::clone(&self.link));
        tokio::spawn(async move {
            let result = match link.ask("push", body, wait).await {
                Ok(answer) => match serde_json::from_slice::<PushAns>(&answer.payload) {
                    Ok(PushAns::Done { outcome }) => Ok(outcome),
                    Ok(PushAns::Error { error }) => Err(Error::from_wire(&error.code, error.message)),
                    Err(e) => Err(Error::Internal(format!("node {}'s answer to a push: {e}", link.owner))),
                },
                Err(e) => Err(e),
            };
            if let Ok(Outcome::Ack { version: Some(v), .. }) = &result {
                let v = *v;
                let _ = tokio::time::timeout(Duration::from_secs(2), seen.wait_for(|w| *w >= v)).await;
            }
            let _ = replies.send(Box::new(PushReply { mutation_id, result })).await;
        });
    }

    /// Runs the session's initial sync on the owner, writing each frame it sends to the socket;
    /// returns the version the client has after it.
    pub(crate) async fn sync(
        self: Arc<Self>,
        conn: &mut Conn,
        cursor: Option<i64>,
        rows: bool,
    ) -> Result<i64, End> {
        self.metrics.cluster_syncs_relayed.inc();
        self.interest
            .lock()
            .expect("interest lock")
            .insert(conn.profile().channel.clone(), conn.claims.clone());
        let moving = || End::Close(close::SCHEMA_CHANGED, MOVED.into());
        let client = &self.link.client;
        let deliver = client.new_inbox();
        let mut parts = client.subscribe(deliver.clone()).await.map_err(|_| moving())?;
        let req = SyncReq {
            claims: conn.claims.clone(),
            cursor,
            deliver,
            fingerprint: conn.model.fingerprint.clone(),
            rows,
        };
        let body = serde_json::to_vec(&req).expect("sync requests serialise");
        let ask = client.send_request(
            wire::owner(&self.tenant, "sync"),
            async_nats::Request::new().payload(body.into()).timeout(None),
        );
        tokio::pin!(ask);
        let mut joiner = wire::Joiner::default();
        loop {
            let next = tokio::time::timeout(self.wait * 3, async {
                tokio::select! {
                    biased;
                    part = parts.next() => Err(part),
                    answer = &mut ask => Ok(answer),
                }
            });
            match next.await {
                Err(_) => return Err(moving()),
                Ok(Err(None)) => return Err(moving()),
                Ok(Err(Some(part))) => {
                    // Frames, one per line (JSON text has no raw newline), perhaps in pieces.
                    if let Some(batch) = joiner.join("", part.headers.as_ref(), &part.payload) {
                        let text = std::str::from_utf8(&batch).map_err(|_| moving())?;
                        for frame in text.split('\n') {
                            conn.send_text(frame.to_owned()).await?;
                        }
                    }
                    if let Some(reply) = part.reply {
                        let _ = client.publish(reply, Vec::new().into()).await;
                    }
                }
                Ok(Ok(Ok(answer))) => {
                    return match serde_json::from_slice::<SyncAns>(&answer.payload) {
                        Ok(SyncAns::Done { version }) => Ok(version),
                        Ok(SyncAns::Close { code, reason }) => Err(End::Close(code, reason)),
                        Err(_) => Err(moving()),
                    };
                }
                Ok(Ok(Err(e))) => {
                    if e.kind() == async_nats::client::RequestErrorKind::NoResponders {
                        self.gone();
                    }
                    return Err(moving());
                }
            }
        }
    }

    /// Asks the owner and sends its answer on the socket.
    pub(crate) async fn call_and_send(self: Arc<Self>, conn: &mut Conn, call: Call) -> Result<(), End> {
        let body = serde_json::to_vec(&call).expect("calls serialise");
        let answer = match self.link.ask("call", body, self.wait).await {
            Ok(answer) => answer,
            Err(e) => return conn.error(&e).await,
        };
        match serde_json::from_slice::<CallAns>(&answer.payload) {
            Ok(CallAns::Frame { text }) => conn.send_text(text).await,
            Ok(CallAns::Close { code, reason }) => Err(End::Close(code, reason)),
            Err(e) => conn.error(&Error::Internal(format!("node {}'s answer: {e}", self.owner))).await,
        }
    }

    /// Has the owner run an operator's live migration of the tenant; its progress text.
    pub(crate) async fn migrate(
        &self,
        files: Vec<crate::migrate::Migration>,
        scope: crate::migrate::Scope,
        allow_destructive: bool,
    ) -> Result<String> {
        let body = serde_json::to_vec(&MigrateReq { files, scope, allow_destructive }).expect("json");
        // A migration may rewrite a big tenant: minutes, not the sessions' seconds.
        let answer = self.link.ask("migrate", body, Duration::from_secs(3600)).await?;
        match serde_json::from_slice::<MigrateAns>(&answer.payload) {
            Ok(MigrateAns::Done { text }) => Ok(text),
            Ok(MigrateAns::Failed { error }) => Err(Error::from_wire(&error.code, error.message)),
            Err(e) => Err(Error::Internal(format!("node {}'s answer to a migration: {e}", self.owner))),
        }
    }

    /// Tells the owner something that needs no answer (a device connected, reported, went away).
    pub(crate) fn tell(&self, call: Call) {
        let body = serde_json::to_vec(&call).expect("calls serialise");
        let (client, subject) = (self.link.client.clone(), wire::owner(&self.tenant, "call"));
        tokio::spawn(async move {
            let _ = client.publish(subject, body.into()).await;
        });
    }
}

struct Listener {
    frames: async_nats::Subscriber,
    hub: Arc<Hub>,
    seen: watch::Sender<i64>,
    link: Arc<Link>,
    interest: Arc<Mutex<HashMap<String, Claims>>>,
    client: async_nats::Client,
    tenant: String,
    metrics: Arc<Metrics>,
    joiner: wire::Joiner,
}

/// Takes the owner's frames in, in the order it published them, and keeps its interest alive.
async fn listen(mut l: Listener) {
    let mut refresh = tokio::time::interval(INTEREST_EVERY);
    loop {
        tokio::select! {
            msg = l.frames.next() => {
                let Some(msg) = msg else { break };
                let subject: &str = &msg.subject;
                if subject.ends_with(".w") {
                    let v: i64 = std::str::from_utf8(&msg.payload).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    l.seen.send_if_modified(|w| (v > *w).then(|| *w = v).is_some());
                } else if subject.ends_with(".reset") {
                    let reason = match &msg.payload[..] {
                        b"schema" => SCHEMA_CHANGED,
                        _ => MOVED,
                    };
                    l.link.dead.store(true, Ordering::Relaxed);
                    l.hub.reset_for(reason);
                    return;
                } else if let Some(headers) = &msg.headers {
                    let channel = headers.get(wire::HEADER_CHANNEL).map(|v| v.as_str().to_owned());
                    let version = headers.get(wire::HEADER_VERSION).and_then(|v| v.as_str().parse().ok());
                    let (Some(channel), Some(version)) = (channel, version) else { continue };
                    // A frame too large for one NATS message comes in pieces.
                    let Some(whole) = l.joiner.join(&channel, Some(headers), &msg.payload) else { continue };
                    if std::str::from_utf8(&whole).is_err() {
                        continue;
                    }
                    l.metrics.cluster_frames_in.inc();
                    let frame = Frame::new(version, &whole);
                    l.hub.deliver(&channel, frame);
                }
            }
            _ = refresh.tick() => {
                let wanted: Vec<Claims> = {
                    let mut interest = l.interest.lock().expect("interest lock");
                    interest.retain(|channel, _| l.hub.has_subscribers(channel));
                    interest.values().cloned().collect()
                };
                for claims in wanted {
                    let body = serde_json::to_vec(&Call::Interest { claims }).expect("calls serialise");
                    let _ = l.client.publish(wire::owner(&l.tenant, "call"), body.into()).await;
                }
            }
        }
    }
    // The subscription ended (the NATS connection closed for good): sessions reconnect.
    l.link.gone();
}
