//! Tapes and the audit log: what crossed the proxy, written down off the request path, and
//! the tape format's rules that the recorder and the tape tools share.
//!
//! Owns: tape format version 1 as Rust types (`format.rs`, the contract in
//! `docs/tape-format.md`), redaction (`redact.rs`: the rules, shared with `shadowcat tape
//! redact`; `scan.rs`: the recorder's byte scan that lets a clean message through untouched),
//! the byte-bounded hand-off to a writer thread (`queue.rs`), the tape writer (`writer/`)
//! and the audit log (`audit.rs`). Must not touch: the pipeline (it calls in through
//! [`Recorder`] and [`Auditor`], two small handles that know nothing of files), sessions,
//! upstreams, HTTP or the tape tools (`tools/tape/` calls into `redact`, never the reverse).
//!
//! **Never on the request path.** A request thread only hands over the message (the request
//! body is moved, an answer copied), takes one atomic add on a byte budget and sends it down a
//! lock-free channel. When the writer falls behind (a slow disk) and the budget
//! ([`DEFAULT_QUEUE_BYTES`], 32 MiB) is full, the message is dropped and counted
//! (`shadowcat_tape_dropped_total{reason="behind"}`); nothing waits. Redaction, JSON work and
//! I/O happen on the writer thread (`shadowcat-tape`).
//!
//! **What is recorded.** Every message that crosses the client boundary, as the client sent
//! it (the request body) or received it (after id restoration): requests, notifications and
//! responses from the client; answers, related messages on a request's stream, and events of
//! the session's standalone GET stream (each once, however often it is replayed). Error
//! answers the proxy makes itself are marked `synthetic`; the answer to a request a fault rule
//! acted on carries the rule's name (`fault`). A message refused before it was tied
//! to a session or to a stateless client (bad JSON, 401, 429, unknown session) has no tape.
//! Headers are never recorded.
//!
//! **Order.** A client's responses and notifications are queued before they are forwarded
//! (their effects show on other threads: the tool waiting for a sampling answer answers on its
//! own stream); a client's request once forwarded, before anything of its answer (which this
//! same thread handles), so that its upstream id is known. Every message to the client is
//! queued before it is written to the client.
//!
//! **`upstream_id`** is filled for a client request in a session on a stdio upstream, and for
//! its answer: the rewritten id the session's in-flight table holds, one lock and one lookup.
//! It is null otherwise: notifications; stateless requests (no session, no table); the
//! server's own requests (sampling, elicitation), whose upstream id the child reader keeps
//! to itself; HTTP upstreams, which do not rewrite ids.
//!
//! **Files.** One tape per session (closed when the session ends: DELETE, expiry, its child
//! lost, shutdown) and one per stateless client per hour (closed once its hour is over and it
//! has been quiet a minute). A session's header waits for the answer to `initialize`, so it
//! names both sides. Lines are handed to the kernel every 100 ms and fsync'd every second and
//! on close; a crash leaves every complete line readable. Rotation at `--record-max-bytes`,
//! retention `--record-keep` (swept by the writer).

pub mod audit;
pub mod format;
pub mod queue;
pub mod redact;
pub mod scan;
pub mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cost;
#[cfg(test)]
mod tests_tools;

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use audit::{AuditRecord, Auditor};
pub use format::Dir;
pub use scan::Redactor;

use crate::config::{RedactRules, TapeConfig};
use crate::error::Error;
use crate::metrics::{LogDrop, Metrics};
use queue::WriterHandle;
use writer::{Body, Event, Msg};

/// Bytes of messages the tape writer may have queued (`TapeConfig::queue_bytes`' default).
pub const DEFAULT_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Opening and closing a tape may go this far past the budget: they are small and losing
/// them would leave a tape without its header facts or open past its session.
const CONTROL_SLACK: usize = 1024 * 1024;

/// Which tape a message belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TapeKey {
    /// A session, by its full id.
    Session(String),
    /// A stateless (2026-07-28) client in one hour: its principal, else its IP.
    Stateless {
        /// The authenticated principal.
        principal: Option<String>,
        /// The client's IP when there is no principal.
        ip: Option<IpAddr>,
        /// Hours since the Unix epoch.
        hour: u64,
    },
}

