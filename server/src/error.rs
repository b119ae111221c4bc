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

    /// The diff is malformed, does not fit the schema, or breaks a constraint. The client's fault;
    /// retrying fails. (A SQLite failure under the core is [`Error::Storage`], never this: see the
    /// `From` impl below.)
    #[error("bad diff: {0}")]
    BadDiff(sqlite_ext::Error),

    /// The values break the rules `object_metadata` sets (a required field empty, a value that is
    /// not one of the choices, out of range, a reference to no record). The client's fault; retrying
    /// fails. The message names the object, the field and the rule.
    #[error("invalid: {0}")]
    Invalid(String),

    /// The server is overloaded or shutting down. Not the client's fault; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// SQLite failed (I/O, disk full). Not the client's fault; a retry may succeed.
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),

    /// The tenant is at one of its limits (writes per second); the message names it. Not this
    /// write's fault; retry later.
    #[error("limit: {0}")]
    Limit(String),

    /// The server cannot take its address (in use, not allowed). The operator's; nothing was created.
    #[error("listen: {0}")]
    Listen(String),

    /// A configuration file is wrong. The operator's fault; fix the file.
    #[error("config: {0}")]
    Config(String),

    /// The server broke one of its own invariants: a log entry or a stored outcome it cannot read, a
    /// row it just wrote that is gone, another server refusing an operator's request. Not the
    /// client's fault; retrying the same request does not help (an operator must look).
    #[error("internal: {0}")]
    Internal(String),
}

/// The core's errors split by whose fault they are: SQLite failing is storage (a retry may help),
/// everything else is the diff's.
impl From<sqlite_ext::Error> for Error {
    fn from(e: sqlite_ext::Error) -> Self {
        match e {
            sqlite_ext::Error::Sqlite(e) => Error::Storage(e),
            e => Error::BadDiff(e),
        }
    }
}

impl Error {
    /// The machine-readable code sent on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::Protocol(_) => "protocol",
            Error::Forbidden(_) => "forbidden",
            Error::BadDiff(_) => "bad_diff",
            Error::Invalid(_) => "invalid",
            Error::Unavailable(_) => "unavailable",
            Error::Storage(_) => "storage",
            Error::Limit(_) => "limit",
            Error::Listen(_) => "listen",
            Error::Config(_) => "config",
            Error::Internal(_) => "internal",
        }
    }

    /// What a refused push's `reason` says: the user's words alone for a refusal of the write itself
    /// (the role's rights, the metadata's rules, a limit), since `code` already names the kind; the
    /// whole message otherwise.
    pub fn reason(&self) -> String {
        match self {
            Error::Forbidden(m) | Error::Invalid(m) | Error::Limit(m) => m.clone(),
            e => e.to_string(),
        }
    }

    /// An error another node answered with (`code` as [`code`](Self::code) names it): the same kind
    /// here, or unavailable (retry) for a kind that cannot cross (a SQLite failure).
    pub(crate) fn from_wire(code: &str, message: String) -> Error {
        match code {
            "unauthorized" => Error::Unauthorized(message),
            "protocol" => Error::Protocol(message),
            "forbidden" => Error::Forbidden(message),
            "invalid" => Error::Invalid(message),
            "limit" => Error::Limit(message),
            "config" => Error::Config(message),
            "internal" => Error::Internal(message),
            _ => Error::Unavailable(message),
        }
    }

    /// True when sending the same request again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Storage(_) | Error::Limit(_))
    }
}

/// The server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn sqlite_failing_under_the_core_is_storage_not_a_bad_diff() {
        let io = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR), None);
        let e = Error::from(sqlite_ext::Error::Sqlite(io));
        assert!(matches!(e, Error::Storage(_)), "{e:?}");
        assert_eq!((e.code(), e.retryable()), ("storage", true));
        let bad = Error::from(sqlite_ext::Error::Invalid("an update that changes nothing".into()));
        assert_eq!((bad.code(), bad.retryable()), ("bad_diff", false));
    }
}
