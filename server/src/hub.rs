//! Channels and fan-out. A channel is shared by every connection of one profile; each change is
//! turned into the channel's view, serialised and framed (RFC 6455) once, and the same bytes go to
//! every subscriber.
//!
//! A channel keeps its last `capacity` frames in a ring. Publishing adds to the ring and wakes the
//! channel's fan-out tasks (a few per channel, each with a share of its subscribers), which write
//! the new frames to each subscriber's socket with one non-blocking write ([`Sink::offer`]): no
//! task per subscriber wakes for a frame its socket takes at once. A subscriber whose socket is full
//! has the frames queued and its session woken to write them; one that falls `capacity` frames
//! behind, or needs a frame the ring no longer holds, is cut off (it reconnects and resumes from its
//! cursor) instead of growing the server's memory or slowing the others. A session in its initial
//! sync takes no frame; it takes the ring's newer frames when it goes live, and again before each
//! ack it sends, so a writer always gets its own diff before its ack.
//!
//! In a cluster the owner's hub also hands each frame of a channel that other nodes' sessions want
//! to a [`Relay`] (NATS: encoded once, sent once per node), and another node's hub of the same
//! tenant takes those frames in through [`Hub::deliver`] for its own sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::Bytes;
use sqlite_ext::Diff;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::protocol::{DiffJson, ServerMsg, close};
use crate::rules::{Profile, Rules};
use crate::socket::{self, Sink};
use crate::store::LogEntry;
use crate::ws;

/// One `diff` frame of a channel, framed for the socket.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) version: i64,
    /// The whole WebSocket frame: header and JSON text.
    pub(crate) wire: Bytes,
    pub(crate) published: Instant,
}

impl Frame {
    /// The frame carrying `text` for `version`.
    pub(crate) fn new(version: i64, text: &[u8]) -> Arc<Frame> {
        Arc::new(Frame { version, wire: ws::frame(ws::TEXT, text), published: Instant::now() })
    }

    /// The JSON text (no copy).
    pub(crate) fn text(&self) -> Bytes {
        self.wire.slice(ws::payload_at(&self.wire)..)
    }
}

/// Fan-out tasks per channel: each writes to a share of the channel's subscribers.
fn shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// A channel's recent frames.
#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<Arc<Frame>>,
    /// The newest version dropped from the ring (a subscriber behind it missed a frame).
    evicted: i64,
}

/// A fan-out task's share of a channel's subscribers.
#[derive(Debug, Default)]
struct Shard {
    sinks: Mutex<HashMap<u64, Arc<Sink>>>,
    wake: Arc<Notify>,
}

#[derive(Debug)]
struct Channel {
    /// The profile every subscriber shares (their sessions hold this one).
    profile: Arc<Profile>,
    ring: Mutex<Ring>,
    capacity: usize,
    shards: Box<[Shard]>,
    /// Subscribers, over the shards.
    subscribers: AtomicUsize,
    /// Until when sessions on other nodes want this channel's frames ([`mono_ms`]; 0: none do).
    remote_until: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Channel {
    /// Session `id`'s shard. Ids are the server's, handed out in turn to every channel's sessions,
    /// so they are mixed first: sessions of two channels connecting alternately still spread over
    /// both channels' shards.
    fn shard_of(&self, id: u64) -> &Shard {
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[mixed as usize % self.shards.len()]
    }

    fn wanted(&self, now: u64) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0 || self.remote_until.load(Ordering::Relaxed) > now
    }

    /// Adds a frame to the ring (the fan-out tasks are woken by the caller).
    fn push(&self, frame: Arc<Frame>) {
        let mut ring = self.ring.lock().expect("ring lock");
        if ring.frames.len() >= self.capacity
            && let Some(old) = ring.frames.pop_front()
        {
            ring.evicted = old.version;
        }
        ring.frames.push_back(frame);
    }

    fn wake(&self) {
        for shard in &self.shards {
            shard.wake.notify_one();
        }
    }

