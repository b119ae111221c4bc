//! Channels and fan-out. A channel is shared by every connection of one profile; each change is
//! turned into the channel's view and serialised once, and the same bytes go to every subscriber.
//! Each subscriber reads from a bounded broadcast buffer: one that falls too far behind is cut off
//! (it reconnects and resumes from its cursor) instead of growing the server's memory or slowing
//! the others.
//!
//! In a cluster the owner's hub also hands each frame of a channel that other nodes' sessions want
//! to a [`Relay`] (NATS: encoded once, sent once per node), and another node's hub of the same
//! tenant takes those frames in through [`Hub::deliver`] for its own sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use sqlite_ext::Diff;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::protocol::{DiffJson, ServerMsg};
use crate::rules::{Profile, Rules};
use crate::store::LogEntry;

/// One encoded `diff` frame of a channel.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) version: i64,
    pub(crate) text: Utf8Bytes,
    pub(crate) published: Instant,
}

#[derive(Debug)]
struct Channel {
    profile: Profile,
    tx: broadcast::Sender<Arc<Frame>>,
    /// Until when sessions on other nodes want this channel's frames ([`mono_ms`]; 0: none do).
    remote_until: AtomicU64,
}

impl Channel {
    fn wanted(&self, now: u64) -> bool {
        self.tx.receiver_count() > 0 || self.remote_until.load(Ordering::Relaxed) > now
    }
}

/// Where an owner's frames go for the sessions of other nodes (the cluster's NATS subjects).
pub(crate) trait Relay: Send + Sync + std::fmt::Debug {
    /// A channel's frame.
    fn frame(&self, channel: &str, version: i64, text: &Utf8Bytes);
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
    /// Why the channels were last dropped (what their sessions' close says).
    reason: Mutex<&'static str>,
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
    pub(crate) fn new(capacity: usize) -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            capacity,
            relay: Mutex::new(None),
            reason: Mutex::new(SCHEMA_CHANGED),
        }
    }

    fn channel(&self, profile: &Profile) -> Arc<Channel> {
        let mut channels = self.channels.lock().expect("hub lock");
        let channel = channels.entry(profile.channel.clone()).or_insert_with(|| {
            Arc::new(Channel {
                profile: profile.clone(),
                tx: broadcast::channel(self.capacity).0,
                remote_until: AtomicU64::new(0),
            })
        });
        Arc::clone(channel)
    }

    /// Joins the profile's channel.
    pub(crate) fn subscribe(&self, profile: &Profile) -> broadcast::Receiver<Arc<Frame>> {
        self.channel(profile).tx.subscribe()
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
        self.channels.lock().expect("hub lock").get(channel).is_some_and(|c| c.tx.receiver_count() > 0)
    }

    /// Hands a frame the owner encoded to this node's subscribers of `channel` (another node's hub).
    pub(crate) fn deliver(&self, channel: &str, frame: Arc<Frame>) -> bool {
        let tx = self.channels.lock().expect("hub lock").get(channel).map(|c| c.tx.clone());
        tx.is_some_and(|tx| tx.send(frame).is_ok())
    }

    /// Sends frames wanted elsewhere to `relay` too (`None`: no more).
    pub(crate) fn set_relay(&self, relay: Option<Arc<dyn Relay>>) -> Option<Arc<dyn Relay>> {
        std::mem::replace(&mut *self.relay.lock().expect("hub lock"), relay)
    }

    /// Drops every channel: each subscriber's stream ends, and its session closes (1012) so that the
    /// client reconnects onto the server's new model (after a live migration). Other nodes' sessions
    /// are told through the relay.
    pub(crate) fn reset(&self) {
        self.reset_for(SCHEMA_CHANGED);
    }

    /// [`reset`](Self::reset), saying why.
    pub(crate) fn reset_for(&self, reason: &'static str) {
        *self.reason.lock().expect("hub lock") = reason;
        self.channels.lock().expect("hub lock").clear();
        let relay = self.relay.lock().expect("hub lock").clone();
        if let Some(relay) = relay {
            relay.reset(reason);
        }
    }

    /// Why the channels were last dropped.
    pub(crate) fn reset_reason(&self) -> &'static str {
        *self.reason.lock().expect("hub lock")
    }

    /// How many channels have subscribers.
    pub(crate) fn channel_count(&self) -> usize {
        self.channels.lock().expect("hub lock").values().filter(|c| c.tx.receiver_count() > 0).count()
    }

    /// Sends committed entries, in order, to every channel that sees some of them: one view and one
    /// encoding per entry per channel. The channel list is taken once per batch; channels nobody
    /// listens to any more are dropped here.
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
        for entry in entries {
            for channel in &active {
                let Some(diff) = entry.view(rules, &channel.profile) else { continue };
                let text: Utf8Bytes = diff_frame(&channel.profile.channel, entry.version, &diff).into();
                metrics.encodes.inc();
                if let Some(relay) = &relay
                    && channel.remote_until.load(Ordering::Relaxed) > now
                {
                    relay.frame(&channel.profile.channel, entry.version, &text);
                }
                if channel.tx.receiver_count() > 0 {
                    let frame = Arc::new(Frame { version: entry.version, text, published: Instant::now() });
                    let _ = channel.tx.send(frame);
                }
            }
        }
        if let (Some(relay), Some(last)) = (relay, entries.last()) {
            relay.watermark(last.version);
        }
    }
}
