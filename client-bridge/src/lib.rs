//! Moat's client shells around `sqlite-ext`. The native shell ([`native`]) is exported through
//! uniffi: the iOS app calls it from Swift, and the test suite drives the very same surface from
//! Python. The web shell (`web`, compiled only for wasm32) is built for wasm32 with wasm-bindgen and runs in a dedicated
//! Worker (see `web/src/sdk`). Both run the one [`driver`].
//!
//! A shell only moves bytes and forwards calls: the session logic is `sqlite_ext::SyncEngine`, the
//! queue, batching, status and error reporting are the [`driver`]'s, and the view models are
//! `sqlite_ext::ui`'s (exported through uniffi by the core itself).
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod driver;

#[cfg(not(target_arch = "wasm32"))]
mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod web;

#[cfg(not(target_arch = "wasm32"))]
pub use error::MoatError;

#[cfg(not(target_arch = "wasm32"))]
uniffi::setup_scaffolding!();
