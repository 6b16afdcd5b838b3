//! Client sessions: ids, the table, idle expiry, the cap and the per-client quota.
//!
//! A session is created when a client's `initialize` succeeds upstream and ends on DELETE, on
//! idle expiry (`--session-idle`), when its stdio child restarts, when the HTTP upstream
//! forgets its own session, or when per-session mode evicts it to make room ([`Session::evict`]:
//! all children taken, and it was unused for `--session-evict-idle` with no call in flight).
//! When `--max-sessions` are live, expired ones are dropped first; if none has expired the new
//! client gets 503. The table itself never evicts a live session to make room, so a flood of
//! `initialize` calls cannot push out clients that are working.
//!
//! One client (its principal, or its IP when unauthenticated: [`Session::client`]) holds at
//! most `--max-sessions-per-client` sessions (429 beyond; by default at most half of the
//! room), so a flood from one client cannot lock the others out either. Both refusals carry
//! a truthful `Retry-After`: the time until the session unused longest (the client's own, for
//! the quota) expires if it stays unused.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::SessionConfig;
use crate::error::Error;
use crate::stream::{ReplayBudget, ReplayLimits, Streams};
use crate::util::lock;

/// How a session is tied to the upstream, decided by [`crate::upstream::Upstream::initialize`].
#[derive(Debug, Default)]
pub struct Binding {
    /// What the client declared it can take from a server in its `initialize` (read by the
    /// shared stdio upstream, which dispatches and routes by it).
    pub caps: ClientCaps,
    /// stdio: index of the child the session is pinned to; HTTP replicas
    /// (`crate::upstream::replicas`): index of the replica.
    pub child: usize,
    /// stdio: that child's generation when pinned; a restart makes the session stale. HTTP
    /// replicas: the replica's ejection count when bound; an ejection makes the session lost.
    pub generation: u64,
    /// HTTP: the upstream's own `Mcp-Session-Id`, never shown to the client.
    pub upstream_id: Mutex<Option<String>>,
    /// HTTP: the upstream's standalone stream is being relayed for this session.
    pub listening: std::sync::atomic::AtomicBool,
    /// stdio, a 2026-07-28-only child: the `_meta` each request of the session gains
    /// (`crate::bridge::modern_upstream`).
    pub modern_meta: Option<serde_json::Value>,
    /// A federated upstream (`crate::upstream::federated`): the key of the session's members
    /// in it; 0 for any other upstream.
    pub federation: u64,
    /// A recorded federation member (`crate::upstream::recorded`): which `initialize` opened
    /// the session, for its tape (the session is made after the answer); 0 otherwise.
    pub tape: u64,
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    /// The id the client sends as `Mcp-Session-Id`: `<instance>.<random>` (see
    /// `crate::instance`), the random part 128 bits as 32 hex digits; just the random part
    /// for a table made without an instance ([`Sessions::new`]).
    pub id: String,
    /// When `initialize` succeeded.
    pub created: Instant,
    /// The protocol version negotiated in `initialize`: always one of the versions the proxy
    /// knows, never the client's own text (see `proxy::route`).
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
    /// Resource URIs the client subscribed to (shared stdio mode), at most
    /// `--max-subscriptions` of at most `MAX_SUBSCRIPTION_URI` bytes each.
    pub subscriptions: Mutex<std::collections::HashSet<String>>,
    /// The principal that created the session (authentication on); only it may use it.
    pub principal: Option<String>,
    /// Its JWT's scopes, set once when the session is made ([`Session::set_scopes`]): tool
    /// policy may name them.
    scopes: std::sync::OnceLock<Arc<[String]>>,
    /// Whose quota the session counts against: `principal:<principal>`, or `ip:<address>`
    /// without authentication (the gate's client key).
    pub client: String,
    /// The `logging/setLevel` level the client asked for ([`LogLevel`] rank), or
    /// [`LogLevel::UNSET`]: then it takes whatever the server sends.
    log_level: std::sync::atomic::AtomicU8,
    /// Ended by its upstream to make room ([`Session::evict`]): no longer found, and dropped
    /// from the table at the next look.
    evicted: std::sync::atomic::AtomicBool,
    /// A federation member's session: told of the list changes its upstream sends
    /// ([`Session::watch_lists`]).
    watch: ListWatch,
}

