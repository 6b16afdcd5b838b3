//! One persistent stdio child process, shared by many sessions (or dedicated to one).
//!
//! Its I/O is done either by three threads of its own ([`Io::Threads`], shared mode) or by
//! the reactor's one thread for many children ([`Io::Reactor`], per-session mode: see
//! `reactor.rs`; the same routing, line bounds and end-of-stdout handling, with callers
//! writing stdin themselves). None per request. With threads of its own:
//!
//! * the **writer** takes newline-terminated lines from a channel bounded in bytes
//!   (`OUTBOX_LIMIT`, as the reactor's outbox) and writes them to stdin; a child that stops
//!   reading makes senders wait, never longer than the
//!   request's deadline ([`Child::call_deadline`] uses `send_deadline`);
//! * the **reader** (`child/stdout.rs`) reads stdout lines (each at most `--max-message`
//!   bytes), routes responses
//!   by id to the caller's channel, progress by token to the call it belongs to, other
//!   messages to the call they provably belong to (see below), and anything else to the
//!   owner's event handler; at EOF it fails every call in flight at once. It never waits for a
//!   caller: each call's channel is bounded in bytes and drops what a slow client leaves
//!   unread (`queue.rs`, `--max-call-buffer`), never the response;
//! * the **stderr** thread copies stderr lines into the log with the child's name.
//!
//! Every request id is rewritten to a child-unique number and restored exactly on the way back
//! (string ids stay strings, numbers of any size keep their digits); `_meta.progressToken` is
//! rewritten to the same number. The child runs in its own process group and is stopped by
//! closing stdin, then SIGTERM to the group, then SIGKILL, and is always reaped.
//!
//! **Attribution, never a guess.** A log, a server-to-client request or any other message that
//! is not a response goes where `attribution.rs` decides: to the call it provably belongs to
//! (requests under a proxy id, only for a capability its client declared), answered by the
//! proxy (`ping`), to the owner's event handler (list changes and resource updates, or what no
//! call owns: the handler refuses a request, drops a notification, or in per-session mode hands
//! either to the child's one session). A `notifications/message` below the level its session
//! asked for ([`Session::wants_log`]) is dropped ([`Event::Dropped`]).
//!
//! **What a lone call shows.** A call whose caller learns from it ([`Caller::learn`]) and that
//! was the only call on the child from its request to its response is reported to the owner
//! ([`Event::Observed`], before its response is routed): whether the child sent a log (or
//! anything else only the calls in flight attribute) meanwhile. `exclusive.rs` learns from it.

mod stdout;

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message, RawObject};
use crate::metrics::DropReason;
use crate::session::Session;
use crate::upstream::Item;
pub(crate) use crate::upstream::stdio::attribution::progress_token_id;
use crate::upstream::stdio::attribution::{
    Caller, InFlight, SETTLE, Verdict, attribute, by_calls_in_flight, restore_subscription_id,
    strip_subscription_id, subscription_id,
};
use crate::upstream::stdio::queue::{CallReceiver, CallSender, call_queue};
use crate::upstream::stdio::reactor::{OUTBOX_LIMIT, Outbox, Reactor};
use crate::util::{Escaped, lock, read_line_bounded, trim_line};
use stdout::{adopt, learnable, reader, route, stdout_ended};

/// Something the child said that no call in flight was waiting for, or its death.
#[derive(Debug)]
pub enum Event {
    /// A notification no call in flight owns: list changes and resource updates (for the
    /// sessions they concern), or anything else nobody provably owns.
    Notification(Message),
    /// A server-to-client request no call in flight may take: to be answered with error
    /// `code` and `why` (shared mode; counted as `reason`), or handed to the child's one
    /// session (per-session mode).
    Request {
        /// The child's request.
        msg: Message,
        /// The JSON-RPC error code of the refusal.
        code: i64,
        /// Its message.
        why: String,
        /// How the refusal is counted.
        reason: DropReason,
    },
    /// The child's stdout ended or it printed an over-long line: it is gone.
    Exited,
    /// A message was dropped here instead of delivered (for the metrics).
    Dropped(DropReason),
    /// A call whose caller asked to learn from it ([`Caller::learn`]) was the only call on the
    /// child from its request to its response: it `logged` (the child sent something meanwhile
    /// that only the calls in flight attribute) or not. `params` are the request's.
    Observed {
        /// The request's params (`tools/call`: the tool's name among them).
        params: Box<RawValue>,
        /// Whether the child sent a log (or another message attributed by the calls in
        /// flight) while the call ran.
        logged: bool,
    },
}

