//! One thread for the pipes of many stdio children (per-session mode), instead of three threads
//! per child: a child that sits idle with its session should cost the proxy a few hundred
//! bytes, not three stacks.
//!
//! * **Reading:** the thread `poll(2)`s every registered child's stdout and stderr (and a wake
//!   pipe). stdout lines, each at most `--max-message` bytes, go to the child's line handler
//!   (the same routing as a reader thread's, which never blocks); at EOF, or a line over the
//!   limit, the end handler runs once and the child is deregistered. stderr lines (at most
//!   64 KiB; longer ones are cut) are logged with the child's name, escaped. A child's partial
//!   line is kept in its own buffer, grown only as far as the line needs and shrunk after.
//! * **Writing:** callers write a child's stdin themselves ([`Outbox::send_deadline`]), without
//!   a thread hop: the descriptor is non-blocking, and what the pipe does not take at once waits
//!   in the child's outbox (at most [`OUTBOX_LIMIT`] bytes, or one line bigger than that),
//!   which this thread flushes when the pipe has room. A child that stops reading fills its
//!   outbox, and callers then wait, never past their deadline: exactly the writer thread's
//!   back-pressure, without the thread.
//! * Crash and hang detection are unchanged: a child that exits ends its stdout (EOF: its calls
//!   fail at once and the keeper learns it died); a child that stops reading or answering makes
//!   its calls time out.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::Error;
use crate::util::{Escaped, lock, trim_line};

/// Bytes a child's stdin may hold back before writers wait (one larger line always fits).
pub const OUTBOX_LIMIT: usize = 1024 * 1024;
/// Longest stderr line logged; the rest of a longer one is cut.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// A line buffer larger than this is shrunk back once its line is done.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What the reactor calls with each stdout line of a child (newline included).
pub type OnLine = Box<dyn FnMut(&[u8]) + Send>;
/// What the reactor calls once when a child's stdout ends: `Some(why)` if it was broken.
pub type OnEnd = Box<dyn FnOnce(Option<String>) + Send>;

