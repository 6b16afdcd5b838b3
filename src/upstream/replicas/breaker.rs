//! One replica's circuit breaker: a pure state machine, told the time by its caller, so the
//! unit tests below drive it without sleeping.
//!
//! * **Closed**: the replica takes traffic. Each failure that counts (connect error, 5xx,
//!   timeout) adds one to a run of consecutive failures; any success ends the run. The
//!   `failures`-th failure in a row **opens** the breaker (an ejection).
//! * **Open**: no traffic until the backoff has passed; then the prober may probe.
//! * **Half-open**: a probe is running. Success closes the breaker (backoff back to its base);
//!   failure opens it again for twice the last backoff, at most `backoff_max`.
//!
//! Outcomes of requests sent before an ejection that arrive while the breaker is open or
//! half-open change nothing: only probes reopen a replica.

use std::time::{Duration, Instant};

use crate::config::ReplicaConfig;

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Takes traffic.
    Closed,
    /// Ejected until the instant; then probed.
    Open(Instant),
    /// A probe is running.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half-open`, as the admin API shows it.
    pub fn label(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open(_) => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// One replica's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    /// Consecutive failures while closed.
    failures: u32,
    /// The next ejection's length.
    backoff: Duration,
    /// Times it opened from closed.
    ejections: u64,
    cfg: ReplicaConfig,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: &ReplicaConfig) -> Breaker {
        Breaker {
            state: State::Closed,
            failures: 0,
            backoff: cfg.backoff,
            ejections: 0,
            cfg: cfg.clone(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True while it takes traffic.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Consecutive failures counted while closed.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How many times it was ejected.
    pub fn ejections(&self) -> u64 {
        self.ejections
    }

    /// A request succeeded (any answer but a 5xx).
    pub fn success(&mut self) {
        if self.state == State::Closed {
            self.failures = 0;
        }
    }

    /// A request failed in a way that counts. True when this ejected the replica.
    pub fn failure(&mut self, now: Instant) -> bool {
        if self.state != State::Closed {
            return false;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures < self.cfg.failures {
            return false;
        }
        self.ejections += 1;
        self.backoff = self.cfg.backoff;
        self.state = State::Open(now + self.backoff);
        true
    }

    /// True when the prober should probe now: open and its backoff has passed. Marks it
    /// half-open (the probe is the caller's to run and report with [`Breaker::probed`]).
    pub fn begin_probe(&mut self, now: Instant) -> bool {
        match self.state {
            State::Open(until) if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            _ => false,
        }
    }

    /// The outcome of the probe [`Breaker::begin_probe`] allowed.
    pub fn probed(&mut self, ok: bool, now: Instant) {
        if self.state != State::HalfOpen {
            return;
        }
        if ok {
            self.state = State::Closed;
            self.failures = 0;
            self.backoff = self.cfg.backoff;
        } else {
            self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
            self.state = State::Open(now + self.backoff);
        }
    }

    /// A probe [`Breaker::begin_probe`] allowed could not be made (no pool slot, no thread):
    /// open again for the same backoff, which is not doubled.
    pub fn not_probed(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open(now + self.backoff);
        }
    }

    /// When an open breaker may be probed (`None` unless open).
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open(until) => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ReplicaConfig {
        ReplicaConfig {
            failures: 3,
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(25),
            probe_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(&cfg());
        assert!(!b.failure(t));
        assert!(!b.failure(t));
        b.success();
        assert_eq!(b.failures(), 0, "a success ends the run");
        assert!(!b.failure(t));
        assert!(!b.failure(t));
        assert!(b.closed());
        assert!(b.failure(t), "the third in a row ejects");
        assert_eq!(b.state(), State::Open(t + Duration::from_secs(10)));
        assert_eq!(b.ejections(), 1);
        assert!(!b.failure(t), "late failures change nothing");
        b.success();
        assert!(!b.closed(), "a late success does not close it");
    }

    #[test]
    fn probes_after_the_backoff_which_doubles_to_the_cap() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut b = Breaker::new(&cfg());
        for _ in 0..3 {
            b.failure(t);
        }
        assert!(!b.begin_probe(t + s(9)), "not before the backoff");
        assert!(b.begin_probe(t + s(10)));
        assert_eq!(b.state().label(), "half-open");
        assert!(!b.begin_probe(t + s(10)), "one probe at a time");
        b.probed(false, t + s(10));
        assert_eq!(b.reopens_at(), Some(t + s(30)), "20 s: doubled");
        assert!(b.begin_probe(t + s(30)));
        // A probe that could not be made: open again, the backoff not doubled.
        b.not_probed(t + s(30));
        assert_eq!(b.reopens_at(), Some(t + s(50)));
        assert!(b.begin_probe(t + s(30) + s(20)));
        b.probed(false, t + s(30));
        assert_eq!(b.reopens_at(), Some(t + s(55)), "capped at 25 s");
        assert!(b.begin_probe(t + s(55)));
        b.probed(true, t + s(55));
        assert!(b.closed());
        assert_eq!(b.ejections(), 1, "probes that fail are not new ejections");
        // The next ejection starts from the base backoff again.
        for _ in 0..3 {
            b.failure(t + s(60));
        }
        assert_eq!(b.reopens_at(), Some(t + s(70)));
        assert_eq!(b.ejections(), 2);
    }

    #[test]
    fn one_failure_ejects_when_so_configured() {
        let t = Instant::now();
        let mut b = Breaker::new(&ReplicaConfig {
            failures: 1,
            ..cfg()
        });
        assert!(b.failure(t));
        b.probed(true, t);
        assert!(!b.closed(), "a probe result without begin_probe is ignored");
    }
}
