//! Client sessions: ids, the table, idle expiry and the cap.
//!
//! A session is created when a client's `initialize` succeeds upstream and ends on DELETE, on
//! idle expiry (`--session-idle`), when its stdio child restarts, or when the HTTP upstream
//! forgets its own session. When `--max-sessions` are live, expired ones are dropped first; if
//! none has expired the new client gets 503. Live sessions are never evicted to make room, so a
//! flood of `initialize` calls cannot push out clients that are working.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::SessionConfig;
use crate::error::Error;
use crate::stream::{ReplayLimits, Streams};
use crate::util::lock;

/// How a session is tied to the upstream, decided by [`crate::upstream::Upstream::initialize`].
#[derive(Debug, Default)]
pub struct Binding {
    /// stdio: index of the child the session is pinned to.
    pub child: usize,
    /// stdio: that child's generation when pinned; a restart makes the session stale.
    pub generation: u64,
    /// HTTP: the upstream's own `Mcp-Session-Id`, never shown to the client.
    pub upstream_id: Mutex<Option<String>>,
    /// HTTP: the upstream's standalone stream is being relayed for this session.
    pub listening: std::sync::atomic::AtomicBool,
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    /// The id the client sends as `Mcp-Session-Id`: 128 random bits as 32 hex digits.
    pub id: String,
    /// When `initialize` succeeded.
    pub created: Instant,
    /// The protocol version the client asked for in `initialize`.
    pub protocol_version: String,
    /// The upstream side.
    pub binding: Binding,
    /// Milliseconds since `created` at the last request.
    last_used_ms: AtomicU64,
    /// Client request id (raw JSON text) to the upstream id it was rewritten to, while in
    /// flight; used to translate `notifications/cancelled`.
    inflight: Mutex<HashMap<String, u64>>,
    /// The session's SSE streams and their replay logs.
    pub streams: Streams,
    /// Resource URIs the client subscribed to.
    pub subscriptions: Mutex<std::collections::HashSet<String>>,
    /// The principal that created the session (authentication on); only it may use it.
    pub principal: Option<String>,
    /// The `logging/setLevel` level the client asked for ([`LogLevel`] rank), or
    /// [`LogLevel::UNSET`]: then it takes whatever the server sends.
    log_level: std::sync::atomic::AtomicU8,
}

impl Session {
    /// The first 8 characters of the id, for logs.
    pub fn short_id(&self) -> &str {
        &self.id[..8.min(self.id.len())]
    }

    /// Marks the session used now.
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last request.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Records that client request `client_id` went upstream as `upstream_id`.
    pub fn begin_call(&self, client_id: &str, upstream_id: u64) {
        lock(&self.inflight).insert(client_id.to_owned(), upstream_id);
    }

    /// Forgets a finished call.
    pub fn end_call(&self, client_id: &str) {
        lock(&self.inflight).remove(client_id);
    }

    /// The upstream id of an in-flight client request.
    pub fn upstream_call_id(&self, client_id: &str) -> Option<u64> {
        lock(&self.inflight).get(client_id).copied()
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// The level the client asked for with `logging/setLevel`, if it did.
    pub fn log_level(&self) -> Option<LogLevel> {
        LogLevel::from_rank(self.log_level.load(Ordering::Relaxed))
    }

    /// Records the client's `logging/setLevel`.
    pub fn set_log_level(&self, level: LogLevel) {
        self.log_level.store(level as u8, Ordering::Relaxed);
    }

    /// True when a `notifications/message` at `level` (its `params.level`; unknown or absent
    /// passes) is at or above the level the client asked for.
    pub fn wants_log(&self, level: Option<&str>) -> bool {
        match (self.log_level(), level.and_then(LogLevel::parse)) {
            (Some(min), Some(l)) => l >= min,
            _ => true,
        }
    }

    /// How long until the session expires if it stays unused.
    pub fn expires_in(&self, idle: Duration) -> Duration {
        idle.saturating_sub(self.idle_for())
    }
}

/// The syslog severities of MCP's `logging/setLevel` and `notifications/message`, least
/// severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `warning`
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `alert`
    Alert,
    /// `emergency`
    Emergency,
}