/// What the child sent while a call was the only one in flight, among the messages only the
/// calls in flight attribute (`attribution::by_calls_in_flight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    Nothing,
    Logged,
    /// Something, within `SETTLE` of a call ending unanswered: it may have been that call's.
    Unsure,
}

/// Receives a child's [`Event`]s, with the child's index and generation.
pub type EventSink = Arc<dyn Fn(usize, u64, Event) + Send + Sync>;

struct Pending {
    /// Bounded in bytes and never blocking: the reader thread serves every session.
    reply: CallSender,
    client_id: Box<RawValue>,
    client_token: Option<Box<RawValue>>,
    /// A `subscriptions/listen`: notifications tagged with its id are its own.
    listen: bool,
    /// Who made the call (attribution reads it).
    caller: Caller,
    /// Nothing else was in flight when it was sent (see [`Shared::next_id`]).
    alone: bool,
    heard: Heard,
    /// The request's params, kept when the caller learns from the call ([`Caller::learn`]).
    learn: Option<Box<RawValue>>,
}

/// A server-to-client request handed to a client under a proxy-assigned id.
struct Ask {
    child_id: Box<RawValue>,
    owner: String,
}

struct Shared {
    name: String,
    pending: Mutex<HashMap<u64, Pending>>,
    asks: Mutex<HashMap<String, Ask>>,
    next_ask: AtomicU64,
    alive: AtomicBool,
    /// Non-JSON-RPC stdout lines skipped so far (logged at the 1st, 2nd, 4th, 8th, …).
    skipped: AtomicU64,
    /// When the child was spawned: the clock of `settle_until`.
    born: Instant,
    /// Milliseconds after `born` until which nothing is attributed: a call ended without its
    /// response just before (see `attribution::SETTLE`).
    settle_until: AtomicU64,
    /// The child's stdin; closed when the child is stopped.
    stdin: Stdin,
    /// The next request id. A call was the only one on the child from its request to its
    /// response when nothing was in flight as it was sent, nothing is left when its response
    /// comes, and no id was taken after its own.
    next_id: AtomicU64,
}

/// How lines reach a child's stdin.
enum Stdin {
    /// Through a bounded channel to the child's writer thread; taken (so stdin closes) when
    /// the child is stopped. The channel holds at most [`OUTBOX_LIMIT`] bytes (one larger line
    /// always fits, alone), counted by [`Queued`].
    Writer(Mutex<Option<Sender<Vec<u8>>>>, Arc<Queued>),
    /// Written by the callers themselves, the rest flushed by the reactor (`reactor.rs`).
    Outbox(Arc<Outbox>),
}

/// Bytes waiting in the writer thread's channel: senders wait while a line would take it over
/// [`OUTBOX_LIMIT`], so a child that stops reading holds at most that much, not 256 lines of
/// up to `--max-message` each.
#[derive(Default)]
struct Queued {
    bytes: Mutex<usize>,
    freed: Condvar,
}

