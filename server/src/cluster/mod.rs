//! Cluster mode (`moat serve --cluster nats://… --node NAME`): several nodes share the data
//! directory (a shared volume) and a NATS server, and any node serves any client.
//!
//! - **One writer per tenant**: a tenant's database is written only by the node holding its lease, a
//!   key in JetStream's key-value bucket `moat_leases` (tenant → node). The bucket's `max_age` is the
//!   lease's life; the owner renews each lease every third of it, on the lease's revision (so a lease
//!   somebody else took is never renewed). A node commits to a tenant only until a little before its
//!   lease could have run out, counted from when it asked (`Store::check_lease`), so a node that
//!   stops renewing (cut off, stalled) stops writing before another node can take the lease. Its
//!   file lock on the tenant's database is a second fence: a new owner opens the file only once the
//!   old one has closed it.
//! - **Any node serves any client** (`Cluster::route`): a session whose tenant this node owns runs
//!   as on a single node; else (`remote`) its pushes, initial sync, history, customizations and
//!   device reports go to the owner over NATS request/reply (`owner` answers them), and its channel
//!   frames come from the owner's subject per channel, encoded once by the owner, sent once per node,
//!   fanned out to this node's sockets by its own hub.
//! - **Nobody owns it yet**: the first node that needs a tenant takes its lease. `moat node drain`
//!   (`Cluster::drain`) makes a node let go of its leases, one tenant at a time, and hand each to a
//!   node that is not draining.
//!
//! The subjects and bodies are in `wire`; `docs/scaling.md` has the topology and failure modes.

mod owner;
mod remote;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use sqlite_ext::protocol::DeviceReport;

pub(crate) use self::remote::Remote;
pub(crate) use self::wire::Call;
pub use self::wire::Moved;
use crate::auth::Claims;
use crate::config::{ClusterConfig, Limits};
use crate::error::{Error, Result};
use crate::hub::{Hub, MOVED, mono_ms};
use crate::metrics::Metrics;
use crate::model::Models;
use crate::store::Store;
use crate::tenants::Tenants;

/// A session's tenant: this node's database, or the owner's through NATS.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Local(Arc<Store>),
    Remote(Arc<Remote>),
}

impl Backend {
    /// The channels this node's sessions of the tenant subscribe to.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        match self {
            Backend::Local(s) => &s.hub,
            Backend::Remote(r) => &r.hub,
        }
    }

    /// The tenant's schema and rules.
    pub(crate) fn models(&self) -> &Arc<Models> {
        match self {
            Backend::Local(s) => &s.models,
            Backend::Remote(r) => &r.models,
        }
    }

    /// This node's open sessions of the tenant.
    pub(crate) fn connections(&self) -> &AtomicUsize {
        match self {
            Backend::Local(s) => &s.connections,
            Backend::Remote(r) => &r.connections,
        }
    }

    /// A device connected (with its hello's schema and report) or reported. Returns its client id,
    /// and `claims` hold the texts the tenant keeps for every device (user, role, tenant) rather
    /// than copies of their own: a session keeps them for its whole life.
    pub(crate) fn seen(
        &self,
        claims: &mut Claims,
        client_id: &str,
        schema: Option<&str>,
        device: Option<DeviceReport>,
    ) -> Arc<str> {
        match self {
            Backend::Local(s) => {
                let shared =
                    s.devices.seen(client_id, &claims.sub, &claims.role, schema, device.as_ref(), true);
                s.touch();
                (claims.sub, claims.role) = (shared.user, shared.role);
                claims.tenant = Arc::clone(&s.tenant);
                shared.client_id
            }
            Backend::Remote(r) => {
                r.tell(Call::Seen {
                    claims: claims.clone(),
                    client_id: client_id.to_owned(),
                    schema: schema.map(str::to_owned),
                    device,
                });
                Arc::from(client_id)
            }
        }
    }

    /// A device's session ended.
    pub(crate) fn gone(&self, client_id: &str) {
        match self {
            Backend::Local(s) => {
                s.devices.gone(client_id);
                s.touch();
            }
            Backend::Remote(r) => r.tell(Call::Gone { client_id: client_id.to_owned() }),
        }
    }
}

/// A tenant this node holds the lease of.
#[derive(Debug)]
struct Owned {
    store: Arc<Store>,
    /// The lease's revision in the bucket (what the next renewal must name).
    revision: u64,
    /// Answers other nodes' requests about the tenant.
    service: tokio::task::JoinHandle<()>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.service.abort();
    }
}

