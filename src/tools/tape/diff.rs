//! `shadowcat tape diff A B`: what two tapes of the same scenario do differently.
//!
//! Both tapes are read as exchanges (`exchange.rs`). The requests are paired: first each
//! request of A with the first unpaired request of B that has the same method and the same
//! params (as `json.rs` compares), then the rest in order with the first unpaired request of B
//! with the same method and target (tool or prompt name, resource URI), then with the same
//! method. Whatever is left is only in A or only in B.
//!
//! A pair is compared message by message, from each message's root (so paths read
//! `/params/arguments/message`, `/result/content/0/text`): the request, the response, and in
//! order the server notifications, the server-to-client requests and the client's answers to
//! them. Ignored: ids, timestamps, `_meta` at any depth, the `progressToken` of progress
//! notifications, redacted values (a placeholder on either side equals anything), the
//! pointers given with `--ignore`, client notifications, and server messages that belong to no
//! request. The header's `era` is compared; nothing else of the header is.

use std::fmt::Write;

use serde_json::{Value, json};

use super::exchange::{self, EventKind, Exchange};
use super::json::{Difference, brief, differences, same};
use super::read::Tape;

/// Width of a value in the text report.
const BRIEF: usize = 120;

/// One difference between the tapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The request's number in A and in B (`None`: only in the other), 0 for the header.
    pub a: Option<usize>,
    /// See `a`.
    pub b: Option<usize>,
    /// The request's method, with its target.
    pub request: String,
    /// Which message: `request`, `response`, `notification 2 (notifications/progress)`,
    /// `server request 1 (sampling/createMessage)`, `client answer 1`, `header`, or `only in
    /// A`/`only in B`, or a count that differs.
    pub place: String,
    /// Where it differs in that message, if it is one place.
    pub diff: Option<Difference>,
}

/// Every finding, and how many requests were compared.
#[derive(Debug)]
pub struct Report {
    /// The differences, by request of A, then those only in B.
    pub findings: Vec<Finding>,
    /// Pairs compared.
    pub pairs: usize,
}

fn label(x: &Exchange) -> String {
    match x.target() {
        Some(t) => format!("{} ({t})", x.method),
        None => x.method.clone(),
    }
}

/// A message as compared: without `id` and `jsonrpc`, and a progress notification without
/// its `progressToken`.
fn comparable(msg: &Value) -> Value {
    let mut m = msg.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("id");
        o.remove("jsonrpc");
        let progress = o.get("method").and_then(Value::as_str) == Some("notifications/progress");
        if let Some(p) = o.get_mut("params").and_then(Value::as_object_mut)
            && progress
        {
            p.remove("progressToken");
        }
    }
    m
}

fn params(x: &Exchange) -> Value {
    comparable(&json!({"params": x.params()}))
}

/// A pairing rule.
type Pairs = dyn Fn(&Exchange, &Exchange) -> bool;

/// Compares `a` with `b`.
pub fn diff(a: &Tape, b: &Tape, ignore: &[String]) -> Report {
    let xa = exchange::build(&a.lines).exchanges;
    let xb = exchange::build(&b.lines).exchanges;
    let mut findings = Vec::new();
    if a.header.era != b.header.era {
        findings.push(Finding {
            a: Some(0),
            b: Some(0),
            request: "header".into(),
            place: "header".into(),
            diff: Some(Difference {
                path: "/era".into(),
                a: Some(json!(a.header.era)),
                b: Some(json!(b.header.era)),
            }),
        });
    }
    // Pairing: equal params first, then the same target, then the same method.
    let mut pair_of: Vec<Option<usize>> = vec![None; xa.len()];
    let mut taken = vec![false; xb.len()];
    let passes: [&Pairs; 3] = [
        &|x, y| x.method == y.method && same(&params(x), &params(y)),
        &|x, y| x.method == y.method && x.target() == y.target(),
        &|x, y| x.method == y.method,
    ];
    for pass in passes {
        for (i, x) in xa.iter().enumerate() {
            if pair_of[i].is_some() {
                continue;
            }
            if let Some(j) = (0..xb.len()).find(|&j| !taken[j] && pass(x, &xb[j])) {
                pair_of[i] = Some(j);
                taken[j] = true;
            }
        }
    }
    let mut pairs = 0;
    for (i, x) in xa.iter().enumerate() {
        match pair_of[i] {
            Some(j) => {
                pairs += 1;
                compare(x, &xb[j], ignore, &mut findings);
            }
            None => findings.push(Finding {
                a: Some(x.number),
                b: None,
                request: label(x),
                place: "only in A".into(),
                diff: None,
            }),
        }
    }
    for (j, y) in xb.iter().enumerate() {
        if !taken[j] {
            findings.push(Finding {
                a: None,
                b: Some(y.number),
                request: label(y),
                place: "only in B".into(),
                diff: None,
            });
        }
    }
    Report { findings, pairs }
}

