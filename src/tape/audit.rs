//! The audit log (`--audit-log FILE|-`): one JSON line per completed MCP request, refusals
//! included, written by its own thread (`shadowcat-audit`) through its own byte-bounded queue,
//! so a slow disk or a blocked stdout never holds a request (lines are dropped and counted in
//! `shadowcat_audit_dropped_total` instead).
//!
//! A line:
//!
//! ```json
//! {"time":"2026-12-06T21:13:19.533Z","principal":"token:alice","client_ip":"127.0.0.1",
//!  "session":"3f2a9c1e","upstream":"node","http_method":"POST","method":"tools/call",
//!  "name":"echo","status":200,"outcome":"ok","code":null,"duration_ms":1.234,
//!  "bytes_in":120,"bytes_out":96}
//! ```
//!
//! `outcome` is `ok`, `tool_error` (`isError: true`), `error` (with its `code`) or `-` (no
//! JSON-RPC answer, e.g. a stream the client left). `method` and `name` (tool, prompt or
//! resource URI) are cut to 256 characters. Argument values appear only with
//! `--audit-arguments`, as `arguments`, redacted by the tape rules (pointers apply as in a
//! message: `/params/arguments/...`). A request a fault or mock rule acted on has `fault`
//! (the rule's name).
//!
//! The file is flushed every 100 ms and fsync'd every second; a file moved or removed by log
//! rotation is noticed at the next fsync and a new one started at the path.

use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::TapeConfig;
use crate::error::Error;
use crate::jsonrpc::Answered;
use crate::metrics::{LogDrop, Metrics};

use super::format::{Utc, push_millis, push_u64};
use super::queue::{self, Drain, WriterHandle};
use super::scan::Redactor;

/// Bytes of audit records that may wait for the writer (`TapeConfig::audit_queue_bytes`'
/// default): about 80,000 requests, over a second at full speed on a small machine.
pub const DEFAULT_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// `method` and `name` are cut to this many characters.
const MAX_TEXT: usize = 256;

/// One completed request, as the pipeline saw it.
#[derive(Debug)]
pub struct AuditRecord {
    /// When it arrived.
    pub at: SystemTime,
    /// The authenticated principal.
    pub principal: Option<String>,
    /// The client's IP (`X-Forwarded-For` only from a trusted proxy).
    pub client_ip: IpAddr,
    /// The session id's first 8 characters.
    pub session: Option<String>,
    /// `POST`, `GET`, `DELETE`, … (the common ones without an allocation).
    pub http_method: std::borrow::Cow<'static, str>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool, prompt (`params.name`) or resource (`params.uri`).
    pub name: Option<String>,
    /// The HTTP status sent.
    pub status: u16,
    /// How it was answered at the JSON-RPC level.
    pub answered: Option<Answered>,
    /// From arrival to the end of the answer.
    pub duration: Duration,
    /// Body bytes received.
    pub bytes_in: u64,
    /// Body and stream bytes sent.
    pub bytes_out: u64,
    /// `params.arguments`, with `--audit-arguments` only.
    pub arguments: Option<Box<RawValue>>,
    /// The fault rule that acted on the request (issue #18), if one did.
    pub fault: Option<Arc<str>>,
}

#[allow(clippy::large_enum_variant)] // one move into the channel; a box would be an allocation
enum AuditEvent {
    Line(AuditRecord),
    Sync(crossbeam_channel::Sender<()>),
    Stop,
}

/// The pipeline's handle on the audit writer; cheap to clone. [`Auditor::off`] makes every
/// call a no-op.
#[derive(Clone, Default)]
pub struct Auditor {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    writer: WriterHandle<AuditEvent>,
    metrics: Arc<Metrics>,
    arguments: bool,
}

impl Auditor {
    /// Logs nothing.
    pub fn off() -> Auditor {
        Auditor::default()
    }

