//! Resumable SSE streams: every event the proxy sends is kept, briefly, in the log of the
//! stream it belongs to, under an id the proxy owns.
//!
//! * An event id is `<stream>-<seq>`: the stream's number within its session and the event's
//!   sequence number within the stream. Ids are therefore unique across a session's streams
//!   and say which stream they belong to.
//! * Each stream keeps at most `--replay-events` events (default 256) and [`MAX_REPLAY_BYTES`]
//!   bytes; an ended stream is kept `--replay-ttl` (default 5 min), then forgotten.
//! * All logs of all sessions share one byte budget, `--replay-budget` ([`ReplayBudget`],
//!   default [`DEFAULT_REPLAY_BUDGET`]). A push that takes the total past it first forgets the
//!   events of the **oldest ended** streams kept for resumption, across all sessions (their
//!   ids then answer 400, as after `--replay-ttl`). If that is not enough, the **open** stream
//!   being pushed to drops its own oldest events, keeping at least its newest one: open streams
//!   are never forgotten and live delivery goes on, but while the budget is full they can be
//!   resumed only from their last event (a follower that falls behind misses events, as when
//!   `--replay-events` rotates them out). The total can therefore pass the budget by at most
//!   one event per open stream.
//! * The writer of a stream pushes events whether or not a client is attached: a client that
//!   disconnects does not cancel the request, and a later GET with `Last-Event-ID` gets
//!   exactly the events after that id, then the live ones.
//! * A session has one standalone (GET) stream. A second GET **replaces** the first: the old
//!   connection is ended and the new one continues the same log (a client that reconnects
//!   after a silent network drop must not be locked out until the old socket times out).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::util::lock;

/// Byte cap of one stream's replay buffer.
pub const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// `--replay-budget`'s default: bytes all replay logs together may hold.
pub const DEFAULT_REPLAY_BUDGET: usize = 256 * 1024 * 1024;

/// Replay limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ReplayLimits {
    /// Events kept per stream.
    pub events: usize,
    /// Bytes kept per stream.
    pub bytes: usize,
    /// How long an ended stream stays resumable.
    pub ttl: Duration,
    /// Bytes kept by all streams of all sessions together (one `ReplayBudget`).
    pub budget: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        ReplayLimits {
            events: 256,
            bytes: MAX_REPLAY_BYTES,
            ttl: Duration::from_secs(300),
            budget: DEFAULT_REPLAY_BUDGET,
        }
    }
}

/// The byte budget every replay log shares (`--replay-budget`; see the module docs for what
/// gives way when it is full). One per session table.
#[derive(Debug)]
pub struct ReplayBudget {
    limit: usize,
    /// Bytes held by all logs now (each log adds and removes its own).
    used: AtomicUsize,
    ended: Mutex<EndedQueue>,
}

/// Ended streams kept for resumption, oldest first, as weak references: a log forgotten by
/// its session (TTL, cap, session end) just leaves a dead entry, skipped when reached and
/// swept out whenever the queue has doubled since the last sweep, so it stays within twice
/// the number of ended logs alive (plus a small constant).
#[derive(Debug, Default)]
struct EndedQueue {
    logs: VecDeque<Weak<EventLog>>,
    sweep_at: usize,
}

impl ReplayBudget {
    /// A budget of `limit` bytes, nothing held.
    pub fn new(limit: usize) -> Arc<ReplayBudget> {
        Arc::new(ReplayBudget {
            limit,
            used: AtomicUsize::new(0),
            ended: Mutex::new(EndedQueue {
                logs: VecDeque::new(),
                sweep_at: 64,
            }),
        })
    }

    /// Bytes held by all logs.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Makes `log` (ended, kept for resumption) the newest candidate for eviction.
    fn retire(&self, log: &Arc<EventLog>) {
        let mut q = lock(&self.ended);
        q.logs.push_back(Arc::downgrade(log));
        if q.logs.len() >= q.sweep_at {
            q.logs.retain(|w| w.strong_count() > 0);
            q.sweep_at = (q.logs.len() * 2).max(64);
        }
    }

