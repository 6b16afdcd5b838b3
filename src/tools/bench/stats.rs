//! What is measured: the counts one session (or caller) keeps in [`Stats`] (latency in a
//! [`Histogram`]), merged into the run's total and turned into its [`Report`].

use std::collections::BTreeMap;
use std::time::Instant;

use super::BenchOptions;
use super::histogram::Histogram;
use super::report::Report;

/// What one session measured.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) requests: u64,
    pub(super) ok: u64,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) reconnects: u64,
    pub(super) reinitialized: u64,
    pub(super) sse_replies: u64,
    pub(super) latency: Histogram,
    pub(super) last_done: Option<Instant>,
}

pub(super) fn merge_stats(total: &mut Stats, s: Stats) {
    total.requests += s.requests;
    total.ok += s.ok;
    for (k, v) in s.errors {
        *total.errors.entry(k).or_insert(0) += v;
    }
    total.reconnects += s.reconnects;
    total.reinitialized += s.reinitialized;
    total.sse_replies += s.sse_replies;
    total.latency.merge(&s.latency);
    total.last_done = total.last_done.max(s.last_done);
}

impl Stats {
    /// The report of a run whose measured phase started at `measure_start`, from its total.
    pub(super) fn into_report(
        self,
        url: String,
        opts: &BenchOptions,
        measure_start: Instant,
    ) -> Report {
        let elapsed = self
            .last_done
            .map(|t| t.saturating_duration_since(measure_start))
            .unwrap_or_default();
        Report {
            url,
            sessions: opts.sessions,
            label: opts.label(),
            warmup: opts.warmup,
            elapsed,
            requests: self.requests,
            ok: self.ok,
            errors: self.errors,
            reconnects: self.reconnects,
            reinitialized: self.reinitialized,
            sse_replies: self.sse_replies,
            latency: self.latency,
        }
    }
}
