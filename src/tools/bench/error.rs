//! The load generator's own failures. They become a [`crate::Error`] only at [`super::run`],
//! where `main` needs an exit code: [`BenchError::Config`] becomes [`crate::Error::Config`]
//! (exit 2), everything else [`crate::Error::Tool`] with the bench's own text (exit 1).

use std::fmt;
use std::io;

/// Why a bench run could not start or could not report.
///
/// Single failed requests are not errors: they are counted by kind in the report.
#[derive(Debug)]
pub enum BenchError {
    /// An invalid flag or option, a refused `--url` (not `http://`, unresolvable, or not a
    /// loopback address without `--allow-remote`), or a `--pipe` command that cannot be started.
    Config(String),
    /// Sessions could not initialize because no TCP connection to the endpoint could be made.
    Unreachable {
        /// The endpoint.
        url: String,
        /// How many sessions failed, and the first failure.
        detail: String,
    },
    /// Sessions (or the `--pipe` child) could not initialize: an HTTP or JSON-RPC error, a
    /// timeout, or an answer that is not the expected response.
    Initialize {
        /// The endpoint, or `pipe:<command>`.
        url: String,
        /// How many sessions failed, and the first failure.
        detail: String,
    },
    /// The run completed but no request succeeded (reported by [`super::run`] only).
    NoSuccess {
        /// The endpoint, or `pipe:<command>`.
        url: String,
    },
    /// A session, caller or helper thread could not be started.
    Io(io::Error),
    /// A bug: a session or caller thread panicked, or the child's pipes were missing.
    Internal(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Config(why) => write!(f, "{why}"),
            BenchError::Unreachable { url, detail } => write!(f, "{url} unreachable: {detail}"),
            BenchError::Initialize { url, detail } => write!(f, "{url}: {detail}"),
            BenchError::NoSuccess { url } => write!(f, "no request to {url} succeeded"),
            BenchError::Io(e) => write!(f, "io: {e}"),
            BenchError::Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The boundary to `main`: configuration stays configuration (exit 2); anything else is a
/// runtime failure (exit 1) carrying the bench's own message.
impl From<BenchError> for crate::Error {
    fn from(e: BenchError) -> crate::Error {
        match e {
            BenchError::Config(why) => crate::Error::Config(why),
            other => crate::Error::Tool(other.to_string()),
        }
    }
}
