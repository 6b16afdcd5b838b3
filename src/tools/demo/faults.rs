//! Fault injection: the tools that make the demo server misbehave on purpose (`crash`,
//! `exit`, `hang`, `garbage`, `huge_line`, `close_stdout`, `stop_reading`; see the table in
//! the [module docs](super)), and the raw stdout ([`StdoutFd`]) that lets `close_stdout` really
//! close the pipe. The process-level fault flags are applied by [`super::run_with`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;

use super::connection::Handled;
use super::jobs::spawn_job;
use super::request::{Req, text_result};

/// The default size of the `huge_line` tool's line: 20 MiB.
pub const HUGE_LINE_DEFAULT: u64 = 20 << 20;
const HUGE_LINE_PREFIX: &str = concat!(
    r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"debug","#,
    r#""logger":"shadowcat-demo","data":""#
);
const HUGE_LINE_SUFFIX: &str = r#""}}"#;
pub(super) const HUGE_LINE_PIECE: usize = 64 << 10;

/// This process's stdout as the raw fd 1, unbuffered (every message is one flushed write
/// anyway). Dropping it closes the pipe: fd 1 is atomically re-pointed at `/dev/null` with
/// `dup2`, so the reader sees EOF and no later `open` can land on fd 1. Only if `/dev/null`
/// cannot be opened is fd 1 simply closed.
pub(super) struct StdoutFd(ManuallyDrop<File>);

impl StdoutFd {
    pub(super) fn new() -> Self {
        // SAFETY: fd 1 is open for the life of the process and this `File` never closes it
        // (`ManuallyDrop`; `Drop` re-points it). The demo server writes nothing through std's
        // `Stdout`, so nothing else interleaves on the fd.
        StdoutFd(ManuallyDrop::new(unsafe { File::from_raw_fd(1) }))
    }
}

impl Write for StdoutFd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Drop for StdoutFd {
    fn drop(&mut self) {
        let null = OpenOptions::new().write(true).open("/dev/null");
        // SAFETY: plain fd syscalls on fd 1, which this value stands for; `null` stays open
        // across the call and is closed by its own drop afterwards.
        let rc = match &null {
            Ok(null) => unsafe { libc::dup2(null.as_raw_fd(), 1) },
            Err(_) => unsafe { libc::close(1) },
        };
        if rc < 0 {
            log::warn!(
                "demo-server: cannot close stdout: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Writes one line of exactly `bytes` bytes plus `\n`, a piece at a time: a
/// `notifications/message` whose `data` is padding, or bare padding if `bytes` is too small for
/// the envelope.
pub(super) fn write_huge_line(out: &mut dyn Write, bytes: u64) -> io::Result<()> {
    let envelope = (HUGE_LINE_PREFIX.len() + HUGE_LINE_SUFFIX.len()) as u64;
    let framed = bytes >= envelope;
    let mut padding = if framed { bytes - envelope } else { bytes };
    if framed {
        out.write_all(HUGE_LINE_PREFIX.as_bytes())?;
    }
    // Made here, not a `static` array: 64 KiB of padding in the binary's read-only data.
    let piece = vec![b'x'; HUGE_LINE_PIECE];
    while padding > 0 {
        let n = padding.min(HUGE_LINE_PIECE as u64) as usize;
        out.write_all(&piece[..n])?;
        padding -= n as u64;
    }
    if framed {
        out.write_all(HUGE_LINE_SUFFIX.as_bytes())?;
    }
    out.write_all(b"\n")
}

/// `crash`: exits at once with status 3, without answering.
pub(super) fn crash() -> Handled {
    log::warn!("demo-server: crash tool called, exiting with status 3");
    std::process::exit(3)
}

/// `exit`: answers, then exits with `code` (default 0).
pub(super) fn exit(req: &Req, code: Option<i32>) -> Handled {
    let code = code.unwrap_or(0);
    req.reply(&text_result(format!("exiting with status {code}")))?;
    log::warn!("demo-server: exit tool called, exiting with status {code}");
    std::process::exit(code)
}

/// `hang`: never answers; cancellation (or stdin EOF) ends it silently.
pub(super) fn hang(req: &Req) -> Handled {
    spawn_job(req, |job| {
        // Nothing is ever sent on the channel: this returns when the sender is dropped,
        // i.e. on notifications/cancelled or at stdin EOF.
        let _ = job.cancel.recv();
        None
    })
}

/// `garbage`: `lines` (default 3) non-JSON lines and one JSON line that is not JSON-RPC, then
/// the answer.
pub(super) fn garbage(req: &Req, lines: Option<u64>) -> Handled {
    let lines = lines.unwrap_or(3);
    req.sh.write_raw(|out| {
        for _ in 0..lines {
            out.write_all(b"this is not json\n")?;
        }
        out.write_all(b"{\"hello\":1}\n")
    })?;
    req.reply(&text_result("garbage sent"))
}

/// `huge_line`: one line of exactly `bytes` bytes (default [`HUGE_LINE_DEFAULT`]), then the
/// answer.
pub(super) fn huge_line(req: &Req, bytes: Option<u64>) -> Handled {
    let bytes = bytes.unwrap_or(HUGE_LINE_DEFAULT);
    req.sh.write_raw(|out| write_huge_line(out, bytes))?;
    req.reply(&text_result(format!("huge line sent ({bytes} bytes)")))
}

/// `close_stdout`: answers, then drops the output writer; serving goes on until stdin EOF.
pub(super) fn close_stdout(req: &Req) -> Handled {
    req.reply(&text_result("closing stdout"))?;
    log::warn!("demo-server: close_stdout called; serving on until stdin EOF");
    req.sh.close_output();
    Ok(())
}

/// `stop_reading`: answers, then the reader thread never reads stdin again.
pub(super) fn stop_reading(req: &Req) -> Handled {
    req.reply(&text_result("no longer reading stdin"))?;
    req.sh.stop_reading.store(true, Ordering::Relaxed);
    Ok(())
}
