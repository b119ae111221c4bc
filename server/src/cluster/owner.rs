//! The owner's side: answers other nodes' requests about a tenant it holds (on `moat.o.<tenant>.*`)
//! with the same code a local session runs, and hands its hub's frames to NATS ([`NatsRelay`]).

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::remote::INTEREST_MS;
use super::wire::{
    self, Call, CallAns, MigrateAns, MigrateReq, ModelAns, PushAns, PushReq, SyncAns, SyncReq, WireError,
};
use super::{Cluster, send_wait};
use crate::connection::End;
use crate::error::{Error, Result};
use crate::handlers::sync::{Job, Out, initial};
use crate::handlers::{customize, devices_frame, history, push};
use crate::hub::{Relay, SCHEMA_CHANGED};
use crate::metrics::Metrics;
use crate::protocol::close;
use crate::rules::Profile;
use crate::store::{Push, Store};

/// An owner's hub's way to the other nodes: each frame once, on its channel's subject.
#[derive(Debug)]
pub(crate) struct NatsRelay {
    client: async_nats::Client,
    tenant: String,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
}

impl NatsRelay {
    pub(super) fn new(client: &async_nats::Client, tenant: &str, metrics: &Arc<Metrics>) -> NatsRelay {
        NatsRelay {
            client: client.clone(),
            tenant: tenant.to_owned(),
            metrics: Arc::clone(metrics),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Publishes in order: a writer thread (the frames' publisher) waits for the client to take the
    /// message, so a batch's frames go out before the writer answers its pushes. A message larger than
    /// NATS carries goes in pieces, one after another on the subject.
    fn send(&self, subject: String, headers: Option<HeaderMap>, payload: Bytes) {
        let client = self.client.clone();
        let publish = async move {
            let mut headers = headers;
            let most = client.server_info().max_payload;
            for (piece, more) in wire::pieces(&payload, most) {
                let piece = payload.slice_ref(piece);
                // Only a piece with more to come needs headers of its own (nearly every message is
                // one piece: no copy).
                let headers = match more {
                    true => {
                        let mut h = headers.clone().unwrap_or_default();
                        h.insert(wire::HEADER_MORE, "1");
                        Some(h)
                    }
                    false => headers.take(),
                };
                let _ = match headers {
                    Some(h) => client.publish_with_headers(subject.clone(), h, piece).await,
                    None => client.publish(subject.clone(), piece).await,
                };
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => drop(self.runtime.spawn(publish)),
            Err(_) => self.runtime.block_on(publish),
        }
    }
}

impl Relay for NatsRelay {
    fn frame(&self, channel: &str, version: i64, text: Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(wire::HEADER_CHANNEL, channel);
        headers.insert(wire::HEADER_VERSION, version.to_string().as_str());
        self.metrics.cluster_frames_out.inc();
        self.send(wire::channel(&self.tenant, channel), Some(headers), text);
    }

    fn watermark(&self, version: i64) {
        self.send(wire::watermark(&self.tenant), None, version.to_string().into());
    }

    fn reset(&self, reason: &'static str) {
        let body: &'static [u8] = if reason == SCHEMA_CHANGED { b"schema" } else { b"moved" };
        self.send(wire::reset(&self.tenant), None, Bytes::from_static(body));
    }
}

/// Answers other nodes' requests about `store`'s tenant until aborted.
pub(super) async fn serve(cluster: Arc<Cluster>, store: Arc<Store>) -> Result<tokio::task::JoinHandle<()>> {
    let mut requests = cluster
        .client
        .subscribe(format!("moat.o.{}.*", store.tenant))
        .await
        .map_err(|e| Error::Unavailable(format!("subscribing for {}: {e}", store.tenant)))?;
    Ok(tokio::spawn(async move {
        // A request larger than NATS carries comes in pieces, put back together by its reply inbox.
        let mut joiner = wire::Joiner::default();
        while let Some(msg) = requests.next().await {
            let key = msg.reply.as_deref().unwrap_or_default();
            let Some(payload) = joiner.join(key, msg.headers.as_ref(), &msg.payload) else { continue };
            let (cluster, store) = (Arc::clone(&cluster), Arc::clone(&store));
            tokio::spawn(async move {
                cluster.metrics.cluster_requests_served.inc();
                store.touch();
                let op = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let answer = match op.as_str() {
                    "model" => {
                        Some(json(&ModelAns { schema_sql: store.models.get().schema.sql().to_owned() }))
                    }
                    "push" => Some(json(&push_for(&cluster, &store, &payload).await)),
                    "sync" => Some(json(&sync_for(&cluster, &store, &payload).await)),
                    "call" => call_for(&store, &payload).await.map(|a| json(&a)),
                    "migrate" => Some(json(&migrate_for(&store, &payload).await)),
                    _ => None,
                };
                if let (Some(answer), Some(reply)) = (answer, msg.reply) {
                    let _ = cluster.client.publish(reply, answer.into()).await;
                }
            });
        }
    }))
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("answers serialise")
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        let text = e.to_string();
        let message = text.strip_prefix(&format!("{}: ", e.code())).map(str::to_owned).unwrap_or(text);
        WireError { code: e.code().into(), message, retry: e.retryable() }
    }
}

/// The profile the claims (checked by the node that took the client's hello) have in the owner's model.
fn profile_of(store: &Store, claims: &crate::auth::Claims) -> Result<Profile> {
    store.models.get().rules.profile(claims)
}

/// A forwarded push: decoded against the owner's model, then queued and answered like a local one.
async fn push_for(cluster: &Cluster, store: &Arc<Store>, body: &[u8]) -> PushAns {
    let error = |e: &Error| PushAns::Error { error: e.into() };
    let req: PushReq = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(&Error::Protocol(format!("a forwarded push: {e}"))),
    };
    let model = store.models.get();
    let profile = match model.rules.profile(&req.claims) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let diff = match sqlite_ext::Diff::from_value(req.diff, &model.schema) {
        Ok(d) => d,
        Err(e) => {
            let (code, reason) = push::rejected(e);
            return PushAns::Done { outcome: crate::store::Outcome::Reject { code, reason } };
        }
    };
    let (reply, mut answer) = mpsc::channel(1);
    let push = Push { user: req.claims.sub.to_string(), profile, mutation_id: req.mutation_id, diff, reply };
    if let Err(e) = push::queue(store, push, send_wait(&cluster.limits)).await {
        return error(&e);
    }
    match answer.recv().await.map(|a| a.result) {
        Some(Ok(outcome)) => PushAns::Done { outcome },
        Some(Err(e)) => error(&e),
        None => error(&Error::Unavailable("the writer stopped".into())),
    }
}

/// Frames of a relayed initial sync, in batches of about [`RELAY_BATCH`] bytes (one frame per line):
/// each batch a request to the session's node, answered once it is on the socket (so a slow client
/// slows its own sync, and only its own).
struct RelayOut {
    client: async_nats::Client,
    deliver: String,
    batch: Vec<u8>,
}

/// Bytes of frames per relayed batch (NATS's default largest message is 1 MiB; a single frame larger
/// than NATS carries goes in pieces).
const RELAY_BATCH: usize = 64 * 1024;

impl Out for RelayOut {
    async fn text(&mut self, text: String) -> Result<(), End> {
        if !self.batch.is_empty() {
            self.batch.push(b'\n');
        }
        self.batch.extend_from_slice(text.as_bytes());
        match self.batch.len() >= RELAY_BATCH {
            true => self.flush().await,
            false => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = Bytes::from(std::mem::take(&mut self.batch));
        let most = self.client.server_info().max_payload;
        for (piece, more) in wire::pieces(&batch, most) {
            let mut headers = HeaderMap::new();
            if more {
                headers.insert(wire::HEADER_MORE, "1");
            }
            let request = async_nats::Request::new().payload(batch.slice_ref(piece)).headers(headers);
            if self.client.send_request(self.deliver.clone(), request).await.is_err() {
                return Err(End::Gone);
            }
        }
        Ok(())
    }
}

/// A relayed initial sync: the same catch-up or snapshot as a local session's.
async fn sync_for(cluster: &Cluster, store: &Arc<Store>, body: &[u8]) -> SyncAns {
    let req: SyncReq = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return SyncAns::Close { code: close::INTERNAL, reason: format!("a relayed sync: {e}") },
    };
    let model = store.models.get();
    if model.fingerprint != req.fingerprint {
        return SyncAns::Close { code: close::SCHEMA_CHANGED, reason: SCHEMA_CHANGED.into() };
    }
    let profile = match model.rules.profile(&req.claims) {
        Ok(p) => p,
        Err(e) => return SyncAns::Close { code: close::UNAUTHORIZED, reason: e.to_string() },
    };
    // From now on the channel's frames are published for the session's node too.
    store.hub.want_remote(&profile, INTEREST_MS);
    let job = Job {
        store: Arc::clone(store),
        model,
        profile,
        limits: Arc::clone(&cluster.limits),
        metrics: Arc::clone(&cluster.metrics),
        rows: req.rows,
    };
    let mut out = RelayOut { client: cluster.client.clone(), deliver: req.deliver, batch: Vec::new() };
    match initial(&job, &mut out, req.cursor).await {
        Ok(version) => SyncAns::Done { version },
        Err(End::Close(code, reason)) => SyncAns::Close { code, reason },
        Err(End::Gone) => SyncAns::Close { code: close::GOING_AWAY, reason: "the session went away".into() },
    }
}

/// An operator's live migration, asked through another node.
async fn migrate_for(store: &Arc<Store>, body: &[u8]) -> MigrateAns {
    let req: MigrateReq = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return MigrateAns::Failed {
                error: (&Error::Protocol(format!("a forwarded migration: {e}"))).into(),
            };
        }
    };
    match store.migrate(req.files, req.scope, req.allow_destructive).await {
        Ok(text) => MigrateAns::Done { text },
        Err(e) => MigrateAns::Failed { error: (&e).into() },
    }
}