    /// Gives `sink` the ring's frames it does not have yet.
    fn catch_up(&self, sink: &Sink) {
        let ring = self.ring.lock().expect("ring lock");
        let (frames, _) = ring.frames.as_slices();
        // The ring's frames in order, as one slice when they are (the common case), else copied.
        if frames.len() == ring.frames.len() {
            sink.offer(frames, ring.evicted, self.capacity, &self.metrics);
        } else {
            let all: Vec<Arc<Frame>> = ring.frames.iter().cloned().collect();
            sink.offer(&all, ring.evicted, self.capacity, &self.metrics);
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // Each fan-out task wakes, finds the channel gone, and ends.
        self.wake();
    }
}

/// Writes a channel's new frames to one shard of its subscribers, until the channel is dropped.
async fn fan_out(channel: Weak<Channel>, shard: usize, wake: Arc<Notify>) {
    // The newest version this task has handed out.
    let mut done = 0;
    loop {
        wake.notified().await;
        loop {
            let Some(ch) = channel.upgrade() else { return };
            let (frames, evicted) = {
                let ring = ch.ring.lock().expect("ring lock");
                let fresh: Vec<Arc<Frame>> =
                    ring.frames.iter().filter(|f| f.version > done).cloned().collect();
                (fresh, ring.evicted)
            };
            let Some(last) = frames.last() else { break };
            done = last.version;
            let sinks: Vec<Arc<Sink>> =
                ch.shards[shard].sinks.lock().expect("shard lock").values().cloned().collect();
            let wire = socket::joined(&frames);
            for (i, group) in sinks.chunks(512).enumerate() {
                // Other tasks (a writer's session, a reader) get the thread now and then.
                if i > 0 {
                    tokio::task::yield_now().await;
                }
                socket::offer_all(group, &frames, &wire, evicted, ch.capacity, &ch.metrics);
            }
        }
    }
}

/// A session's place in a channel: it takes the channel's frames through its sink from
/// [`go_live`](Self::go_live) on, and leaves the channel when dropped. Two words: the session's
/// id (its place in [`Sessions`](crate::socket::Sessions) too) also names its shard.
#[derive(Debug)]
pub(crate) struct Subscription {
    channel: Arc<Channel>,
    id: u64,
}

impl Subscription {
    /// The channel's profile, shared by its subscribers.
    pub(crate) fn profile(&self) -> &Arc<Profile> {
        &self.channel.profile
    }

    /// The session's id, in its channel and in the server's sessions.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The initial sync ended at version `sent`: the channel's newer frames go to the session's
    /// `sink` (the one it subscribed with) from now.
    pub(crate) fn go_live(&self, sink: &Arc<Sink>, sent: i64) {
        sink.go_live(sent);
        self.channel.catch_up(sink);
    }

    /// Writes (or queues) the channel's frames the session's `sink` does not have yet: before an
    /// ack, the writer's own diff.
    pub(crate) fn catch_up(&self, sink: &Arc<Sink>) {
        self.channel.catch_up(sink);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.channel.shard_of(self.id).sinks.lock().expect("shard lock").remove(&self.id);
        self.channel.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where an owner's frames go for the sessions of other nodes (the cluster's NATS subjects).
pub(crate) trait Relay: Send + Sync + std::fmt::Debug {
    /// A channel's frame.
    fn frame(&self, channel: &str, version: i64, text: Bytes);
    /// Every frame up to `version` has been handed over.
    fn watermark(&self, version: i64);
    /// The tenant's model changed or it moved (`reason`): other nodes' sessions must reconnect.
    fn reset(&self, reason: &'static str);
}

/// Milliseconds on a monotonic clock, since the first call in this process.
pub(crate) fn mono_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Every channel with subscribers.
#[derive(Debug)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    capacity: usize,
    relay: Mutex<Option<Arc<dyn Relay>>>,
    metrics: Arc<Metrics>,
}

/// A [`Hub::reset`] for a live migration or a customization.
pub(crate) const SCHEMA_CHANGED: &str = "the server's schema changed; reconnect";
/// A [`Hub::reset`] because the tenant moved to another node (or this node is not its owner now).
pub(crate) const MOVED: &str = "your company's data moved to another server node; reconnect";

/// A channel's frame for `version` carrying `diff`.
pub(crate) fn diff_frame(channel: &str, version: i64, diff: &Diff) -> String {
    let raw = serde_json::value::to_raw_value(diff).expect("diffs serialise");
    ServerMsg::Diff { channel: channel.into(), version, diff: DiffJson::Encoded(&raw) }.to_json()
}

impl Hub {
    /// A hub whose subscribers may each fall `capacity` frames behind.
    pub(crate) fn new(capacity: usize, metrics: Arc<Metrics>) -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            relay: Mutex::new(None),
            metrics,
        }
    }

    fn channel(&self, profile: &Profile) -> Arc<Channel> {
        let mut channels = self.channels.lock().expect("hub lock");
        let channel = channels.entry(profile.channel.clone()).or_insert_with(|| {
            let channel = Arc::new(Channel {
                profile: Arc::new(profile.clone()),
                ring: Mutex::new(Ring::default()),
                capacity: self.capacity,
                shards: (0..shards()).map(|_| Shard::default()).collect(),
                subscribers: AtomicUsize::new(0),
                remote_until: AtomicU64::new(0),
                metrics: Arc::clone(&self.metrics),
            });
            for (i, shard) in channel.shards.iter().enumerate() {
                tokio::spawn(fan_out(Arc::downgrade(&channel), i, Arc::clone(&shard.wake)));
            }
            channel
        });
        Arc::clone(channel)
    }

