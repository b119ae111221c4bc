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
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
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
        self.observe_n(d, 1);
    }

    /// Records `n` equal durations (a batch of deliveries written at one moment).
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ms = d.as_secs_f64() * 1e3;
        if let Some(i) = BUCKETS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64 * n, Ordering::Relaxed);
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
    /// Initial syncs that sent a full snapshot (the others caught up from their cursor).
    pub snapshots: Counter,
    /// Initial syncs that caught up from the client's cursor.
    pub catch_ups: Counter,
    /// Commit batches written.
    pub batches: Counter,
    /// Batches in which the database failed (a commit, or a write under it: disk full, I/O).
    pub commit_failures: Counter,
    /// Scheduled backups taken.
    pub backups: Counter,
    /// Scheduled backups that failed.
    pub backup_failures: Counter,
    /// When the last scheduled backup completed, seconds since the Unix epoch (0: none yet).
    pub backup_last_success: Gauge,
    /// Cluster: pushes this node forwarded to the owner of their tenant.
    pub cluster_pushes_forwarded: Counter,
    /// Cluster: initial syncs another node ran for this node's sessions.
    pub cluster_syncs_relayed: Counter,
    /// Cluster: requests this node answered for tenants it owns.
    pub cluster_requests_served: Counter,
    /// Cluster: channel frames this node published for other nodes.
    pub cluster_frames_out: Counter,
    /// Cluster: channel frames this node took in from owners.
    pub cluster_frames_in: Counter,
    /// Cluster: tenants whose lease this node holds.
    pub cluster_leases: Gauge,
    /// Cluster: tenants this node serves for their owners.
    pub cluster_remote_tenants: Gauge,
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
        counter(
            &mut out,
            "moat_snapshots_total",
            "Initial syncs sent as a full snapshot.",
            self.snapshots.get(),
        );
        counter(
            &mut out,
            "moat_catch_ups_total",
            "Initial syncs caught up from a cursor.",
            self.catch_ups.get(),
        );
        counter(&mut out, "moat_commit_batches_total", "Group commits.", self.batches.get());
        counter(
            &mut out,
            "moat_commit_failures_total",
            "Batches in which the database failed (disk full, I/O).",
            self.commit_failures.get(),
        );
        counter(&mut out, "moat_backups_total", "Scheduled backups taken.", self.backups.get());
        counter(
            &mut out,
            "moat_backup_failures_total",
            "Scheduled backups that failed.",
            self.backup_failures.get(),
        );
        gauge(
            &mut out,
            "moat_backup_last_success_timestamp_seconds",
            "When the last scheduled backup completed (0: none yet).",
            self.backup_last_success.get(),
        );
        gauge(
            &mut out,
            "moat_cluster_leases",
            "Tenants whose lease this node holds.",
            self.cluster_leases.get(),
        );
        gauge(
            &mut out,
            "moat_cluster_remote_tenants",
            "Tenants this node serves for the nodes that own them.",
            self.cluster_remote_tenants.get(),
        );
        counter(
            &mut out,
            "moat_cluster_pushes_forwarded_total",
            "Pushes forwarded to their tenant's owner.",
            self.cluster_pushes_forwarded.get(),
        );
        counter(
            &mut out,
            "moat_cluster_syncs_relayed_total",
            "Initial syncs run by the tenant's owner for this node's sessions.",
            self.cluster_syncs_relayed.get(),
        );
        counter(
            &mut out,
            "moat_cluster_requests_served_total",
            "Requests answered for other nodes about tenants this node owns.",
            self.cluster_requests_served.get(),
        );
        counter(
            &mut out,
            "moat_cluster_frames_out_total",
            "Channel frames published for other nodes.",
            self.cluster_frames_out.get(),
        );
        counter(
            &mut out,
            "moat_cluster_frames_in_total",
            "Channel frames taken in from the tenants' owners.",
            self.cluster_frames_in.get(),
        );
        self.fanout_latency.render(&mut out, "moat_fanout_latency_seconds", "Publish to socket write.");
        self.batch_latency.render(&mut out, "moat_commit_batch_seconds", "Duration of a group commit.");
        out
    }
}

/// Per-tenant series, with a bounded number of label values: the `top` open tenants with the most
/// connected clients (then the most writes) are labelled by name; the other open tenants are summed
/// under `tenant="_other"`. Closed tenants have no series. So the series count stays at most
/// `3 × (top + 1)`, whatever the number of tenants.
pub(crate) fn render_tenants(out: &mut String, open: &[std::sync::Arc<crate::store::Store>], top: usize) {
    let mut rows: Vec<(String, u64, u64, u64)> = open
        .iter()
        .map(|s| {
            let (c, d, q) = s.figures();
            (s.tenant.to_string(), c, d, q)
        })
        .collect();
    rows.sort_by(|a, b| (b.1, b.2).cmp(&(a.1, a.2)).then_with(|| a.0.cmp(&b.0)));
    let mut shown: Vec<(String, u64, u64, u64)> = rows.iter().take(top).cloned().collect();
    if rows.len() > top {
        let other = rows[top..].iter().fold((0, 0, 0), |acc, r| (acc.0 + r.1, acc.1 + r.2, acc.2 + r.3));
        shown.push(("_other".into(), other.0, other.1, other.2));
    }
    let series = [
        ("moat_tenant_connections", "gauge", "Open sessions per tenant."),
        ("moat_tenant_diffs_total", "counter", "Diffs committed per tenant since it was opened."),
        ("moat_tenant_write_queue_depth", "gauge", "Writes waiting per tenant."),
    ];
    for (i, (name, kind, help)) in series.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (tenant, c, d, q) in &shown {
            let v = [c, d, q][i];
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {v}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP moat_tenants_open Tenant databases open now.\n# TYPE moat_tenants_open gauge\nmoat_tenants_open {}",
        open.len()
    );
    // Fleet health over every open tenant's connected devices, from their last reports.
    let (devices, pending, oldest_ms, errors) = open
        .iter()
        .map(|s| s.devices.figures())
        .fold((0, 0, 0, 0), |acc, f| (acc.0 + f.0, acc.1 + f.1, acc.2.max(f.2), acc.3 + f.3));
    let fleet = [
        (
            "moat_fleet_devices_connected",
            "Connected devices (their last reports make the fleet series).",
            devices as f64,
        ),
        ("moat_fleet_pending_writes", "Writes waiting on connected devices.", pending as f64),
        (
            "moat_fleet_oldest_pending_seconds",
            "Age of the oldest write waiting on a connected device.",
            oldest_ms as f64 / 1e3,
        ),
        (
            "moat_fleet_devices_with_errors",
            "Connected devices whose last report carries an error.",
            errors as f64,
        ),
    ];
    for (name, help, v) in fleet {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}
