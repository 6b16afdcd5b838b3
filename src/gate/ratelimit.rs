//! Rate limiting: token buckets keyed by client, a global bucket, and per-tool buckets.
//!
//! ## Buckets
//!
//! A classic token bucket per [`Rate`]: it starts full (`burst` tokens), refills continuously at
//! `per_sec` tokens per second up to `burst`, and one request costs one token. Tokens are an
//! `f64` with the [`Instant`] of the last refill; time that goes backwards refills nothing. A
//! bucket holding `t < 1` tokens has a token again after exactly `(1 - t) / per_sec` seconds;
//! that wait is rounded **up** to the nanosecond, so a client that comes back after
//! [`Denied::retry_after`] is let in (a shortfall below [`TOKEN_EPSILON`] left by float rounding
//! counts as a whole token). The `Retry-After` header is that wait in whole seconds, rounded up,
//! at least 1 ([`Denied::retry_after_secs`]).
//!
//! A request is charged to up to three buckets ([`Limiter::check`]):
//!
//! * the **client** bucket of its key (`--rate-limit`); the caller builds the key, e.g.
//!   `principal:alice` for an authenticated principal or `ip:10.0.0.1` for an anonymous client
//!   (see [`client_ip`]);
//! * the **global** bucket shared by everyone (optional);
//! * for `tools/call`, the bucket of that **(key, tool)** pair when the tool has a
//!   `--tool-limit`.
//!
//! Charging is all-or-nothing: when any of them lacks a token, none is charged and the refusal
//! names the bucket with the longest wait, so the `Retry-After` it produces is enough for all.
//!
//! ## Bounded memory
//!
//! Keyed buckets live in 16 shards (by a randomly seeded hash of the key), each a
//! `Mutex<HashMap>`, so worker threads rarely contend; the global bucket has its own mutex (lock
//! order: shard, then global). One entry per key holds the key's client bucket and its tool
//! buckets (at most one per configured tool limit). At most `max_keys` keys are tracked:
//! each shard holds at most `max_keys / shards` of them.
//!
//! When a new key arrives at a full shard, the shard first drops every entry whose buckets have
//! all refilled to full. That is **lossless**: a full bucket behaves exactly like a new one. If
//! nothing is full, the least-recently-used key of the shard is dropped. That is **lossy**: under
//! a key-spraying attack with more than `max_keys` distinct keys, the clients idle the longest
//! get a fresh (full) bucket on their next request. Eviction scans one shard only, so its cost is
//! bounded by `max_keys / 16` entries. A key refused by the global bucket alone is not stored (its
//! bucket would be full). [`Limiter::sweep`] drops all full buckets; run it from housekeeping.
//!
//! ## Client addresses
//!
//! [`client_ip`] honours `X-Forwarded-For` only when the TCP peer is inside a `--trusted-proxy`
//! [`Cidr`]; see there for the exact rule.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::lock;

/// Default for [`Limits::max_keys`]: the number of distinct keys tracked.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// Number of shards of the keyed-bucket map (fewer when `max_keys` is smaller).
const SHARDS: usize = 16;

/// A bucket short of a whole token by less than this (float rounding) has a token.
pub const TOKEN_EPSILON: f64 = 1e-9;

/// Relative float noise ignored when a wait is rounded up to the nanosecond.
const WAIT_SLACK: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------
// Rate, ToolLimit
// ---------------------------------------------------------------------------------------------

/// A rate: `per_sec` tokens (requests) per second, and a bucket of `burst` tokens.
///
/// Parsed from `RATE/BURST`, e.g. `20/40` or `0.5/3`: RATE is a finite number above 0 (requests
/// per second, fractions allowed), BURST a whole number of requests from 1. [`fmt::Display`]
/// prints it back in the same form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Refill rate in tokens per second; finite and above 0.
    pub per_sec: f64,
    /// Bucket size in tokens (the most requests allowed at once); at least 1.
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let Some((rate, burst)) = s.trim().split_once('/') else {
            return Err(format!(
                "rate limit {s:?}: expected RATE/BURST such as 20/40"
            ));
        };
        let per_sec = match rate.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => r,
            _ => {
                return Err(format!(
                    "rate limit {s:?}: RATE must be a number of requests per second above 0"
                ));
            }
        };
        let burst = match burst.trim().parse::<u32>() {
            Ok(b) if b >= 1 => b,
            _ => {
                return Err(format!(
                    "rate limit {s:?}: BURST must be a whole number of requests from 1"
                ));
            }
        };
        Ok(Rate { per_sec, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.per_sec, self.burst)
    }
}