/// This node's place in the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) node: String,
    client: async_nats::Client,
    leases: kv::Store,
    /// A lease's life, and how long before its end this node stops writing.
    ttl_ms: u64,
    margin_ms: u64,
    tenants: Arc<Tenants>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    owned: Mutex<HashMap<String, Owned>>,
    remotes: Mutex<HashMap<String, Arc<Remote>>>,
    /// One routing decision at a time (taking a lease, starting a remote tenant).
    routing: tokio::sync::Mutex<()>,
    /// Letting go of every tenant, and taking none.
    draining: AtomicBool,
    /// The queue subscription through which nodes hand this one tenants nobody holds.
    acquirer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn nats<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Unavailable(format!("{what}: {e}"))
}

impl Cluster {
    /// Connects to NATS, opens (or makes) the lease bucket, and starts renewing leases and answering
    /// the node's requests.
    pub(crate) async fn join(
        config: &ClusterConfig,
        tenants: Arc<Tenants>,
        limits: Arc<Limits>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Cluster>> {
        let url = config.url.as_deref().ok_or_else(|| Error::Config("cluster: url is not set".into()))?;
        let node = config
            .node
            .clone()
            .ok_or_else(|| Error::Config("cluster: a node name is needed (--node)".into()))?;
        crate::tenants::check_name(&node).map_err(|_| {
            Error::Config(format!("{node:?} is not a node name: 1 to 63 of a-z, 0-9, - and _"))
        })?;
        let ttl = Duration::from_secs(config.lease_secs.max(3));
        let client = async_nats::ConnectOptions::new()
            .name(format!("moat-{node}"))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| Error::Config(format!("cluster: cannot connect to {url}: {e}")))?;
        let leases = lease_bucket(&client, ttl).await?;
        let ttl_ms = ttl.as_millis() as u64;
        let cluster = Arc::new(Cluster {
            node,
            client,
            leases,
            ttl_ms,
            margin_ms: (ttl_ms / 5).max(1000),
            tenants,
            limits,
            metrics,
            owned: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            routing: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            acquirer: Mutex::new(None),
        });
        tokio::spawn(Arc::clone(&cluster).keep_leases());
        let drains = cluster.client.subscribe(wire::drain(&cluster.node)).await.map_err(nats("subscribe"))?;
        tokio::spawn(Arc::clone(&cluster).answer_drains(drains));
        let acquires = cluster
            .client
            .queue_subscribe(wire::ACQUIRE, wire::ACQUIRE_GROUP.into())
            .await
            .map_err(nats("subscribe"))?;
        *cluster.acquirer.lock().expect("cluster lock") =
            Some(tokio::spawn(Arc::clone(&cluster).answer_acquires(acquires)));
        tracing::info!(node = %cluster.node, url, lease_secs = ttl.as_secs(), "joined the cluster");
        Ok(cluster)
    }