impl Queued {
    /// Takes room for `n` bytes, waiting until `deadline` at most; false if there was none.
    fn take(&self, n: usize, deadline: Option<Instant>) -> bool {
        let mut b = lock(&self.bytes);
        while *b > 0 && *b + n > OUTBOX_LIMIT {
            let Some(left) = deadline.and_then(|d| d.checked_duration_since(Instant::now())) else {
                return false;
            };
            b = match self.freed.wait_timeout(b, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *b += n;
        true
    }

    /// Gives back room for `n` bytes (written, or never queued).
    fn give(&self, n: usize) {
        let mut b = lock(&self.bytes);
        *b = b.saturating_sub(n);
        self.freed.notify_all();
    }

    /// The writer is gone: nothing will be written, so nobody waits for room.
    fn close(&self) {
        *lock(&self.bytes) = 0;
        self.freed.notify_all();
    }
}

impl Stdin {
    fn send_deadline(&self, bytes: Vec<u8>, deadline: Instant, name: &str) -> Result<(), Error> {
        match self {
            Stdin::Writer(tx, queued) => {
                let tx = lock(tx).clone();
                let Some(tx) = tx else {
                    return Err(Error::ChildExited(name.to_owned()));
                };
                let n = bytes.len();
                if !queued.take(n, Some(deadline)) {
                    return Err(Error::Timeout);
                }
                match tx.send_deadline(bytes, deadline) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        queued.give(n);
                        match e {
                            SendTimeoutError::Timeout(_) => Err(Error::Timeout),
                            SendTimeoutError::Disconnected(_) => {
                                Err(Error::ChildExited(name.to_owned()))
                            }
                        }
                    }
                }
            }
            Stdin::Outbox(o) => o.send_deadline(&bytes, deadline, name),
        }
    }

    /// Sends without waiting at all; false if it would have to wait.
    fn try_send(&self, bytes: Vec<u8>) -> bool {
        match self {
            Stdin::Writer(tx, queued) => {
                let Some(tx) = lock(tx).clone() else {
                    return false;
                };
                let n = bytes.len();
                if !queued.take(n, None) {
                    return false;
                }
                let sent = tx.try_send(bytes).is_ok();
                if !sent {
                    queued.give(n);
                }
                sent
            }
            Stdin::Outbox(o) => o.try_send(&bytes),
        }
    }

    fn close(&self) {
        match self {
            Stdin::Writer(tx, _) => drop(lock(tx).take()),
            Stdin::Outbox(o) => o.close(),
        }
    }
}

/// Which threads do a child's I/O.
#[derive(Clone, Copy)]
pub enum Io<'a> {
    /// Three of its own (stdin writer, stdout reader, stderr logger): shared mode's few,
    /// busy children.
    Threads,
    /// The reactor's one thread, shared with every other child registered there: per-session
    /// mode's many, mostly idle children.
    Reactor(&'a Arc<Reactor>),
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A client's call ended without its response: the child may still speak of it.
    fn unsettle(&self, caller: &Caller) {
        if !caller.internal {
            let until = self.now_ms() + SETTLE.as_millis() as u64;
            self.settle_until.fetch_max(until, Ordering::AcqRel);
        }
    }

    fn settling(&self) -> bool {
        self.now_ms() < self.settle_until.load(Ordering::Acquire)
    }
}

/// What to run as a stdio child: argv (no shell) and its environment (`--stdio-env`,
/// `--stdio-clear-env`), and how much its calls may queue for their clients.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra variables, and whether to start from an empty environment.
    pub env: crate::config::ChildEnv,
    /// `--max-call-buffer`: bytes of messages queued for one call before its client is
    /// deemed slow and further messages are dropped (see `queue.rs`).
    pub call_buffer: usize,
}

impl Program {
    /// What the children of a stdio upstream run: its argv and environment.
    pub fn new(cfg: &crate::config::StdioUpstreamConfig) -> Program {
        Program {
            argv: cfg.argv.clone(),
            env: cfg.env.clone(),
            call_buffer: cfg.max_call_buffer,
        }
    }

    #[cfg(test)]
    /// `argv` with the proxy's own environment.
    pub fn argv(argv: Vec<String>) -> Program {
        Program {
            argv,
            env: Default::default(),
            call_buffer: 8 * 1024 * 1024,
        }
    }

    /// The program's file name, for logs and metrics.
    pub fn name(&self) -> &str {
        crate::config::program_name(&self.argv)
    }
}

