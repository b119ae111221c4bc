//! Configuration: a TOML file, then `MOAT_*` environment variables, then command-line flags, each
//! overriding the one before. Every field has a default, so an empty file (or none) works.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The HS256 secret `--demo` uses when none is configured. Only ever for the demo.
pub const DEMO_SECRET: &str = "moat-demo-secret-do-not-use-in-production";

/// Everything `moat serve` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`MOAT_LISTEN`, `--listen`).
    pub listen: String,
    /// The data directory (`MOAT_DATA`, `--data`): `platform.db` (the tenant registry) and
    /// `tenants/<name>.db`, one SQLite database per tenant.
    pub data: PathBuf,
    /// The built web client to serve at `/` (`MOAT_WEB_ROOT`, `--web-root`).
    pub web_root: PathBuf,
    /// Schema SQL of the synced tables; the built-in demo schema when absent.
    pub schema: Option<PathBuf>,
    /// Sync rules; the built-in `schemas/sync_rules.toml` when absent.
    pub rules: Option<PathBuf>,
    /// The migration files `POST /admin/migrate` applies (`MOAT_MIGRATIONS`, `--migrations`).
    pub migrations: PathBuf,
    /// Seed a new database with the demo data and enable the demo sign-in (`--demo`).
    pub demo: bool,
    /// Jobs per demo company when the demo's tenants are created (`--demo-jobs`; 5,000 when
    /// absent). The big-tenant benchmarks use 100,000.
    pub demo_jobs: Option<u32>,
    /// Token keys.
    pub auth: AuthConfig,
    /// TLS in the binary (a second listener); without it, run behind a proxy that terminates TLS.
    pub tls: TlsConfig,
    /// Scheduled backups (none without a folder).
    pub backup: BackupConfig,
    /// Limits that protect the server from its clients.
    pub limits: Limits,
    /// Several nodes over NATS (none: one node, the default; `docs/scaling.md`).
    pub cluster: ClusterConfig,
}

/// Cluster mode: nodes share the data directory (a shared volume) and a NATS server; each tenant is
/// written by the one node holding its lease, and any node serves any client (`crate::cluster`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server, with JetStream (`MOAT_CLUSTER`, `--cluster`): `nats://127.0.0.1:4222`.
    pub url: Option<String>,
    /// This node's name, unique in the cluster (`MOAT_NODE`, `--node`): `a-z`, `0-9`, `-`, `_`.
    pub node: Option<String>,
    /// A tenant lease's life in seconds (10): a node that stops renewing one stops writing its
    /// tenant before the lease runs out; another node may take it after.
    pub lease_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { url: None, node: None, lease_secs: 10 }
    }
}

/// Token keys: at least one must be set (or `demo`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 shared secret (`MOAT_HS256_SECRET`), at least 16 bytes.
    pub hs256_secret: Option<String>,
    /// A PEM file with an Ed25519 public key, for EdDSA tokens.
    pub ed25519_public_key: Option<PathBuf>,
    /// An identity provider's key set (`MOAT_JWKS_URL`): `https://…/.well-known/jwks.json`. Read
    /// at start, again when a token names an unknown key id (a rotation), and hourly.
    pub jwks_url: Option<String>,
    /// The same, from a file (read again the same way).
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry (`MOAT_JWT_ISSUER`), e.g. `https://tenant.auth0.com/`.
    pub issuer: Option<String>,
    /// The `aud` every token must carry among its audiences (`MOAT_JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// Seconds of slack on `exp` and `nbf` for clocks that disagree (60).
    pub leeway_secs: Option<u64>,
    /// Which claims give the user, the tenant and the role.
    pub claims: crate::auth::ClaimMap,
}