impl LogLevel {
    const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];
    /// The stored rank of "never set".
    const UNSET: u8 = u8::MAX;

    /// The level an MCP level name names (`"warning"`), if any.
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Its MCP name.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    fn from_rank(rank: u8) -> Option<LogLevel> {
        LogLevel::ALL.get(usize::from(rank)).copied()
    }
}

/// The session table.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    max: usize,
    idle: Duration,
    replay: ReplayLimits,
    random: Mutex<Option<File>>,
}

impl Sessions {
    /// An empty table holding at most `cfg.max` sessions, each expiring after `cfg.idle`
    /// unused, their streams replayable within `cfg.replay`.
    pub fn new(cfg: &SessionConfig) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            max: cfg.max,
            idle: cfg.idle,
            replay: cfg.replay,
            random: Mutex::new(None),
        }
    }

    /// Refuses early when the table is full of live sessions (expired ones are dropped first
    /// and returned so the caller can close them upstream).
    pub fn check_room(&self) -> Result<Vec<Arc<Session>>, Error> {
        let mut map = lock(&self.map);
        if map.len() < self.max {
            return Ok(Vec::new());
        }
        let expired = take_expired(&mut map, self.idle);
        if map.len() >= self.max {
            return Err(Error::TooManySessions);
        }
        Ok(expired)
    }

    /// Creates a session with a fresh random id, owned by `principal`, and adds it.
    pub fn create(
        &self,
        protocol_version: String,
        binding: Binding,
        principal: Option<String>,
    ) -> Result<Arc<Session>, Error> {
        let s = self.build(protocol_version, binding, principal)?;
        self.insert(&s)?;
        Ok(s)
    }

    /// A session with a fresh random id, not yet in the table (see [`Sessions::insert`]).
    pub fn build(
        &self,
        protocol_version: String,
        binding: Binding,
        principal: Option<String>,
    ) -> Result<Arc<Session>, Error> {
        Ok(Arc::new(Session {
            id: self.new_id()?,
            created: Instant::now(),
            protocol_version,
            binding,
            last_used_ms: AtomicU64::new(0),
            inflight: Mutex::new(HashMap::new()),
            streams: Streams::new(self.replay),
            subscriptions: Mutex::new(std::collections::HashSet::new()),
            principal,
            log_level: std::sync::atomic::AtomicU8::new(LogLevel::UNSET),
        }))
    }

    /// Adds a built session, unless `--max-sessions` are live.
    pub fn insert(&self, s: &Arc<Session>) -> Result<(), Error> {
        let mut map = lock(&self.map);
        if map.len() >= self.max {
            return Err(Error::TooManySessions);
        }
        map.insert(s.id.clone(), s.clone());
        Ok(())
    }

    /// Looks up a session owned by `principal` (`None`: authentication is off) and marks it
    /// used. Expired sessions are not found; they stay in the table until [`Sessions::expire`]
    /// or [`Sessions::check_room`] hand them to the caller that winds them down upstream. A
    /// session owned by another principal is not found and not marked used.
    pub fn get_as(&self, id: &str, principal: Option<&str>) -> Option<Arc<Session>> {
        let map = lock(&self.map);
        let s = map.get(id)?.clone();
        if s.principal.as_deref() != principal || s.idle_for() >= self.idle {
            return None;
        }
        s.touch();
        Some(s)
    }

    /// Removes a session owned by `principal`, returning it if it existed.
    pub fn remove_as(&self, id: &str, principal: Option<&str>) -> Option<Arc<Session>> {
        let mut map = lock(&self.map);
        if map.get(id)?.principal.as_deref() != principal {
            return None;
        }
        map.remove(id)
    }

    /// Removes a session, returning it if it existed.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).remove(id)
    }

    /// Removes every session idle past the limit, returning them.
    pub fn expire(&self) -> Vec<Arc<Session>> {
        take_expired(&mut lock(&self.map), self.idle)
    }

    /// Removes and returns all sessions (shutdown).
    pub fn drain(&self) -> Vec<Arc<Session>> {
        lock(&self.map).drain().map(|(_, s)| s).collect()
    }

    /// A snapshot of the live sessions.
    pub fn list(&self) -> Vec<Arc<Session>> {
        lock(&self.map).values().cloned().collect()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// 128 bits from the OS CSPRNG (`/dev/urandom`), as 32 lowercase hex digits.
    fn new_id(&self) -> Result<String, Error> {
        let mut bytes = [0u8; 16];
        let mut f = lock(&self.random);
        if f.is_none() {
            *f = Some(File::open("/dev/urandom")?);
        }
        if let Some(file) = f.as_mut() {
            file.read_exact(&mut bytes)?;
        }
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn take_expired(map: &mut HashMap<String, Arc<Session>>, idle: Duration) -> Vec<Arc<Session>> {
    let ids: Vec<String> = map
        .values()
        .filter(|s| s.idle_for() >= idle)
        .map(|s| s.id.clone())
        .collect();
    ids.iter().filter_map(|id| map.remove(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, idle: Duration) -> Sessions {
        Sessions::new(&SessionConfig {
            max,
            idle,
            replay: ReplayLimits::default(),
        })
    }

    #[test]
    fn sessions_belong_to_their_principal() {
        let t = table(10, Duration::from_secs(60));
        let s = t
            .create("v".into(), Binding::default(), Some("token:alice".into()))
            .unwrap();
        assert!(t.get_as(&s.id, Some("token:alice")).is_some());
        assert!(t.get_as(&s.id, Some("token:bob")).is_none());
        assert!(t.get_as(&s.id, None).is_none());
        assert!(t.remove_as(&s.id, Some("token:bob")).is_none());
        assert!(t.remove_as(&s.id, Some("token:alice")).is_some());
        assert!(t.is_empty());
    }

    #[test]
    fn ids_are_random_hex() {
        let t = table(10, Duration::from_secs(60));
        let a = t
            .create("2025-11-25".into(), Binding::default(), None)
            .unwrap();
        let b = t
            .create("2025-11-25".into(), Binding::default(), None)
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(t.get_as(&a.id, None).is_some());
        assert!(t.remove(&a.id).is_some());
        assert!(t.get_as(&a.id, None).is_none());
    }

    #[test]
    fn cap_refuses_when_all_live() {
        let t = table(1, Duration::from_secs(60));
        t.create("v".into(), Binding::default(), None).unwrap();
        assert!(matches!(t.check_room(), Err(Error::TooManySessions)));
        assert!(matches!(
            t.create("v".into(), Binding::default(), None),
            Err(Error::TooManySessions)
        ));
    }

    #[test]
    fn expired_sessions_make_room_and_vanish() {
        let t = table(1, Duration::from_millis(30));
        let a = t.create("v".into(), Binding::default(), None).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.check_room().unwrap().len(), 1);
        assert!(t.get_as(&a.id, None).is_none());
        assert!(t.create("v".into(), Binding::default(), None).is_ok());
    }

    #[test]
    fn log_levels() {
        let t = table(1, Duration::from_secs(60));
        let s = t.create("v".into(), Binding::default(), None).unwrap();
        assert_eq!(s.log_level(), None);
        assert!(s.wants_log(Some("debug")));
        s.set_log_level(LogLevel::Warning);
        assert_eq!(s.log_level(), Some(LogLevel::Warning));
        assert!(!s.wants_log(Some("info")));
        assert!(s.wants_log(Some("warning")));
        assert!(s.wants_log(Some("emergency")));
        assert!(s.wants_log(Some("no-such-level")));
        assert!(s.wants_log(None));
        assert_eq!(LogLevel::parse("notice"), Some(LogLevel::Notice));
        assert_eq!(LogLevel::parse("Notice"), None);
        assert!(LogLevel::Debug < LogLevel::Emergency);
    }

    #[test]
    fn inflight_map() {
        let t = table(1, Duration::from_secs(60));
        let s = t.create("v".into(), Binding::default(), None).unwrap();
        s.begin_call("\"a\"", 7);
        assert_eq!(s.upstream_call_id("\"a\""), Some(7));
        s.end_call("\"a\"");
        assert_eq!(s.inflight(), 0);
    }
}