/// The I/O thread of many children.
pub struct Reactor {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    reg: Mutex<Registry>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Registry {
    next: u64,
    /// Children registered since the thread last looked.
    added: Vec<Entry>,
    /// Children whose outbox holds bytes for the pipe.
    want_write: Vec<u64>,
}

/// One child, as the reactor thread holds it.
struct Entry {
    token: u64,
    name: String,
    max: usize,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    outbox: Arc<Outbox>,
    on_line: OnLine,
    on_end: Option<OnEnd>,
    out_line: Vec<u8>,
    err_line: Vec<u8>,
    /// Cutting an over-long stderr line: skip until its end.
    err_skipping: bool,
    write_wanted: bool,
}

/// A child's stdin: written by callers directly, what the pipe does not take at once held
/// back and flushed by the reactor.
pub struct Outbox {
    state: Mutex<OutState>,
    room: Condvar,
    reactor: Weak<Inner>,
    token: u64,
}

struct OutState {
    stdin: Option<ChildStdin>,
    /// Bytes not yet written, in order.
    pending: Vec<u8>,
}

fn nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Reactor {
    /// Starts the thread.
    pub fn start() -> Result<Arc<Reactor>, Error> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (wake_r, wake_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let inner = Arc::new(Inner {
            wake_r,
            wake_w,
            reg: Mutex::new(Registry::default()),
            stopping: AtomicBool::new(false),
        });
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name("shadowcat-io".into())
            .stack_size(256 * 1024)
            .spawn(move || run(&i))
            .map_err(Error::Io)?;
        Ok(Arc::new(Reactor {
            inner,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Takes over a child's stdin: the outbox its writers write through.
    pub fn outbox(&self, stdin: ChildStdin) -> Result<Arc<Outbox>, Error> {
        nonblocking(stdin.as_raw_fd()).map_err(Error::Io)?;
        let mut reg = lock(&self.inner.reg);
        let token = reg.next;
        reg.next += 1;
        Ok(Arc::new(Outbox {
            state: Mutex::new(OutState {
                stdin: Some(stdin),
                pending: Vec::new(),
            }),
            room: Condvar::new(),
            reactor: Arc::downgrade(&self.inner),
            token,
        }))
    }

    /// Takes over the child's stdout and stderr (its stdin is `outbox`): `on_line` gets each
    /// stdout line, `on_end` runs once when stdout ends.
    pub fn watch(
        &self,
        outbox: &Arc<Outbox>,
        name: String,
        max: usize,
        pipes: (ChildStdout, ChildStderr),
        on_line: OnLine,
        on_end: OnEnd,
    ) -> Result<(), Error> {
        let (stdout, stderr) = pipes;
        for fd in [stdout.as_raw_fd(), stderr.as_raw_fd()] {
            nonblocking(fd).map_err(Error::Io)?;
        }
        lock(&self.inner.reg).added.push(Entry {
            token: outbox.token,
            name,
            max,
            stdout: Some(stdout),
            stderr: Some(stderr),
            outbox: outbox.clone(),
            on_line,
            on_end: Some(on_end),
            out_line: Vec::new(),
            err_line: Vec::new(),
            err_skipping: false,
            write_wanted: false,
        });
        self.inner.wake();
        Ok(())
    }

    /// Stops the thread (children still registered are left to their own stop).
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.wake();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn wake(&self) {
        // SAFETY: a one-byte write from a valid buffer to our own non-blocking pipe; a full
        // pipe (EAGAIN) already means a wake-up is pending.
        unsafe { libc::write(self.wake_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    fn want_write(&self, token: u64) {
        lock(&self.reg).want_write.push(token);
        self.wake();
    }
}

/// Writes as much of `bytes` as the pipe takes now; the count written, or the error that
/// means the child no longer reads at all.
fn write_some(stdin: &mut ChildStdin, bytes: &[u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < bytes.len() {
        match stdin.write(&bytes[n..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Outbox {
    /// Writes `bytes` (whole lines) to the child's stdin, in order with every other write:
    /// what the pipe does not take now is held back for the reactor to flush. Waits while the
    /// outbox is full, at most until `deadline`. `Error::ChildExited` once stdin is closed or
    /// broken.
    pub fn send_deadline(&self, bytes: &[u8], deadline: Instant, name: &str) -> Result<(), Error> {
        let mut st = lock(&self.state);
        loop {
            if st.stdin.is_none() {
                return Err(Error::ChildExited(name.to_owned()));
            }
            if st.pending.is_empty() || st.pending.len() + bytes.len() <= OUTBOX_LIMIT {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            st = match self.room.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        self.put(&mut st, bytes)
            .map_err(|_| Error::ChildExited(name.to_owned()))
    }

    /// Writes `bytes` only if that needs no waiting; false if it was not written.
    pub fn try_send(&self, bytes: &[u8]) -> bool {
        let Ok(mut st) = self.state.try_lock() else {
            return false;
        };
        if st.stdin.is_none() || st.pending.len() + bytes.len() > OUTBOX_LIMIT {
            return false;
        }
        self.put(&mut st, bytes).is_ok()
    }

    fn put(&self, st: &mut OutState, bytes: &[u8]) -> io::Result<()> {
        if !st.pending.is_empty() {
            st.pending.extend_from_slice(bytes);
            return Ok(());
        }
        let Some(stdin) = st.stdin.as_mut() else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        match write_some(stdin, bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => {
                st.pending.extend_from_slice(&bytes[n..]);
                if let Some(r) = self.reactor.upgrade() {
                    r.want_write(self.token);
                }
                Ok(())
            }
            Err(e) => {
                st.stdin = None;
                st.pending = Vec::new();
                self.room.notify_all();
                Err(e)
            }
        }
    }

    /// Closes stdin (the child reads EOF, its polite signal to exit); what was held back is
    /// dropped, and writers waiting fail.
    pub fn close(&self) {
        let mut st = lock(&self.state);
        st.stdin = None;
        st.pending = Vec::new();
        self.room.notify_all();
    }

    /// Reactor side: writes what is held back. True while some is left.
    fn flush(&self) -> bool {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let Some(stdin) = st.stdin.as_mut() else {
            return false;
        };
        match write_some(stdin, &st.pending) {
            Ok(n) => {
                st.pending.drain(..n);
                if st.pending.capacity() > KEEP_CAPACITY && st.pending.len() < KEEP_CAPACITY {
                    st.pending.shrink_to(KEEP_CAPACITY);
                }
            }
            Err(_) => {
                st.stdin = None;
                st.pending = Vec::new();
            }
        }
        self.room.notify_all();
        !st.pending.is_empty()
    }
}

/// The reactor thread.
fn run(inner: &Inner) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut fds: Vec<libc::pollfd> = Vec::new();
    // Which entry and which pipe each pollfd after the first is: 0 stdout, 1 stderr, 2 stdin.
    let mut what: Vec<(usize, u8)> = Vec::new();
    loop {
        {
            let mut reg = lock(&inner.reg);
            entries.append(&mut reg.added);
            for t in reg.want_write.drain(..) {
                if let Some(e) = entries.iter_mut().find(|e| e.token == t) {
                    e.write_wanted = true;
                }
            }
        }
        if inner.stopping.load(Ordering::Acquire) {
            break;
        }
        fds.clear();
        what.clear();
        fds.push(libc::pollfd {
            fd: inner.wake_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (i, e) in entries.iter().enumerate() {
            let mut add = |fd: RawFd, events: libc::c_short, kind: u8| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                what.push((i, kind));
            };
            if let Some(o) = &e.stdout {
                add(o.as_raw_fd(), libc::POLLIN, 0);
            }
            if let Some(r) = &e.stderr {
                add(r.as_raw_fd(), libc::POLLIN, 1);
            }
            if e.write_wanted {
                let fd = lock(&e.outbox.state).stdin.as_ref().map(|s| s.as_raw_fd());
                if let Some(fd) = fd {
                    add(fd, libc::POLLOUT, 2);
                }
            }
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("stdio I/O thread: poll failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            continue;
        }
        if fds[0].revents != 0 {
            let mut sink = [0u8; 256];
            // SAFETY: reads into a valid local buffer from our own non-blocking pipe.
            while unsafe {
                libc::read(
                    inner.wake_r.as_raw_fd(),
                    sink.as_mut_ptr().cast(),
                    sink.len(),
                )
            } > 0
            {}
        }
        for (k, &(i, kind)) in what.iter().enumerate() {
            let revents = fds[k + 1].revents;
            if revents == 0 {
                continue;
            }
            let Some(e) = entries.get_mut(i) else {
                continue;
            };
            match kind {
                0 => read_stdout(e, &mut scratch),
                1 => read_stderr(e, &mut scratch),
                _ => e.write_wanted = e.outbox.flush(),
            }
        }
        entries.retain(|e| e.stdout.is_some() || e.stderr.is_some());
    }
}

/// Reads what a child's stdout has now, handing each complete line on.
fn read_stdout(e: &mut Entry, scratch: &mut [u8]) {
    let Some(out) = e.stdout.as_mut() else { return };
    let end = loop {
        match out.read(scratch) {
            Ok(0) => break Some(None),
            Ok(n) => {
                if let Err(why) = lines(e, &scratch[..n]) {
                    break Some(Some(why));
                }
                if n < scratch.len() {
                    break None;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break None,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => break Some(Some(err.to_string())),
        }
        // Reading on while one child floods would starve the others: one buffer a turn.
        break None;
    };
    if let Some(why) = end {
        if let Some(w) = &why {
            log::warn!("{}: stdout: {w}; treating the child as broken", e.name);
        }
        e.stdout = None;
        e.out_line = Vec::new();
        if let Some(f) = e.on_end.take() {
            f(why);
        }
    }
}

/// Splits `data` into lines for `e.on_line`, keeping a partial last line. `Err` for a line
/// over the limit.
fn lines(e: &mut Entry, mut data: &[u8]) -> Result<(), String> {
    while let Some(at) = data.iter().position(|&b| b == b'\n') {
        let (line, rest) = data.split_at(at + 1);
        data = rest;
        if e.out_line.len() + line.len() > e.max.saturating_add(1) {
            return Err(format!("line longer than {} bytes", e.max));
        }
        let handled = if e.out_line.is_empty() {
            handle(&mut e.on_line, line)
        } else {
            e.out_line.extend_from_slice(line);
            let handled = handle(&mut e.on_line, &e.out_line);
            e.out_line.clear();
            if e.out_line.capacity() > KEEP_CAPACITY {
                e.out_line = Vec::new();
            }
            handled
        };
        handled?;
    }
    if e.out_line.len() + data.len() > e.max.saturating_add(1) {
        return Err(format!("line longer than {} bytes", e.max));
    }
    e.out_line.extend_from_slice(data);
    Ok(())
}

/// Hands one line on. A handler that panics ends that child (as a reader thread's panic did),
/// never the thread that serves every other child.
fn handle(on_line: &mut OnLine, line: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_line(line)))
        .map_err(|_| "its line handler panicked".to_owned())
}

/// Reads what a child's stderr has now and logs each complete line.
fn read_stderr(e: &mut Entry, scratch: &mut [u8]) {
    let Some(err) = e.stderr.as_mut() else { return };
    let n = loop {
        match err.read(scratch) {
            Err(x) if x.kind() == io::ErrorKind::Interrupted => continue,
            Err(x) if x.kind() == io::ErrorKind::WouldBlock => return,
            other => break other.unwrap_or(0),
        }
    };
    if n == 0 {
        e.stderr = None;
        e.err_line = Vec::new();
        return;
    }
    let mut data = &scratch[..n];
    while !data.is_empty() {
        let at = data.iter().position(|&b| b == b'\n');
        let (part, rest) = match at {
            Some(i) => (&data[..i + 1], &data[i + 1..]),
            None => (data, &data[data.len()..]),
        };
        data = rest;
        if !e.err_skipping {
            let room = MAX_STDERR_LINE.saturating_sub(e.err_line.len());
            e.err_line.extend_from_slice(&part[..part.len().min(room)]);
        }
        let cut = !e.err_skipping && e.err_line.len() >= MAX_STDERR_LINE;
        if at.is_some() || cut {
            if !e.err_skipping {
                // The child writes what it likes: escaped, so it cannot forge log lines.
                let text = String::from_utf8_lossy(trim_line(&e.err_line));
                log::info!(target: "shadowcat::child", "[{}] {}", e.name, Escaped(&text));
            }
            e.err_line.clear();
            e.err_skipping = at.is_none();
        }
    }
    if e.err_line.capacity() > KEEP_CAPACITY && e.err_line.is_empty() {
        e.err_line = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    fn register(
        r: &Reactor,
        name: &str,
        max: usize,
        (stdin, stdout, stderr): (ChildStdin, ChildStdout, ChildStderr),
        on_line: OnLine,
        on_end: OnEnd,
    ) -> Arc<Outbox> {
        let out = r.outbox(stdin).unwrap();
        r.watch(&out, name.into(), max, (stdout, stderr), on_line, on_end)
            .unwrap();
        out
    }

    fn spawn(script: &str) -> std::process::Child {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn echoes_lines_through_the_outbox_and_sees_the_end() {
        let r = Reactor::start().unwrap();
        let mut p = spawn("while IFS= read -r l; do printf '%s\\n' \"$l\"; done; echo bye >&2");
        let pipes = (
            p.stdin.take().unwrap(),
            p.stdout.take().unwrap(),
            p.stderr.take().unwrap(),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let (end_tx, end_rx) = crossbeam_channel::bounded(1);
        let out = register(
            &r,
            "cat#0",
            1 << 20,
            pipes,
            Box::new(move |l| {
                let _ = tx.send(l.to_vec());
            }),
            Box::new(move |why| {
                let _ = end_tx.send(why);
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        // More than a pipe holds at once: the rest waits in the outbox.
        let big = format!("{}\n", "x".repeat(200_000));
        out.send_deadline(b"one\n", deadline, "cat#0").unwrap();
        out.send_deadline(big.as_bytes(), deadline, "cat#0")
            .unwrap();
        out.send_deadline(b"two\n", deadline, "cat#0").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"one\n");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap().len(),
            big.len()
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"two\n");
        out.close();
        assert_eq!(end_rx.recv_timeout(Duration::from_secs(5)).unwrap(), None);
        assert!(matches!(
            out.send_deadline(b"late\n", deadline, "cat#0"),
            Err(Error::ChildExited(_))
        ));
        let _ = p.wait();
        r.stop();
    }

    #[test]
    fn a_child_that_stops_reading_makes_writers_wait_until_their_deadline() {
        let r = Reactor::start().unwrap();
        let mut p = spawn("sleep 30");
        let pipes = (
            p.stdin.take().unwrap(),
            p.stdout.take().unwrap(),
            p.stderr.take().unwrap(),
        );
        let out = register(
            &r,
            "sleep#0",
            1024,
            pipes,
            Box::new(|_| {}),
            Box::new(|_| {}),
        );
        let line = vec![b'y'; 64 * 1024];
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut result = Ok(());
        for _ in 0..64 {
            result = out.send_deadline(&line, deadline, "sleep#0");
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
        assert!(!out.try_send(&line));
        let _ = p.kill();
        let _ = p.wait();
        r.stop();
    }

    #[test]
    fn an_over_long_line_ends_the_child() {
        let r = Reactor::start().unwrap();
        let mut p = spawn("head -c 5000 /dev/zero | tr '\\0' 'z'; sleep 5");
        let pipes = (
            p.stdin.take().unwrap(),
            p.stdout.take().unwrap(),
            p.stderr.take().unwrap(),
        );
        let (end_tx, end_rx) = crossbeam_channel::bounded(1);
        let _out = register(
            &r,
            "long#0",
            1000,
            pipes,
            Box::new(|_| panic!("no line is complete")),
            Box::new(move |why| {
                let _ = end_tx.send(why);
            }),
        );
        let why = end_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(why.is_some_and(|w| w.contains("longer than 1000")));
        let _ = p.kill();
        let _ = p.wait();
        r.stop();
    }
}
