//! Moat's client shells around `sqlite-ext`: the native one (uniffi, for iOS and the Python test
//! client) and the web one (wasm-bindgen). Both land with the client issues (#4, #5); this crate
//! exists now so that the workspace has the shape the design card fixes.
#![warn(unreachable_pub, missing_debug_implementations)]