/// A session's other requests; `None` for those that need no answer.
async fn call_for(store: &Arc<Store>, body: &[u8]) -> Option<CallAns> {
    let call: Call = serde_json::from_slice(body).ok()?;
    let unreadable =
        || CallAns::Close { code: close::INTERNAL, reason: "the server could not read its database".into() };
    let refused = |e: Error| CallAns::Close { code: close::UNAUTHORIZED, reason: e.to_string() };
    let frame = |text| CallAns::Frame { text };
    Some(match call {
        Call::History { claims, table, id } => match profile_of(store, &claims) {
            Ok(profile) => history::answer(store, store.models.get(), profile, table, id)
                .await
                .map_or_else(|_| unreadable(), frame),
            Err(e) => refused(e),
        },
        Call::Customize { claims, id, request } => match profile_of(store, &claims) {
            Ok(profile) => {
                let model = store.models.get();
                customize::answer(store, &model, &profile, &claims.sub, id, request)
                    .await
                    .map_or_else(|_| unreadable(), frame)
            }
            Err(e) => refused(e),
        },
        Call::Devices { claims } => match profile_of(store, &claims) {
            Ok(profile) => frame(devices_frame(store, &profile)),
            Err(e) => refused(e),
        },
        Call::Seen { claims, client_id, schema, device } => {
            store.devices.seen(
                &client_id,
                &claims.sub,
                &claims.role,
                schema.as_deref(),
                device.as_ref(),
                true,
            );
            return None;
        }
        Call::Gone { client_id } => {
            store.devices.gone(&client_id);
            return None;
        }
        Call::Interest { claims } => {
            if let Ok(profile) = profile_of(store, &claims) {
                store.hub.want_remote(&profile, INTEREST_MS);
            }
            return None;
        }
    })
}
