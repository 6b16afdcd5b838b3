//! The TLS handshake families of the main listener: handshakes by outcome and their
//! duration. Rendered only once [`Metrics::serve_tls`] said the listener serves TLS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::render::histogram;
use super::text::{family, line};
use super::{Histogram, Metrics};

/// How a TLS handshake ended: the bounded `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOutcome {
    /// Completed.
    Ok,
    /// Refused by either side (no or a bad client certificate, no common protocol), closed
    /// by the client, or a socket error.
    Failed,
    /// Not complete by the deadline.
    TimedOut,
}

impl TlsOutcome {
    /// Every outcome, in label order.
    pub const ALL: [TlsOutcome; 3] = [TlsOutcome::Ok, TlsOutcome::Failed, TlsOutcome::TimedOut];

    /// The `outcome` label value.
    pub fn label(&self) -> &'static str {
        match self {
            TlsOutcome::Ok => "ok",
            TlsOutcome::Failed => "failed",
            TlsOutcome::TimedOut => "timed_out",
        }
    }
}

/// Handshake counters by outcome and one duration histogram (all outcomes).
pub(super) struct TlsHandshakes {
    on: AtomicBool,
    outcomes: [AtomicU64; TlsOutcome::ALL.len()],
    durations: Histogram,
}

impl TlsHandshakes {
    pub(super) const fn new() -> TlsHandshakes {
        TlsHandshakes {
            on: AtomicBool::new(false),
            outcomes: [const { AtomicU64::new(0) }; TlsOutcome::ALL.len()],
            durations: Histogram::new(),
        }
    }

    /// The families, when the listener serves TLS.
    pub(super) fn render(&self, w: &mut String) {
        if !self.on.load(Relaxed) {
            return;
        }
        family(
            w,
            "shadowcat_tls_handshakes_total",
            "counter",
            "TLS handshakes on the client listener by outcome: ok, failed (refused by either \
             side, e.g. a missing or revoked client certificate, or closed by the client), \
             timed_out (not complete within the head timeout).",
        );
        for o in TlsOutcome::ALL {
            let n = self.outcomes[o as usize].load(Relaxed);
            line(
                w,
                format_args!(
                    "shadowcat_tls_handshakes_total{{outcome=\"{}\"}} {n}",
                    o.label()
                ),
            );
        }
        family(
            w,
            "shadowcat_tls_handshake_duration_seconds",
            "histogram",
            "Time in seconds a TLS handshake on the client listener took, from its connection \
             thread taking the connection to its end, whatever the outcome.",
        );
        histogram(
            w,
            "shadowcat_tls_handshake_duration_seconds",
            "",
            &self.durations,
            false,
        );
    }
}

impl Metrics {
    /// The client listener serves TLS: the `shadowcat_tls_*` families are rendered from now.
    pub fn serve_tls(&self) {
        self.tls.on.store(true, Relaxed);
    }

    /// One TLS handshake on the client listener ended: two or three relaxed atomic adds.
    #[inline]
    pub fn tls_handshake(&self, outcome: TlsOutcome, took: Duration) {
        self.tls.outcomes[outcome as usize].fetch_add(1, Relaxed);
        self.tls.durations.observe(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Gauges;

    #[test]
    fn handshakes_are_counted_by_outcome_with_one_duration_histogram() {
        let m = Metrics::new("demo");
        m.tls_handshake(TlsOutcome::Ok, Duration::from_millis(2));
        let plain = m.render(&Gauges::default());
        assert!(
            !plain.contains("shadowcat_tls_"),
            "families before serve_tls"
        );
        m.serve_tls();
        m.tls_handshake(TlsOutcome::Ok, Duration::from_millis(3));
        m.tls_handshake(TlsOutcome::TimedOut, Duration::from_secs(10));
        let text = m.render(&Gauges::default());
        for want in [
            "# TYPE shadowcat_tls_handshakes_total counter\n",
            "shadowcat_tls_handshakes_total{outcome=\"ok\"} 2\n",
            "shadowcat_tls_handshakes_total{outcome=\"failed\"} 0\n",
            "shadowcat_tls_handshakes_total{outcome=\"timed_out\"} 1\n",
            "# TYPE shadowcat_tls_handshake_duration_seconds histogram\n",
            "shadowcat_tls_handshake_duration_seconds_bucket{le=\"0.0025\"} 1\n",
            "shadowcat_tls_handshake_duration_seconds_bucket{le=\"0.005\"} 2\n",
            "shadowcat_tls_handshake_duration_seconds_bucket{le=\"10\"} 3\n",
            "shadowcat_tls_handshake_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "shadowcat_tls_handshake_duration_seconds_sum 10.005\n",
            "shadowcat_tls_handshake_duration_seconds_count 3\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
