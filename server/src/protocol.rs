//! The session messages are the core's ([`sqlite_ext::protocol`]): written once, spoken by the server
//! and by every client engine. Re-exported here for the server's modules and its tests.

pub use sqlite_ext::protocol::{ClientMsg, DiffJson, PROTOCOL_VERSION, SchemaInfo, ServerMsg, close};
