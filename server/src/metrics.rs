//! Counters and a latency histogram, rendered in Prometheus' text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const BUCKETS_MS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// A histogram of durations with fixed buckets (milliseconds).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        if let Some(i) = BUCKETS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", b / 1e3);
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything the server counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Pushes received.
    pub pushes: Counter,
    /// Pushes refused.
    pub rejects: Counter,
    /// Conflicts reported to writers.
    pub conflicts: Counter,
    /// Diffs (log entries) committed.
    pub diffs: Counter,
    /// Channel frames encoded (one per change per channel).
    pub encodes: Counter,
    /// Frames delivered to sockets.
    pub deliveries: Counter,
    /// Connections cut off for falling behind.
    pub slow_consumers: Counter,
    /// Commit batches written.
    pub batches: Counter,
    /// Publish → socket write latency.
    pub fanout_latency: Histogram,
    /// Commit batch duration.
    pub batch_latency: Histogram,
}

impl Metrics {
    pub(crate) fn observe_batch(&self, took: Duration) {
        self.batches.inc();
        self.batch_latency.observe(took);
    }

    /// Prometheus text; `channels` and `queue` are sampled by the caller.
    pub fn render(&self, channels: usize, queue: usize) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(&mut out, "moat_connections", "Open WebSocket connections.", self.connections.get());
        gauge(&mut out, "moat_channels", "Channels with subscribers.", channels as i64);
        gauge(&mut out, "moat_write_queue_depth", "Writes waiting for the writer.", queue as i64);
        counter(&mut out, "moat_pushes_total", "Pushes received.", self.pushes.get());
        counter(&mut out, "moat_rejects_total", "Pushes refused.", self.rejects.get());
        counter(&mut out, "moat_conflicts_total", "Conflicts reported to writers.", self.conflicts.get());
        counter(&mut out, "moat_diffs_total", "Diffs committed to the change log.", self.diffs.get());
        counter(&mut out, "moat_channel_encodes_total", "Channel frames encoded.", self.encodes.get());
        counter(&mut out, "moat_deliveries_total", "Frames written to sockets.", self.deliveries.get());
        counter(
            &mut out,
            "moat_slow_consumers_total",
            "Connections cut off for falling behind.",
            self.slow_consumers.get(),
        );
        counter(&mut out, "moat_commit_batches_total", "Group commits.", self.batches.get());
        self.fanout_latency.render(&mut out, "moat_fanout_latency_seconds", "Publish to socket write.");
        self.batch_latency.render(&mut out, "moat_commit_batch_seconds", "Duration of a group commit.");
        out
    }
}