/// TLS: a listener of its own, beside the plain `listen` (keep that one on 127.0.0.1 for health
/// checks, metrics and the admin endpoints, or behind a proxy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Address of the TLS listener (`MOAT_TLS_LISTEN`, `--tls-listen`), e.g. `0.0.0.0:443`.
    pub listen: Option<String>,
    /// The certificate chain, PEM, leaf first (`MOAT_TLS_CERT`). Reloaded on `SIGHUP`.
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM (`MOAT_TLS_KEY`). Reloaded on `SIGHUP`.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The TLS listener's address and files, when TLS is configured; an error when only part is.
    pub fn parts(&self) -> Result<Option<(&str, &Path, &Path)>> {
        match (&self.listen, &self.cert, &self.key) {
            (None, None, None) => Ok(None),
            (Some(l), Some(c), Some(k)) => Ok(Some((l, c, k))),
            _ => Err(Error::Config("tls needs all of listen, cert and key".into())),
        }
    }
}

/// Scheduled backups: every tenant copied into a new folder under `dir` every `interval_secs`,
/// the newest `keep` kept (`crate::backup`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups go (`MOAT_BACKUP_DIR`); put it on another disk, and copy it off the machine.
    pub dir: Option<PathBuf>,
    /// Seconds between backups (3600).
    pub interval_secs: u64,
    /// Backups kept (24).
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { dir: None, interval_secs: 3600, keep: 24 }
    }
}

/// Limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Frames a subscriber may fall behind its channel before it is cut off.
    pub channel_buffer: usize,
    /// Time a new connection has to send its hello.
    pub hello_timeout_ms: u64,
    /// Time a frame may take to reach a client's socket before the client is cut off.
    pub send_timeout_ms: u64,
    /// How often the server pings a connection (0: never). A client that has not answered the
    /// previous ping by the next one is cut (4008): on a quiet channel too, a client that stopped
    /// reading does not hold its socket for ever.
    pub ping_interval_ms: u64,
    /// Pushes a connection may have waiting for their acks.
    pub max_inflight_pushes: usize,
    /// Versions kept in the change log; an older cursor gets a fresh snapshot.
    pub log_retention: i64,
    /// Rows per snapshot chunk, at most.
    pub snapshot_chunk_rows: usize,
    /// Bytes of JSON per snapshot chunk, about (a chunk ends at the first row past it). A client in
    /// its snapshot holds a few chunks on the server (read ahead, being written), each freed once
    /// the socket took them.
    pub snapshot_chunk_bytes: usize,
    /// Most writes in one group commit.
    pub max_batch: usize,
    /// Writer threads; each owns a fixed share of the tenants (0: one per CPU core, at least 2).
    pub writer_threads: usize,
    /// Open sessions a tenant may have (0: no limit).
    pub tenant_max_connections: usize,
    /// Writes per second a tenant may make (0: no limit).
    pub tenant_max_writes_per_second: u32,
    /// Megabytes a tenant's database may grow to; past it pushes are rejected (0: no limit).
    pub tenant_max_database_mb: u64,
    /// Seconds a tenant with no session stays open before its files are closed.
    pub tenant_idle_secs: u64,
    /// Tenants labelled by name in `/metrics` (the most connected; the rest are summed as `_other`).
    pub metrics_tenants: usize,
    /// Fan-out sends a frame to many sockets with one system call through io_uring where the kernel
    /// allows it (Linux); `false` writes each socket with its own call. For the whole process.
    pub fanout_io_uring: bool,
}

impl Config {
    /// The base schema: the configured `schema` file, or the built-in demo schema. Migrations come on
    /// top of it.
    pub fn base_schema(&self) -> crate::Result<sqlite_ext::Schema> {
        match &self.schema {
            Some(p) => {
                let sql = std::fs::read_to_string(p)
                    .map_err(|e| crate::Error::Config(format!("{}: {e}", p.display())))?;
                Ok(sqlite_ext::Schema::from_sql(&sql)?)
            }
            None => Ok(sqlite_ext::Schema::demo()),
        }
    }
}

