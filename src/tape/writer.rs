//! The tape writer thread: takes what the pipeline queued, redacts it, and appends it to one
//! file per tape; rotates by size, fsyncs on a timer and on close, closes stateless tapes
//! hourly and deletes tapes past the retention.
//!
//! Files go through a [`Store`] so that tests can put a slow or failing disk behind the
//! writer. Each open tape holds a buffered file; at most [`MAX_OPEN_FILES`] are open at once
//! (the least recently written is synced and closed, and reopened for appending when its
//! tape is written again), so thousands of sessions cannot exhaust file descriptors.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::RecvTimeoutError;
use serde_json::Value;

use crate::metrics::{LogDrop, Metrics};

use super::TapeKey;
use super::format::{self, Dir, Header, Party};
use super::queue::Drain;
use super::scan::Redactor;

/// Tape files open at once.
pub const MAX_OPEN_FILES: usize = 64;
/// Buffered lines are handed to the kernel at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long a busy writer lets messages gather before taking them as one batch.
pub const BATCH_WAIT: Duration = Duration::from_millis(5);
/// Written files are fsync'd at least this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// A stateless tape closes once its hour is over and it has been quiet this long.
const STATELESS_QUIET: Duration = Duration::from_secs(60);
/// A tape nothing was written to for this long is closed (its session would have ended long
/// ago unless the close was lost); a later message starts a new tape.
const FORGOTTEN: Duration = Duration::from_secs(24 * 3600);
/// Buffer of one open tape file.
const FILE_BUFFER: usize = 64 * 1024;
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

/// One open tape file.
pub trait TapeFile: Write + Send {
    /// Hands buffered bytes to the kernel and fsyncs them.
    fn sync(&mut self) -> io::Result<()>;
}

/// Where tape files live.
pub trait Store: Send {
    /// Creates the file `name`; fails with `AlreadyExists` if it exists.
    fn create(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>>;
    /// Opens the existing file `name` for appending.
    fn append(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>>;
    /// Deletes tape files last modified more than `keep` ago, except those `in_use` names;
    /// returns how many went.
    fn sweep(&mut self, keep: Duration, in_use: &dyn Fn(&str) -> bool) -> usize;
}

/// A directory on disk.
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// Tapes in `dir` (which exists).
    pub fn new(dir: PathBuf) -> DirStore {
        DirStore { dir }
    }
}

struct DiskFile(BufWriter<std::fs::File>);

impl Write for DiskFile {
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

impl TapeFile for DiskFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

impl Store for DirStore {
    fn create(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(name))?;
        Ok(Box::new(DiskFile(BufWriter::with_capacity(FILE_BUFFER, f))))
    }

    fn append(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(name))?;
        Ok(Box::new(DiskFile(BufWriter::with_capacity(FILE_BUFFER, f))))
    }

