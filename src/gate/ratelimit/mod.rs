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
//!
//! ## Files
//!
//! This file: [`Rate`], [`ToolLimit`], [`Limits`], the refusal ([`Scope`], [`Denied`]) and the
//! bucket arithmetic. The keyed, sharded [`Limiter`] is in `ratelimit/limiter.rs`; [`Cidr`]
//! and [`client_ip`] in `ratelimit/client_addr.rs`; the shared store (`--limits-store`,
//! Redis) in `ratelimit/store.rs`, its leases of fast buckets' tokens in `ratelimit/lease.rs`;
//! unit tests in `ratelimit/tests.rs`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

mod client_addr;
mod lease;
mod limiter;
mod store;
pub use client_addr::{Cidr, client_ip};
pub use limiter::Limiter;
pub use store::{Charge, CounterStore, FailMode, HOLD_LEASE, RedisStore, StoreConfig, StoreDown};

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
    /// `DEFAULT_MAX_KEYS` (10,000). 0 counts as 1.
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

#[cfg(test)]
mod tests;
