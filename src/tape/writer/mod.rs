//! The tape writer thread: takes what the pipeline queued, redacts it, and appends it to one
//! file per tape; rotates by size, fsyncs on a timer and on close, closes stateless tapes
//! hourly and deletes tapes past the retention.
//!
//! Owns: the writer thread's loop and its tapes (this file), one tape's lines, header and
//! parts (`lines.rs`) and the files behind them (`store.rs`). Must not touch: the pipeline or
//! the queue's sending side (`Recorder`, in `tape/mod.rs`).
//!
//! Files go through a [`Store`] so that tests can put a slow or failing disk behind the
//! writer. Each open tape holds a buffered file; at most [`MAX_OPEN_FILES`] are open at once
//! (the least recently written is synced and closed, and reopened for appending when its
//! tape is written again), so thousands of sessions cannot exhaust file descriptors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::Metrics;

use super::TapeKey;
use super::format::{self, Dir, Header};
use super::queue::Drain;
use super::scan::Redactor;

mod lines;
mod store;

pub use store::{DirStore, Store, TapeFile};

/// The writer's line buffer keeps at most this much capacity between lines.
const LINE_KEEP: usize = 64 * 1024;
/// Tape files open at once.
pub const MAX_OPEN_FILES: usize = 64;
/// Buffered lines are handed to the kernel at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Written files are fsync'd at least this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// A stateless tape closes once its hour is over and it has been quiet this long.
const STATELESS_QUIET: Duration = Duration::from_secs(60);
/// A tape nothing was written to for this long is closed (its session would have ended long
/// ago unless the close was lost); a later message starts a new tape.
const FORGOTTEN: Duration = Duration::from_secs(24 * 3600);
/// Sessions whose tape closed that are remembered, so that a message outliving its session
/// (a stream still draining after DELETE) does not start a tape of its own.
const CLOSED_REMEMBERED: usize = 4096;

/// What the pipeline queues for the writer.
pub enum Event {
    /// A session's tape starts: its header's facts.
    Open {
        /// The session.
        key: TapeKey,
        /// The negotiated protocol version.
        era: String,
        /// The principal that created it.
        principal: Option<String>,
        /// When its `initialize` arrived: `t` counts from here.
        at: Instant,
    },
    /// One message.
    Msg(Msg),
    /// A tape ends (session ended).
    Close(TapeKey),
    /// Write out and fsync everything queued before, then answer.
    Sync(crossbeam_channel::Sender<()>),
    /// Close every tape and end the thread.
    Stop,
}

/// One message for a tape.
pub struct Msg {
    /// Its tape.
    pub key: Arc<TapeKey>,
    /// When it crossed.
    pub at: Instant,
    /// Which way.
    pub dir: Dir,
    /// The upstream's id for it, when known.
    pub upstream_id: Option<u64>,
    /// The message.
    pub body: Body,
    /// Made by the proxy.
    pub synthetic: bool,
    /// The fault rule that acted on the request this answers.
    pub fault: Option<Arc<str>>,
    /// The protocol era of its tape (for a header the tape's opening did not give).
    pub era: &'static str,
}

/// A message as the pipeline has it.
pub enum Body {
    /// The JSON text.
    Json(Vec<u8>),
    /// An SSE event of a session's standalone stream, as framed for the client (its `id:`
    /// line lets the writer record each event once, however often it is replayed).
    Frame(Arc<Vec<u8>>),
}

impl Body {
    /// Payload bytes, for the queue's budget.
    pub fn bytes(&self) -> usize {
        match self {
            Body::Json(b) => b.len(),
            Body::Frame(f) => f.len(),
        }
    }
}

/// What the writer needs besides its queue.
pub struct Setup {
    /// Where files go.
    pub store: Box<dyn Store>,
    /// The redaction rules.
    pub redactor: Arc<Redactor>,
    /// The upstream, for headers.
    pub upstream: format::Upstream,
    /// `--record-max-bytes`.
    pub max_bytes: u64,
    /// `--record-keep`.
    pub keep: Duration,
    /// Where drops are counted.
    pub metrics: Arc<Metrics>,
    /// A moment on both clocks: monotonic instants become wall-clock times through it.
    pub epoch: (Instant, SystemTime),
}

/// One tape, open or waiting for its header.
struct Tape {
    /// The file name without `.jsonl` and part.
    base: String,
    header: Header,
    /// `t` counts from here.
    started: Instant,
    /// Lines waiting for the answer to `initialize` (a session's header names the server).
    pending: Option<Vec<Vec<u8>>>,
    /// The id (compact JSON text) of the session's `initialize`, once seen.
    init_id: Option<String>,
    /// The current part's file name, once created.
    name: Option<String>,
    file: Option<Box<dyn TapeFile>>,
    /// Bytes in the current part.
    written: u64,
    /// Written since the last flush / fsync.
    unflushed: bool,
    unsynced: bool,
    /// For the least-recently-written eviction.
    last_use: u64,
    last_line: Instant,
    /// The highest standalone-stream event recorded.
    standalone_seq: u64,
}

/// The writer's state, owned by its thread.
pub struct Writer {
    io: Io,
    tapes: HashMap<TapeKey, Tape>,
    closed: std::collections::VecDeque<TapeKey>,
    closed_set: std::collections::HashSet<TapeKey>,
}

/// What writing needs besides the tapes (split from them so one tape can be written while
/// the writer's other state is at hand).
struct Io {
    s: Setup,
    open_files: usize,
    uses: u64,
    /// Last time an I/O error was logged.
    warned: Option<Instant>,
    /// The line being built (reused: one allocation for the writer's life).
    line: Vec<u8>,
}