/// A per-tool limit for `tools/call`, parsed from `NAME=RATE/BURST` (`--tool-limit`), e.g.
/// `search=2/4`. It applies to each key separately: every client gets its own bucket per tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolLimit {
    /// The tool name, as in `params.name` of `tools/call`; not empty.
    pub tool: String,
    /// The rate for that tool, per key.
    pub rate: Rate,
}

impl FromStr for ToolLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<ToolLimit, String> {
        let bad = || format!("tool limit {s:?}: expected NAME=RATE/BURST such as search=2/4");
        let (tool, rate) = s.rsplit_once('=').ok_or_else(bad)?;
        let tool = tool.trim();
        if tool.is_empty() {
            return Err(bad());
        }
        let rate = rate
            .parse::<Rate>()
            .map_err(|e| format!("tool limit {s:?}: {e}"))?;
        Ok(ToolLimit {
            tool: tool.to_string(),
            rate,
        })
    }
}

impl fmt::Display for ToolLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.tool, self.rate)
    }
}

// ---------------------------------------------------------------------------------------------
// Cidr, client_ip
// ---------------------------------------------------------------------------------------------

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `fd00::/8`, `::1/128`; a bare address is `/32` or
/// `/128`. Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
///
/// An IPv4 address is the same as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`): IPv4 networks
/// contain mapped addresses, and IPv6 networks that cover `::ffff:0:0/96` contain IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, host bits zero.
    net: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix: u8,
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let t = s.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("cidr {s:?}: expected ADDRESS or ADDRESS/PREFIX such as 10.0.0.0/8 or fd00::/8")
        })?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "cidr {s:?}: prefix must be a number from 0 to {max}"
                    ));
                }
            },
        };
        let net = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally `[v6]`, `a.b.c.d:port` or `[v6]:port`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client address a request is charged to.
///
/// `peer` is the TCP peer and `forwarded_for` the values of every `X-Forwarded-For` header in
/// order (each a comma-separated list; empty elements are ignored). The header is used **only**
/// when `peer` is inside one of `trusted`; from any other peer it is ignored.
///
/// The rule: an address is believed only when every hop to its right (the peer included) is a
/// trusted proxy, since only a trusted proxy's append is honest. So the walk starts at the peer
/// and goes right to left through the entries:
///
/// * a trusted entry is skipped (it is the next proxy of the chain);
/// * the first untrusted entry is the client;
/// * an entry that is not an address (`unknown`, garbage) stops the walk: the last trusted hop
///   seen is the client, and nothing left of the garbage is believed;
/// * when the header is absent or empty, the client is the peer; when every entry is trusted,
///   the client is the leftmost entry (appended by a trusted proxy, so it is genuine).
///
/// The result is canonical: an IPv4-mapped IPv6 address comes back as IPv4, so a client has one
/// key whether it arrived over IPv4 or a dual-stack socket.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let values: Vec<&str> = forwarded_for.collect();
    let mut last = peer;
    for value in values.iter().rev() {
        for entry in value.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_hop(entry) else {
                return last;
            };
            let ip = ip.to_canonical();
            if !is_trusted(ip, trusted) {
                return ip;
            }
            last = ip;
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Limits, Scope, Denied
// ---------------------------------------------------------------------------------------------

/// Rate-limit settings. With no rate at all ([`Limits::default`]) nothing is limited.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Per-key rate (`--rate-limit RATE/BURST`); default none.
    pub per_client: Option<Rate>,
    /// One rate for all requests together; default none.
    pub global: Option<Rate>,
    /// Per-(key, tool) rates for `tools/call` (`--tool-limit NAME=RATE/BURST`); default none.
    /// When a tool is named twice, the last entry wins.
    pub tools: Vec<ToolLimit>,
    /// Most keys tracked at once (each holds its client bucket and its tool buckets); default
    /// [`DEFAULT_MAX_KEYS`]. 0 counts as 1.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_client: None,
            global: None,
            tools: Vec::new(),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The key's own bucket (`--rate-limit`).
    Client,
    /// The global bucket.
    Global,
    /// The key's bucket for the called tool (`--tool-limit`).
    Tool,
}

impl Scope {
    /// The metrics label: `client`, `global` or `tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::Global => "global",
            Scope::Tool => "tool",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: which limit, and how long until the request would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// The refusing bucket (the one with the longest wait when several refused).
    pub scope: Scope,
    /// Time until every refusing bucket holds a token, rounded up to the nanosecond.
    pub retry_after: Duration,
}