/// What is told of the `notifications/*/list_changed` an upstream sends for a session: a
/// federation's list cache (`crate::upstream::federated`), set once on a member's session.
#[derive(Default)]
pub struct ListWatch(std::sync::OnceLock<Watcher>);

/// A [`ListWatch`]'s function, given the notification's method.
pub type Watcher = Box<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for ListWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ListWatch(set)"
        } else {
            "ListWatch(none)"
        })
    }
}

/// The first 8 characters of session id `id`'s random part (after `<instance>.`), as logs,
/// the admin API, audit lines and tape names show it.
pub fn short_id(id: &str) -> &str {
    let random = id.split_once('.').map_or(id, |(_, r)| r);
    random.get(..8).unwrap_or(random)
}

impl Session {
    /// The first 8 characters of the id's random part, for logs.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// Sets the session's JWT scopes (once; later calls change nothing).
    pub fn set_scopes(&self, scopes: Arc<[String]>) {
        let _ = self.scopes.set(scopes);
    }

    /// Its principal's JWT scopes (none without a JWT).
    pub fn scopes(&self) -> &[String] {
        self.scopes.get().map_or(&[], |s| s)
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

    /// Forgets finished call `client_id`, if it is still the one that went upstream as
    /// `upstream_id`: the client may already have reused its id for a new call, which must
    /// stay cancellable.
    pub fn end_call(&self, client_id: &str, upstream_id: u64) {
        let mut inflight = lock(&self.inflight);
        if inflight.get(client_id) == Some(&upstream_id) {
            inflight.remove(client_id);
        }
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

    /// True when the shared stdio upstream must run this session's calls alone on their child,
    /// so that what the child sends while they run provably belongs to them: its client can
    /// take server-to-client requests (it declared `sampling`, `elicitation` or `roots`), or it
    /// asked for log messages with `logging/setLevel`.
    pub fn exclusive(&self) -> bool {
        self.binding.caps.any() || self.log_level().is_some()
    }

    /// Ends the session from the upstream's side (per-session mode made room for a new one):
    /// from now on it is not found (its client gets 404 and re-initializes), and the table
    /// drops it at its next look; its upstream side must already be released.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
    }

    /// A session of the same client with federation member `member`'s upstream, bound by
    /// `binding`: it shares this session's streams (what the member sends outside requests
    /// reaches this client's standalone stream), and its own id is this one's with
    /// `-<member>` appended, never shown to the client.
    pub fn member(&self, member: usize, binding: Binding) -> Arc<Session> {
        Arc::new(Session {
            id: format!("{}-{member}", self.id),
            created: self.created,
            protocol_version: self.protocol_version.clone(),
            binding,
            last_used_ms: AtomicU64::new(self.last_used_ms.load(Ordering::Relaxed)),
            inflight: Mutex::new(HashMap::new()),
            streams: self.streams.share(),
            subscriptions: Mutex::new(std::collections::HashSet::new()),
            principal: self.principal.clone(),
            scopes: self.scopes.clone(),
            client: self.client.clone(),
            log_level: std::sync::atomic::AtomicU8::new(LogLevel::UNSET),
            evicted: std::sync::atomic::AtomicBool::new(false),
            watch: ListWatch::default(),
        })
    }

    /// Has `watch` told of every `notifications/*/list_changed` (its method) the upstream
    /// sends for this session, whether or not the client listens; set once (later calls are
    /// ignored). Upstreams call [`Session::noted`].
    pub fn watch_lists(&self, watch: Watcher) {
        let _ = self.watch.0.set(watch);
    }

    /// The upstream sent notification `method` for this session: a list change is told to
    /// the watcher, if any.
    pub fn noted(&self, method: &str) {
        if method.ends_with("/list_changed")
            && let Some(w) = self.watch.0.get()
        {
            w(method);
        }
    }

    /// True once [`Session::evict`] ran.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// How long until the session expires if it stays unused.
    pub fn expires_in(&self, idle: Duration) -> Duration {
        idle.saturating_sub(self.idle_for())
    }
}

/// What a client declared, in its `initialize` or a 2026-07-28 request's `_meta`, that it can
/// take from a server: the server-to-client requests the proxy routes by it. Other members of
/// the client's capabilities (experimental, extensions, tasks) are not read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCaps(u8);

impl ClientCaps {
    /// None declared.
    pub const NONE: ClientCaps = ClientCaps(0);
    /// `sampling`: `sampling/createMessage`.
    pub const SAMPLING: ClientCaps = ClientCaps(1);
    /// `elicitation` as `{}` or with `form`: `elicitation/create` in form mode.
    pub const ELICIT_FORM: ClientCaps = ClientCaps(2);
    /// `elicitation.url`: `elicitation/create` in URL mode.
    pub const ELICIT_URL: ClientCaps = ClientCaps(4);
    /// `roots`: `roots/list`.
    pub const ROOTS: ClientCaps = ClientCaps(8);
    /// Everything (a client the child itself negotiated with, per-session mode).
    pub const ALL: ClientCaps = ClientCaps(15);