    /// Forgets the events of the oldest ended logs until the total fits (or none is left).
    /// Takes one log's lock at a time; the caller holds none.
    fn evict_ended(&self) {
        while self.over() {
            let next = lock(&self.ended).logs.pop_front();
            let Some(weak) = next else { return };
            if let Some(log) = weak.upgrade() {
                log.evict();
            }
        }
    }
}

/// One framed SSE event and its sequence number.
#[derive(Clone, Debug)]
pub struct Event {
    /// Position in the stream.
    pub seq: u64,
    /// The bytes to write: `id:`, `event:` and `data:` lines and the blank line.
    pub frame: Arc<Vec<u8>>,
}

#[derive(Debug)]
struct LogInner {
    events: VecDeque<Event>,
    next_seq: u64,
    bytes: usize,
    ended: Option<Instant>,
    /// Incremented each time a new reader takes the stream over.
    reader: u64,
}

/// The replay log of one stream.
#[derive(Debug)]
pub struct EventLog {
    /// The stream's number within its session.
    pub id: u64,
    limits: ReplayLimits,
    budget: Arc<ReplayBudget>,
    inner: Mutex<LogInner>,
    cond: Condvar,
}

/// Why a `Last-Event-ID` cannot be honoured.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// Not an id this proxy wrote, or its stream is forgotten.
    Unknown,
    /// Events after it were already dropped from the buffer.
    Expired,
}

/// What [`EventLog::wait`] found.
pub struct Waited {
    /// New events, in order.
    pub events: Vec<Event>,
    /// The stream has ended and everything was delivered.
    pub ended: bool,
    /// Another reader took the stream over.
    pub replaced: bool,
}

impl EventLog {
    fn new(id: u64, limits: ReplayLimits, budget: Arc<ReplayBudget>) -> EventLog {
        EventLog {
            id,
            limits,
            budget,
            inner: Mutex::new(LogInner {
                events: VecDeque::new(),
                next_seq: 1,
                bytes: 0,
                ended: None,
                reader: 0,
            }),
            cond: Condvar::new(),
        }
    }

    /// Appends one JSON message (or, with empty `data`, a priming event) and returns it
    /// framed with its id.
    pub fn push(&self, data: &[u8]) -> Event {
        let mut g = lock(&self.inner);
        let seq = g.next_seq;
        g.next_seq += 1;
        let frame = Arc::new(frame(Some(&format!("{}-{seq}", self.id)), data));
        let ev = Event { seq, frame };
        g.bytes += ev.frame.len();
        self.budget.add(ev.frame.len());
        g.events.push_back(ev.clone());
        while g.events.len() > self.limits.events || g.bytes > self.limits.bytes {
            match g.events.pop_front() {
                Some(old) => self.forget(&mut g, &old),
                None => break,
            }
        }
        drop(g);
        if self.budget.over() {
            // Ended streams go first (other logs' locks, one at a time, none held here);
            // then this open stream gives up its own oldest events, keeping the newest.
            self.budget.evict_ended();
            let mut g = lock(&self.inner);
            while g.events.len() > 1 && self.budget.over() {
                match g.events.pop_front() {
                    Some(old) => self.forget(&mut g, &old),
                    None => break,
                }
            }
        }
        self.cond.notify_all();
        ev
    }

    /// Accounts for an event taken out of the log.
    fn forget(&self, g: &mut LogInner, old: &Event) {
        g.bytes -= old.frame.len();
        self.budget.sub(old.frame.len());
    }

    /// Forgets every event held (the replay budget needs the room); ids up to the last one
    /// can no longer be resumed.
    fn evict(&self) {
        let mut g = lock(&self.inner);
        g.events.clear();
        self.budget.sub(g.bytes);
        g.bytes = 0;
    }

    /// Marks the stream finished; readers drain what is left and stop.
    pub fn end(&self) {
        let mut g = lock(&self.inner);
        if g.ended.is_none() {
            g.ended = Some(Instant::now());
        }
        drop(g);
        self.cond.notify_all();
    }

    /// True once ended.
    pub fn is_ended(&self) -> bool {
        lock(&self.inner).ended.is_some()
    }

