//! # sqlite-ext: the core of Moat
//!
//! Every rule of sync and merge lives here, once, with no networking and no threads: the server and
//! every client (native through uniffi, web through wasm) wrap this crate and only move bytes.
//!
//! - [`schema`]: which tables are synced, read from the SQL under `schemas/`.
//! - [`value`]: SQLite values and their one canonical JSON form.
//! - `changeset` (internal): SQLite's binary changeset format, read and written byte for byte.
//! - [`diff`]: JSON diffs, the wire form of a changeset, decoded strictly against the schema.
//! - [`apply`]: applying a diff with the conflict handler; field-level merge; conflicts as data.
//! - [`protocol`]: the session messages, the protocol version and the close codes, for both sides.
//! - [`replica`]: a client's database: golden `server_data_*` tables, the `overlays` log of pending
//!   local changesets, and the projection the UI reads, rebased whenever the server moves.
//! - [`sync`]: the client's session state machine (events in, instructions out), over a replica.
//! - [`ui`]: the dynamic UI model (object types, list views, detail views, validated edits) computed
//!   only from the synced `object_metadata` and `layout_definition`.
//!
//! The wire format is described with examples in `docs/protocol.md`.
#![warn(unreachable_pub, missing_debug_implementations, missing_docs)]

pub mod apply;
mod changeset;
pub mod diff;
mod error;
pub mod protocol;
pub mod replica;
pub mod rows;
pub mod schema;
pub mod sync;
pub mod ui;
pub mod value;

pub use apply::{ColumnConflict, Conflict, ConflictKind, MergeReport, merge, merge_by_changeset};
pub use changeset::Op;
pub use diff::{Change, ColumnChange, Diff, DiffWriter, Fields, capture};
pub use error::{Error, Result};
pub use replica::{Mutation, Rejected, Replica, Resolution, StoredConflict};
pub use rows::{Row, RowsWriter, read_rows};
pub use schema::{Column, ColumnType, Schema, Table};
pub use sync::{Event, Instruction, Phase, Status, SyncEngine};
pub use ui::FieldValue;
pub use value::{BorrowedValue, FrameValue, Value};

#[cfg(feature = "uniffi")]
uniffi::setup_scaffolding!();
