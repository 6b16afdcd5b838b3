//! `shadowcat tape stats TAPE`: per method, how many requests, how they ended (JSON-RPC
//! errors, tool errors, unanswered) and the latency percentiles p50, p90 and p99 (nearest
//! rank, over answered requests); the same per tool for `tools/call`; and the notifications by
//! direction and method.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

use super::exchange::{self, Exchange, Outcome};
use super::read::{Dir, Kind, Tape};
use super::show::title;

/// Counts and latencies of one group of requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Requests.
    pub count: usize,
    /// Answered with a JSON-RPC error.
    pub errors: usize,
    /// Answered with `isError: true`.
    pub tool_errors: usize,
    /// Not answered on the tape.
    pub unanswered: usize,
    /// Latencies of the answered ones, ms, ascending.
    pub latencies: Vec<f64>,
}

impl Row {
    fn add(&mut self, x: &Exchange) {
        self.count += 1;
        match x.outcome() {
            Outcome::Error(_) => self.errors += 1,
            Outcome::ToolError => self.tool_errors += 1,
            Outcome::Unanswered => self.unanswered += 1,
            Outcome::Ok => {}
        }
        if let Some(l) = x.latency_ms() {
            self.latencies.push(l);
        }
    }

    /// The `p`th percentile (nearest rank) of the latencies.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies, p)
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count, "errors": self.errors, "tool_errors": self.tool_errors,
            "unanswered": self.unanswered,
            "p50_ms": self.percentile(50.0), "p90_ms": self.percentile(90.0),
            "p99_ms": self.percentile(99.0),
        })
    }
}

/// Nearest-rank percentile of ascending `sorted` values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The statistics of one tape.
#[derive(Debug)]
pub struct Stats {
    title: String,
    /// By method.
    pub methods: BTreeMap<String, Row>,
    /// `tools/call` by tool name.
    pub tools: BTreeMap<String, Row>,
    /// All requests.
    pub total: Row,
    /// Notifications by (`c2s`/`s2c`, method).
    pub notifications: BTreeMap<(String, String), usize>,
}

impl Stats {
    /// Counts `tape`.
    pub fn of(tape: &Tape) -> Stats {
        let tl = exchange::build(&tape.lines);
        let mut s = Stats {
            title: title(tape),
            methods: BTreeMap::new(),
            tools: BTreeMap::new(),
            total: Row::default(),
            notifications: BTreeMap::new(),
        };
        for x in &tl.exchanges {
            s.methods.entry(x.method.clone()).or_default().add(x);
            s.total.add(x);
            if x.method == "tools/call" {
                let name = x.target().unwrap_or("-").to_owned();
                s.tools.entry(name).or_default().add(x);
            }
        }
        for row in s.methods.values_mut().chain(s.tools.values_mut()) {
            row.latencies.sort_by(f64::total_cmp);
        }
        s.total.latencies.sort_by(f64::total_cmp);
        for line in &tape.lines {
            if line.kind() == Kind::Notification {
                let dir = match line.dir {
                    Dir::C2s => "c2s",
                    Dir::S2c => "s2c",
                };
                let key = (dir.to_owned(), line.method().unwrap_or("").to_owned());
                *s.notifications.entry(key).or_default() += 1;
            }
        }
        s
    }

    /// The tables.
    pub fn text(&self) -> String {
        let mut s = self.title.clone();
        s.push('\n');
        table(&mut s, "method", &self.methods, Some(&self.total));
        if !self.tools.is_empty() {
            s.push('\n');
            table(&mut s, "tool", &self.tools, None);
        }
        if !self.notifications.is_empty() {
            s.push('\n');
            let w = self
                .notifications
                .keys()
                .map(|(_, m)| m.len())
                .max()
                .unwrap_or(0)
                .max("notification".len());
            writeln!(s, "dir  {:<w$}  count", "notification").ok();
            for ((dir, method), n) in &self.notifications {
                writeln!(s, "{dir}  {method:<w$}  {n:>5}").ok();
            }
        }
        s
    }

    /// The same as JSON: `methods`, `tools`, `total`, `notifications`.
    pub fn json(&self) -> Value {
        let rows = |m: &BTreeMap<String, Row>| -> Value {
            m.iter().map(|(k, r)| (k.clone(), r.json())).collect()
        };
        let notes: Vec<Value> = self
            .notifications
            .iter()
            .map(|((dir, method), n)| json!({"dir": dir, "method": method, "count": n}))
            .collect();
        json!({
            "methods": rows(&self.methods),
            "tools": rows(&self.tools),
            "total": self.total.json(),
            "notifications": notes,
        })
    }
}

fn table(s: &mut String, what: &str, rows: &BTreeMap<String, Row>, total: Option<&Row>) {
    let w = rows
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(what.len())
        .max(5);
    writeln!(
        s,
        "{what:<w$}  count  errors  tool_errors  unanswered    p50 ms    p90 ms    p99 ms"
    )
    .ok();
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let mut line = |name: &str, r: &Row| {
        writeln!(
            s,
            "{name:<w$}  {:>5}  {:>6}  {:>11}  {:>10}  {:>8}  {:>8}  {:>8}",
            r.count,
            r.errors,
            r.tool_errors,
            r.unanswered,
            ms(r.percentile(50.0)),
            ms(r.percentile(90.0)),
            ms(r.percentile(99.0)),
        )
        .ok();
    };
    for (name, r) in rows {
        line(name, r);
    }
    if let Some(t) = total {
        line("total", t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