    /// Opens `cfg.audit_log` (appending; `-` is stdout) and starts the writer; nothing when
    /// it is `None`.
    pub fn start(
        cfg: &TapeConfig,
        upstream: &str,
        redactor: Arc<Redactor>,
        metrics: Arc<Metrics>,
    ) -> Result<Auditor, Error> {
        let Some(target) = &cfg.audit_log else {
            return Ok(Auditor::off());
        };
        let path = std::path::PathBuf::from(target);
        let is_fifo = || {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_fifo())
        };
        let sink: Box<dyn Sink> = if target == "-" {
            Box::new(Stdout)
        } else if is_fifo() {
            // Opening a FIFO for writing waits for its reader: the writer thread does that.
            Box::new(FifoSink { path, file: None })
        } else {
            Box::new(
                FileSink::open(path)
                    .map_err(|e| Error::Config(format!("--audit-log {target}: {e}")))?,
            )
        };
        Auditor::with_sink(
            sink,
            cfg.audit_queue_bytes,
            cfg.audit_arguments,
            upstream,
            redactor,
            metrics,
        )
    }

    /// An auditor writing to `sink` (tests give it a slow one).
    pub(crate) fn with_sink(
        sink: Box<dyn Sink>,
        queue_bytes: usize,
        arguments: bool,
        upstream: &str,
        redactor: Arc<Redactor>,
        metrics: Arc<Metrics>,
    ) -> Result<Auditor, Error> {
        let (queue, drain) = queue::bounded(queue_bytes);
        let w = AuditWriter {
            sink,
            redactor,
            upstream_json: serde_json::to_vec(upstream).unwrap_or_else(|_| b"null".to_vec()),
            buf: Vec::with_capacity(512),
            clock: Clock::default(),
            ips: Ips::default(),
            metrics: metrics.clone(),
            unflushed: false,
            unsynced: false,
            warned: None,
        };
        let thread = std::thread::Builder::new()
            .name("shadowcat-audit".into())
            .spawn(move || w.run(drain))?;
        Ok(Auditor {
            inner: Some(Arc::new(Shared {
                writer: WriterHandle {
                    queue,
                    thread: Mutex::new(Some(thread)),
                    stopped: AtomicBool::new(false),
                },
                metrics,
                arguments,
            })),
        })
    }

    /// True when auditing.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// True when lines carry the arguments (`--audit-arguments`).
    pub fn wants_arguments(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.arguments)
    }

    /// Queues one line; dropped (and counted) if the writer is that far behind.
    pub fn log(&self, rec: AuditRecord) {
        let Some(s) = &self.inner else { return };
        let len = std::mem::size_of::<AuditRecord>()
            + rec.principal.as_ref().map_or(0, String::len)
            + rec.session.as_ref().map_or(0, String::len)
            + rec.method.as_ref().map_or(0, |m| m.len().min(MAX_TEXT))
            + rec.name.as_ref().map_or(0, |m| m.len().min(MAX_TEXT))
            + rec.arguments.as_ref().map_or(0, |a| a.get().len());
        if s.writer.queue.try_send(AuditEvent::Line(rec), len).is_err()
            && !s.writer.stopped.load(Ordering::Relaxed)
        {
            s.metrics.audit_dropped(LogDrop::Behind, 1);
        }
    }

    /// Waits (at most `timeout`) until every line queued so far is written out.
    pub fn sync(&self, timeout: Duration) -> bool {
        let Some(s) = &self.inner else { return true };
        s.writer.sync(AuditEvent::Sync, timeout)
    }

    /// Writes out what is queued and joins the writer. Idempotent.
    pub fn shutdown(&self) {
        let Some(s) = &self.inner else { return };
        s.writer.shutdown(AuditEvent::Stop, "audit log");
    }
}

/// Where audit lines go.
pub(crate) trait Sink: Send {
    /// Appends bytes (buffered).
    fn write_all(&mut self, b: &[u8]) -> io::Result<()>;
    /// Hands buffered bytes on.
    fn flush(&mut self) -> io::Result<()>;
    /// And makes them durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// The audit file, opened for appending (mode 0600). Each second's sync also checks that the
/// path still names the open file: after a rotation (the file moved or removed) the next lines
/// go to a new file at the path. A rotation by truncation (`copytruncate`) needs nothing: the
/// file is appended to.
struct FileSink {
    path: std::path::PathBuf,
    file: BufWriter<std::fs::File>,
    /// Device and inode of the open file.
    id: (u64, u64),
}

impl FileSink {
    fn open(path: std::path::PathBuf) -> io::Result<FileSink> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        let m = f.metadata()?;
        Ok(FileSink {
            path,
            file: BufWriter::with_capacity(64 * 1024, f),
            id: (m.dev(), m.ino()),
        })
    }
}