/// The built-in sync rules (`schemas/sync_rules.toml`).
const DEFAULT_RULES: &str = include_str!("../../schemas/sync_rules.toml");

impl Config {
    /// The sync rules' text: the configured `rules` file, or the built-in rules.
    pub fn rules_text(&self) -> crate::Result<String> {
        match &self.rules {
            Some(p) => {
                std::fs::read_to_string(p).map_err(|e| crate::Error::Config(format!("{}: {e}", p.display())))
            }
            None => Ok(DEFAULT_RULES.to_owned()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data: "data".into(),
            web_root: "web/dist".into(),
            schema: None,
            rules: None,
            migrations: "schemas/migrations".into(),
            demo: false,
            demo_jobs: None,
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            backup: BackupConfig::default(),
            limits: Limits::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1 << 20,
            channel_buffer: 1024,
            hello_timeout_ms: 10_000,
            send_timeout_ms: 10_000,
            ping_interval_ms: 30_000,
            max_inflight_pushes: 1024,
            log_retention: 100_000,
            snapshot_chunk_rows: 2_000,
            snapshot_chunk_bytes: 16 * 1024,
            max_batch: 512,
            writer_threads: 0,
            tenant_max_connections: 0,
            tenant_max_writes_per_second: 0,
            tenant_max_database_mb: 0,
            tenant_idle_secs: 60,
            metrics_tenants: 20,
            fanout_io_uring: true,
        }
    }
}

impl Config {
    /// Reads `path` (if any), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut config = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
                toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?
            }
            None => Config::default(),
        };
        if let Ok(v) = std::env::var("MOAT_LISTEN") {
            config.listen = v;
        }
        if let Ok(v) = std::env::var("MOAT_DATA") {
            config.data = v.into();
        }
        if let Ok(v) = std::env::var("MOAT_WEB_ROOT") {
            config.web_root = v.into();
        }
        if let Ok(v) = std::env::var("MOAT_MIGRATIONS") {
            config.migrations = v.into();
        }
        if let Ok(v) = std::env::var("MOAT_TLS_LISTEN") {
            config.tls.listen = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_TLS_CERT") {
            config.tls.cert = Some(v.into());
        }
        if let Ok(v) = std::env::var("MOAT_TLS_KEY") {
            config.tls.key = Some(v.into());
        }
        if let Ok(v) = std::env::var("MOAT_BACKUP_DIR") {
            config.backup.dir = Some(v.into());
        }
        if let Ok(v) = std::env::var("MOAT_JWKS_URL") {
            config.auth.jwks_url = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_JWT_ISSUER") {
            config.auth.issuer = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_JWT_AUDIENCE") {
            config.auth.audience = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_HS256_SECRET") {
            config.auth.hs256_secret = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_CLUSTER") {
            config.cluster.url = Some(v);
        }
        if let Ok(v) = std::env::var("MOAT_NODE") {
            config.cluster.node = Some(v);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\n[limits]\nchannel_buffer = 7\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.listen.as_str(), c.limits.channel_buffer), ("0.0.0.0:9000", 7));
        assert_eq!(c.limits.max_batch, Limits::default().max_batch, "unset fields keep their defaults");
        std::fs::write(&path, "listne = \"typo\"\n").unwrap();
        assert!(Config::load(Some(&path)).unwrap_err().to_string().contains("listne"));
    }

    #[test]
    fn the_example_file_is_a_valid_config_of_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/moat.example.toml");
        let c = Config::load(Some(Path::new(path))).unwrap();
        let d = Config::default();
        assert_eq!(c.limits.ping_interval_ms, d.limits.ping_interval_ms);
        assert_eq!((c.backup.interval_secs, c.backup.keep), (d.backup.interval_secs, d.backup.keep));
        assert_eq!(c.auth.claims, crate::auth::ClaimMap::default());
        assert!(c.tls.parts().unwrap().is_none());
    }
}