    fn sweep(&mut self, keep: Duration, in_use: &dyn Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".jsonl") || name.starts_with('.') || in_use(name) {
                continue;
            }
            let old = e
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > keep);
            if old && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
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
            // A writer that found work sleeps a moment and takes what came meanwhile as one
            // batch: senders then never have to wake it (a futex call and a context switch per
            // message). Only an idle writer blocks on the queue.
            let got = if busy {
                std::thread::sleep(BATCH_WAIT);
                queue.try_recv()
            } else {
                match queue.recv_until(next_flush.min(next_sync)) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
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
        if !self.tapes.contains_key(key) {
            if self.closed_set.contains(key) {
                return; // its session ended
            }
            // A session whose opening was lost, or a stateless client's first message.
            let tape = self.io.new_tape(key, m.at, m.era.to_owned(), None);
            self.tapes.insert(key.clone(), tape);
        }
        let Some(tape) = self.tapes.get_mut(key) else {
            return;
        };
        self.io.message(tape, &m);
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

impl Io {
    fn new_tape(&self, key: &TapeKey, at: Instant, era: String, principal: Option<String>) -> Tape {
        let wall = self.wall(at);
        let (base, session, era, principal, pending) = match key {
            TapeKey::Session(id) => (
                format::session_base(wall, id),
                Some(id.chars().take(8).collect()),
                era,
                principal,
                Some(Vec::new()),
            ),
            TapeKey::Stateless {
                principal: p,
                ip,
                hour,
            } => {
                let who = match (p, ip) {
                    (Some(p), _) => format!("principal:{p}"),
                    (None, Some(ip)) => format!("ip:{ip}"),
                    (None, None) => "-".to_owned(),
                };
                (
                    format::stateless_base(
                        &self.s.redactor.rules().digest_hex(who.as_bytes(), 6),
                        *hour,
                    ),
                    None,
                    crate::jsonrpc::MODERN_VERSION.to_owned(),
                    p.clone(),
                    None,
                )
            }
        };
        Tape {
            base,
            header: Header {
                tape: format::MAGIC.to_owned(),
                version: format::VERSION,
                shadowcat: env!("CARGO_PKG_VERSION").to_owned(),
                upstream: self.s.upstream.clone(),
                era,
                session,
                principal,
                client: None,
                server: None,
                started: format::Utc::of(wall).rfc3339(),
                part: 0,
            },
            started: at,
            pending,
            init_id: None,
            name: None,
            file: None,
            written: 0,
            unflushed: false,
            unsynced: false,
            last_use: 0,
            last_line: Instant::now(),
            standalone_seq: 0,
        }
    }

    /// The wall-clock time of a monotonic instant.
    fn wall(&self, at: Instant) -> SystemTime {
        let (i0, w0) = self.s.epoch;
        match at.checked_duration_since(i0) {
            Some(d) => w0 + d,
            None => w0 - i0.duration_since(at),
        }
    }

    /// Redacts one message and appends its line to `tape` (or holds it until the header can
    /// be written).
    fn message(&mut self, tape: &mut Tape, m: &Msg) {
        let frame_seq;
        let bytes: std::borrow::Cow<'_, [u8]> = match &m.body {
            Body::Json(b) => {
                frame_seq = None;
                b.as_slice().into()
            }
            Body::Frame(f) => {
                let (seq, data) = unframe(f);
                frame_seq = seq;
                data.into()
            }
        };
        if bytes.is_empty() {
            return; // a priming event
        }
        if let Some(seq) = frame_seq {
            if seq <= tape.standalone_seq {
                return; // replayed to a reconnecting client: recorded the first time
            }
            tape.standalone_seq = seq;
        }
        // Picking the members validates the message as one JSON object, so a clean one is
        // scanned once more (for the rules) and then written as it came.
        const MEMBERS: [&str; 4] = ["id", "method", "result", "params"];
        let raw = std::str::from_utf8(&bytes).ok();
        let picked = raw.and_then(|t| crate::jsonrpc::pick(t, MEMBERS));
        let msg = match picked {
            Some(_) => self.s.redactor.checked_message(&bytes),
            None => self.s.redactor.message(&bytes),
        };
        let Some(msg) = msg else {
            self.s.metrics.tape_dropped(LogDrop::Invalid, 1);
            return;
        };
        let [id, method, result, params] = match (&msg, picked) {
            (std::borrow::Cow::Borrowed(_), Some(p)) => p,
            // Redacted: what the header takes from it must be redacted too.
            _ => std::str::from_utf8(&msg)
                .ok()
                .and_then(|t| crate::jsonrpc::pick(t, MEMBERS))
                .unwrap_or_default(),
        };
        let id_text = id.map(|i| i.get()).unwrap_or("null");
        // A session's header waits for initialize and its answer.
        let mut release = false;
        if tape.pending.is_some() {
            let is_init = method.is_some_and(|m| m.get() == "\"initialize\"");
            if m.dir == Dir::ClientToServer && is_init && tape.header.client.is_none() {
                tape.header.client = Some(party(params, "clientInfo"));
                tape.init_id = Some(id_text.to_owned());
            } else if m.dir == Dir::ServerToClient
                && tape.init_id.as_deref() == Some(id_text)
                && tape.header.server.is_none()
            {
                tape.header.server = result.map(|r| party(Some(r), "serverInfo"));
                release = true;
            } else {
                release = true;
            }
        }
        tape.last_line = m.at;
        // The line's pieces around the message; written straight into the file's buffer.
        // `t` in ms with µs precision, formatted from integers.
        let us = m.at.saturating_duration_since(tape.started).as_micros();
        let t = format_args!("{}.{:03}", us / 1000, us % 1000);
        let mut head = [0u8; 160];
        let mut cursor = io::Cursor::new(&mut head[..]);
        let dir = m.dir.label();
        let written = match m.upstream_id {
            Some(u) => write!(
                cursor,
                r#"{{"t":{t},"dir":"{dir}","id":{id_text},"upstream_id":{u},"msg":"#
            ),
            None => write!(
                cursor,
                r#"{{"t":{t},"dir":"{dir}","id":{id_text},"upstream_id":null,"msg":"#
            ),
        };
        let prefix: std::borrow::Cow<'_, [u8]> = if written.is_ok() {
            let n = cursor.position() as usize;
            std::borrow::Cow::Borrowed(&head[..n])
        } else {
            // A long id (up to 64 digits or a long string): format it on the heap.
            let up = m.upstream_id.map_or("null".to_owned(), |u| u.to_string());
            format!(r#"{{"t":{t},"dir":"{dir}","id":{id_text},"upstream_id":{up},"msg":"#)
                .into_bytes()
                .into()
        };
        let suffix: &[u8] = if m.synthetic {
            b",\"synthetic\":true}\n"
        } else {
            b"}\n"
        };
        match &mut tape.pending {
            Some(lines) => {
                lines.push([&prefix[..], &msg[..], suffix].concat());
                if release {
                    self.release(tape);
                }
            }
            None => self.write_line(tape, &[&prefix, &msg, suffix]),
        }
    }

    /// Writes a waiting header and the lines held behind it.
    fn release(&mut self, tape: &mut Tape) {
        let Some(lines) = tape.pending.take() else {
            return;
        };
        for l in &lines {
            self.write_line(tape, &[l]);
        }
        if tape.name.is_none() {
            // Nothing was written (a session with no message): still leave its header.
            self.ensure_file(tape);
        }
    }

    /// Appends one line (in pieces) to the tape's current part, starting a new part first if
    /// this one is full. An I/O error drops the line (counted) and closes the file, to be
    /// reopened by the next line.
    fn write_line(&mut self, t: &mut Tape, pieces: &[&[u8]]) {
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        if t.name.is_some() && t.written > 0 && t.written + len > self.s.max_bytes {
            self.rotate(t);
        }
        if !self.ensure_file(t) {
            self.s.metrics.tape_dropped(LogDrop::Io, 1);
            return;
        }
        self.uses += 1;
        let Some(f) = t.file.as_mut() else {
            return;
        };
        match pieces.iter().try_for_each(|p| f.write_all(p)) {
            Ok(()) => {
                t.written += len;
                t.unflushed = true;
                t.unsynced = true;
                t.last_use = self.uses;
            }
            Err(e) => {
                t.file = None;
                self.open_files -= 1;
                self.s.metrics.tape_dropped(LogDrop::Io, 1);
                self.warn(&e);
            }
        }
    }

    /// Ends the tape's current part and makes the next one current (created on its first
    /// line).
    fn rotate(&mut self, t: &mut Tape) {
        if let Some(mut f) = t.file.take() {
            let _ = f.sync();
            self.open_files -= 1;
        }
        t.name = None;
        t.written = 0;
        t.header.part += 1;
    }

    /// Makes sure the tape has an open file: reopens its current part, or creates the first
    /// free part from its header's `part` on and writes the header. False if that failed.
    fn ensure_file(&mut self, t: &mut Tape) -> bool {
        if t.file.is_some() {
            return true;
        }
        if let Some(name) = &t.name {
            match self.s.store.append(name) {
                Ok(f) => {
                    t.file = Some(f);
                    self.open_files += 1;
                    return true;
                }
                Err(_) => {
                    // Deleted or unreadable: continue in a new part.
                    t.name = None;
                    t.written = 0;
                    t.header.part += 1;
                }
            }
        }
        for _ in 0..1000 {
            let name = format::file_name(&t.base, t.header.part);
            match self.s.store.create(&name) {
                Ok(mut f) => {
                    let mut head = serde_json::to_vec(&t.header).unwrap_or_default();
                    head.push(b'\n');
                    if let Err(e) = f.write_all(&head) {
                        self.warn(&e);
                        return false;
                    }
                    t.written = 0;
                    t.name = Some(name);
                    t.file = Some(f);
                    t.unflushed = true;
                    t.unsynced = true;
                    self.open_files += 1;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => t.header.part += 1,
                Err(e) => {
                    self.warn(&e);
                    return false;
                }
            }
        }
        false
    }

    /// Logs an I/O error at warn, at most once a minute.
    fn warn(&mut self, e: &io::Error) {
        if self
            .warned
            .is_none_or(|w| w.elapsed() >= Duration::from_secs(60))
        {
            self.warned = Some(Instant::now());
            log::warn!("tapes: write failed, lines dropped: {e}");
        }
    }
}

/// `{"info": …, "capabilities": …}` from the params of `initialize` (`info_key`
/// `clientInfo`) or its result (`serverInfo`).
fn party(obj: Option<&serde_json::value::RawValue>, info_key: &str) -> Party {
    let v: Value = obj
        .and_then(|o| serde_json::from_str(o.get()).ok())
        .unwrap_or(Value::Null);
    Party {
        info: v.get(info_key).cloned(),
        capabilities: v.get("capabilities").cloned(),
    }
}

/// The event sequence number (from `id: <stream>-<seq>`) and the data of one SSE frame.
fn unframe(frame: &[u8]) -> (Option<u64>, Vec<u8>) {
    let mut seq = None;
    let mut data: Vec<u8> = Vec::with_capacity(frame.len());
    let mut first = true;
    for line in frame.split(|&b| b == b'\n') {
        if let Some(id) = line.strip_prefix(b"id: ") {
            seq = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.rsplit('-').next())
                .and_then(|s| s.parse().ok());
        } else if let Some(d) = line.strip_prefix(b"data: ").or(line.strip_prefix(b"data:")) {
            if !first {
                data.push(b'\n');
            }
            first = false;
            data.extend_from_slice(d);
        }
    }
    (seq, data)
}