    /// Bytes held for replay.
    pub fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// The sequence number of the newest event (0 if none).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner).next_seq - 1
    }

    /// Becomes the stream's reader, ending any previous one. Returns the reader token.
    pub fn take_over(&self) -> u64 {
        let mut g = lock(&self.inner);
        g.reader += 1;
        let token = g.reader;
        drop(g);
        self.cond.notify_all();
        token
    }

    /// Checks that events after `seq` are all still held.
    pub fn check_resume(&self, seq: u64) -> Result<(), ResumeError> {
        let g = lock(&self.inner);
        if seq >= g.next_seq {
            return Err(ResumeError::Unknown);
        }
        match g.events.front() {
            Some(first) if first.seq > seq + 1 => Err(ResumeError::Expired),
            None if seq + 1 < g.next_seq => Err(ResumeError::Expired),
            _ => Ok(()),
        }
    }

    /// Waits until there are events after `seq`, the stream ends, reader `token` is replaced,
    /// or `until` passes.
    pub fn wait(&self, seq: u64, token: u64, until: Instant) -> Waited {
        let mut g = lock(&self.inner);
        loop {
            let events: Vec<Event> = g.events.iter().filter(|e| e.seq > seq).cloned().collect();
            let replaced = g.reader != token;
            let caught_up = events.last().map_or(seq, |e| e.seq) + 1 >= g.next_seq;
            let ended = g.ended.is_some() && caught_up;
            if !events.is_empty() || ended || replaced {
                return Waited {
                    events,
                    ended,
                    replaced,
                };
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited {
                    events,
                    ended,
                    replaced,
                };
            }
            g = self
                .cond
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn expired(&self, now: Instant) -> bool {
        lock(&self.inner)
            .ended
            .is_some_and(|t| now.duration_since(t) >= self.limits.ttl)
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let bytes = match self.inner.get_mut() {
            Ok(g) => g.bytes,
            Err(p) => p.into_inner().bytes,
        };
        self.budget.sub(bytes);
    }
}

/// Frames one SSE event: `id` (if any), `event: message` (unless the data is empty, as in a
/// priming event), the data split on newlines, and the blank line.
pub fn frame(id: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut ev = Vec::with_capacity(data.len() + 48);
    if let Some(id) = id {
        ev.extend_from_slice(b"id: ");
        ev.extend_from_slice(id.as_bytes());
        ev.push(b'\n');
    }
    if !data.is_empty() {
        ev.extend_from_slice(b"event: message\n");
    }
    ev.extend_from_slice(b"data: ");
    for &b in data {
        if b == b'\n' {
            ev.extend_from_slice(b"\ndata: ");
        } else if b != b'\r' {
            ev.push(b);
        }
    }
    ev.extend_from_slice(b"\n\n");
    ev
}

/// Splits a `Last-Event-ID` into (stream, seq).
pub fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (s, n) = id.trim().split_once('-')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

/// A session's streams.
#[derive(Debug)]
pub struct Streams {
    limits: ReplayLimits,
    budget: Arc<ReplayBudget>,
    /// Shared with the sessions of federation members ([`Streams::share`]).
    inner: Arc<Mutex<StreamsInner>>,
}

#[derive(Debug)]
struct StreamsInner {
    next: u64,
    logs: HashMap<u64, Arc<EventLog>>,
    standalone: Option<Arc<EventLog>>,
    /// Ended, undelivered request streams kept for resumption, oldest first.
    ended: VecDeque<(Instant, u64)>,
}

/// Ended request streams a session keeps for resumption at most (the oldest go first).
pub const MAX_ENDED_STREAMS: usize = 16;

impl StreamsInner {
    /// Forgets ended streams past their TTL or beyond [`MAX_ENDED_STREAMS`]; cheap: only the
    /// front of the queue is looked at.
    fn prune(&mut self, ttl: Duration, now: Instant) {
        while let Some(&(at, id)) = self.ended.front() {
            if self.ended.len() <= MAX_ENDED_STREAMS && now.duration_since(at) < ttl {
                break;
            }
            self.ended.pop_front();
            self.logs.remove(&id);
        }
    }

    /// A new stream with the next id, registered.
    fn new_log(&mut self, limits: ReplayLimits, budget: &Arc<ReplayBudget>) -> Arc<EventLog> {
        let id = self.next;
        self.next += 1;
        let log = Arc::new(EventLog::new(id, limits, budget.clone()));
        self.logs.insert(id, log.clone());
        log
    }
}

impl Streams {
    /// No streams yet; their logs count against `budget`, shared with every other session.
    pub fn new(limits: ReplayLimits, budget: Arc<ReplayBudget>) -> Streams {
        Streams {
            limits,
            budget,
            inner: Arc::new(Mutex::new(StreamsInner {
                next: 1,
                logs: HashMap::new(),
                standalone: None,
                ended: VecDeque::new(),
            })),
        }
    }

    /// The same streams, seen through another handle: a federation member's session
    /// (`crate::upstream::federated`) writes what its upstream sends outside requests into its
    /// client's standalone stream this way.
    pub fn share(&self) -> Streams {
        Streams {
            limits: self.limits,
            budget: self.budget.clone(),
            inner: self.inner.clone(),
        }
    }

    /// A new request stream (also forgets ended streams past their TTL).
    pub fn open(&self) -> Arc<EventLog> {
        let mut g = lock(&self.inner);
        g.prune(self.limits.ttl, Instant::now());
        g.new_log(self.limits, &self.budget)
    }

    /// Forgets ended streams past their TTL; called from housekeeping, so a session whose
    /// client left mid-stream and never came back does not hold them until it expires.
    pub fn sweep(&self) {
        lock(&self.inner).prune(self.limits.ttl, Instant::now());
    }

    /// Ends a request stream. One whose client received everything is forgotten at once;
    /// one whose client left early is kept for resumption (`--replay-ttl`, at most
    /// [`MAX_ENDED_STREAMS`] per session, first to go when the `--replay-budget` is full).
    pub fn close(&self, log: &Arc<EventLog>, delivered: bool) {
        log.end();
        let now = Instant::now();
        let mut g = lock(&self.inner);
        if delivered {
            g.logs.remove(&log.id);
        } else {
            g.ended.push_back((now, log.id));
        }
        g.prune(self.limits.ttl, now);
        drop(g);
        if !delivered {
            self.budget.retire(log);
        }
    }

    /// The session's standalone stream, created on first use.
    pub fn standalone(&self) -> Arc<EventLog> {
        let mut g = lock(&self.inner);
        if let Some(l) = &g.standalone {
            return l.clone();
        }
        let log = g.new_log(self.limits, &self.budget);
        g.standalone = Some(log.clone());
        log
    }

    /// The standalone stream if a client ever opened it.
    pub fn standalone_if_open(&self) -> Option<Arc<EventLog>> {
        lock(&self.inner).standalone.clone()
    }

    /// Finds the stream a `Last-Event-ID` belongs to, checking the events after it are held.
    pub fn resume(&self, last_event_id: &str) -> Result<(Arc<EventLog>, u64), ResumeError> {
        let (stream, seq) = parse_event_id(last_event_id).ok_or(ResumeError::Unknown)?;
        let log = lock(&self.inner)
            .logs
            .get(&stream)
            .cloned()
            .ok_or(ResumeError::Unknown)?;
        if log.expired(Instant::now()) {
            return Err(ResumeError::Unknown);
        }
        log.check_resume(seq)?;
        Ok((log, seq))
    }

    /// Ends every stream (the session is over).
    pub fn end_all(&self) {
        for l in lock(&self.inner).logs.values() {
            l.end();
        }
    }

    /// Streams not yet ended.
    pub fn open_count(&self) -> usize {
        lock(&self.inner)
            .logs
            .values()
            .filter(|l| !l.is_ended())
            .count()
    }

    /// Bytes held for replay across the session's streams.
    pub fn bytes(&self) -> usize {
        lock(&self.inner).logs.values().map(|l| l.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(events: usize) -> ReplayLimits {
        ReplayLimits {
            events,
            bytes: 1 << 20,
            ttl: Duration::from_millis(50),
            budget: usize::MAX,
        }
    }

    /// A session's streams with its own budget.
    fn streams(limits: ReplayLimits) -> Streams {
        Streams::new(limits, ReplayBudget::new(limits.budget))
    }

    #[test]
    fn ids_encode_stream_and_sequence() {
        let s = streams(limits(10));
        let a = s.open();
        let b = s.open();
        let e = a.push(b"{}");
        assert!(String::from_utf8_lossy(&e.frame).starts_with("id: 1-1\n"));
        let e = b.push(b"{}");
        assert!(String::from_utf8_lossy(&e.frame).starts_with("id: 2-1\n"));
        assert_eq!(parse_event_id("2-1"), Some((2, 1)));
        assert_eq!(parse_event_id("x"), None);
    }

    #[test]
    fn resume_replays_only_that_stream_after_the_id() {
        let s = streams(limits(10));
        let a = s.open();
        let b = s.open();
        for i in 0..5 {
            a.push(format!("{{\"a\":{i}}}").as_bytes());
            b.push(format!("{{\"b\":{i}}}").as_bytes());
        }
        let (log, seq) = s.resume("1-2").unwrap();
        assert_eq!(log.id, 1);
        let w = log.wait(seq, log.take_over(), Instant::now());
        let seqs: Vec<u64> = w.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(
            w.events
                .iter()
                .all(|e| String::from_utf8_lossy(&e.frame).contains("\"a\""))
        );
        assert_eq!(s.resume("9-1").err(), Some(ResumeError::Unknown));
        assert_eq!(s.resume("1-99").err(), Some(ResumeError::Unknown));
    }

    #[test]
    fn bounded_buffer_expires_old_ids() {
        let s = streams(limits(3));
        let a = s.open();
        for _ in 0..10 {
            a.push(b"{}");
        }
        assert_eq!(s.resume("1-2").err(), Some(ResumeError::Expired));
        assert!(s.resume("1-7").is_ok());
        assert!(s.resume("1-10").is_ok());
    }

    #[test]
    fn ended_streams_are_forgotten_after_ttl() {
        let s = streams(limits(3));
        let a = s.open();
        a.push(b"{}");
        a.end();
        assert!(s.resume("1-1").is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.resume("1-1").err(), Some(ResumeError::Unknown));
    }

    #[test]
    fn wait_wakes_on_push_end_and_takeover() {
        let s = Arc::new(streams(limits(10)));
        let log = s.standalone();
        let token = log.take_over();
        let l2 = log.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            l2.push(b"{\"x\":1}");
        });
        let w = log.wait(0, token, Instant::now() + Duration::from_secs(5));
        assert_eq!(w.events.len(), 1);
        t.join().unwrap();
        let newer = log.take_over();
        let w = log.wait(1, token, Instant::now() + Duration::from_secs(5));
        assert!(w.replaced);
        log.end();
        let w = log.wait(1, newer, Instant::now() + Duration::from_secs(5));
        assert!(w.ended && w.events.is_empty());
    }

    #[test]
    fn delivered_streams_are_forgotten_and_undelivered_ones_capped() {
        let s = streams(limits(10));
        let a = s.open();
        a.push(b"{}");
        s.close(&a, true);
        assert_eq!(s.resume("1-1").err(), Some(ResumeError::Unknown));
        let logs: Vec<_> = (0..MAX_ENDED_STREAMS + 5).map(|_| s.open()).collect();
        for l in &logs {
            l.push(b"{}");
            s.close(l, false);
        }
        // The oldest undelivered ones went first; the newest are still resumable.
        assert_eq!(
            s.resume(&format!("{}-1", logs[0].id)).err(),
            Some(ResumeError::Unknown)
        );
        assert!(s.resume(&format!("{}-1", logs.last().unwrap().id)).is_ok());
        assert_eq!(lock(&s.inner).logs.len(), MAX_ENDED_STREAMS);
    }

    /// Two sessions' streams sharing one budget of `budget` bytes.
    fn two_sessions(budget: usize) -> (Arc<ReplayBudget>, Streams, Streams) {
        let mut l = limits(1000);
        l.budget = budget;
        l.ttl = Duration::from_secs(60);
        let b = ReplayBudget::new(budget);
        (
            b.clone(),
            Streams::new(l, b.clone()),
            Streams::new(l, b.clone()),
        )
    }

    /// Bytes every log of `s` holds.
    fn held(s: &Streams) -> usize {
        s.bytes()
    }

    #[test]
    fn the_budget_counts_every_byte_held_and_released() {
        let (b, s1, s2) = two_sessions(usize::MAX);
        let a = s1.open();
        let c = s2.standalone();
        for _ in 0..10 {
            a.push(&[b'x'; 100]);
            c.push(&[b'y'; 50]);
        }
        assert_eq!(b.used(), held(&s1) + held(&s2));
        assert!(b.used() > 1500);
        // Rotation by the per-stream caps gives bytes back too.
        let mut small = limits(2);
        small.budget = usize::MAX;
        let s3 = Streams::new(small, b.clone());
        let r = s3.open();
        for _ in 0..10 {
            r.push(&[b'z'; 10]);
        }
        assert_eq!(b.used(), held(&s1) + held(&s2) + held(&s3));
        // Delivered streams are forgotten, and so are their bytes.
        s1.close(&a, true);
        drop(a);
        assert_eq!(b.used(), held(&s2) + held(&s3));
        drop((r, s3, c, s2));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_oldest_ended_streams_across_sessions_go_first() {
        // Each event of 1000 bytes of data is ~1020 bytes framed; room for about 10.
        let (b, s1, s2) = two_sessions(10_500);
        let old = s1.open();
        let newer = s2.open();
        for _ in 0..4 {
            old.push(&[b'o'; 1000]);
            newer.push(&[b'n'; 1000]);
        }
        s1.close(&old, false);
        s2.close(&newer, false);
        assert!(s1.resume(&format!("{}-1", old.id)).is_ok());
        // An open stream of a third session needs room: the oldest ended one goes first.
        let s3 = Streams::new(s1.limits, b.clone());
        let live = s3.open();
        for _ in 0..3 {
            live.push(&[b'l'; 1000]);
        }
        assert!(b.used() <= 10_500, "{} bytes held", b.used());
        assert_eq!(
            s1.resume(&format!("{}-1", old.id)).err(),
            Some(ResumeError::Expired),
            "the oldest ended stream was forgotten"
        );
        assert!(
            s2.resume(&format!("{}-1", newer.id)).is_ok(),
            "the newer one kept"
        );
        assert_eq!(live.check_resume(0), Ok(()), "the open stream lost nothing");
        assert_eq!(b.used(), held(&s1) + held(&s2) + held(&s3));
    }

    #[test]
    fn an_open_stream_over_the_budget_keeps_its_newest_event() {
        let (b, s1, s2) = two_sessions(5_000);
        let a = s1.open();
        let c = s2.open();
        for i in 0..20 {
            a.push(format!("{{\"a\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)).as_bytes());
            c.push(format!("{{\"c\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)).as_bytes());
        }
        // Over by at most one event per open stream; each still has its newest event, and
        // a live follower can still resume from it.
        assert!(b.used() <= 5_000 + 2 * 1100, "{} bytes held", b.used());
        assert!(a.bytes() > 0 && c.bytes() > 0);
        assert!(s1.resume(&format!("{}-20", a.id)).is_ok());
        assert!(s2.resume(&format!("{}-20", c.id)).is_ok());
        assert_eq!(b.used(), held(&s1) + held(&s2));
    }

    #[test]
    fn the_queue_of_ended_streams_does_not_grow_with_dead_entries() {
        let (b, s1, _) = two_sessions(usize::MAX);
        for _ in 0..10_000 {
            let l = s1.open();
            l.push(b"{}");
            s1.close(&l, false);
        }
        // The session keeps MAX_ENDED_STREAMS; the queue only a bounded number of entries.
        assert_eq!(lock(&s1.inner).logs.len(), MAX_ENDED_STREAMS);
        assert!(lock(&b.ended).logs.len() <= 2 * MAX_ENDED_STREAMS + 64);
        assert_eq!(b.used(), held(&s1));
    }

    #[test]
    fn priming_event_has_empty_data() {
        assert_eq!(frame(Some("1-1"), b""), b"id: 1-1\ndata: \n\n");
        assert_eq!(
            frame(Some("1-2"), b"{\"a\":1}"),
            b"id: 1-2\nevent: message\ndata: {\"a\":1}\n\n"
        );
    }
}