    /// What a `capabilities` object declares. A capability counts when its member is an
    /// object; anything else (absent, `null`, a non-object) declares nothing. `elicitation: {}`
    /// is form mode, as the spec keeps it for backward compatibility.
    pub fn of(capabilities: &serde_json::value::RawValue) -> ClientCaps {
        let Some([sampling, elicitation, roots]) =
            crate::jsonrpc::pick(capabilities.get(), ["sampling", "elicitation", "roots"])
        else {
            return ClientCaps::NONE;
        };
        let object = |v: Option<&serde_json::value::RawValue>| {
            v.is_some_and(|v| v.get().trim_start().starts_with('{'))
        };
        let mut caps = ClientCaps::NONE;
        if object(sampling) {
            caps = caps.with(ClientCaps::SAMPLING);
        }
        if let Some(e) = elicitation.filter(|e| object(Some(e)))
            && let Some([form, url]) = crate::jsonrpc::pick(e.get(), ["form", "url"])
        {
            if object(form) || (form.is_none() && url.is_none()) {
                caps = caps.with(ClientCaps::ELICIT_FORM);
            }
            if object(url) {
                caps = caps.with(ClientCaps::ELICIT_URL);
            }
        }
        if object(roots) {
            caps = caps.with(ClientCaps::ROOTS);
        }
        caps
    }

    /// What an `initialize` request's `params.capabilities` declares.
    pub fn of_initialize(msg: &crate::jsonrpc::Message) -> ClientCaps {
        msg.params
            .as_deref()
            .and_then(|p| crate::jsonrpc::pick(p.get(), ["capabilities"]))
            .and_then(|[c]| c)
            .map(ClientCaps::of)
            .unwrap_or_default()
    }

    /// What a 2026-07-28 request's `params._meta["io.modelcontextprotocol/clientCapabilities"]`
    /// declares.
    pub fn of_meta(msg: &crate::jsonrpc::Message) -> ClientCaps {
        msg.head()
            .meta
            .and_then(|m| crate::jsonrpc::pick(m.get(), [crate::jsonrpc::META_CAPABILITIES]))
            .and_then(|[c]| c)
            .map(ClientCaps::of)
            .unwrap_or_default()
    }

    /// Both sets.
    pub fn with(self, other: ClientCaps) -> ClientCaps {
        ClientCaps(self.0 | other.0)
    }

    /// True when every capability of `other` is declared.
    pub fn has(self, other: ClientCaps) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when anything the proxy routes by is declared.
    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// The capability a server-to-client request needs, for the request's `method` and
    /// `mode` (`elicitation/create`'s `params.mode`); `None` for methods that need none the
    /// proxy knows (`ping`, and anything else).
    pub fn needed(method: &str, mode: Option<&str>) -> Option<ClientCaps> {
        match method {
            "sampling/createMessage" => Some(ClientCaps::SAMPLING),
            "elicitation/create" if mode == Some("url") => Some(ClientCaps::ELICIT_URL),
            "elicitation/create" => Some(ClientCaps::ELICIT_FORM),
            "roots/list" => Some(ClientCaps::ROOTS),
            _ => None,
        }
    }

