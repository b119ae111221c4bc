//! The small error type that crosses the FFI, converted from the core's in one place.

/// What a call into the client can fail with.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum MoatError {
    /// The input was refused (a validation message for the user, an unknown name, a bad token).
    /// The caller's fault; the same call fails again.
    #[error("{message}")]
    Invalid {
        /// What is wrong, in words a user can read.
        message: String,
    },
    /// The record, object type or conflict does not exist on this device.
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// The local database failed (disk full, I/O). A retry may succeed.
    #[error("{message}")]
    Storage {
        /// SQLite's words.
        message: String,
    },
}

impl From<sqlite_ext::Error> for MoatError {
    fn from(e: sqlite_ext::Error) -> Self {
        let message = e.for_user();
        match e {
            sqlite_ext::Error::NotFound(_) => MoatError::NotFound { message },
            sqlite_ext::Error::Sqlite(_) => MoatError::Storage { message },
            _ => MoatError::Invalid { message },
        }
    }
}