impl Writer {
    /// A writer with nothing open.
    pub fn new(s: Setup) -> Writer {
        Writer {
            io: Io {
                s,
                open_files: 0,
                uses: 0,
                warned: None,
                line: Vec::with_capacity(1024),
            },
            tapes: HashMap::new(),
            closed: std::collections::VecDeque::new(),
            closed_set: std::collections::HashSet::new(),
        }
    }

    /// Serves `queue` until [`Event::Stop`] or until every sender is gone; then closes every
    /// tape (flushed and fsync'd).
    pub fn run(mut self, queue: Drain<Event>) {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        let mut next_sync = Instant::now() + SYNC_EVERY;
        let sweep_every =
            (self.io.s.keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
        let mut next_sweep = Instant::now();
        let mut busy = false;
        'serve: loop {
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep();
                next_sweep = now + sweep_every;
            }
            if now >= next_sync {
                self.sync_all();
                self.close_quiet();
                next_sync = now + SYNC_EVERY;
                next_flush = now + FLUSH_EVERY;
            } else if now >= next_flush {
                self.flush_all();
                next_flush = now + FLUSH_EVERY;
            }
            let Ok(got) = queue.next_batch(busy, next_flush.min(next_sync)) else {
                break;
            };
            busy = got.is_some();
            let mut next = got;
            while let Some(ev) = next {
                if matches!(ev, Event::Stop) {
                    break 'serve;
                }
                self.handle(ev);
                next = queue.try_recv();
            }
        }
        // Whatever was queued before the stop still goes to disk.
        while let Some(ev) = queue.try_recv() {
            if !matches!(ev, Event::Stop) {
                self.handle(ev);
            }
        }
        let keys: Vec<TapeKey> = self.tapes.keys().cloned().collect();
        for k in keys {
            self.close(&k);
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Open {
                key,
                era,
                principal,
                at,
            } => {
                let tape = self.io.new_tape(&key, at, era, principal);
                self.tapes.insert(key, tape);
            }
            Event::Msg(m) => {
                self.message(m);
                if self.io.open_files > MAX_OPEN_FILES {
                    self.evict_one();
                }
            }
            Event::Close(key) => self.close(&key),
            Event::Sync(done) => {
                self.sync_all();
                let _ = done.send(());
            }
            Event::Stop => {}
        }
    }

    fn message(&mut self, m: Msg) {
        let key: &TapeKey = &m.key;
        // One hash lookup for a tape already open (nearly every message).
        if let Some(tape) = self.tapes.get_mut(key) {
            self.io.message(tape, &m);
            return;
        }
        if self.closed_set.contains(key) {
            return; // its session ended
        }
        // A session whose opening was lost, or a stateless client's first message.
        let mut tape = self.io.new_tape(key, m.at, m.era.to_owned(), None);
        self.io.message(&mut tape, &m);
        self.tapes.insert(key.clone(), tape);
    }

    /// Syncs and closes the least recently written open file.
    fn evict_one(&mut self) {
        let victim = self
            .tapes
            .values_mut()
            .filter(|t| t.file.is_some())
            .min_by_key(|t| t.last_use);
        if let Some(t) = victim
            && let Some(mut f) = t.file.take()
        {
            let _ = f.sync();
            t.unflushed = false;
            t.unsynced = false;
            self.io.open_files -= 1;
        }
    }

    /// Ends a tape: its header (if still waiting) and lines written, the file fsync'd.
    fn close(&mut self, key: &TapeKey) {
        if matches!(key, TapeKey::Session(_)) && self.closed_set.insert(key.clone()) {
            self.closed.push_back(key.clone());
            if self.closed.len() > CLOSED_REMEMBERED
                && let Some(old) = self.closed.pop_front()
            {
                self.closed_set.remove(&old);
            }
        }
        let Some(mut t) = self.tapes.remove(key) else {
            return;
        };
        self.io.release(&mut t);
        if let Some(mut f) = t.file.take() {
            if let Err(e) = f.sync() {
                self.io.warn(&e);
            }
            self.io.open_files -= 1;
        }
    }

    fn flush_all(&mut self) {
        let mut failed = None;
        for t in self.tapes.values_mut().filter(|t| t.unflushed) {
            t.unflushed = false;
            if let Some(f) = t.file.as_mut()
                && let Err(e) = f.flush()
            {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            self.io.warn(&e);
        }
    }

    fn sync_all(&mut self) {
        let mut failed = None;
        for t in self.tapes.values_mut().filter(|t| t.unsynced) {
            t.unsynced = false;
            t.unflushed = false;
            if let Some(f) = t.file.as_mut()
                && let Err(e) = f.sync()
            {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            self.io.warn(&e);
        }
    }

    /// Closes stateless tapes whose hour is over (once quiet) and tapes long forgotten.
    fn close_quiet(&mut self) {
        self.close_quiet_at(SystemTime::now(), Instant::now());
    }

    /// [`Writer::close_quiet`] as of `wall` and `now`; the tapes still open.
    pub(crate) fn close_quiet_at(&mut self, wall: SystemTime, now: Instant) -> usize {
        let hour = format::hour_of(wall);
        let done: Vec<TapeKey> = self
            .tapes
            .iter()
            .filter(|(k, t)| {
                let quiet = now.saturating_duration_since(t.last_line);
                let past = matches!(k, TapeKey::Stateless { hour: h, .. } if *h < hour);
                (past && quiet >= STATELESS_QUIET) || quiet >= FORGOTTEN
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            self.close(&k);
        }
        self.tapes.len()
    }

    fn sweep(&mut self) {
        let in_use: std::collections::HashSet<&str> = self
            .tapes
            .values()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let n = self
            .io
            .s
            .store
            .sweep(self.io.s.keep, &|name| in_use.contains(name));
        if n > 0 {
            log::info!("tapes: {n} older than --record-keep deleted");
        }
    }
}
