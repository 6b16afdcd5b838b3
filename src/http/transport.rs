//! The connection's byte stream: a plain `TcpStream`, or a TLS session over one, behind one
//! type, so reading requests (`parse.rs`), writing under the write timeout (`write.rs`) and the
//! responder never ask which.
//!
//! * **Reads** return plaintext and fail like a socket's: the socket's `SO_RCVTIMEO` gives
//!   `WouldBlock`/`TimedOut`, a peer gone gives `Ok(0)` or an error. With TLS, records are read
//!   and decrypted until some plaintext is there; a TLS protocol error is `InvalidData` (the
//!   alert it queued goes out best-effort).
//! * **Writes** go in steps ([`Transport::write_step`]): each hands over what it can and makes
//!   at most one socket `write`, which may block up to the socket's `SO_SNDTIMEO`. With TLS the
//!   plaintext is first sealed into the session's buffer (at most rustls's 64 KiB of records),
//!   so a step may take plaintext without the kernel taking anything yet;
//!   [`Transport::pending`] says records are still waiting. The write timeout (`write.rs`)
//!   counts what the kernel took ([`Transport::sent`], ciphertext with TLS) against what the
//!   client acknowledged on the socket ([`Transport::socket`]), so it works the same on both.
//!
//! rustls's own `StreamOwned` is not used: its `write` drops the socket's error after sealing
//! the plaintext and does not say how many bytes reached the kernel, both of which the write
//! timeout needs. Reading and writing here are the same few rustls calls, done in the open.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use rustls::ServerConnection;

/// After an error answer or a refused handshake, unread input is drained for at most this
/// long / this much, so that closing does not reset the connection before the client has read
/// the answer.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_millis(500);
/// Most input drained while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Reads and drops what the client sends, for at most [`LINGER_TIME`] and [`LINGER_BYTES`], or
/// until it closes: then closing the socket does not reset the connection, and the client
/// reads what was written last (an error answer, a TLS alert) instead of a reset.
pub(crate) fn drain(stream: &TcpStream) {
    let deadline = std::time::Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let mut r = stream;
    while total < LINGER_BYTES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match r.read(&mut buf) {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// The longest a closing `close_notify` may wait for the socket: the connection is ending, and
/// a client that reads nothing must not hold its thread for a whole write timeout more.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// One client connection's stream.
pub(crate) struct Transport {
    sock: TcpStream,
    /// The TLS session, once its handshake is complete; `None` on a plain listener.
    tls: Option<Box<ServerConnection>>,
    /// Bytes the kernel took on this connection (ciphertext with TLS).
    sent: u64,
}

/// A socket `write` that counts what the kernel took.
pub(super) struct Counted<'a> {
    pub(super) sock: &'a TcpStream,
    pub(super) sent: &'a mut u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.write(buf)?;
        *self.sent += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.sock.write_vectored(bufs)?;
        *self.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Transport {
    /// A plain connection.
    pub(crate) fn plain(sock: TcpStream) -> Transport {
        Transport {
            sock,
            tls: None,
            sent: 0,
        }
    }

    /// A TLS connection whose handshake is complete (`tls/`).
    pub(crate) fn tls(sock: TcpStream, conn: ServerConnection, sent: u64) -> Transport {
        Transport {
            sock,
            tls: Some(Box::new(conn)),
            sent,
        }
    }

    /// The socket underneath: timeouts, shutdown, and the kernel's unacknowledged-byte count.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Bytes the kernel took on this connection so far (ciphertext with TLS).
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Whether sealed TLS records are still waiting for the socket.
    pub(crate) fn pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads plaintext into `buf`. `Ok(0)`: the peer closed.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return (&self.sock).read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let got = tls.read_tls(&mut &self.sock)?;
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued, best-effort: the connection is over either way.
                let _ = tls.write_tls(&mut Counted {
                    sock: &self.sock,
                    sent: &mut self.sent,
                });
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if got == 0 {
                // EOF: the reader now reports it (cleanly after a close_notify, else as
                // UnexpectedEof); never loop on a closed socket.
                return match tls.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
        }
    }

    /// One step of writing `bytes`: takes what it can of them and makes at most one socket
    /// write. Returns how many of `bytes` were taken (with TLS, sealed into records that may
    /// still be [`pending`](Self::pending)). A socket timeout after plaintext was taken is not
    /// an error (the caller sees no progress in [`sent`](Self::sent)).
    pub(crate) fn write_step(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            let n = (&self.sock).write(bytes)?;
            self.sent += n as u64;
            return Ok(n);
        };
        let taken = if bytes.is_empty() {
            0
        } else {
            tls.writer().write(bytes)?
        };
        if tls.wants_write() {
            let mut out = Counted {
                sock: &self.sock,
                sent: &mut self.sent,
            };
            match tls.write_tls(&mut out) {
                Ok(_) => {}
                Err(e) if taken > 0 && is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    /// Writes all of `bytes` and flushes, each socket write bounded by `SO_SNDTIMEO` (no write
    /// timeout accounting: for the few bytes of an interim `100 Continue`).
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < bytes.len() || self.pending() {
            let before = self.sent;
            match self.write_step(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.sent == before && at < bytes.len() && !self.pending() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if self.sent == before && self.pending() {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }

    /// Sends a TLS `close_notify` (once; best-effort, waiting at most [`CLOSE_WAIT`] for the
    /// socket), so the client can tell the end from a truncation. Nothing on a plain connection.
    pub(crate) fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            if tls.wants_write() && self.sock.set_write_timeout(Some(CLOSE_WAIT)).is_ok() {
                let _ = tls.write_tls(&mut Counted {
                    sock: &self.sock,
                    sent: &mut self.sent,
                });
            }
        }
    }

    /// Ends the write side: a TLS `close_notify`, then the socket's write half.
    pub(crate) fn close_write(&mut self) {
        self.close_notify();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}