fn compare(x: &Exchange, y: &Exchange, ignore: &[String], out: &mut Vec<Finding>) {
    let finding = |place: String, diff: Option<Difference>| Finding {
        a: Some(x.number),
        b: Some(y.number),
        request: label(x),
        place,
        diff,
    };
    let null = Value::Null;
    let messages = |out: &mut Vec<Finding>, place: &str, a: Option<&Value>, b: Option<&Value>| {
        let (a, b) = (
            comparable(a.unwrap_or(&null)),
            comparable(b.unwrap_or(&null)),
        );
        for d in differences(&a, &b, ignore) {
            out.push(finding(place.to_owned(), Some(d)));
        }
    };
    messages(out, "request", Some(&x.request), Some(&y.request));
    messages(out, "response", x.response.as_ref(), y.response.as_ref());
    for (kind, name) in [
        (EventKind::Notification, "notification"),
        (EventKind::ServerRequest, "server request"),
        (EventKind::ClientAnswer, "client answer"),
    ] {
        let of = |x: &Exchange| -> Vec<Value> {
            x.events
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.msg.clone())
                .collect()
        };
        let (ea, eb) = (of(x), of(y));
        for k in 0..ea.len().max(eb.len()) {
            let (a, b) = (ea.get(k), eb.get(k));
            let method = a
                .or(b)
                .and_then(|m| m.get("method"))
                .and_then(Value::as_str)
                .map_or(String::new(), |m| format!(" ({m})"));
            let place = format!("{name} {}{method}", k + 1);
            match (a, b) {
                (Some(_), None) => out.push(finding(format!("{place} only in A"), None)),
                (None, Some(_)) => out.push(finding(format!("{place} only in B"), None)),
                (a, b) => messages(out, &place, a, b),
            }
        }
    }
}

