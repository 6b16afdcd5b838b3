//! The sharded, bounded map of keyed buckets: [`Limiter`], its all-or-nothing
//! [`check`](Limiter::check), eviction and sweeping (see "Bounded memory" in the doc of
//! [`crate::gate::ratelimit`]).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Bucket, Denied, Limits, Rate, SHARDS, Scope};
use crate::util::lock;

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

    pub(super) fn with_shards(limits: Limits, shards: usize) -> Limiter {
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
    pub(super) fn buckets(&self) -> usize {
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

    /// The buckets [`Limiter::check`] would charge for this request, for a shared store
    /// ([`super::CounterStore`]): client, tool, global, in the tie order of the refusal.
    pub fn charges<'a>(&self, key: &'a str, tool: Option<&'a str>) -> Vec<super::Charge<'a>> {
        let mut out = Vec::with_capacity(3);
        if let Some(rate) = self.per_client {
            out.push(super::Charge {
                scope: Scope::Client,
                key,
                tool: None,
                rate,
            });
        }
        if let Some(t) = tool
            && let Some(&ti) = self.tool_index.get(t)
        {
            out.push(super::Charge {
                scope: Scope::Tool,
                key,
                tool: Some(t),
                rate: self.tool_rates[ti],
            });
        }
        if let Some((rate, _)) = &self.global {
            out.push(super::Charge {
                scope: Scope::Global,
                key: "",
                tool: None,
                rate: *rate,
            });
        }
        out
    }

    /// Number of keys tracked (at most `max_keys`).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }
}