/// One request's link to its tape, held by the pipeline while the request is handled.
#[derive(Clone, Debug)]
pub struct Tap {
    key: Arc<TapeKey>,
    upstream_id: Option<u64>,
    era: &'static str,
}

impl Tap {
    /// The same tape, noting the upstream's id for this request (and its answer).
    pub fn with_upstream_id(mut self, id: Option<u64>) -> Tap {
        self.upstream_id = id;
        self
    }
}

/// The pipeline's handle on the tape writer; cheap to clone. [`Recorder::off`] makes every
/// call a no-op costing one branch.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    writer: WriterHandle<Event>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Records nothing.
    pub fn off() -> Recorder {
        Recorder::default()
    }

    /// Starts the writer thread for `cfg.record` (nothing when it is `None`), writing tapes
    /// with `redactor`'s rules against `upstream`.
    pub fn start(
        cfg: &TapeConfig,
        redactor: Arc<Redactor>,
        upstream: format::Upstream,
        metrics: Arc<Metrics>,
    ) -> Result<Recorder, Error> {
        let Some(dir) = &cfg.record else {
            return Ok(Recorder::off());
        };
        let setup = writer::Setup {
            store: Box::new(writer::DirStore::new(dir.clone())),
            redactor,
            upstream,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            metrics: metrics.clone(),
            epoch: (Instant::now(), SystemTime::now()),
        };
        Recorder::with_writer(setup, cfg.queue_bytes, metrics)
    }

    /// A recorder whose writer thread runs `setup` (tests give it a slow store).
    pub(crate) fn with_writer(
        setup: writer::Setup,
        queue_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Recorder, Error> {
        let (queue, drain) = queue::bounded(queue_bytes);
        let thread = std::thread::Builder::new()
            .name("shadowcat-tape".into())
            .spawn(move || writer::Writer::new(setup).run(drain))?;
        Ok(Recorder {
            inner: Some(Arc::new(Shared {
                writer: WriterHandle {
                    queue,
                    thread: Mutex::new(Some(thread)),
                    stopped: AtomicBool::new(false),
                },
                metrics,
            })),
        })
    }

    /// True when recording.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Opens the tape of a session that `initialize` just created, `at` the moment the
    /// request arrived; the tap for its messages.
    pub fn open_session(
        &self,
        id: &str,
        era: &str,
        principal: Option<&str>,
        at: Instant,
    ) -> Option<Tap> {
        let s = self.inner.as_ref()?;
        let key = TapeKey::Session(id.to_owned());
        let ev = Event::Open {
            key: key.clone(),
            era: era.to_owned(),
            principal: principal.map(str::to_owned),
            at,
        };
        if s.writer
            .queue
            .try_send_slack(ev, 256, CONTROL_SLACK)
            .is_err()
        {
            s.metrics.tape_dropped(LogDrop::Behind, 1);
        }
        Some(Tap {
            key: Arc::new(key),
            upstream_id: None,
            era: static_era(era),
        })
    }

    /// The tap of an existing session's tape (`era`: its protocol version).
    pub fn session(&self, id: &str, era: &str) -> Option<Tap> {
        self.inner.as_ref()?;
        Some(Tap {
            key: Arc::new(TapeKey::Session(id.to_owned())),
            upstream_id: None,
            era: static_era(era),
        })
    }

    /// The tap of a stateless client's tape for this hour: its principal's, else its IP's.
    pub fn stateless(&self, principal: Option<&str>, ip: IpAddr) -> Option<Tap> {
        self.inner.as_ref()?;
        Some(Tap {
            key: Arc::new(TapeKey::Stateless {
                principal: principal.map(str::to_owned),
                ip: principal.is_none().then_some(ip),
                hour: format::hour_of(SystemTime::now()),
            }),
            upstream_id: None,
            era: crate::jsonrpc::MODERN_VERSION,
        })
    }

    /// A message the client sent (the request body, handed over), `at` the moment it arrived.
    pub fn client_sent(&self, tap: &Tap, at: Instant, body: Vec<u8>) {
        let Some(s) = &self.inner else { return };
        self.send(
            s,
            Msg {
                key: tap.key.clone(),
                at,
                dir: Dir::ClientToServer,
                upstream_id: tap.upstream_id,
                body: Body::Json(body),
                synthetic: false,
                fault: None,
                era: tap.era,
            },
        );
    }

    /// A message the client received: the `answer` to its request (then it carries the
    /// request's upstream id) or a message related to it; `synthetic`: made by the proxy.
    pub fn client_got(&self, tap: &Tap, body: Vec<u8>, answer: bool, synthetic: bool) {
        self.client_got_marked(tap, body, answer, synthetic, None);
    }

    /// [`Recorder::client_got`], marked with the fault rule that acted on the request
    /// (`fault` on the line).
    pub fn client_got_marked(
        &self,
        tap: &Tap,
        body: Vec<u8>,
        answer: bool,
        synthetic: bool,
        fault: Option<Arc<str>>,
    ) {
        let Some(s) = &self.inner else { return };
        let upstream_id = if answer { tap.upstream_id } else { None };
        self.send(
            s,
            Msg {
                key: tap.key.clone(),
                at: Instant::now(),
                dir: Dir::ServerToClient,
                upstream_id,
                body: Body::Json(body),
                synthetic,
                fault,
                era: tap.era,
            },
        );
    }

    /// An event of the session's standalone stream, as framed for the client.
    pub fn client_got_event(&self, tap: &Tap, frame: Arc<Vec<u8>>) {
        let Some(s) = &self.inner else { return };
        self.send(
            s,
            Msg {
                key: tap.key.clone(),
                at: Instant::now(),
                dir: Dir::ServerToClient,
                upstream_id: None,
                body: Body::Frame(frame),
                synthetic: false,
                fault: None,
                era: tap.era,
            },
        );
    }

    fn send(&self, s: &Shared, m: Msg) {
        let len = m.body.bytes();
        if s.writer.queue.try_send(Event::Msg(m), len).is_err()
            && !s.writer.stopped.load(Ordering::Relaxed)
        {
            s.metrics.tape_dropped(LogDrop::Behind, 1);
        }
    }

    /// A session ended: its tape closes.
    pub fn close_session(&self, id: &str) {
        let Some(s) = &self.inner else { return };
        let ev = Event::Close(TapeKey::Session(id.to_owned()));
        if s.writer
            .queue
            .try_send_slack(ev, 64, CONTROL_SLACK)
            .is_err()
            && !s.writer.stopped.load(Ordering::Relaxed)
        {
            s.metrics.tape_dropped(LogDrop::Behind, 1);
        }
    }

    /// Waits (at most `timeout`) until everything queued so far is written and fsync'd.
    /// False if the writer did not get there in time.
    pub fn sync(&self, timeout: Duration) -> bool {
        let Some(s) = &self.inner else { return true };
        s.writer.sync(Event::Sync, timeout)
    }

    /// Writes out what is queued, closes every tape and joins the writer. Idempotent.
    pub fn shutdown(&self) {
        let Some(s) = &self.inner else { return };
        s.writer.shutdown(Event::Stop, "tapes");
    }
}