    /// The capability's name as a client declares it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ClientCaps::SAMPLING => "sampling",
            ClientCaps::ELICIT_FORM => "elicitation (form mode)",
            ClientCaps::ELICIT_URL => "elicitation.url",
            ClientCaps::ROOTS => "roots",
            _ => "capabilities",
        }
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
    map: Mutex<Table>,
    max: usize,
    max_per_client: usize,
    idle: Duration,
    replay: ReplayLimits,
    /// `--replay-budget`: shared by the replay logs of every session.
    budget: Arc<ReplayBudget>,
    random: Mutex<Option<File>>,
    /// `--instance-id` and a dot, the prefix of every id; empty for [`Sessions::new`].
    prefix: String,
}

impl Sessions {
    /// Like [`Sessions::new`], for the instance `instance` (`--instance-id`): every session
    /// id is `<instance>.<32 hex digits>`.
    pub fn for_instance(cfg: &SessionConfig, instance: &str) -> Sessions {
        Sessions {
            prefix: format!("{instance}."),
            ..Sessions::new(cfg)
        }
    }

    /// An empty table holding at most `cfg.max` sessions, each expiring after `cfg.idle`
    /// unused, their streams replayable within `cfg.replay` (its byte budget shared by all).
    pub fn new(cfg: &SessionConfig) -> Sessions {
        Sessions {
            map: Mutex::new(Table::default()),
            max: cfg.max,
            max_per_client: cfg.max_per_client,
            idle: cfg.idle,
            replay: cfg.replay,
            budget: ReplayBudget::new(cfg.replay.budget),
            random: Mutex::new(None),
            prefix: String::new(),
        }
    }

    /// Checks early whether `client` may have one more session: refused when it holds its
    /// quota or the table is full of live sessions. Expired sessions are dropped first when
    /// that makes room; they are returned either way, so the caller closes them upstream.
    pub fn check_room(&self, client: &str) -> (Vec<Arc<Session>>, Result<(), Error>) {
        let mut t = lock(&self.map);
        let mut expired = t.take_evicted();
        if t.by_id.len() >= self.max || t.held_by(client) >= self.max_per_client {
            expired.extend(t.take_expired(self.idle));
        }
        let room = self.room(&t, client);
        (expired, room)
    }

    /// Creates a session with a fresh random id, owned by `principal` and counted against
    /// `client`, and adds it.
    pub fn create(
        &self,
        protocol_version: String,
        binding: Binding,
        principal: Option<String>,
        client: String,
    ) -> Result<Arc<Session>, Error> {
        let s = self.build(protocol_version, binding, principal, client)?;
        self.insert(&s)?;
        Ok(s)
    }

    /// Ok when `client` may add a session to `t`; else the refusal, with the real wait.
    fn room(&self, t: &Table, client: &str) -> Result<(), Error> {
        if t.held_by(client) >= self.max_per_client {
            return Err(Error::SessionQuota {
                limit: self.max_per_client,
                retry_after: self.wait(t, Some(client)),
            });
        }
        if t.by_id.len() >= self.max {
            return Err(Error::TooManySessions {
                retry_after: self.wait(t, None),
            });
        }
        Ok(())
    }

    /// Whole seconds (rounded up; at least 1, at most `--session-idle`) until the session
    /// unused longest, of `client` or of anyone, expires if it stays unused.
    fn wait(&self, t: &Table, client: Option<&str>) -> u64 {
        let soonest = t
            .by_id
            .values()
            .filter(|s| client.is_none_or(|c| s.client == c))
            .map(|s| s.expires_in(self.idle))
            .min()
            .unwrap_or(Duration::ZERO);
        let secs = soonest.as_secs() + u64::from(soonest.subsec_nanos() > 0);
        secs.clamp(1, self.idle.as_secs().max(1))
    }

    /// The `Retry-After` of a refusal because no session can be added (anyone's): seconds
    /// until the session unused longest expires. For upstreams that run out of room on their
    /// own (per-session stdio children).
    pub fn retry_after(&self) -> u64 {
        self.wait(&lock(&self.map), None)
    }

