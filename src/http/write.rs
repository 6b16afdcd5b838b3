//! Writing to a client under the write timeout, where progress is what the client
//! acknowledges, not what the kernel accepts.
//!
//! The socket's `SO_SNDTIMEO` (the server's `write_timeout`) bounds each `write` call, but is
//! not enough on its own. Against a client that never reads, Linux still takes a few more KiB
//! into a full send queue every few seconds (appending to its last segment, or after its
//! memory accounting shrinks), so each `write` call, and each response, completes just inside
//! the timeout, and the connection was never closed (measured: 64 slow readers kept their
//! connection threads past 15 s with a 10 s timeout). So a connection's [`Watch`] adds up the
//! time its writes spend blocked while the client acknowledges nothing, across calls and
//! responses, and fails the write once that reaches the timeout. Acknowledged bytes are read
//! with `SIOCOUTQ` (bytes not yet acknowledged), only after a call that blocked, so a client
//! that keeps up costs no extra system call. A blocked call is woken only when much of the
//! queue is acknowledged, so `SO_SNDTIMEO` is a quarter of the timeout ([`call_timeout`]):
//! a client that reads slowly but steadily is seen making progress at least that often, and
//! one that reads nothing is closed after between 1 and 1.25 times the timeout of blocked
//! writes (the first look may count its early acknowledgements as progress). Elsewhere than
//! Linux, bytes the kernel accepted count as progress.
//!
//! With TLS the same holds one layer down: the bytes counted are the ciphertext the kernel took
//! ([`Transport::sent`]), compared with what the socket under the session has not had
//! acknowledged, and a response is written only once its last sealed record reached the kernel.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::transport::Transport;

/// A `write` call that takes at least this long waited for the client.
const BLOCKED: Duration = Duration::from_millis(2);

/// The socket's `SO_SNDTIMEO` for a write timeout: a quarter of it (at least 1 ms).
pub(crate) fn call_timeout(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(1))
}

/// Bytes written to `stream` that the peer has not acknowledged yet (`None`: unknown).
#[cfg(target_os = "linux")]
fn unacknowledged(stream: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) on a TCP socket writes one int through the pointer, which
    // points at a live local; the descriptor is borrowed from `stream` for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (rc == 0).then(|| u64::try_from(n).ok()).flatten()
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_stream: &TcpStream) -> Option<u64> {
    None
}

/// What one connection's client has acknowledged of the bytes written to it, and how long
/// writes have waited for it since it last acknowledged anything. Lives as long as the
/// connection, so a client cannot reset it by making the proxy start a new response.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Of the bytes the kernel took on this connection, those acknowledged by the client when
    /// last looked.
    acked: u64,
    /// Time spent in blocked `write` calls since the client last acknowledged something.
    stalled: Duration,
}

impl Watch {
    /// Writes all of `bytes` to `stream` (whose socket's `SO_SNDTIMEO` is [`call_timeout`]),
    /// TLS records included. Fails with `TimedOut` once writes on this connection have been
    /// blocked for `timeout` in all without the client acknowledging a byte, and with the
    /// socket's error when the client is gone.
    pub(crate) fn write_all(
        &mut self,
        stream: &mut Transport,
        bytes: &[u8],
        timeout: Duration,
    ) -> io::Result<()> {
        let mut at = 0;
        while at < bytes.len() || stream.pending() {
            let before = stream.sent();
            let started = Instant::now();
            match stream.write_step(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
            let wrote = stream.sent() - before;
            let took = started.elapsed();
            if took >= BLOCKED || wrote == 0 {
                self.blocked(stream.socket(), stream.sent(), took, wrote, timeout)?;
            }
        }
        Ok(())
    }

    /// Accounts for a `write` call that waited `took` (and handed `wrote` bytes over).
    /// `written`: all bytes the kernel took on this connection so far.
    fn blocked(
        &mut self,
        stream: &TcpStream,
        written: u64,
        took: Duration,
        wrote: u64,
        timeout: Duration,
    ) -> io::Result<()> {
        let moved = match unacknowledged(stream) {
            Some(queued) => {
                let acked = written.saturating_sub(queued);
                let moved = acked > self.acked;
                self.acked = acked;
                moved
            }
            None => wrote > 0,
        };
        if moved {
            self.stalled = Duration::ZERO;
            return Ok(());
        }
        self.stalled += took;
        if self.stalled >= timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client acknowledged nothing while writes waited {timeout:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
