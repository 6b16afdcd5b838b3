//! What recording and the audit log cost per message, in CPU time of the threads that pay it
//! (a benchmark, not a test; docs/benchmarks.md, "Tapes and audit cost"):
//!
//! `cargo test --release --lib tape::tests_cost -- --ignored --nocapture --test-threads 1`
//!
//! The sending thread plays the pipeline (16 sessions' `tools/call` and answer, interleaved,
//! as `scripts/bench-tapes` drives them); CPU time is read from `/proc/thread-self/schedstat`
//! for the sender and from the writer thread's own `schedstat` (found by its name), so other
//! load on the machine does not count (it only makes caches colder).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::tests::{SID, record, redactor};
use super::writer::{self, Setup};
use super::*;
use crate::metrics::Metrics;

/// Nanoseconds this thread has run.
fn own_cpu_ns() -> u64 {
    schedstat("/proc/thread-self/schedstat")
}

/// Nanoseconds the thread of this process named `name` has run (0 if none is found).
fn thread_cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| schedstat(&t.path().join("schedstat").to_string_lossy()))
        .sum()
}

fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// An audit sink that only counts (the file's own cost is the kernel's).
struct NullSink(u64);

impl audit::Sink for NullSink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.0 += b.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn report(what: &str, n: usize, sender_ns: u64, writer_ns: u64) {
    eprintln!(
        "{what}: {n} lines, sender {:.3} µs/line, writer thread {:.3} µs/line",
        sender_ns as f64 / 1e3 / n as f64,
        writer_ns as f64 / 1e3 / n as f64
    );
}

#[test]
#[ignore]
fn tape_cost() {
    let n = 400_000;
    let dir = std::env::temp_dir().join(format!("shadowcat-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = Arc::new(Metrics::new("test"));
    let setup = Setup {
        store: Box::new(writer::DirStore::new(dir.clone())),
        redactor: Arc::new(redactor(&[], &[])),
        upstream: format::Upstream {
            name: "test".into(),
            kind: "stdio".into(),
            mode: "shared".into(),
        },
        max_bytes: 1 << 40,
        keep: Duration::from_secs(3600),
        metrics: metrics.clone(),
        epoch: (Instant::now(), SystemTime::now()),
    };
    let rec = Recorder::with_writer(setup, 1 << 30, metrics.clone()).unwrap();
    // 16 sessions, each opened with initialize and its answer.
    let taps: Vec<Tap> = (0..16)
        .map(|i| {
            let sid = format!("{}{i:02x}", &SID[..SID.len() - 2]);
            let tap = rec
                .open_session(&sid, "2025-11-25", None, Instant::now())
                .unwrap();
            rec.client_sent(&tap, Instant::now(), super::tests::init_request());
            rec.client_got(&tap, super::tests::init_answer(), true, false);
            tap
        })
        .collect();
    assert!(rec.sync(Duration::from_secs(60)));
    let req = br#"{"jsonrpc":"2.0","id":12345,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
    let res =
        br#"{"jsonrpc":"2.0","id":12345,"result":{"content":[{"type":"text","text":"hello"}]}}"#;
    let (s0, w0) = (own_cpu_ns(), thread_cpu_ns("shadowcat-tape"));
    for i in 0..n / 2 {
        let tap = taps[i % taps.len()]
            .clone()
            .with_upstream_id(Some(i as u64));
        rec.client_sent(&tap, Instant::now(), req.to_vec());
        rec.client_got(&tap, res.to_vec(), true, false);
    }
    let s1 = own_cpu_ns();
    assert!(rec.sync(Duration::from_secs(60)));
    let w1 = thread_cpu_ns("shadowcat-tape");
    rec.shutdown();
    assert_eq!(metrics.tape_dropped_total(), 0);
    let _ = std::fs::remove_dir_all(&dir);
    report("tapes", n, s1 - s0, w1 - w0);
}

#[test]
#[ignore]
fn audit_cost() {
    let n = 400_000;
    for args in [None, Some(r#"{"message":"hello"}"#)] {
        let metrics = Arc::new(Metrics::new("test"));
        let a = Auditor::with_sink(
            Box::new(NullSink(0)),
            1 << 30,
            args.is_some(),
            "up",
            Arc::new(redactor(&[], &[])),
            metrics.clone(),
        )
        .unwrap();
        let (s0, w0) = (own_cpu_ns(), thread_cpu_ns("shadowcat-audit"));
        for _ in 0..n {
            a.log(record(args));
        }
        let s1 = own_cpu_ns();
        assert!(a.sync(Duration::from_secs(60)));
        let w1 = thread_cpu_ns("shadowcat-audit");
        a.shutdown();
        let what = if args.is_some() {
            "audit, --audit-arguments"
        } else {
            "audit"
        };
        report(what, n, s1 - s0, w1 - w0);
    }
}
