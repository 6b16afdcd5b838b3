//! Rate limits shared by every instance behind a load balancer (`--limits-store`, issue #17).
//!
//! The buckets are the same token buckets as the in-process [`super::Limiter`]'s, kept as
//! counters in Redis: one string per bucket, `"<tokens> <µs of the last refill>"` (by the
//! Redis server's clock, so instances need no synchronised clocks; a `GET` and a `SET … PX`
//! per bucket, a fifth less server time than a hash with `HMGET`/`HSET`/`PEXPIRE`), expiring
//! once it would be full again. One request is one `EVALSHA` of [`CHARGE`] (one round trip;
//! a fresh server that lacks the script costs one more, once): all-or-nothing over the
//! client, tool and global buckets, atomically, exactly as the in-process check. Buckets of
//! 1,000 tokens a second or more are charged a few tokens per round trip and the rest spent
//! here without one (`lease.rs`: never more than the limit, under 4 % of a bucket's rate
//! lost per instance at worst). Redis holds nothing but these counters.
//!
//! Connections are reused (a small stack of open ones, at most [`MAX_IDLE`] kept), each with
//! connect, read and write timeouts ([`TIMEOUT`]). A failed exchange drops its connection and
//! marks the store down for [`RETRY_AFTER_DOWN`], during which checks do not wait on Redis at
//! all: the [`Gatekeeper`](crate::gate::Gatekeeper) falls back to the in-process limiter
//! (`--limits-store-fail open`, the default: this instance's own buckets) or refuses the
//! request (`closed`: 503). Either way a warning is logged at most every 10 s and
//! `shadowcat_limits_store_fallbacks_total` counts the requests decided without Redis.
//!
//! The per-client session and stream quotas (`--max-sessions-per-client`,
//! `--max-streams-per-client`) are shared the same way: each session or open stream holds a
//! lease in a sorted set per client (member: an opaque token, never a session id; score: the
//! lease's end), claimed by [`CLAIM`] in one round trip,
//! renewed by [`REFRESH`] from housekeeping, given back on the session's end; a dead
//! instance's holds end with their lease ([`HOLD_LEASE`]).
//!
//! Owns: [`CounterStore`] (the small trait the gate charges through), [`RedisStore`], and
//! [`StoreConfig`]. Must not touch: the in-process limiter's state.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::ConnectionLike;

use super::lease::{Leases, Reserved};
use super::{Denied, Rate, Scope};
use crate::util::lock;

/// Connect, read and write timeout of one exchange with Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is not tried again for this long (checks fall back at once).
pub const RETRY_AFTER_DOWN: Duration = Duration::from_secs(1);
/// Most idle connections kept for reuse.
pub const MAX_IDLE: usize = 16;
/// Default `--limits-store-lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_millis(2);
/// Most `--limits-store-lease`.
pub const MAX_LEASE_TIME: Duration = Duration::from_millis(10);
/// Prefix of every key written.
pub const KEY_PREFIX: &str = "shadowcat:rl:";

/// What to do when the store cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Decide with this instance's in-process buckets (limits then hold per instance).
    Open,
    /// Refuse the request: 503 with `Retry-After: 1`.
    Closed,
}

/// `--limits-store` and `--limits-store-fail`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Default [`FailMode::Open`].
    pub fail: FailMode,
    /// `--limits-store-lease`: the refill time of a fast bucket one round trip takes ahead
    /// (`lease.rs`); zero: none.
    pub lease: Duration,
}

impl StoreConfig {
    /// Validates the flags' values.
    pub fn new(url: &str, fail: &str) -> Result<StoreConfig, String> {
        let fail = match fail {
            "open" => FailMode::Open,
            "closed" => FailMode::Closed,
            other => {
                return Err(format!(
                    "--limits-store-fail {other:?}: expected open or closed"
                ));
            }
        };
        if !url.starts_with("redis://") {
            return Err("--limits-store: expected redis://host:port/db".into());
        }
        redis::Client::open(url).map_err(|e| format!("--limits-store: {e}"))?;
        Ok(StoreConfig {
            url: url.to_owned(),
            fail,
            lease: DEFAULT_LEASE,
        })
    }

    /// Sets the lease from `--limits-store-lease` (`0`, `off`, or a duration of at most
    /// [`MAX_LEASE_TIME`]).
    pub fn with_lease(mut self, s: &str) -> Result<StoreConfig, String> {
        let s = s.trim();
        self.lease = if s == "0" || s == "off" {
            Duration::ZERO
        } else {
            crate::util::duration("--limits-store-lease", s).map_err(|e| e.to_string())?
        };
        if self.lease > MAX_LEASE_TIME {
            return Err(format!(
                "--limits-store-lease {s}: at most {}ms",
                MAX_LEASE_TIME.as_millis()
            ));
        }
        Ok(self)
    }