impl Sink for FileSink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.file.write_all(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
    fn sync(&mut self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let moved = std::fs::metadata(&self.path).map_or(true, |m| (m.dev(), m.ino()) != self.id);
        if moved {
            *self = FileSink::open(self.path.clone())?;
        }
        Ok(())
    }
}

/// A FIFO (a log shipper reading it): opened on the writer thread at its first line, which
/// waits there until a reader opens the other end; a reader that stops reading blocks only
/// that thread (the queue then fills and lines are dropped and counted). Nothing to fsync.
struct FifoSink {
    path: std::path::PathBuf,
    file: Option<BufWriter<std::fs::File>>,
}

impl FifoSink {
    fn file(&mut self) -> io::Result<&mut BufWriter<std::fs::File>> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("FIFO not open"))
    }
}

impl Sink for FifoSink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        let r = self.file()?.write_all(b);
        if r.is_err() {
            self.file = None; // the reader went away: reopen (and wait for one) next time
        }
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Standard output, for `--audit-log -` (a log collector reading the process's stdout).
struct Stdout;

impl Sink for Stdout {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
}

struct AuditWriter {
    sink: Box<dyn Sink>,
    redactor: Arc<Redactor>,
    /// The upstream's name as a JSON string.
    upstream_json: Vec<u8>,
    buf: Vec<u8>,
    clock: Clock,
    ips: Ips,
    metrics: Arc<Metrics>,
    unflushed: bool,
    unsynced: bool,
    warned: Option<Instant>,
}

impl AuditWriter {
    fn run(mut self, queue: Drain<AuditEvent>) {
        let flush_every = Duration::from_millis(100);
        let sync_every = Duration::from_secs(1);
        let mut next_flush = Instant::now() + flush_every;
        let mut next_sync = Instant::now() + sync_every;
        let mut busy = false;
        'serve: loop {
            let now = Instant::now();
            if now >= next_sync {
                self.sync();
                next_sync = now + sync_every;
                next_flush = now + flush_every;
            } else if now >= next_flush {
                if self.unflushed {
                    self.unflushed = false;
                    if let Err(e) = self.sink.flush() {
                        self.warn(&e);
                    }
                }
                next_flush = now + flush_every;
            }
            let Ok(got) = queue.next_batch(busy, next_flush.min(next_sync)) else {
                break;
            };
            busy = got.is_some();
            let mut next = got;
            while let Some(ev) = next {
                match ev {
                    AuditEvent::Line(rec) => self.write(&rec),
                    AuditEvent::Sync(done) => {
                        self.sync();
                        let _ = done.send(());
                    }
                    AuditEvent::Stop => break 'serve,
                }
                next = queue.try_recv();
            }
        }
        while let Some(ev) = queue.try_recv() {
            if let AuditEvent::Line(rec) = ev {
                self.write(&rec);
            }
        }
        self.unsynced = true;
        self.sync();
    }

    /// Formats one line by hand into a reused buffer (this runs once per request, so no
    /// intermediate tree or struct) and appends it to the sink.
    fn write(&mut self, r: &AuditRecord) {
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(b"{\"time\":\"");
        self.clock.push(&mut b, r.at);
        b.extend_from_slice(b"\",\"principal\":");
        json_str(&mut b, r.principal.as_deref());
        b.extend_from_slice(b",\"client_ip\":\"");
        self.ips.push(&mut b, r.client_ip);
        b.extend_from_slice(b"\",\"session\":");
        json_str(&mut b, r.session.as_deref());
        b.extend_from_slice(b",\"upstream\":");
        b.extend_from_slice(&self.upstream_json);
        b.extend_from_slice(b",\"http_method\":");
        json_str(&mut b, Some(&r.http_method));
        b.extend_from_slice(b",\"method\":");
        json_str(&mut b, r.method.as_deref().map(clip));
        b.extend_from_slice(b",\"name\":");
        json_str(&mut b, r.name.as_deref().map(clip));
        b.extend_from_slice(b",\"status\":");
        push_u64(&mut b, r.status.into());
        b.extend_from_slice(b",\"outcome\":\"");
        b.extend_from_slice(r.answered.map_or("-", Answered::label).as_bytes());
        b.extend_from_slice(b"\",\"code\":");
        match r.answered.and_then(Answered::code) {
            Some(c) => {
                if c < 0 {
                    b.push(b'-');
                }
                push_u64(&mut b, c.unsigned_abs());
            }
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"duration_ms\":");
        push_millis(
            &mut b,
            u64::try_from(r.duration.as_micros()).unwrap_or(u64::MAX),
        );
        b.extend_from_slice(b",\"bytes_in\":");
        push_u64(&mut b, r.bytes_in);
        b.extend_from_slice(b",\"bytes_out\":");
        push_u64(&mut b, r.bytes_out);
        if let Some(a) = &r.arguments {
            b.extend_from_slice(b",\"arguments\":");
            self.arguments(&mut b, a);
        }
        if let Some(rule) = &r.fault {
            b.extend_from_slice(b",\"fault\":");
            json_str(&mut b, Some(&**rule));
        }
        b.extend_from_slice(b"}\n");
        match self.sink.write_all(&b) {
            Ok(()) => {
                self.unflushed = true;
                self.unsynced = true;
            }
            Err(e) => {
                self.metrics.audit_dropped(LogDrop::Io, 1);
                self.warn(&e);
            }
        }
        // A rare huge line (long arguments) does not keep its buffer for the writer's life.
        b.clear();
        b.shrink_to(64 * 1024);
        self.buf = b;
    }

    /// `--audit-arguments`: the arguments redacted as inside a message (so that pointer rules,
    /// `/params/arguments/…`, apply), written as `serde_json` writes a value (compact, members
    /// in key order). When there are no pointer rules and the byte scan finds nothing a key
    /// rule could match, the redaction (a tree built around them and walked) is skipped: it
    /// could change nothing.
    fn arguments(&mut self, b: &mut Vec<u8>, a: &RawValue) {
        let mut args: Value = serde_json::from_str(a.get()).unwrap_or(Value::Null);
        let clean = self.redactor.rules().pointers().is_empty()
            && !self.redactor.must_parse(a.get().as_bytes());
        if !clean {
            let mut msg = serde_json::json!({ "params": { "arguments": args } });
            self.redactor.redact(&mut msg);
            args = msg
                .pointer_mut("/params/arguments")
                .map(Value::take)
                .unwrap_or(Value::Null);
        }
        let _ = serde_json::to_writer(&mut *b, &args);
    }

    fn sync(&mut self) {
        if !self.unsynced {
            return;
        }
        self.unsynced = false;
        self.unflushed = false;
        if let Err(e) = self.sink.sync() {
            self.warn(&e);
        }
    }

    fn warn(&mut self, e: &io::Error) {
        if self
            .warned
            .is_none_or(|w| w.elapsed() >= Duration::from_secs(60))
        {
            self.warned = Some(Instant::now());
            log::warn!("audit log: write failed, lines dropped: {e}");
        }
    }
}

