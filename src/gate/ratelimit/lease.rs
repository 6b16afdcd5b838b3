//! Tokens an instance has already taken from the shared buckets (`--limits-store`) and not yet
//! spent: a *lease*.
//!
//! A check that must ask Redis costs a loopback round trip (≈ 90 µs p50 for a bare `PING` on
//! the 2-core VM this was measured on) plus the script. Fast buckets need not pay it on every
//! request: when a bucket refills at more than 100 tokens a second, a round trip that charges
//! it takes up to [`lease_size`] tokens at once (about 10 ms of its rate, at most
//! [`MAX_LEASE`] and a quarter of its burst), spends one, and keeps the rest here for
//! [`LEASE_TTL`]. The next requests charged to that bucket spend the kept tokens without a
//! round trip while every bucket they need still holds one here.
//!
//! What this keeps: tokens are taken from Redis *before* they are spent, so the cluster never
//! admits more than a limit allows; the check stays all-or-nothing (tokens reserved here are
//! given back when Redis refuses another bucket of the same request); buckets of under 1,000
//! tokens a second (a client limited to 20/s, say) are charged one token per round trip,
//! exactly as without leases. What it costs: a leased token this instance does not spend
//! within [`LEASE_TTL`] is lost to every instance. An instance takes at most one lease of a
//! bucket per 50 ms beyond what it spends, so it can waste at most `lease_size - 1` tokens
//! every 50 ms: under 4 % of the bucket's rate per instance with the default 2 ms (the lease
//! time over 50 ms; 20 % at the 10 ms maximum), and nothing while its requests for the bucket
//! come faster than a lease lasts. `--limits-store-lease 0` turns leases off.
//!
//! Bounded: at most [`MAX_LEASES`] buckets are leased at once; past it, expired leases are
//! swept and, if none were, a round trip takes one token only.
//!
//! Owns: [`Leases`]. Must not touch: Redis (the store asks it before and after a round trip).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Rate;
use crate::util::lock;

/// How long leased tokens are kept before they are dropped unspent.
pub const LEASE_TTL: Duration = Duration::from_millis(50);
/// Most tokens one round trip takes for one bucket.
pub const MAX_LEASE: u32 = 64;
/// Most buckets leased at once.
pub const MAX_LEASES: usize = 16_384;

/// How many tokens a round trip takes for a bucket of `rate`: `window` (`--limits-store-lease`,
/// 2 ms by default) of its refill, at least 1, at most [`MAX_LEASE`] and a quarter of its burst.
pub fn lease_size(rate: &Rate, window: Duration) -> u32 {
    let by_rate = (rate.per_sec * window.as_secs_f64()).floor();
    let cap = MAX_LEASE.min(rate.burst / 4).max(1);
    if by_rate < 1.0 {
        1
    } else {
        (by_rate as u32).min(cap)
    }
}

#[derive(Debug)]
struct Lease {
    tokens: u32,
    until: Instant,
}

/// What [`Leases::reserve`] found for one request's buckets.
#[derive(Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Every bucket had a leased token: one is spent from each, no round trip.
    All,
    /// These buckets (by index) had a leased token, now reserved; the others need Redis,
    /// which should be asked for `wants[i]` tokens of bucket `i` (0 for the reserved ones).
    Some {
        reserved: Vec<usize>,
        wants: Vec<u32>,
    },
}

/// The leased tokens of this instance, by Redis key.
pub struct Leases {
    map: Mutex<HashMap<String, Lease>>,
    /// `--limits-store-lease`; zero: nothing is leased.
    window: Duration,
}