/// A running child process and its I/O (three threads, or a place in the reactor).
pub struct Child {
    /// Position in the upstream's set of children.
    pub index: usize,
    /// Incremented on each restart of that position.
    pub generation: u64,
    /// Process id (also the process group id).
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    shared: Arc<Shared>,
    /// Byte bound of each call's queue (`--max-call-buffer`).
    call_buffer: usize,
    process: Mutex<Option<std::process::Child>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Child {
    /// Spawns `argv` (no shell) in a new process group and starts its threads. The child gets
    /// SIGKILL from the kernel when the spawning thread ends (`PR_SET_PDEATHSIG`), so call
    /// this from a thread that lives as long as the child should.
    pub fn spawn(
        spec: &Program,
        index: usize,
        generation: u64,
        max_message: usize,
        events: EventSink,
    ) -> Result<Child, Error> {
        Child::spawn_with(spec, index, generation, max_message, events, Io::Threads)
    }

    /// [`Child::spawn`], its I/O done by `io`.
    pub fn spawn_with(
        spec: &Program,
        index: usize,
        generation: u64,
        max_message: usize,
        events: EventSink,
        io: Io<'_>,
    ) -> Result<Child, Error> {
        let argv = &spec.argv;
        let program = argv
            .first()
            .ok_or_else(|| Error::Config("empty stdio command".into()))?;
        let mut cmd = Command::new(program);
        if spec.env.clear {
            cmd.env_clear();
        }
        for (k, v) in &spec.env.vars {
            cmd.env(k, v.expose());
        }
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (sigprocmask, prctl).
        unsafe {
            cmd.pre_exec(|| {
                // The proxy blocks SIGINT/SIGTERM to take them with sigwait; exec keeps the
                // mask, so give the child a clean one or it could not be stopped politely.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                // If the proxy dies, even by SIGKILL, the kernel kills the child (the signal
                // follows the spawning thread, which is why the supervisor spawns).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut process = cmd
            .spawn()
            .map_err(|e| Error::Spawn(format!("cannot start stdio upstream {program:?}: {e}")))?;
        let pid = process.id();
        let name = format!("{}#{index}", crate::config::program_name(argv));
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            let _ = process.kill();
            let _ = process.wait();
            return Err(Error::Internal("child pipes missing".into()));
        };
        let (input, writer_end) = match io {
            Io::Reactor(reactor) => match reactor.outbox(stdin) {
                Ok(o) => (Stdin::Outbox(o), None),
                Err(e) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Err(e);
                }
            },
            Io::Threads => {
                let (tx, rx) = bounded::<Vec<u8>>(256);
                let queued = Arc::new(Queued::default());
                let w = (stdin, rx, queued.clone());
                (Stdin::Writer(Mutex::new(Some(tx)), queued), Some(w))
            }
        };
        let shared = Arc::new(Shared {
            name: name.clone(),
            pending: Mutex::new(HashMap::new()),
            asks: Mutex::new(HashMap::new()),
            next_ask: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            skipped: AtomicU64::new(0),
            born: Instant::now(),
            settle_until: AtomicU64::new(0),
            stdin: input,
            next_id: AtomicU64::new(1),
        });
        let mut threads = Vec::new();
        let started = (|| {
            if let (Io::Reactor(reactor), Stdin::Outbox(outbox)) = (io, &shared.stdin) {
                let (s1, s2, e1) = (shared.clone(), shared.clone(), events.clone());
                return reactor.watch(
                    outbox,
                    name.clone(),
                    max_message,
                    (stdout, stderr),
                    Box::new(move |l| route(l, &s1, index, generation, &e1)),
                    Box::new(move |_why| stdout_ended(&s2, index, generation, &events)),
                );
            }
            let Some((stdin, rx, queued)) = writer_end else {
                return Err(Error::Internal("child stdin missing".into()));
            };
            let s = shared.clone();
            threads.push(spawn_thread("shadowcat-cin", move || {
                writer(stdin, rx, &queued, &s)
            })?);
            let s = shared.clone();
            threads.push(spawn_thread("shadowcat-cout", move || {
                reader(stdout, max_message, &s, index, generation, &events)
            })?);
            let n = name.clone();
            threads.push(spawn_thread("shadowcat-cerr", move || {
                stderr_lines(stderr, &n)
            })?);
            Ok(())
        })();
        if let Err(e) = started {
            // Without its threads the child is of no use: kill and reap it here, or it would
            // stay a zombie (threads already started end once its pipes close).
            let _ = process.kill();
            let _ = process.wait();
            return Err(e);
        }
        log::info!("started stdio upstream {name} (pid {pid})");
        Ok(Child {
            index,
            generation,
            pid,
            started: Instant::now(),
            shared,
            call_buffer: spec.call_buffer,
            process: Mutex::new(Some(process)),
            threads: Mutex::new(threads),
        })
    }

    /// The child's name for logs: program basename and index, e.g. `node#1`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// True until stdout ends.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Calls in flight.
    pub fn inflight(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// How long nothing the child says is attributed yet: a call ended without its response
    /// less than [`SETTLE`] ago (zero otherwise).
    pub fn settle_left(&self) -> Duration {
        let until = self.shared.settle_until.load(Ordering::Acquire);
        Duration::from_millis(until.saturating_sub(self.shared.now_ms()))
    }

    /// Sends request `msg` with a fresh id and returns that id and the channel on which its
    /// related messages and then its response ([`Item::Final`]) arrive. Blocks at most until
    /// `deadline` if the child is not reading stdin. The channel disconnects without a final
    /// item if the child dies. It holds at most `--max-call-buffer` bytes of related messages
    /// (more are dropped while the caller does not read; the response always gets through).
    ///
    /// `caller` is who made the call: what the child sends that names no request goes to a
    /// call by the rule of `attribution.rs`, which reads it.
    pub fn call_deadline(
        &self,
        mut msg: Message,
        deadline: Instant,
        caller: Caller,
    ) -> Result<(u64, CallReceiver), Error> {
        if !self.is_alive() {
            return Err(Error::ChildExited(self.name().to_owned()));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::AcqRel);
        let listen = msg.method() == "subscriptions/listen";
        let (client_id, client_token) = rewrite_ids(&mut msg, id);
        let bytes = line(&msg);
        // The child reader reads the tool's name from them if the call turns out to have
        // been alone.
        let learn = if caller.learn {
            msg.params.take().and_then(learnable)
        } else {
            None
        };
        let (reply, rx) = call_queue(self.call_buffer);
        {
            let mut pending = lock(&self.shared.pending);
            let alone = pending.is_empty();
            pending.insert(
                id,
                Pending {
                    reply,
                    client_id,
                    client_token,
                    listen,
                    caller,
                    alone,
                    heard: Heard::Nothing,
                    learn,
                },
            );
        }
        if !self.is_alive() {
            // The reader ended between the check above and the insert: it has already failed
            // every call in flight, so this one would wait for its deadline.
            lock(&self.shared.pending).remove(&id);
            return Err(Error::ChildExited(self.name().to_owned()));
        }
        if let Err(e) = self.send_deadline(bytes, deadline) {
            lock(&self.shared.pending).remove(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Sends a notification (or a response to the child's own request) as it is.
    pub fn send_message_deadline(&self, msg: &Message, deadline: Instant) -> Result<(), Error> {
        self.send_deadline(line(msg), deadline)
    }

    /// Answers a request from the child (`id`) with JSON-RPC error `code` at once (waits at
    /// most 1 s to write it).
    pub fn refuse(&self, id: Option<&RawValue>, code: i64, reason: &str) {
        let mut bytes = jsonrpc::error_body(id, code, reason);
        bytes.push(b'\n');
        let _ = self.send_deadline(bytes, Instant::now() + Duration::from_secs(1));
    }

    /// Delivers a client's response to a server-to-client request, restoring the child's id.
    /// Responses to unknown ids, or from another session than the one asked, are dropped.
    pub fn respond(
        &self,
        mut msg: Message,
        session: &Session,
        deadline: Instant,
    ) -> Result<(), Error> {
        let key = msg
            .id
            .as_deref()
            .and_then(|id| serde_json::from_str::<String>(id.get()).ok())
            .unwrap_or_default();
        let ask = {
            let mut asks = lock(&self.shared.asks);
            match asks.get(&key) {
                Some(a) if a.owner == session.id => asks.remove(&key),
                _ => None,
            }
        };
        let Some(ask) = ask else {
            log::debug!("{}: response to an unknown request dropped", self.name());
            return Ok(());
        };
        msg.id = Some(ask.child_id);
        self.send_deadline(line(&msg), deadline)
    }

    /// Takes a server-to-client request that arrived with no call in flight for a client that
    /// is known anyway (a dedicated child has exactly one session): gives it a proxy id the
    /// client's response will be matched by, and returns it ready to send to `owner`.
    pub fn adopt_request(&self, msg: Message, owner: &Session) -> Message {
        adopt(&self.shared, self.index, msg, owner.id.clone())
    }

    /// Gives up on call `id`: forgets it and tells the child with `notifications/cancelled`.
    pub fn cancel(&self, id: u64, reason: &str) {
        let Some(p) = lock(&self.shared.pending).remove(&id) else {
            return;
        };
        // A listen says nothing untagged: nothing to settle after it.
        if !p.listen {
            self.shared.unsettle(&p.caller);
        }
        // Whoever still reads the call's channel learns it ended, and why.
        let body = jsonrpc::error_body(Some(&p.client_id), -32603, reason);
        let _ = p.reply.send(Item::Final(body));
        let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
        let text = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":{reason}}}}}"#
        );
        let mut bytes = text.into_bytes();
        bytes.push(b'\n');
        let deadline = Instant::now() + Duration::from_millis(100);
        if let Err(e) = self.send_deadline(bytes, deadline) {
            log::debug!("{}: could not send cancellation for {id}: {e}", self.name());
        }
    }

    /// Drops the server-to-client requests handed to session `owner` (it ended, so their
    /// answers will never come).
    pub fn forget_asks(&self, owner: &str) {
        lock(&self.shared.asks).retain(|_, a| a.owner != owner);
    }

    /// Stops waiting for call `id` without telling the child (its reader went away): the
    /// pending entry goes, so it no longer counts as in flight or owns the child's traffic.
    pub fn forget(&self, id: u64) {
        let gone = lock(&self.shared.pending).remove(&id);
        if let Some(p) = gone.filter(|p| !p.listen) {
            self.shared.unsettle(&p.caller);
        }
    }

    fn send_deadline(&self, bytes: Vec<u8>, deadline: Instant) -> Result<(), Error> {
        self.shared
            .stdin
            .send_deadline(bytes, deadline, &self.shared.name)
    }

    /// Stops the child: closes stdin and waits up to `patience`, then SIGTERM to its process
    /// group and waits up to `patience`, then SIGKILL; reaps it and joins its threads.
    /// Returns at once on a second call.
    pub fn stop(&self, patience: Duration) {
        self.shared.stdin.close();
        let process = lock(&self.process).take();
        if let Some(mut p) = process {
            let pgid = self.pid as libc::pid_t;
            if !wait_exit(&mut p, patience) {
                // SAFETY: kill(2) with a negative pid signals our child's own process group.
                unsafe { libc::kill(-pgid, libc::SIGTERM) };
                if !wait_exit(&mut p, patience) {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    let _ = p.wait();
                }
            }
            // Grandchildren left in the group would keep our pipes open.
            // SAFETY: as above; ESRCH when the group is empty is fine.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            log::info!("stopped stdio upstream {}", self.name());
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Stops `child` (as [`Child::stop`], 2 s patience per step) on a thread of its own, so the
/// caller (a supervisor) is not held up by a stubborn process; the caller joins the handle. If
/// no thread can be started, the child is stopped by its `Drop` on this thread instead.
pub fn stop_in_background(child: Arc<Child>) -> Option<JoinHandle<()>> {
    thread::Builder::new()
        .name("shadowcat-reap".into())
        .spawn(move || child.stop(Duration::from_secs(2)))
        .ok()
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(200));
    }
}

fn wait_exit(p: &mut std::process::Child, patience: Duration) -> bool {
    let until = Instant::now() + patience;
    loop {
        match p.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= until => return false,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(128 * 1024)
        .spawn(f)
        .map_err(Error::Io)
}

/// Frames a message as one stdio line.
pub(crate) fn line(msg: &Message) -> Vec<u8> {
    let mut v = msg.to_vec();
    // Raw params keep the client's whitespace, and a line break in it would end the line
    // early. In JSON text CR and LF can only be whitespace (in strings they are escaped), so
    // a space is an exact stand-in.
    for b in v.iter_mut().filter(|b| matches!(**b, b'\n' | b'\r')) {
        *b = b' ';
    }
    v.push(b'\n');
    v
}

/// Gives request `msg` the child-unique id `id` (and `id` as its `_meta.progressToken`, if it
/// has one), returning the client's id and token for [`restore_progress_token`] and the
/// response to put back.
pub(crate) fn rewrite_ids(msg: &mut Message, id: u64) -> (Box<RawValue>, Option<Box<RawValue>>) {
    let client_id = msg
        .id
        .replace(jsonrpc::raw_u64(id))
        .unwrap_or_else(jsonrpc::null);
    let client_token = rewrite_progress_token(msg, id);
    (client_id, client_token)
}

/// Replaces `params._meta.progressToken` with `id`, returning the client's token. Everything
/// else in `params` keeps its exact text.
fn rewrite_progress_token(msg: &mut Message, id: u64) -> Option<Box<RawValue>> {
    let params = msg.params.as_ref()?;
    if !params.get().contains("progressToken") {
        return None;
    }
    let mut v: RawObject = serde_json::from_str(params.get()).ok()?;
    let mut meta: RawObject = serde_json::from_str(v.get("_meta")?.get()).ok()?;
    let old = meta.insert("progressToken".into(), jsonrpc::raw_u64(id))?;
    v.insert(
        "_meta".into(),
        jsonrpc::raw(serde_json::to_string(&meta).ok()?),
    );
    msg.params = Some(jsonrpc::raw(serde_json::to_string(&v).ok()?));
    Some(old)
}

fn writer(
    mut stdin: std::process::ChildStdin,
    rx: Receiver<Vec<u8>>,
    queued: &Queued,
    shared: &Shared,
) {
    for bytes in rx {
        let written = stdin.write_all(&bytes).and_then(|_| stdin.flush());
        queued.give(bytes.len());
        if let Err(e) = written {
            log::warn!("{}: stdin write failed: {e}", shared.name);
            queued.close();
            return;
        }
    }
    queued.close();
    // All senders gone: dropping stdin sends EOF, the polite way to ask the child to exit.
}

/// Puts the client's progress `token` back, exactly as the client wrote it, into a child's
/// progress notification (the rest of `params` keeps its exact text).
pub(crate) fn restore_progress_token(msg: &mut Message, token: &RawValue) {
    let Some(params) = msg.params.as_ref() else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<RawObject>(params.get()) else {
        return;
    };
    v.insert("progressToken".into(), token.to_owned());
    if let Ok(text) = serde_json::to_string(&v) {
        msg.params = Some(jsonrpc::raw(text));
    }
}

fn stderr_lines(stderr: std::process::ChildStderr, name: &str) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line_bounded(&mut r, &mut buf, 64 * 1024) {
            Ok(0) => return,
            Ok(_) => {
                // The child writes what it likes: escaped, so it cannot forge log lines.
                let text = String::from_utf8_lossy(trim_line(&buf));
                log::info!(target: "shadowcat::child", "[{name}] {}", Escaped(&text));
            }
            Err(_) => {
                // Over-long stderr line: skip the rest of it and go on.
                let mut sink = [0u8; 4096];
                if r.read(&mut sink).map(|n| n == 0).unwrap_or(true) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
