//! Channels and fan-out. A channel is shared by every connection of one profile; each change is
//! turned into the channel's view and serialised once, and the same bytes go to every subscriber.
//! Each subscriber reads from a bounded broadcast buffer: one that falls too far behind is cut off
//! (it reconnects and resumes from its cursor) instead of growing the server's memory or slowing
//! the others.

use std::collections::HashMap;
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
}

/// Every channel with subscribers.
#[derive(Debug)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    capacity: usize,
}

/// A channel's frame for `version` carrying `diff`.
pub(crate) fn diff_frame(channel: &str, version: i64, diff: &Diff) -> String {
    let raw = serde_json::value::to_raw_value(diff).expect("diffs serialise");
    ServerMsg::Diff { channel: channel.into(), version, diff: DiffJson::Encoded(&raw) }.to_json()
}

impl Hub {
    /// A hub whose subscribers may each fall `capacity` frames behind.
    pub(crate) fn new(capacity: usize) -> Hub {
        Hub { channels: Mutex::new(HashMap::new()), capacity }
    }

    /// Joins the profile's channel.
    pub(crate) fn subscribe(&self, profile: &Profile) -> broadcast::Receiver<Arc<Frame>> {
        let mut channels = self.channels.lock().expect("hub lock");
        channels
            .entry(profile.channel.clone())
            .or_insert_with(|| {
                Arc::new(Channel { profile: profile.clone(), tx: broadcast::channel(self.capacity).0 })
            })
            .tx
            .subscribe()
    }

    /// Drops every channel: each subscriber's stream ends, and its session closes (1012) so that the
    /// client reconnects onto the server's new model (after a live migration).
    pub(crate) fn reset(&self) {
        self.channels.lock().expect("hub lock").clear();
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
        let active: Vec<Arc<Channel>> = {
            let mut channels = self.channels.lock().expect("hub lock");
            channels.retain(|_, c| c.tx.receiver_count() > 0);
            channels.values().cloned().collect()
        };
        for entry in entries {
            for channel in &active {
                let Some(diff) = entry.view(rules, &channel.profile) else { continue };
                let text = diff_frame(&channel.profile.channel, entry.version, &diff);
                metrics.encodes.inc();
                let frame =
                    Arc::new(Frame { version: entry.version, text: text.into(), published: Instant::now() });
                let _ = channel.tx.send(frame);
            }
        }
    }
}
