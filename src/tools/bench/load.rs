//! The HTTP run: one thread per session, all initialized before anything is measured, then
//! released together with the [`Plan`] of phases (warm-up, measured, hard stop) that the
//! `--pipe` run shares. Each thread runs [`session_thread`] over the one [`Shared`] state.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, unbounded};

use super::BenchOptions;
use super::error::BenchError;
use super::plan::Plan;
use super::report::Report;
use super::rpc::{Fail, request_parts};
use super::session::{Shared, session_thread};
use super::stats::{Stats, merge_stats};
use super::target::{Target, tls_client};

/// An HTTP run (no `--pipe`) of validated `opts`.
pub(super) fn bench_http(opts: &BenchOptions) -> Result<Report, BenchError> {
    let target = Target::parse(&opts.url, opts.allow_remote)?;
    let tls = match target.tls_name {
        Some(_) => Some(tls_client(opts.ca.as_deref())?),
        None => None,
    };
    let (method_json, tail) = request_parts(opts);
    let shared = Arc::new(Shared {
        target,
        tls,
        opts: opts.clone(),
        tail,
        method_json,
        tickets: AtomicU64::new(0),
    });
    let n = opts.sessions;
    let (ready_tx, ready_rx) = unbounded::<Result<(), Fail>>();
    let (go_tx, go_rx) = bounded::<Plan>(n);
    let mut threads: Vec<JoinHandle<Stats>> = Vec::with_capacity(n);
    for index in 0..n {
        let (sh, ready, go) = (shared.clone(), ready_tx.clone(), go_rx.clone());
        let spawned = thread::Builder::new()
            .name(format!("bench-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || session_thread(index, &sh, ready, go));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                drop(go_tx);
                join_all(threads);
                return Err(BenchError::Io(e));
            }
        }
    }
    drop(ready_tx);
    drop(go_rx);
    let mut failures = Vec::new();
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(f)) => failures.push(f),
            Err(_) => {
                failures.push(Fail::Io("a session thread died".into()));
                break;
            }
        }
    }
    if let Some(first) = failures.first() {
        drop(go_tx);
        join_all(threads);
        let msg = format!(
            "{} of {n} sessions could not initialize; first: {}",
            failures.len(),
            first.describe()
        );
        return Err(match first {
            Fail::Connect(_) => BenchError::Unreachable {
                url: opts.url.clone(),
                detail: msg,
            },
            _ => BenchError::Initialize {
                url: opts.url.clone(),
                detail: msg,
            },
        });
    }
    let plan = Plan::starting_now(opts);
    for _ in 0..n {
        let _ = go_tx.send(plan);
    }
    drop(go_tx);
    let mut total = Stats::default();
    let mut panicked = false;
    for t in threads {
        match t.join() {
            Ok(s) => merge_stats(&mut total, s),
            Err(_) => panicked = true,
        }
    }
    if panicked {
        return Err(BenchError::Internal(
            "a bench session thread panicked".into(),
        ));
    }
    Ok(total.into_report(opts.url.clone(), opts, plan.measure_start))
}

pub(super) fn join_all(threads: Vec<JoinHandle<Stats>>) {
    for t in threads {
        let _ = t.join();
    }
}