impl Report {
    /// One block per finding, then a summary line.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let which = match (f.a, f.b) {
                (Some(0), _) => "header".to_owned(),
                (Some(a), Some(b)) if a == b => format!("request {a}"),
                (Some(a), Some(b)) => format!("request {a} (B: {b})"),
                (Some(a), None) => format!("request {a}"),
                (None, Some(b)) => format!("request B{b}"),
                (None, None) => "request".to_owned(),
            };
            let what = if f.request == "header" {
                String::new()
            } else {
                format!(" {}", f.request)
            };
            match &f.diff {
                None => {
                    writeln!(s, "{which}{what}: {}", f.place).ok();
                }
                Some(d) => {
                    let path = if d.path.is_empty() { "/" } else { &d.path };
                    writeln!(s, "{which}{what}: {} differs at {path}", f.place).ok();
                    let show = |v: &Option<Value>| {
                        v.as_ref()
                            .map_or_else(|| "(absent)".to_owned(), |v| brief(v, BRIEF))
                    };
                    writeln!(s, "    A: {}", show(&d.a)).ok();
                    writeln!(s, "    B: {}", show(&d.b)).ok();
                }
            }
        }
        match self.findings.len() {
            0 => writeln!(s, "no differences ({} requests compared)", self.pairs),
            n => writeln!(
                s,
                "{n} difference{} ({} requests compared)",
                if n == 1 { "" } else { "s" },
                self.pairs
            ),
        }
        .ok();
        s
    }

    /// `{"equal", "pairs", "differences": [{"a", "b", "request", "place", "path", "value_a",
    /// "value_b"}]}`.
    pub fn json(&self) -> Value {
        let items: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "a": f.a, "b": f.b, "request": f.request, "place": f.place,
                    "path": f.diff.as_ref().map(|d| d.path.clone()),
                    "value_a": f.diff.as_ref().and_then(|d| d.a.clone()),
                    "value_b": f.diff.as_ref().and_then(|d| d.b.clone()),
                })
            })
            .collect();
        json!({"equal": self.findings.is_empty(), "pairs": self.pairs, "differences": items})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tape::read::parse;
    use std::path::Path;

    const TAPE: &str = include_str!("../../../tests/fixtures/tapes/demo-session.jsonl");

    fn tape(text: &str) -> Tape {
        let f = parse(Path::new("x.jsonl"), text.as_bytes()).expect("tape");
        Tape {
            path: "x.jsonl".into(),
            header: f.header,
            lines: f.lines,
            files: 1,
            incomplete: 0,
        }
    }

    #[test]
    fn a_tape_equals_itself_and_ids_times_tokens_do_not_count() {
        let a = tape(TAPE);
        let r = diff(&a, &a, &[]);
        assert!(r.findings.is_empty(), "{}", r.text());
        assert_eq!(r.pairs, 5);
        // Other ids, times, progress tokens and _meta: still equal.
        let b = TAPE
            .replace(r#""t":5.391"#, r#""t":9.5"#)
            .replace(r#""id":2,"#, r#""id":"two","#)
            .replace(r#""progressToken":3"#, r#""progressToken":"p""#)
            .replace(r#""name":"echo","#, r#""_meta":{"x":1},"name":"echo","#);
        assert_ne!(b, TAPE);
        let r = diff(&a, &tape(&b), &[]);
        assert!(r.findings.is_empty(), "{}", r.text());
    }

    #[test]
    fn one_changed_tool_output_is_exactly_one_difference() {
        let a = tape(TAPE);
        let b = tape(&TAPE.replace("\"Echo: hello\"", "\"Echo: hullo\""));
        let r = diff(&a, &b, &[]);
        assert_eq!(r.findings.len(), 1, "{}", r.text());
        let f = &r.findings[0];
        assert_eq!((f.a, f.b), (Some(3), Some(3)));
        assert_eq!(f.request, "tools/call (echo)");
        assert_eq!(f.place, "response");
        let d = f.diff.as_ref().expect("one place");
        assert_eq!(d.path, "/result/content/0/text");
        assert_eq!(d.a, Some(json!("Echo: hello")));
        assert_eq!(d.b, Some(json!("Echo: hullo")));
        assert!(
            r.text().starts_with(
                "request 3 tools/call (echo): response differs at /result/content/0/text\n"
            ),
            "{}",
            r.text()
        );
        // Ignored, it is no difference.
        let r = diff(&a, &b, &["/result/content".into()]);
        assert!(r.findings.is_empty());
    }

    #[test]
    fn redacted_values_and_missing_requests() {
        let a = tape(TAPE);
        let b = tape(&TAPE.replace("\"prompt\":\"hi\"", "\"prompt\":\"<redacted:0011aabb>\""));
        assert!(diff(&a, &b, &[]).findings.is_empty());
        // Drop the echo exchange from B.
        let fewer: String = TAPE
            .lines()
            .filter(|l| !l.contains("\"id\":2,"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = diff(&a, &tape(&fewer), &[]);
        assert_eq!(r.findings.len(), 1, "{}", r.text());
        assert_eq!(r.findings[0].place, "only in A");
        // A changed progress message is a notification difference.
        let b = tape(&TAPE.replace("\"message\":\"event 2\"", "\"message\":\"event two\""));
        let r = diff(&a, &b, &[]);
        assert_eq!(r.findings.len(), 1, "{}", r.text());
        assert_eq!(
            r.findings[0].place,
            "notification 3 (notifications/progress)"
        );
    }
}