    /// `--max-sessions-per-client`.
    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }

    /// The idle expiry (`--session-idle`).
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// A session with a fresh random id, not yet in the table (see [`Sessions::insert`]).
    pub fn build(
        &self,
        protocol_version: String,
        binding: Binding,
        principal: Option<String>,
        client: String,
    ) -> Result<Arc<Session>, Error> {
        Ok(Arc::new(Session {
            id: self.new_id()?,
            created: Instant::now(),
            protocol_version,
            binding,
            last_used_ms: AtomicU64::new(0),
            inflight: Mutex::new(HashMap::new()),
            streams: Streams::new(self.replay, self.budget.clone()),
            subscriptions: Mutex::new(std::collections::HashSet::new()),
            principal,
            scopes: std::sync::OnceLock::new(),
            client,
            log_level: std::sync::atomic::AtomicU8::new(LogLevel::UNSET),
            evicted: std::sync::atomic::AtomicBool::new(false),
            watch: ListWatch::default(),
        }))
    }

    /// Adds a built session, unless `--max-sessions` are live or its client holds its quota.
    pub fn insert(&self, s: &Arc<Session>) -> Result<(), Error> {
        let mut t = lock(&self.map);
        // Evicted just now to make room for this one (their upstream side is released).
        t.take_evicted();
        self.room(&t, &s.client)?;
        t.insert(s.clone());
        Ok(())
    }

    /// Looks up a session owned by `principal` (`None`: authentication is off) and marks it
    /// used. Expired sessions are not found; they stay in the table until [`Sessions::expire`]
    /// or [`Sessions::check_room`] hand them to the caller that winds them down upstream. A
    /// session owned by another principal is not found and not marked used.
    pub fn get_as(&self, id: &str, principal: Option<&str>) -> Option<Arc<Session>> {
        let t = lock(&self.map);
        let s = t.by_id.get(id)?.clone();
        if s.principal.as_deref() != principal || s.idle_for() >= self.idle || s.is_evicted() {
            return None;
        }
        s.touch();
        Some(s)
    }

    /// Removes a session owned by `principal`, returning it if it existed.
    pub fn remove_as(&self, id: &str, principal: Option<&str>) -> Option<Arc<Session>> {
        let mut t = lock(&self.map);
        if t.by_id.get(id)?.principal.as_deref() != principal {
            return None;
        }
        t.remove(id)
    }

    /// Removes a session, returning it if it existed.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).remove(id)
    }

    /// Removes every session idle past the limit, returning them.
    pub fn expire(&self) -> Vec<Arc<Session>> {
        lock(&self.map).take_expired(self.idle)
    }

    /// Removes and returns all sessions (shutdown).
    pub fn drain(&self) -> Vec<Arc<Session>> {
        let mut t = lock(&self.map);
        t.per_client.clear();
        t.by_id.drain().map(|(_, s)| s).collect()
    }

    /// A snapshot of the live sessions.
    pub fn list(&self) -> Vec<Arc<Session>> {
        lock(&self.map).by_id.values().cloned().collect()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        lock(&self.map).by_id.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `id` is not one of this instance's: it names another instance (its part
    /// before the first dot differs). Ids without an instance part are not foreign.
    pub fn is_foreign(&self, id: &str) -> bool {
        match crate::instance::instance_of(id) {
            Some(i) => self.prefix.strip_suffix('.') != Some(i),
            None => false,
        }
    }

    /// The instance prefix and 128 bits from the OS CSPRNG (`/dev/urandom`) as 32 lowercase
    /// hex digits.
    fn new_id(&self) -> Result<String, Error> {
        let mut bytes = [0u8; 16];
        let mut f = lock(&self.random);
        if f.is_none() {
            *f = Some(File::open("/dev/urandom")?);
        }
        if let Some(file) = f.as_mut() {
            file.read_exact(&mut bytes)?;
        }
        let mut id = String::with_capacity(self.prefix.len() + 32);
        id.push_str(&self.prefix);
        for b in bytes {
            id.push_str(&format!("{b:02x}"));
        }
        Ok(id)
    }
}

/// The sessions by id, and how many each client holds (kept together, under one lock).
#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Session>>,
    /// [`Session::client`] to its number of sessions in `by_id`; no zero entries.
    per_client: HashMap<String, usize>,
}

impl Table {
    fn held_by(&self, client: &str) -> usize {
        self.per_client.get(client).copied().unwrap_or(0)
    }