    /// The URL without its user information, for logs and `/admin/config`.
    pub fn shown(&self) -> String {
        match self.url["redis://".len()..].split_once('@') {
            Some((_, rest)) => format!("redis://{rest}"),
            None => self.url.clone(),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreConfig({}, {:?})", self.shown(), self.fail)
    }
}

/// One bucket a request is charged to: its scope (for the refusal), its key and its rate.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    /// Which limit.
    pub scope: Scope,
    /// The client key (`ip:…`, `principal:…`), empty for the global bucket.
    pub key: &'a str,
    /// The tool, for a tool bucket.
    pub tool: Option<&'a str>,
    /// Its rate.
    pub rate: Rate,
}

/// The store could not be asked (unreachable, timed out, or marked down after a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDown(pub String);

/// Where cluster-wide bucket counters live.
pub trait CounterStore: Send + Sync {
    /// Takes one token from every bucket of `charges`, atomically and all-or-nothing: `Ok(None)`
    /// when allowed, `Ok(Some(denied))` when a bucket lacks a token (the one with the longest
    /// wait; on a tie the first in `charges`), `Err` when the store cannot decide.
    fn take(&self, charges: &[Charge<'_>]) -> Result<Option<Denied>, StoreDown>;

    /// Holds one of at most `max` members of `set` (a client's sessions or streams) as
    /// `hold` (an opaque token, never a session id), for [`HOLD_LEASE`] unless refreshed:
    /// `Ok(None)` when held (or held already), `Ok(Some(secs))` when the set is full (secs:
    /// until its oldest lease ends), `Err` when the store cannot decide.
    fn claim(&self, set: &str, hold: &str, max: usize) -> Result<Option<u64>, StoreDown>;

    /// Renews the leases of live holds: `(set, hold)` pairs.
    fn refresh(&self, holds: &[(String, String)]) -> Result<(), StoreDown>;

    /// Gives a hold back (its session or stream ended). Best effort: a hold not given back
    /// ends with its lease.
    fn release(&self, set: &str, hold: &str);
}

/// How long a session hold lasts without a refresh: an instance that dies without giving
/// its holds back blocks its clients' quota at most this long.
pub const HOLD_LEASE: Duration = Duration::from_secs(60);

/// The session-quota claim. KEYS[1]: the client's sorted set of holds (score: lease end in
/// ms by the Redis clock); ARGV: max, lease ms, hold. Returns `{0, 0}` when held, else
/// `{1, wait_ms}` until the oldest hold's lease ends.
pub const CLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false and redis.call('ZCARD', KEYS[1]) >= max then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, tonumber(oldest[2]) - now}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return {0, 0}
"#;

/// Lease renewal: KEYS are the clients' sets, ARGV[1] the lease in ms, ARGV[i + 1] the hold
/// in KEYS[i]. Only holds still there are renewed (`XX`).
pub const REFRESH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 0
"#;

/// The all-or-nothing charge. KEYS: the buckets; ARGV: per bucket its rate (tokens per
/// second), burst and the tokens wanted (0: the bucket is not charged by this call, a lease
/// of this instance pays for it; see `lease.rs`). Returns `{0, 0, g1, g2, …}` when charged,
/// `g` the tokens taken from each bucket (at least 1 where wanted, at most as many as wanted
/// and whole tokens held), else `{i, wait_us}`: the 1-based index of the bucket with the
/// longest wait for one token and that wait in microseconds (rounded up).
pub const CHARGE: &str = r#"
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local level = {}
local worst, worst_i = -1, 0
for i = 1, #KEYS do
  local rate, burst, want = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  if want > 0 then
    local tokens, ts = burst, now
    local v = redis.call('GET', KEYS[i])
    if v then
      local sp = string.find(v, ' ', 1, true)
      if sp then
        tokens = tonumber(string.sub(v, 1, sp - 1)) or burst
        ts = tonumber(string.sub(v, sp + 1)) or now
      end
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    tokens = math.min(burst, tokens + elapsed * rate / 1000000)
    level[i] = tokens
    if tokens < 1 - 1e-9 then
      local wait = math.ceil((1 - tokens) / rate * 1000000)
      if wait > worst then worst, worst_i = wait, i end
    end
  end
end
if worst_i > 0 then return {worst_i, worst} end
local out = {0, 0}
for i = 1, #KEYS do
  local rate, burst, want = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local got = 0
  if want > 0 then
    got = math.max(1, math.min(want, math.floor(level[i] + 1e-9)))
    local left = math.max(0, level[i] - got)
    redis.call('SET', KEYS[i], string.format('%.17g %d', left, now), 'PX', math.ceil((burst - left) / rate * 1000) + 1000)
  end
  out[i + 2] = got
end
return out
"#;

/// Counters in Redis, over reused connections with timeouts.
pub struct RedisStore {
    client: redis::Client,
    script: redis::Script,
    claim: redis::Script,
    refresh: redis::Script,
    /// Tokens taken ahead of use for fast buckets (`lease.rs`).
    leases: Leases,
    idle: Mutex<Vec<redis::Connection>>,
    /// Milliseconds since `born` until which Redis is not tried (0: up).
    down_until_ms: AtomicU64,
    born: Instant,
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`). Connects lazily: an unreachable Redis at
    /// start-up is a fallback like any other, not a failure to start.
    pub fn new(url: &str, lease: Duration) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--limits-store: {e}"))?;
        Ok(RedisStore {
            client,
            script: redis::Script::new(CHARGE),
            claim: redis::Script::new(CLAIM),
            refresh: redis::Script::new(REFRESH),
            leases: Leases::new(lease),
            idle: Mutex::new(Vec::new()),
            down_until_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64 + 1
    }

    /// True while a recent failure keeps Redis from being tried.
    pub fn is_down(&self) -> bool {
        self.now_ms() < self.down_until_ms.load(Ordering::Relaxed)
    }

    fn connection(&self) -> Result<redis::Connection, redis::RedisError> {
        if let Some(c) = lock(&self.idle).pop() {
            return Ok(c);
        }
        let c = self.client.get_connection_with_timeout(TIMEOUT)?;
        c.set_read_timeout(Some(TIMEOUT))?;
        c.set_write_timeout(Some(TIMEOUT))?;
        Ok(c)
    }

    fn give_back(&self, c: redis::Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE && c.is_open() {
            idle.push(c);
        }
    }

    fn fail(&self, e: &redis::RedisError) -> StoreDown {
        self.down_until_ms.store(
            self.now_ms() + RETRY_AFTER_DOWN.as_millis() as u64,
            Ordering::Relaxed,
        );
        // Open connections are likely as dead as the one that failed.
        lock(&self.idle).clear();
        StoreDown(e.to_string())
    }
}

/// The Redis key of a set of holds (`s:<client>` for sessions, `st:<client>` for streams).
fn hold_key(set: &str) -> String {
    format!("{KEY_PREFIX}{set}")
}

impl RedisStore {
    /// Runs `f` on a connection, giving it back after success, marking the store down on
    /// failure.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreDown> {
        if self.is_down() {
            return Err(StoreDown("marked down after a recent failure".into()));
        }
        let mut con = self.connection().map_err(|e| self.fail(&e))?;
        match f(&mut con) {
            Ok(v) => {
                self.give_back(con);
                Ok(v)
            }
            Err(e) => Err(self.fail(&e)),
        }
    }
}

/// The Redis key of a bucket. Client text (a JWT `sub`) is kept verbatim: Redis keys are
/// binary-safe, and the scope letter and the length prefix keep keys of different buckets
/// apart.
fn redis_key(c: &Charge<'_>) -> String {
    match (c.scope, c.tool) {
        (Scope::Global, _) => format!("{KEY_PREFIX}g"),
        (Scope::Tool, Some(tool)) => format!("{KEY_PREFIX}t:{}:{}:{tool}", c.key.len(), c.key),
        _ => format!("{KEY_PREFIX}c:{}", c.key),
    }
}

impl CounterStore for RedisStore {
    fn take(&self, charges: &[Charge<'_>]) -> Result<Option<Denied>, StoreDown> {
        if charges.is_empty() {
            return Ok(None);
        }
        if self.is_down() {
            return Err(StoreDown("marked down after a recent failure".into()));
        }
        let keys: Vec<String> = charges.iter().map(redis_key).collect();
        let rates: Vec<Rate> = charges.iter().map(|c| c.rate).collect();
        let now = Instant::now();
        let (reserved, wants) = match self.leases.reserve(&keys, &rates, now) {
            Reserved::All => return Ok(None),
            Reserved::Some { reserved, wants } => (reserved, wants),
        };
        let mut inv = self.script.prepare_invoke();
        for k in &keys {
            inv.key(k.as_str());
        }
        for (c, want) in charges.iter().zip(&wants) {
            inv.arg(c.rate.per_sec).arg(c.rate.burst).arg(*want);
        }
        let answer: Result<Vec<u64>, StoreDown> = match self.connection() {
            Ok(mut con) => match inv.invoke(&mut con) {
                Ok(v) => {
                    self.give_back(con);
                    Ok(v)
                }
                Err(e) => Err(self.fail(&e)),
            },
            Err(e) => Err(self.fail(&e)),
        };
        let answer = match answer {
            Ok(v) => v,
            Err(down) => {
                self.leases.give_back(&keys, &reserved);
                return Err(down);
            }
        };
        let (i, wait_us) = (
            answer.first().copied().unwrap_or(0) as usize,
            answer.get(1).copied().unwrap_or(0),
        );
        if i == 0 {
            let granted: Vec<u32> = (0..keys.len())
                .map(|j| {
                    answer
                        .get(j + 2)
                        .map_or(0, |&g| g.min(u64::from(u32::MAX)) as u32)
                })
                .collect();
            self.leases.keep(&keys, &granted, now);
            return Ok(None);
        }
        self.leases.give_back(&keys, &reserved);
        let scope = charges.get(i - 1).map_or(Scope::Client, |c| c.scope);
        Ok(Some(Denied {
            scope,
            retry_after: Duration::from_micros(wait_us),
        }))
    }

    fn claim(&self, set: &str, hold: &str, max: usize) -> Result<Option<u64>, StoreDown> {
        let lease = HOLD_LEASE.as_millis() as u64;
        let (refused, wait_ms): (u8, i64) = self.with(|con| {
            self.claim
                .key(hold_key(set))
                .arg(max)
                .arg(lease)
                .arg(hold)
                .invoke(con)
        })?;
        Ok((refused != 0).then(|| (wait_ms.max(0) as u64).div_ceil(1000).max(1)))
    }

    fn refresh(&self, holds: &[(String, String)]) -> Result<(), StoreDown> {
        for chunk in holds.chunks(1000) {
            let mut inv = self.refresh.prepare_invoke();
            inv.arg(HOLD_LEASE.as_millis() as u64);
            for (set, hold) in chunk {
                inv.key(hold_key(set)).arg(hold);
            }
            self.with(|con| inv.invoke::<i64>(con))?;
        }
        Ok(())
    }

    fn release(&self, set: &str, hold: &str) {
        let _ = self.with(|con| {
            redis::cmd("ZREM")
                .arg(hold_key(set))
                .arg(hold)
                .query::<i64>(con)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_and_display() {
        let c = StoreConfig::new("redis://user:pw@127.0.0.1:6379/2", "open").unwrap();
        assert_eq!(c.fail, FailMode::Open);
        assert_eq!(c.shown(), "redis://127.0.0.1:6379/2");
        assert!(!format!("{c:?}").contains("pw"));
        assert_eq!(
            StoreConfig::new("redis://h:1/0", "closed").unwrap().fail,
            FailMode::Closed
        );
        assert!(StoreConfig::new("redis://h:1/0", "maybe").is_err());
        assert!(StoreConfig::new("http://h:1/0", "open").is_err());
    }

    #[test]
    fn keys_keep_buckets_apart() {
        let r = Rate {
            per_sec: 1.0,
            burst: 1,
        };
        let c = |scope, key, tool| {
            redis_key(&Charge {
                scope,
                key,
                tool,
                rate: r,
            })
        };
        assert_eq!(c(Scope::Global, "ip:a", None), "shadowcat:rl:g");
        assert_eq!(c(Scope::Client, "ip:a", None), "shadowcat:rl:c:ip:a");
        assert_ne!(
            c(Scope::Tool, "ip:a:b", Some("c")),
            c(Scope::Tool, "ip:a", Some("b:c"))
        );
    }

    #[test]
    fn unreachable_store_fails_fast_then_stays_down() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let s = RedisStore::new(&format!("redis://127.0.0.1:{port}/0"), DEFAULT_LEASE).unwrap();
        let charge = [Charge {
            scope: Scope::Client,
            key: "ip:a",
            tool: None,
            rate: Rate {
                per_sec: 1.0,
                burst: 1,
            },
        }];
        let t = Instant::now();
        assert!(s.take(&charge).is_err());
        assert!(s.is_down());
        assert!(s.take(&charge).is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
