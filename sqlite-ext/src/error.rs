//! The one error type of the core. Each variant says whose fault it is and whether retrying helps.

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sender's JSON is not a well-formed diff (syntax, shape, a non-canonical value).
    /// Sender's fault; the same bytes will always fail.
    #[error("malformed diff: {0}")]
    Malformed(String),

    /// The diff names a table that is not a synced table of the schema.
    /// Sender's fault (or its schema is older or newer than ours); retrying the same diff fails.
    #[error("unknown table {0:?}")]
    UnknownTable(String),

    /// The diff names a column that the table does not have.
    /// Sender's fault (or a schema mismatch); retrying the same diff fails.
    #[error("unknown column {column:?} in table {table:?}")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column the sender named.
        column: String,
    },

    /// The diff is well-formed JSON but breaks a rule of the format or of the schema: a missing
    /// primary-key column, a wrong type, an update that changes nothing, two changes to one row.
    /// Sender's fault; retrying the same diff fails.
    #[error("invalid diff: {0}")]
    Invalid(String),

    /// A binary changeset could not be read (truncated, unknown opcode, a table header that does not
    /// match the schema). Our own bug or a corrupted store; retrying does not help.
    #[error("corrupt changeset: {0}")]
    CorruptChangeset(String),

    /// The schema SQL breaks a rule synced tables must follow (STRICT, explicit primary key, a
    /// reserved name). The schema author's fault; fix the schema.
    #[error("schema: {0}")]
    Schema(String),

    /// The change breaks a constraint of the target database (NOT NULL, CHECK, a type of a STRICT
    /// table). The whole diff was rolled back. The writer's fault; the same diff fails again.
    #[error("constraint failed on {table} {key}: {reason}")]
    Constraint {
        /// The table of the change that failed.
        table: String,
        /// The primary key of the row, as JSON.
        key: String,
        /// What SQLite said.
        reason: String,
    },

    /// A session frame from the other side does not decode (a missing or mistyped field, a frame
    /// that is not JSON). The sender's fault; the same frame always fails. The client closes the
    /// session and starts again from its stored cursors.
    #[error("protocol: {0}")]
    Protocol(String),

    /// A request names something the replica does not hold (a conflict id, a row).
    /// The caller's fault; retrying the same request fails.
    #[error("not found: {0}")]
    NotFound(String),

    /// SQLite itself failed (I/O, a full disk, a locked file). Not the sender's fault; a retry may
    /// succeed once the cause is gone.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    /// The error in words for the user: a refused input or a missing record says only what is wrong
    /// (`Title: a value is required`), everything else says what failed too.
    pub fn for_user(&self) -> String {
        match self {
            Error::Invalid(m) | Error::NotFound(m) => m.clone(),
            e => e.to_string(),
        }
    }

    /// True when the fault lies with the input, so repeating the same request cannot succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Error::Sqlite(_))
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
