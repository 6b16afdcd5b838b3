//! What one exchange with a replica says about it: the [`Verdict`] its breaker is told, and
//! whether a failed request surely never reached the server ([`undelivered`]), so that it
//! may go to another replica.

use crate::error::Error;
use crate::upstream::Reply;

/// How one exchange with a replica went, for its breaker.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An answer (any status below 500, a JSON-RPC error, a lost session).
    Answered,
    /// No connection, or a 5xx: counts.
    Failed(String),
    /// A request it took timed out: a slow call or a hung server. Does not count (a client
    /// calling a slow tool must not eject a healthy replica) but has it probed at once.
    Suspect(String),
    /// Says nothing about the replica (no pool slot free, garbage in a body).
    Neutral,
}

pub fn verdict(r: Result<&Reply, &Error>) -> Verdict {
    match r {
        Ok(Reply::Relay { status, .. }) if *status >= 500 => {
            Verdict::Failed(format!("answered {status}"))
        }
        Ok(_) | Err(Error::UpstreamSessionLost) => Verdict::Answered,
        Err(e @ Error::UpstreamUnreachable { .. }) => Verdict::Failed(e.to_string()),
        Err(e @ Error::Timeout) => Verdict::Suspect(e.to_string()),
        Err(e @ Error::UpstreamStatus { status, .. }) if *status >= 500 => {
            Verdict::Failed(e.to_string())
        }
        Err(_) => Verdict::Neutral,
    }
}

/// True when the request surely never reached the server: the connection was refused (or
/// the name did not resolve), so it may go to another replica.
pub fn undelivered(e: &Error) -> bool {
    let Error::UpstreamUnreachable { source, .. } = e else {
        return false;
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(err) = cur {
        if let Some(u) = err.downcast_ref::<ureq::Error>() {
            match u {
                ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => return true,
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return true;
                }
                _ => {}
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}
