//! # moat-server
//!
//! The Moat server: WebSocket pub/sub over a SQLite database, with channels derived from signed
//! tokens by declarative sync rules, a durable group-committed write path built on `sqlite-ext`'s
//! merge, catch-up from a versioned change log, and fresh snapshots for clients too far behind.
//!
//! - [`config`]: the TOML file, environment and flags.
//! - [`auth`]: JWT with user, tenant and role: an identity provider's keys ([`jwks`]), Ed25519, HS256.
//! - [`rules`]: profiles, channels, row routing, hidden and read-only columns.
//! - [`protocol`]: the session messages (documented in `docs/protocol.md`).
//! - [`backup`]: consistent copies of tenant databases, kept and restored.
//! - [`tenants`]: one SQLite database per tenant, the platform's registry, opening and closing.
//! - `store`: one tenant's database, the pool of writer threads and their group commits, the log.
//! - `hub`: channels and fan-out, one encoding (framed once) per change per channel, written by
//!   the channel's fan-out tasks straight to the subscribers' sockets.
//! - `ws` and `socket`: the server's own RFC 6455 layer after the handshake, and a session's socket.
//! - `connection` and `handlers`: one WebSocket session and one handler per message.
//! - [`server`]: the router and `serve`.
//! - [`cluster`]: several nodes over NATS, one writer per tenant by lease (`docs/scaling.md`).
//! - [`tls`]: TLS in the binary (certificates reloaded in place) and the accepted sockets' settings.
//! - [`metrics`]: counters and histograms for `/metrics`.
//! - [`migrate`]: numbered schema migrations (`moat migrate`).
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod auth;
pub mod backup;
pub mod cluster;
pub mod config;
mod connection;
mod error;
mod handlers;
mod hub;
pub mod jwks;
pub mod metrics;
pub mod migrate;
mod model;
pub mod protocol;
pub mod rules;
pub mod server;
mod socket;
pub mod split;
mod store;
pub mod tenants;
pub mod tls;
#[cfg(target_os = "linux")]
mod uring;
/// Elsewhere than Linux, fan-out writes each socket itself.
#[cfg(not(target_os = "linux"))]
mod uring {
    pub(crate) const ENTRIES: usize = 256;
    pub(crate) fn disable() {}
    pub(crate) fn available() -> bool {
        false
    }
    pub(crate) fn send_all(_: &[std::os::fd::RawFd], _: &bytes::Bytes, _: &mut Vec<i32>) -> bool {
        false
    }
}
mod ws;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{Server, app};
pub use store::Store;
