//! The outcome of a run, [`Report`], and its two renderings: the table and the `--json` line
//! (keys in the documented order).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::histogram::Histogram;

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The endpoint.
    pub url: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// What was sent: "tools/call echo", or the method.
    pub label: String,
    /// The warm-up before measuring.
    pub warmup: Duration,
    /// The measured phase: from its start to the last measured response.
    pub elapsed: Duration,
    /// Requests sent in the measured phase (ok + errors).
    pub requests: u64,
    /// Requests answered with a result and the right id.
    pub ok: u64,
    /// Failed requests by kind (`http_<status>`, `jsonrpc_error`, `timeout`, `connect`, `io`,
    /// `bad_response`).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened again in the measured phase (after errors, or the server closing).
    pub reconnects: u64,
    /// Sessions initialized again after a 404 in the measured phase.
    pub reinitialized: u64,
    /// Ok replies that came as `text/event-stream`.
    pub sse_replies: u64,
    /// Latency of ok requests in nanoseconds.
    pub latency: Histogram,
}

/// The percentiles printed and serialised.
const PERCENTILES: [(&str, f64); 4] = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)];

#[derive(Serialize)]
struct JsonReport<'a> {
    url: &'a str,
    sessions: usize,
    duration_s: f64,
    requests: u64,
    ok: u64,
    errors: &'a BTreeMap<String, u64>,
    throughput_rps: f64,
    latency_us: JsonLatency,
    reconnects: u64,
    reinitialized: u64,
    sse_replies: u64,
}

#[derive(Serialize)]
struct JsonLatency {
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Report {
    /// Ok requests per second of the measured phase.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }

    /// All failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.json_report()).unwrap_or(Value::Null)
    }

    /// The `--json` object as one line, keys in the documented order.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.json_report()).unwrap_or_default()
    }

    fn json_report(&self) -> JsonReport<'_> {
        let h = &self.latency;
        let us = |ns: u64| round(ns as f64 / 1e3, 1);
        JsonReport {
            url: &self.url,
            sessions: self.sessions,
            duration_s: round(self.elapsed.as_secs_f64(), 3),
            requests: self.requests,
            ok: self.ok,
            errors: &self.errors,
            throughput_rps: round(self.throughput(), 1),
            latency_us: JsonLatency {
                min: us(h.min()),
                p50: us(h.percentile(50.0)),
                p90: us(h.percentile(90.0)),
                p99: us(h.percentile(99.0)),
                p999: us(h.percentile(99.9)),
                max: us(h.max()),
                mean: round(h.mean() / 1e3, 1),
            },
            reconnects: self.reconnects,
            reinitialized: self.reinitialized,
            sse_replies: self.sse_replies,
        }
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let h = &self.latency;
        let errors = if self.errors.is_empty() {
            "0".to_string()
        } else {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("{}  ({})", self.error_count(), kinds.join(", "))
        };
        let _ = writeln!(s, "shadowcat bench  {}", self.url);
        let _ = writeln!(
            s,
            "  sending        {}, {} session{}",
            self.label,
            self.sessions,
            if self.sessions == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "  measured       {:.2} s (after {:.1} s warm-up)",
            self.elapsed.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        let _ = writeln!(s, "  requests       {}", self.requests);
        let _ = writeln!(s, "  ok             {}", self.ok);
        let _ = writeln!(s, "  errors         {errors}");
        let _ = writeln!(s, "  reconnects     {}", self.reconnects);
        let _ = writeln!(s, "  reinitialized  {}", self.reinitialized);
        let _ = writeln!(s, "  sse replies    {}", self.sse_replies);
        let _ = writeln!(s, "  throughput     {:.1} req/s (ok)", self.throughput());
        let _ = writeln!(s, "  latency of ok requests:");
        let mut names = vec!["min".to_string()];
        let mut values = vec![fmt_ns(h.min() as f64)];
        for (name, p) in PERCENTILES {
            names.push(if name == "p999" {
                "p99.9".into()
            } else {
                name.into()
            });
            values.push(fmt_ns(h.percentile(p) as f64));
        }
        names.extend(["max".to_string(), "mean".to_string()]);
        values.extend([fmt_ns(h.max() as f64), fmt_ns(h.mean())]);
        let row = |cells: &[String]| cells.iter().map(|c| format!("{c:>10}")).collect::<String>();
        let _ = writeln!(s, "  {}", row(&names));
        let _ = writeln!(s, "  {}", row(&values));
        s
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// 812ns, 45.3µs, 812µs, 12.34ms, 1.234s.
pub(super) fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e5 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.3}s", ns / 1e9)
    }
}