impl Leases {
    /// Leases of `window` of a fast bucket's refill (zero: none).
    pub fn new(window: Duration) -> Leases {
        Leases {
            map: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// Reserves one leased token of every bucket in `keys` that has one. When all have one,
    /// the request is decided ([`Reserved::All`]).
    pub fn reserve(&self, keys: &[String], rates: &[Rate], now: Instant) -> Reserved {
        let mut map = lock(&self.map);
        let live = |l: &Lease| l.tokens > 0 && l.until > now;
        if keys.iter().all(|k| map.get(k.as_str()).is_some_and(live)) {
            for k in keys {
                if let Some(l) = map.get_mut(k.as_str()) {
                    l.tokens -= 1;
                }
            }
            return Reserved::All;
        }
        let full = map.len() >= MAX_LEASES;
        let mut reserved = Vec::new();
        let mut wants = Vec::with_capacity(keys.len());
        for (i, (k, rate)) in keys.iter().zip(rates).enumerate() {
            match map.get_mut(k.as_str()) {
                Some(l) if live(l) => {
                    l.tokens -= 1;
                    reserved.push(i);
                    wants.push(0);
                }
                _ if full || self.window.is_zero() => wants.push(1),
                _ => wants.push(lease_size(rate, self.window)),
            }
        }
        Reserved::Some { reserved, wants }
    }

    /// Redis refused: the tokens [`Leases::reserve`] reserved go back.
    pub fn give_back(&self, keys: &[String], reserved: &[usize]) {
        let mut map = lock(&self.map);
        for &i in reserved {
            if let Some(l) = keys.get(i).and_then(|k| map.get_mut(k.as_str())) {
                l.tokens += 1;
            }
        }
    }

    /// Redis granted `granted[i]` tokens of bucket `i` (one of each is spent by this request):
    /// the rest are kept for [`LEASE_TTL`].
    pub fn keep(&self, keys: &[String], granted: &[u32], now: Instant) {
        if granted.iter().all(|&g| g <= 1) {
            return;
        }
        let mut map = lock(&self.map);
        if map.len() >= MAX_LEASES {
            map.retain(|_, l| l.until > now && l.tokens > 0);
        }
        for (k, &g) in keys.iter().zip(granted) {
            if g <= 1 {
                continue;
            }
            if map.len() >= MAX_LEASES && !map.contains_key(k.as_str()) {
                continue;
            }
            let l = map.entry(k.clone()).or_insert(Lease {
                tokens: 0,
                until: now,
            });
            if l.until <= now {
                l.tokens = 0;
            }
            l.tokens = l.tokens.saturating_add(g - 1);
            l.until = now + LEASE_TTL;
        }
    }

    /// Buckets leased now (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_sec: f64, burst: u32) -> Rate {
        Rate { per_sec, burst }
    }

    fn lease_size2(r: &Rate) -> u32 {
        lease_size(r, Duration::from_millis(2))
    }

    #[test]
    fn no_window_no_lease() {
        let l = Leases::new(Duration::ZERO);
        let r = [rate(1e6, 1_000_000)];
        let k = ["a".to_owned()];
        assert_eq!(
            l.reserve(&k, &r, Instant::now()),
            Reserved::Some {
                reserved: vec![],
                wants: vec![1]
            }
        );
    }

    #[test]
    fn slow_buckets_are_charged_one_token_per_round_trip() {
        assert_eq!(lease_size2(&rate(20.0, 20)), 1);
        assert_eq!(lease_size2(&rate(999.0, 1000)), 1);
        assert_eq!(lease_size2(&rate(1000.0, 1000)), 2);
        assert_eq!(lease_size2(&rate(5000.0, 1000)), 10);
        assert_eq!(lease_size2(&rate(1e9, 1_000_000)), MAX_LEASE);
        // A small burst caps the lease at a quarter of it.
        assert_eq!(lease_size2(&rate(10_000.0, 8)), 2);
        assert_eq!(lease_size2(&rate(10_000.0, 2)), 1);
    }

    #[test]
    fn leased_tokens_are_spent_then_expire() {
        let l = Leases::new(Duration::from_millis(2));
        let keys = vec!["a".to_owned(), "g".to_owned()];
        let rates = [rate(5000.0, 1000), rate(5000.0, 1000)];
        let t0 = Instant::now();
        let Reserved::Some { reserved, wants } = l.reserve(&keys, &rates, t0) else {
            panic!("nothing is leased yet");
        };
        assert!(reserved.is_empty());
        assert_eq!(wants, vec![10, 10]);
        l.keep(&keys, &[10, 10], t0);
        for _ in 0..9 {
            assert_eq!(l.reserve(&keys, &rates, t0), Reserved::All);
        }
        assert!(matches!(
            l.reserve(&keys, &rates, t0),
            Reserved::Some { .. }
        ));
        l.keep(&keys, &[3, 3], t0);
        let later = t0 + LEASE_TTL + Duration::from_millis(1);
        assert!(
            matches!(l.reserve(&keys, &rates, later), Reserved::Some { reserved, .. } if reserved.is_empty()),
            "expired leases are not spent"
        );
    }

    #[test]
    fn a_refusal_gives_reserved_tokens_back() {
        let l = Leases::new(Duration::from_millis(2));
        let a = vec!["a".to_owned()];
        let ag = vec!["a".to_owned(), "g".to_owned()];
        let rates = [rate(5000.0, 1000), rate(5000.0, 1000)];
        let t0 = Instant::now();
        l.keep(&a, &[2], t0); // one token of `a` kept
        let Reserved::Some { reserved, wants } = l.reserve(&ag, &rates, t0) else {
            panic!("`g` is not leased");
        };
        assert_eq!(
            (reserved.as_slice(), wants.as_slice()),
            (&[0][..], &[0, 10][..])
        );
        l.give_back(&ag, &reserved);
        // The token of `a` is there again.
        assert_eq!(l.reserve(&a, &rates[..1], t0), Reserved::All);
    }

    #[test]
    fn the_table_is_bounded() {
        let l = Leases::new(Duration::from_millis(2));
        let t0 = Instant::now();
        let r = [rate(1000.0, 1000)];
        for i in 0..MAX_LEASES + 10 {
            l.keep(&[format!("k{i}")], &[5], t0);
        }
        assert_eq!(l.len(), MAX_LEASES);
        // Full: a new bucket asks for one token only.
        assert_eq!(
            l.reserve(&["new".to_owned()], &r, t0),
            Reserved::Some {
                reserved: vec![],
                wants: vec![1]
            }
        );
        // Once the leases expired, keeping sweeps them.
        let later = t0 + LEASE_TTL * 2;
        l.keep(&["new".to_owned()], &[5], later);
        assert_eq!(l.len(), 1);
    }
}