/// A session's protocol version as one of the proxy's own constants (a session only ever
/// holds one of them), so a message can carry it without an allocation.
fn static_era(v: &str) -> &'static str {
    crate::jsonrpc::LEGACY_VERSIONS
        .iter()
        .chain([&crate::jsonrpc::MODERN_VERSION])
        .copied()
        .find(|k| *k == v)
        .unwrap_or("unknown")
}

/// The redaction rules of `--redact` under `salt`, for the recorder and the audit log.
pub fn rules(cfg: &RedactRules, salt: Vec<u8>) -> Result<redact::Rules, Error> {
    let mut rules = redact::Rules::new(salt);
    for k in &cfg.keys {
        rules.add(&format!("key={k}")).map_err(Error::Config)?;
    }
    for p in &cfg.pointers {
        rules.add(&format!("pointer={p}")).map_err(Error::Config)?;
    }
    Ok(rules)
}

/// The salt of the tape directory `dir` ([`redact::dir_salt`]: `DIR/.salt`, made on first
/// use); `dir` is created (mode 0700) if missing.
pub fn directory_salt(dir: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Config(format!("--record {}: {e}", dir.display())))?;
    redact::dir_salt(dir).map_err(|e| {
        Error::Config(format!(
            "--record {}: {e}",
            dir.join(redact::SALT_FILE).display()
        ))
    })
}

/// A salt for one run (64 hex digits from `/dev/urandom`), when only the audit log is on.
pub fn random_salt() -> Result<Vec<u8>, Error> {
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes())
}