    fn insert(&mut self, s: Arc<Session>) {
        *self.per_client.entry(s.client.clone()).or_insert(0) += 1;
        if let Some(old) = self.by_id.insert(s.id.clone(), s) {
            self.uncount(&old.client);
        }
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let s = self.by_id.remove(id)?;
        self.uncount(&s.client);
        Some(s)
    }

    fn uncount(&mut self, client: &str) {
        if let Some(n) = self.per_client.get_mut(client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }

    /// Removes and returns the sessions their upstream evicted.
    fn take_evicted(&mut self) -> Vec<Arc<Session>> {
        let ids: Vec<String> = self
            .by_id
            .values()
            .filter(|s| s.is_evicted())
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn take_expired(&mut self, idle: Duration) -> Vec<Arc<Session>> {
        let ids: Vec<String> = self
            .by_id
            .values()
            .filter(|s| s.idle_for() >= idle || s.is_evicted())
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, idle: Duration) -> Sessions {
        quota_table(max, max, idle)
    }

    fn quota_table(max: usize, max_per_client: usize, idle: Duration) -> Sessions {
        Sessions::new(&SessionConfig {
            max,
            max_per_client,
            idle,
            replay: ReplayLimits::default(),
        })
    }

    #[test]
    fn sessions_belong_to_their_principal() {
        let t = table(10, Duration::from_secs(60));
        let s = t
            .create(
                "v".into(),
                Binding::default(),
                Some("token:alice".into()),
                "principal:token:alice".into(),
            )
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
            .create("2025-11-25".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        let b = t
            .create("2025-11-25".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(t.get_as(&a.id, None).is_some());
        assert!(t.remove(&a.id).is_some());
        assert!(t.get_as(&a.id, None).is_none());
    }

    #[test]
    fn ids_carry_the_instance() {
        let cfg = SessionConfig {
            max: 10,
            max_per_client: 10,
            idle: Duration::from_secs(60),
            replay: ReplayLimits::default(),
        };
        let t = Sessions::for_instance(&cfg, "web-1");
        let a = t
            .create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        let (instance, random) = a.id.split_once('.').unwrap();
        assert_eq!(instance, "web-1");
        assert_eq!(random.len(), 32, "128 random bits");
        assert!(random.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.short_id(), &random[..8]);
        assert!(!t.is_foreign(&a.id));
        assert!(t.is_foreign(&format!("web-2.{random}")));
        assert!(!t.is_foreign(random), "no instance part: just unknown");
        assert!(t.get_as(&a.id, None).is_some());
    }

    #[test]
    fn cap_refuses_when_all_live() {
        let t = table(1, Duration::from_secs(60));
        t.create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        let (expired, room) = t.check_room("ip:b");
        assert!(expired.is_empty());
        // The one session expires unused in 60 s: that is the wait.
        assert!(
            matches!(room, Err(Error::TooManySessions { retry_after: 60 })),
            "{room:?}"
        );
        assert!(matches!(
            t.create("v".into(), Binding::default(), None, "ip:b".into()),
            Err(Error::TooManySessions { .. })
        ));
    }

    #[test]
    fn expired_sessions_make_room_and_vanish() {
        let t = table(1, Duration::from_millis(30));
        let a = t
            .create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (expired, room) = t.check_room("ip:b");
        assert_eq!(expired.len(), 1);
        assert!(room.is_ok());
        assert!(t.get_as(&a.id, None).is_none());
        assert!(
            t.create("v".into(), Binding::default(), None, "ip:a".into())
                .is_ok()
        );
    }

    #[test]
    fn one_client_cannot_take_every_slot() {
        let t = quota_table(4, 2, Duration::from_secs(100));
        let new = |client: &str| t.create("v".into(), Binding::default(), None, client.into());
        let a1 = new("ip:a").unwrap();
        new("ip:a").unwrap();
        let refused = new("ip:a").unwrap_err();
        assert!(
            matches!(
                refused,
                Error::SessionQuota {
                    limit: 2,
                    retry_after: 100
                }
            ),
            "{refused:?}"
        );
        assert!(matches!(
            t.check_room("ip:a").1,
            Err(Error::SessionQuota { .. })
        ));
        assert!(t.check_room("ip:b").1.is_ok());
        new("ip:b").unwrap();
        new("ip:b").unwrap();
        assert!(matches!(
            t.check_room("ip:c").1,
            Err(Error::TooManySessions { .. })
        ));
        // A session that ends gives its client's slot back.
        assert!(t.remove(&a1.id).is_some());
        assert!(new("ip:a").is_ok());
        assert_eq!(t.drain().len(), 4);
        assert!(new("ip:a").is_ok());
    }

    #[test]
    fn quota_counts_expired_sessions_out() {
        let t = quota_table(10, 1, Duration::from_millis(30));
        t.create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        assert!(t.check_room("ip:a").1.is_err());
        std::thread::sleep(Duration::from_millis(50));
        let (expired, room) = t.check_room("ip:a");
        assert_eq!(expired.len(), 1);
        assert!(room.is_ok());
    }

    #[test]
    fn log_levels() {
        let t = table(1, Duration::from_secs(60));
        let s = t
            .create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
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
    fn evicted_sessions_are_not_found_and_leave_the_table() {
        let t = quota_table(10, 1, Duration::from_secs(60));
        let a = t
            .create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        assert!(matches!(
            t.check_room("ip:a").1,
            Err(Error::SessionQuota { .. })
        ));
        a.evict();
        assert!(t.get_as(&a.id, None).is_none(), "its client gets 404");
        // The next look drops it (handing it back to be wound down) and its room is free.
        let (gone, room) = t.check_room("ip:a");
        assert_eq!(gone.len(), 1);
        assert!(room.is_ok());
        assert!(t.is_empty());
        let b = t
            .build("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        let c = t
            .create("v".into(), Binding::default(), None, "ip:b".into())
            .unwrap();
        c.evict();
        t.insert(&b).unwrap();
        assert_eq!(t.len(), 1, "insert drops the evicted one too");
    }

    #[test]
    fn client_capabilities() {
        let caps = |text: &str| {
            ClientCaps::of(&serde_json::value::RawValue::from_string(text.into()).unwrap())
        };
        assert_eq!(caps("{}"), ClientCaps::NONE);
        assert_eq!(caps("[]"), ClientCaps::NONE);
        assert_eq!(caps(r#"{"sampling":{}}"#), ClientCaps::SAMPLING);
        assert_eq!(caps(r#"{"sampling":null,"roots":true}"#), ClientCaps::NONE);
        assert_eq!(caps(r#"{"elicitation":{}}"#), ClientCaps::ELICIT_FORM);
        assert_eq!(
            caps(r#"{"elicitation":{"url":{}}}"#),
            ClientCaps::ELICIT_URL
        );
        let all = caps(
            r#"{"roots":{"listChanged":true},"elicitation":{"form":{},"url":{}},"sampling":{"tools":{}}}"#,
        );
        assert_eq!(all, ClientCaps::ALL);
        assert!(all.has(ClientCaps::ROOTS.with(ClientCaps::SAMPLING)));
        let init = crate::jsonrpc::Message::parse(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"roots":{}}}}"#,
        )
        .unwrap();
        assert_eq!(ClientCaps::of_initialize(&init), ClientCaps::ROOTS);
        let modern = crate::jsonrpc::Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}}"#,
        )
        .unwrap();
        assert_eq!(ClientCaps::of_meta(&modern), ClientCaps::SAMPLING);
        assert_eq!(
            ClientCaps::needed("elicitation/create", Some("url")),
            Some(ClientCaps::ELICIT_URL)
        );
        assert_eq!(ClientCaps::needed("ping", None), None);
    }

    #[test]
    fn inflight_map() {
        let t = table(1, Duration::from_secs(60));
        let s = t
            .create("v".into(), Binding::default(), None, "ip:a".into())
            .unwrap();
        s.begin_call("\"a\"", 7);
        assert_eq!(s.upstream_call_id("\"a\""), Some(7));
        // A reused id's new call is not forgotten with the old one.
        s.begin_call("\"a\"", 8);
        s.end_call("\"a\"", 7);
        assert_eq!(s.upstream_call_id("\"a\""), Some(8));
        s.end_call("\"a\"", 8);
        assert_eq!(s.inflight(), 0);
    }
}