impl Denied {
    /// Whole seconds for the `Retry-After` header: `retry_after` rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        d.as_secs()
            .saturating_add(u64::from(d.subsec_nanos() > 0))
            .max(1)
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit exceeded ({}); retry after {}s",
            self.scope,
            self.retry_after_secs()
        )
    }
}

impl std::error::Error for Denied {}

// ---------------------------------------------------------------------------------------------
// Bucket
// ---------------------------------------------------------------------------------------------

/// One token bucket; its [`Rate`] is kept by the owner.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: &Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    /// Tokens at `now`, without changing the bucket.
    fn level(&self, rate: &Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * rate.per_sec).min(f64::from(rate.burst))
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        self.tokens = self.level(rate, now);
        if now > self.last {
            self.last = now;
        }
    }

    fn is_full(&self, rate: &Rate, now: Instant) -> bool {
        self.level(rate, now) >= f64::from(rate.burst)
    }

    /// After [`Bucket::refill`]: `None` when a token is there, else the wait for one.
    fn wait(&self, rate: &Rate) -> Option<Duration> {
        if self.tokens >= 1.0 - TOKEN_EPSILON {
            return None;
        }
        // Forgive float noise of one part in 10^12 before rounding up, so that an exact wait
        // (0.3 s) is not reported as 0.300000001 s; the shortfall this can leave is at most
        // 10^-12 tokens, far below TOKEN_EPSILON.
        let nanos = ((1.0 - self.tokens) / rate.per_sec * 1e9 * (1.0 - WAIT_SLACK)).ceil();
        Some(
            if nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64 {
                Duration::from_nanos(nanos as u64)
            } else {
                Duration::MAX
            },
        )
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// Refills, then takes a token if there is one; else the wait for one.
    fn try_take(&mut self, rate: &Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if let Some(wait) = self.wait(rate) {
            return Err(wait);
        }
        self.take();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Limiter
// ---------------------------------------------------------------------------------------------

/// The buckets of one key.
#[derive(Debug)]
struct Entry {
    /// The client bucket, when a per-client rate is configured.
    client: Option<Bucket>,
    /// Tool buckets by index into `Limiter::tool_rates`; at most one per tool.
    tools: Vec<(usize, Bucket)>,
    /// The shard's use counter at the last check of this key (for LRU eviction).
    used: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Box<str>, Entry>,
    /// Incremented on every check in this shard.
    tick: u64,
}

/// All rate-limit state; `Send + Sync`, shared by every worker thread.
#[derive(Debug)]
pub struct Limiter {
    per_client: Option<Rate>,
    global: Option<(Rate, Mutex<Option<Bucket>>)>,
    tool_index: HashMap<Box<str>, usize>,
    tool_rates: Vec<Rate>,
    shards: Vec<Mutex<Shard>>,
    /// Most keys per shard.
    shard_cap: usize,
    hasher: RandomState,
}

impl Limiter {
    /// A limiter for `limits`, with every bucket full.
    pub fn new(limits: Limits) -> Limiter {
        Limiter::with_shards(limits, SHARDS)
    }

    fn with_shards(limits: Limits, shards: usize) -> Limiter {
        let max_keys = limits.max_keys.max(1);
        let shards = shards.clamp(1, max_keys);
        let mut tool_index = HashMap::new();
        let mut tool_rates = Vec::new();
        for t in limits.tools {
            tool_index.insert(t.tool.into_boxed_str(), tool_rates.len());
            tool_rates.push(t.rate);
        }
        Limiter {
            per_client: limits.per_client,
            global: limits.global.map(|r| (r, Mutex::new(None))),
            tool_index,
            tool_rates,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_cap: max_keys / shards,
            hasher: RandomState::new(),
        }
    }

    /// True when no limit is configured: every check passes and the caller can skip the work.
    pub fn is_off(&self) -> bool {
        self.per_client.is_none() && self.global.is_none() && self.tool_index.is_empty()
    }

    /// True when some tool has a limit (only then does a caller need the tool's name).
    pub fn limits_tools(&self) -> bool {
        !self.tool_index.is_empty()
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        // The modulo keeps the index in range; truncating the hash first is harmless.
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// Takes one token from every bucket that applies to this request: the client bucket of
    /// `key` (built by the caller, e.g. `principal:alice` or `ip:10.0.0.1`), the global bucket,
    /// and, when `tool` is given and has a limit, the (`key`, `tool`) bucket.
    ///
    /// All-or-nothing: when any applicable bucket lacks a token, none is charged, and the
    /// [`Denied`] names the bucket with the longest wait (on a tie: client, then tool, then
    /// global) and that wait. `now` is the caller's clock ([`Instant::now`] in production).
    pub fn check(&self, key: &str, tool: Option<&str>, now: Instant) -> Result<(), Denied> {
        let tool = tool.and_then(|t| self.tool_index.get(t).copied());
        if self.per_client.is_none() && tool.is_none() {
            return self.check_global_only(now);
        }
        let mut shard = lock(self.shard(key));
        shard.tick += 1;
        let tick = shard.tick;

        // The key's buckets, refilled; a new key's are full and not stored unless charged.
        let mut fresh = None;
        let entry = match shard.map.get_mut(key) {
            Some(e) => e,
            None => fresh.insert(Entry {
                client: self.per_client.map(|r| Bucket::full(&r, now)),
                tools: Vec::new(),
                used: tick,
            }),
        };
        entry.used = tick;

        let mut worst: Option<Denied> = None;
        let mut refuse = |scope: Scope, wait: Option<Duration>| {
            if let Some(w) = wait.filter(|w| worst.is_none_or(|d| *w > d.retry_after)) {
                worst = Some(Denied {
                    scope,
                    retry_after: w,
                });
            }
        };

        if let (Some(rate), Some(b)) = (self.per_client.as_ref(), entry.client.as_mut()) {
            b.refill(rate, now);
            refuse(Scope::Client, b.wait(rate));
        }
        let mut tool_slot = None;
        if let Some(ti) = tool {
            let rate = &self.tool_rates[ti];
            // A tool bucket not there yet is full.
            if let Some(pos) = entry.tools.iter().position(|(i, _)| *i == ti) {
                let b = &mut entry.tools[pos].1;
                b.refill(rate, now);
                refuse(Scope::Tool, b.wait(rate));
                tool_slot = Some(pos);
            }
        }
        let mut global = self.global.as_ref().map(|(rate, m)| (rate, lock(m)));
        let global_bucket = global.as_mut().map(|(rate, g)| {
            let b = g.get_or_insert_with(|| Bucket::full(rate, now));
            b.refill(rate, now);
            refuse(Scope::Global, b.wait(rate));
            b
        });

        if let Some(denied) = worst {
            return Err(denied);
        }

        // Allowed: charge every bucket.
        if let Some(b) = global_bucket {
            b.take();
        }
        drop(global);
        if let Some(b) = entry.client.as_mut() {
            b.take();
        }
        if let Some(ti) = tool {
            match tool_slot {
                Some(pos) => entry.tools[pos].1.take(),
                None => {
                    let mut b = Bucket::full(&self.tool_rates[ti], now);
                    b.take();
                    entry.tools.push((ti, b));
                }
            }
        }
        if let Some(entry) = fresh {
            self.make_room(&mut shard, now);
            shard.map.insert(key.into(), entry);
        }
        Ok(())
    }

    /// [`Limiter::check`] when only the global bucket can apply.
    fn check_global_only(&self, now: Instant) -> Result<(), Denied> {
        let Some((rate, m)) = self.global.as_ref() else {
            return Ok(());
        };
        lock(m)
            .get_or_insert_with(|| Bucket::full(rate, now))
            .try_take(rate, now)
            .map_err(|wait| Denied {
                scope: Scope::Global,
                retry_after: wait,
            })
    }

    /// Whether every bucket of `e` is full at `now` (the entry is the same as a new one).
    fn entry_is_full(&self, e: &Entry, now: Instant) -> bool {
        let client_full = match (self.per_client.as_ref(), e.client.as_ref()) {
            (Some(rate), Some(b)) => b.is_full(rate, now),
            _ => true,
        };
        client_full
            && e.tools
                .iter()
                .all(|(ti, b)| b.is_full(&self.tool_rates[*ti], now))
    }

    /// Makes room for one more key in `shard`: drops full entries, else the least recently used.
    fn make_room(&self, shard: &mut Shard, now: Instant) {
        if shard.map.len() < self.shard_cap {
            return;
        }
        shard.map.retain(|_, e| !self.entry_is_full(e, now));
        while shard.map.len() >= self.shard_cap {
            let Some(oldest) = shard
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            shard.map.remove(&oldest);
        }
    }

    /// Drops every bucket that has refilled to full at `now` (lossless), and keys left with
    /// none. Run periodically from housekeeping.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.map.retain(|_, e| {
                e.tools
                    .retain(|(ti, b)| !b.is_full(&self.tool_rates[*ti], now));
                !self.entry_is_full(e, now)
            });
        }
    }

    /// Number of live keyed buckets (client and client×tool).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                lock(s)
                    .map
                    .values()
                    .map(|e| usize::from(e.client.is_some()) + e.tools.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Number of keys tracked (at most `max_keys`).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }
}

#[cfg(test)]
mod tests;