    /// Whether the NATS connection is up (for `/readyz`).
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Tenants this node holds, and tenants it serves for their owners (for the metrics).
    pub(crate) fn figures(&self) -> (usize, usize) {
        (self.owned.lock().expect("cluster lock").len(), self.remotes.lock().expect("cluster lock").len())
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn known(&self, tenant: &str) -> Option<Backend> {
        if let Some(o) = self.owned.lock().expect("cluster lock").get(tenant) {
            o.store.touch();
            return Some(Backend::Local(Arc::clone(&o.store)));
        }
        let mut remotes = self.remotes.lock().expect("cluster lock");
        match remotes.get(tenant) {
            Some(r) if r.alive() => Some(Backend::Remote(Arc::clone(r))),
            Some(_) => {
                remotes.remove(tenant);
                None
            }
            None => None,
        }
    }

    /// Where a session of `tenant` is served from: this node when it holds the lease (taking it when
    /// nobody does), else the owner. `None`: there is no such tenant.
    pub(crate) async fn route(self: &Arc<Self>, tenant: &str) -> Result<Option<Backend>> {
        if let Some(b) = self.known(tenant) {
            return Ok(Some(b));
        }
        if crate::tenants::check_name(tenant).is_err() || !self.tenants.exists(tenant)? {
            return Ok(None);
        }
        let _one = self.routing.lock().await;
        for _ in 0..8 {
            if let Some(b) = self.known(tenant) {
                return Ok(Some(b));
            }
            let entry = self.leases.entry(tenant).await.map_err(nats("reading a lease"))?;
            let holder = entry
                .filter(|e| e.operation == kv::Operation::Put)
                .map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.revision));
            match holder {
                // This node's lease from before a restart (node names are unique): take it again.
                Some((node, revision)) if node == self.node => {
                    if self.draining() {
                        return Err(Error::Unavailable(format!("{tenant} is moving to another node")));
                    }
                    let at = mono_ms();
                    if let Ok(revision) = self.leases.update(tenant, node.into_bytes().into(), revision).await
                    {
                        return self.own(tenant, revision, at).await.map(Some);
                    }
                }
                Some((node, _)) => {
                    let remote = Remote::start(self, tenant, &node).await?;
                    self.remotes.lock().expect("cluster lock").insert(tenant.to_owned(), Arc::clone(&remote));
                    return Ok(Some(Backend::Remote(remote)));
                }
                // A draining node takes nothing: another node takes the tenant, then it is remote.
                None if self.draining() => {
                    if self.hand_over(tenant).await.is_none() {
                        return Err(Error::Unavailable(format!("no node can take {tenant} now")));
                    }
                }
                None => {
                    let at = mono_ms();
                    if let Ok(revision) =
                        self.leases.create(tenant, self.node.clone().into_bytes().into()).await
                    {
                        return self.own(tenant, revision, at).await.map(Some);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(Error::Unavailable(format!("{tenant}'s lease keeps changing hands")))
    }

    /// Opens a tenant whose lease this node just took (`at`: when it asked), and starts answering
    /// other nodes about it.
    async fn own(self: &Arc<Self>, tenant: &str, revision: u64, at: u64) -> Result<Backend> {
        let store = match self.tenants.get(tenant).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Error::Config(format!("there is no tenant {tenant}"))),
            Err(e) => {
                let _ = self.leases.delete_expect_revision(tenant, Some(revision)).await;
                return Err(e);
            }
        };
        // Opening may have waited for the previous owner to close the file: renew before the first
        // commit, and count the lease from this renewal.
        let (at, revision) = if mono_ms() - at > self.ttl_ms / 3 {
            let again = mono_ms();
            match self.leases.update(tenant, self.node.clone().into_bytes().into(), revision).await {
                Ok(revision) => (again, revision),
                Err(e) => {
                    self.tenants.forget_for(tenant, MOVED);
                    return Err(Error::Unavailable(format!(
                        "{tenant}'s lease ran out while its file opened: {e}"
                    )));
                }
            }
        } else {
            (at, revision)
        };
        store.lease_until.store(at + self.ttl_ms - self.margin_ms, Ordering::Relaxed);
        let relay: Arc<dyn crate::hub::Relay> =
            Arc::new(owner::NatsRelay::new(&self.client, tenant, &self.metrics));
        store.hub.set_relay(Some(Arc::clone(&relay)));
        let service = owner::serve(Arc::clone(self), Arc::clone(&store)).await?;
        // Other nodes' sessions of the tenant were served by the previous owner: they reconnect from
        // their cursors (frames the previous owner committed but never published, if it died, are
        // in their catch-up).
        relay.reset(MOVED);
        tracing::info!(node = %self.node, tenant, "took the tenant's lease");
        self.owned
            .lock()
            .expect("cluster lock")
            .insert(tenant.to_owned(), Owned { store: Arc::clone(&store), revision, service });
        Ok(Backend::Local(store))
    }

    /// Renews every lease this node holds, every third of a lease's life; lets go of a tenant whose
    /// lease somebody else holds now, or that it could not renew in time.
    async fn keep_leases(self: Arc<Self>) {
        let every = Duration::from_millis(self.ttl_ms / 3);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.release_idle().await;
            let held: Vec<(String, u64, u64)> = self
                .owned
                .lock()
                .expect("cluster lock")
                .iter()
                .map(|(t, o)| (t.clone(), o.revision, o.store.lease_until.load(Ordering::Relaxed)))
                .collect();
            for (tenant, revision, until) in held {
                let at = mono_ms();
                let renewed = tokio::time::timeout(
                    every,
                    self.leases.update(&tenant, self.node.clone().into_bytes().into(), revision),
                )
                .await;
                match renewed {
                    Ok(Ok(next)) => {
                        if let Some(o) = self.owned.lock().expect("cluster lock").get_mut(&tenant)
                            && o.revision == revision
                        {
                            o.revision = next;
                            o.store.lease_until.store(at + self.ttl_ms - self.margin_ms, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        self.lose(&tenant, "its lease is another node's now");
                    }
                    _ if mono_ms() >= until => self.lose(&tenant, "its lease could not be renewed in time"),
                    failed => tracing::warn!(tenant, ?failed, "renewing a lease failed; trying again"),
                }
            }
        }
    }

    /// Stops writing and serving a tenant whose lease this node no longer holds: its sessions here
    /// and on other nodes reconnect (and find the new owner).
    fn lose(&self, tenant: &str, why: &str) {
        let Some(o) = self.owned.lock().expect("cluster lock").remove(tenant) else { return };
        tracing::warn!(node = %self.node, tenant, why, "letting the tenant go");
        o.store.lease_until.store(0, Ordering::Relaxed);
        o.store.hub.reset_for(MOVED);
        o.store.hub.set_relay(None);
        self.tenants.forget_for(tenant, MOVED);
    }

    /// Asks the nodes that are not draining to take `tenant` (one of them does); the node that holds
    /// it after, if any answered.
    async fn hand_over(&self, tenant: &str) -> Option<String> {
        let ask = self.client.request(wire::ACQUIRE, tenant.to_owned().into_bytes().into());
        match tokio::time::timeout(Duration::from_secs(15), ask).await {
            Ok(Ok(answer)) if !answer.payload.is_empty() => {
                Some(String::from_utf8_lossy(&answer.payload).into_owned())
            }
            _ => None,
        }
    }

    /// Takes tenants other nodes hand over (unless draining): answers with the node that holds it
    /// (as the lease says: what this node knew of the tenant may be the past).
    async fn answer_acquires(self: Arc<Self>, mut requests: async_nats::Subscriber) {
        while let Some(msg) = requests.next().await {
            let (me, reply) = (Arc::clone(&self), msg.reply.clone());
            tokio::spawn(async move {
                let tenant = String::from_utf8_lossy(&msg.payload).into_owned();
                if let Some(Backend::Remote(r)) = me.known(&tenant) {
                    r.gone();
                }
                let _ = me.route(&tenant).await;
                let holder = match me.leases.entry(&tenant).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => {
                        String::from_utf8_lossy(&e.value).into_owned()
                    }
                    _ => String::new(),
                };
                if let Some(reply) = reply {
                    let _ = me.client.publish(reply, holder.into_bytes().into()).await;
                }
            });
        }
    }

    async fn answer_drains(self: Arc<Self>, mut requests: async_nats::Subscriber) {
        while let Some(msg) = requests.next().await {
            let moved = self.drain().await;
            if let Some(reply) = msg.reply {
                let body = serde_json::to_vec(&moved).expect("moves serialise");
                let _ = self.client.publish(reply, body.into()).await;
            }
        }
    }

    /// Lets go of every tenant this node holds, one at a time, and takes no more: new sessions here
    /// are served from the tenants' new owners. For each tenant: no more requests from other nodes,
    /// this node's sessions of it close (they reconnect), the writes already queued commit, then the
    /// lease is released and another node takes it. Writes to the tenant wait meanwhile (their
    /// clients retry); the time is what [`Moved::ms`] says.
    pub(crate) async fn drain(self: &Arc<Self>) -> Vec<Moved> {
        self.draining.store(true, Ordering::Relaxed);
        if let Some(acquirer) = self.acquirer.lock().expect("cluster lock").take() {
            acquirer.abort();
        }
        let tenants: Vec<String> = self.owned.lock().expect("cluster lock").keys().cloned().collect();
        let mut moved = Vec::new();
        for tenant in tenants {
            let took = Instant::now();
            let Some(relay) = self.release(&tenant).await else { continue };
            let to = self.hand_over(&tenant).await;
            // The new owner tells the other nodes when it has the tenant; if none took it, this node does.
            if let (None, Some(relay)) = (&to, relay) {
                relay.reset(MOVED);
            }
            let ms = took.elapsed().as_millis() as u64;
            tracing::info!(node = %self.node, tenant, to = to.as_deref().unwrap_or("-"), ms, "tenant moved");
            moved.push(Moved { tenant, to, ms });
        }
        moved
    }

    /// Lets go of one tenant: no more requests from other nodes, this node's sessions of it close
    /// (they reconnect), the writes already queued commit, then the file is closed and the lease
    /// released. `None` if this node did not hold it; else the relay that tells other nodes, for the
    /// caller to use once they can find the tenant again.
    async fn release(&self, tenant: &str) -> Option<Option<Arc<dyn crate::hub::Relay>>> {
        let o = self.owned.lock().expect("cluster lock").remove(tenant)?;
        o.service.abort();
        let relay = o.store.hub.set_relay(None);
        o.store.hub.reset_for(MOVED);
        // The writes queued before this point commit under the lease; none come after.
        let _ = o.store.exec("").await;
        o.store.lease_until.store(0, Ordering::Relaxed);
        self.tenants.forget_for(tenant, MOVED);
        let revision = o.revision;
        drop(o);
        let _ = self.leases.delete_expect_revision(tenant, Some(revision)).await;
        Some(relay)
    }

    /// Lets go of tenants nobody has used for `tenant_idle_secs` (no session here, no other node's
    /// session on their channels, no write): an idle tenant holds no lease and no file, like an idle
    /// tenant of a single node.
    async fn release_idle(&self) {
        let idle_ms = self.limits.tenant_idle_secs.saturating_mul(1000);
        let idle: Vec<String> = self
            .owned
            .lock()
            .expect("cluster lock")
            .iter()
            .filter(|(_, o)| {
                o.store.connections.load(Ordering::Relaxed) == 0
                    && o.store.idle_ms() >= idle_ms
                    && !o.store.hub.wanted_anywhere()
            })
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in idle {
            if let Some(Some(relay)) = self.release(&tenant).await {
                relay.reset(MOVED);
            }
            tracing::debug!(node = %self.node, tenant, "idle tenant's lease released");
        }
    }
}

/// The lease bucket, made if missing. Made through JetStream's API directly (the configuration a
/// key-value bucket has: one value per key, `max_age` the lease's life): the client's own helper first
/// asks for account details nats-server 2.9 answers in an older form.
async fn lease_bucket(client: &async_nats::Client, ttl: Duration) -> Result<kv::Store> {
    let js = async_nats::jetstream::new(client.clone());
    if let Ok(bucket) = js.get_key_value(wire::LEASES).await {
        return Ok(bucket);
    }
    let stream = format!("KV_{}", wire::LEASES);
    let config = serde_json::json!({
        "name": stream,
        "description": "Moat: which node writes each tenant",
        "subjects": [format!("$KV.{}.>", wire::LEASES)],
        "max_msgs_per_subject": 1,
        "max_age": ttl.as_nanos() as u64,
        "discard": "new",
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
        "num_replicas": 1,
        "storage": "file",
    });
    let answer = client
        .request(format!("$JS.API.STREAM.CREATE.{stream}"), serde_json::to_vec(&config).expect("json").into())
        .await
        .map_err(|e| {
            Error::Config(format!("cluster: JetStream does not answer (is it on? nats-server -js): {e}"))
        })?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
    // Another node may have made it at the same time: that is as good.
    if let Some(e) = answer.get("error")
        && js.get_key_value(wire::LEASES).await.is_err()
    {
        return Err(Error::Config(format!("cluster: making the lease bucket: {e}")));
    }
    js.get_key_value(wire::LEASES).await.map_err(|e| Error::Config(format!("cluster: the lease bucket: {e}")))
}

/// `moat node drain NAME`: asks the node to let go of its tenants; what moved where.
pub async fn drain_node(url: &str, node: &str) -> Result<Vec<Moved>> {
    let client =
        async_nats::connect(url).await.map_err(|e| Error::Config(format!("cannot connect to {url}: {e}")))?;
    let ask = client.send_request(
        wire::drain(node),
        async_nats::Request::new().payload(Vec::new().into()).timeout(Some(Duration::from_secs(300))),
    );
    let answer = ask.await.map_err(|e| match e.kind() {
        async_nats::client::RequestErrorKind::NoResponders => {
            Error::Config(format!("no node {node} is in the cluster"))
        }
        _ => Error::Unavailable(format!("draining {node}: {e}")),
    })?;
    serde_json::from_slice(&answer.payload).map_err(|e| Error::Internal(format!("node {node} answered: {e}")))
}

/// `moat node leases`: every lease, tenant → node.
pub async fn leases(url: &str) -> Result<Vec<(String, String)>> {
    let client =
        async_nats::connect(url).await.map_err(|e| Error::Config(format!("cannot connect to {url}: {e}")))?;
    let js = async_nats::jetstream::new(client);
    let Ok(bucket) = js.get_key_value(wire::LEASES).await else { return Ok(Vec::new()) };
    // A key listing can wait forever for the end of a consumer whose bucket changed under it (seen
    // once in CI, while a node was stopped): each try is bounded, and a stuck one starts again.
    for _ in 0..3 {
        let listed = tokio::time::timeout(Duration::from_secs(3), async {
            let mut keys = bucket.keys().await.map_err(nats("listing leases"))?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(nats("listing leases"))?;
                if let Ok(Some(node)) = bucket.get(&key).await {
                    out.push((key, String::from_utf8_lossy(&node).into_owned()));
                }
            }
            out.sort();
            Ok::<_, Error>(out)
        })
        .await;
        if let Ok(out) = listed {
            return out;
        }
    }
    Err(Error::Unavailable("listing the leases did not finish in 3 tries of 3 s".into()))
}

/// The limits a relayed request waits within.
fn send_wait(limits: &Limits) -> Duration {
    Duration::from_millis(limits.send_timeout_ms.max(1000))
}
