//! The server's error type. Each variant says whose fault it is and whether a retry can help; each
//! maps to the `code` of an error, reject or close frame, so a client can act on it.

/// Everything a request to the server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is missing, forged, expired or names no known role. The client's fault; it must get
    /// a new token before retrying.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The client broke the protocol (no hello, wrong version, a frame before hello, a bad message).
    /// The client's fault; retrying the same frame fails.
    #[error("protocol: {0}")]
    Protocol(String),

    /// The write is outside the writer's rights (a read-only table or column, another tenant's row).
    /// The client's fault; retrying fails.
    #[error("forbidden: {0}")]
    Forbidden(String),

    /// The diff is malformed or does not fit the schema. The client's fault; retrying fails.
    #[error("bad diff: {0}")]
    BadDiff(#[from] sqlite_ext::Error),

    /// The server is overloaded or shutting down. Not the client's fault; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// SQLite failed (I/O, disk full). Not the client's fault; a retry may succeed.
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),

    /// A configuration file is wrong. The operator's fault; fix the file.
    #[error("config: {0}")]
    Config(String),
}

impl Error {
    /// The machine-readable code sent on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::Protocol(_) => "protocol",
            Error::Forbidden(_) => "forbidden",
            Error::BadDiff(e) if !e.is_permanent() => "storage",
            Error::BadDiff(_) => "bad_diff",
            Error::Unavailable(_) => "unavailable",
            Error::Storage(_) => "storage",
            Error::Config(_) => "config",
        }
    }

    /// True when sending the same request again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Storage(_))
            || matches!(self, Error::BadDiff(e) if !e.is_permanent())
    }
}

/// The server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