    /// Joins the profile's channel as session `id` (unique in the server: its
    /// [`Sessions`](crate::socket::Sessions) id), writing to `sink` once it goes live.
    pub(crate) fn subscribe(&self, profile: &Profile, sink: &Arc<Sink>, id: u64) -> Subscription {
        let channel = self.channel(profile);
        channel.subscribers.fetch_add(1, Ordering::Relaxed);
        channel.shard_of(id).sinks.lock().expect("shard lock").insert(id, Arc::clone(sink));
        Subscription { channel, id }
    }

    /// Sessions on other nodes want the profile's channel for `for_ms` more (the owner's hub).
    pub(crate) fn want_remote(&self, profile: &Profile, for_ms: u64) {
        self.channel(profile).remote_until.store(mono_ms() + for_ms, Ordering::Relaxed);
    }

    /// Whether any channel is wanted: by this node's sessions or other nodes'.
    pub(crate) fn wanted_anywhere(&self) -> bool {
        let now = mono_ms();
        self.channels.lock().expect("hub lock").values().any(|c| c.wanted(now))
    }

    /// Whether this node's sessions subscribe to `channel`.
    pub(crate) fn has_subscribers(&self, channel: &str) -> bool {
        self.channels
            .lock()
            .expect("hub lock")
            .get(channel)
            .is_some_and(|c| c.subscribers.load(Ordering::Relaxed) > 0)
    }

    /// Hands a frame the owner encoded to this node's subscribers of `channel` (another node's hub).
    pub(crate) fn deliver(&self, channel: &str, frame: Arc<Frame>) -> bool {
        let found = self.channels.lock().expect("hub lock").get(channel).cloned();
        let Some(channel) = found.filter(|c| c.subscribers.load(Ordering::Relaxed) > 0) else { return false };
        channel.push(frame);
        channel.wake();
        true
    }

    /// Sends frames wanted elsewhere to `relay` too (`None`: no more).
    pub(crate) fn set_relay(&self, relay: Option<Arc<dyn Relay>>) -> Option<Arc<dyn Relay>> {
        std::mem::replace(&mut *self.relay.lock().expect("hub lock"), relay)
    }

    /// Drops every channel and closes its sessions (1012) so that their clients reconnect onto the
    /// server's new model (after a live migration). Other nodes' sessions are told through the relay.
    pub(crate) fn reset(&self) {
        self.reset_for(SCHEMA_CHANGED);
    }

    /// [`reset`](Self::reset), saying why.
    pub(crate) fn reset_for(&self, reason: &'static str) {
        let dropped: Vec<Arc<Channel>> =
            self.channels.lock().expect("hub lock").drain().map(|(_, c)| c).collect();
        for channel in dropped {
            for shard in &channel.shards {
                for sink in shard.sinks.lock().expect("shard lock").values() {
                    sink.end(close::SCHEMA_CHANGED, reason);
                }
            }
        }
        let relay = self.relay.lock().expect("hub lock").clone();
        if let Some(relay) = relay {
            relay.reset(reason);
        }
    }

    /// How many channels have subscribers.
    pub(crate) fn channel_count(&self) -> usize {
        self.channels
            .lock()
            .expect("hub lock")
            .values()
            .filter(|c| c.subscribers.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Sends committed entries, in order, to every channel that sees some of them: one view, one
    /// encoding and one framing per entry per channel. The channel list is taken once per batch;
    /// channels nobody listens to any more are dropped here.
    pub(crate) fn publish(&self, rules: &Rules, entries: &[LogEntry], metrics: &Metrics) {
        if entries.is_empty() {
            return;
        }
        let now = mono_ms();
        let active: Vec<Arc<Channel>> = {
            let mut channels = self.channels.lock().expect("hub lock");
            channels.retain(|_, c| c.wanted(now));
            channels.values().cloned().collect()
        };
        let relay = self.relay.lock().expect("hub lock").clone();
        let relay = relay.filter(|_| active.iter().any(|c| c.remote_until.load(Ordering::Relaxed) > now));
        let mut woken = vec![false; active.len()];
        for entry in entries {
            for (channel, woken) in active.iter().zip(&mut woken) {
                let Some(diff) = entry.view(rules, &channel.profile) else { continue };
                let frame = Frame::new(
                    entry.version,
                    diff_frame(&channel.profile.channel, entry.version, &diff).as_bytes(),
                );
                metrics.encodes.inc();
                if let Some(relay) = &relay
                    && channel.remote_until.load(Ordering::Relaxed) > now
                {
                    relay.frame(&channel.profile.channel, entry.version, frame.text());
                }
                if channel.subscribers.load(Ordering::Relaxed) > 0 {
                    channel.push(frame);
                    *woken = true;
                }
            }
        }
        for (channel, woken) in active.iter().zip(woken) {
            if woken {
                channel.wake();
            }
        }
        if let (Some(relay), Some(last)) = (relay, entries.last()) {
            relay.watermark(last.version);
        }
    }
}