/// `s` as a JSON string, or `null`.
fn json_str(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            let _ = serde_json::to_writer(&mut *b, s);
        }
        None => b.extend_from_slice(b"null"),
    }
}

/// Client addresses as text, the last one kept (most lines come from a few clients).
#[derive(Default)]
struct Ips {
    last: Option<(IpAddr, String)>,
}

impl Ips {
    fn push(&mut self, b: &mut Vec<u8>, ip: IpAddr) {
        match &self.last {
            Some((k, text)) if *k == ip => b.extend_from_slice(text.as_bytes()),
            _ => {
                let text = ip.to_string();
                b.extend_from_slice(text.as_bytes());
                self.last = Some((ip, text));
            }
        }
    }
}

/// RFC 3339 stamps, the date and time of day formatted once per second.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    prefix: String,
}

impl Clock {
    /// Appends `2026-12-06T21:13:19.533Z`.
    fn push(&mut self, b: &mut Vec<u8>, t: SystemTime) {
        let since = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        if self.second != Some(since.as_secs()) {
            self.second = Some(since.as_secs());
            let full = Utc::of(t).rfc3339();
            self.prefix = full[..full.len() - 5].to_owned();
        }
        b.extend_from_slice(self.prefix.as_bytes());
        let ms = since.subsec_millis();
        b.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

/// The first [`MAX_TEXT`] characters.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}
