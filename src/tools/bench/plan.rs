//! The [`Plan`] of a run's phases (warm-up, measured, hard stop), decided once when the run is
//! released; shared by the HTTP run (`load.rs`, `session.rs`) and the direct pipe (`pipe.rs`).

use std::time::Instant;

use super::BenchOptions;

/// The phases, decided once every session is initialized.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub(super) measure_start: Instant,
    pub(super) measure_end: Option<Instant>,
    pub(super) hard_stop: Option<Instant>,
}

impl Plan {
    /// The phases of a run whose warm-up starts now.
    pub(super) fn starting_now(opts: &BenchOptions) -> Plan {
        let go = Instant::now();
        let measure_start = go + opts.warmup;
        let measure_end = opts.duration.map(|d| measure_start + d);
        Plan {
            measure_start,
            measure_end,
            hard_stop: measure_end.map(|e| e + opts.timeout),
        }
    }
}
