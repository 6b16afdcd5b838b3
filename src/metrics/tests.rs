//! Unit tests of the registry and its text format.

use super::render::Seconds;
use super::text::escape_help;
use super::*;
use std::collections::{HashMap, HashSet};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn has(text: &str, want: &str) {
    assert!(
        text.lines().any(|l| l == want),
        "missing line {want:?} in:\n{text}"
    );
}

fn has_not(text: &str, prefix: &str) {
    assert!(
        !text.lines().any(|l| l.starts_with(prefix)),
        "unexpected {prefix:?} in:\n{text}"
    );
}

/// Known traffic with every kind of event, for the exact and structural tests.
fn sample() -> (Metrics, Gauges) {
    let m = Metrics::new("demo \"server\"");
    m.request(MethodClass::ToolsCall, 200, Duration::from_micros(300)); // ≤ 0.0005
    m.request(MethodClass::ToolsCall, 200, ms(3)); // ≤ 0.005
    m.request(MethodClass::ToolsCall, 504, ms(60_000)); // ≤ 60 (bound inclusive)
    m.request(MethodClass::ToolsCall, 502, ms(61_000)); // +Inf
    m.request(MethodClass::Initialize, 200, ms(1)); // ≤ 0.001 exactly
    m.request(MethodClass::Invalid, 418, ms(2)); // status "other"
    m.request(MethodClass::Notification, 202, Duration::ZERO);
    m.upstream_error(UpstreamErrorKind::Timeout);
    m.upstream_error(UpstreamErrorKind::ChildExit);
    m.upstream_error(UpstreamErrorKind::ChildExit);
    m.rejected(Rejection::Body);
    m.rejected(Rejection::Rate);
    m.dropped(DropReason::SlowClient, 3);
    m.dropped(DropReason::SlowClient, 4);
    m.rejected(Rejection::SessionQuota);
    m.dropped(DropReason::Unattributed, 1);
    m.dropped(DropReason::Unattributed, 1);
    m.tape_dropped(LogDrop::Behind, 5);
    m.audit_dropped(LogDrop::Io, 1);
    m.tool_call(Some("echo \"x\""), ToolOutcome::Ok);
    m.tool_call(Some("echo \"x\""), ToolOutcome::ToolError);
    m.tool_call(Some("never-answered"), ToolOutcome::Error);
    m.bytes_in(1000);
    m.bytes_in(24);
    m.bytes_out(4096);
    let g = Gauges {
        sessions: 3,
        streams: 2,
        connections: 5,
        replay_bytes: 12345,
        rate_limit_keys: 7,
        bridge_waiting: 4,
        bridge_sessions: 2,
        limits_store_fallbacks: Some(3),
        children: vec![
            ChildInfo {
                index: 1,
                up: false,
                inflight: 0,
                sessions: 1,
                restarts: 2,
                ..ChildInfo::default()
            },
            ChildInfo {
                index: 0,
                up: true,
                inflight: 4,
                sessions: 2,
                restarts: 3,
                ..ChildInfo::default()
            },
            ChildInfo {
                index: MAX_CHILDREN,
                ..ChildInfo::default()
            },
        ],
        pool: Some(PoolInfo {
            connections: 3,
            idle: 1,
            max: 32,
        }),
        exclusive: None,
        replicas: Vec::new(),
        members: Vec::new(),
    };
    (m, g)
}

#[test]
fn exact_lines_after_known_traffic() {
    let (m, g) = sample();
    let text = m.render(&g);
    let version = env!("CARGO_PKG_VERSION");
    has(
        &text,
        &format!("shadowcat_build_info{{version=\"{version}\"}} 1"),
    );
    has(
        &text,
        "shadowcat_requests_total{class=\"tools/call\",status=\"200\"} 2",
    );
    has(
        &text,
        "shadowcat_requests_total{class=\"tools/call\",status=\"504\"} 1",
    );
    has(
        &text,
        "shadowcat_requests_total{class=\"tools/call\",status=\"502\"} 1",
    );
    has(
        &text,
        "shadowcat_requests_total{class=\"invalid\",status=\"other\"} 1",
    );
    has(
        &text,
        "shadowcat_requests_total{class=\"notification\",status=\"202\"} 1",
    );
    has_not(&text, "shadowcat_requests_total{class=\"ping\"");

    // tools/call: 0.3 ms, 3 ms, 60 s, 61 s — cumulative buckets.
    let l = "upstream=\"demo \\\"server\\\"\",class=\"tools/call\"";
    let want = [
        ("0.0005", 1),
        ("0.001", 1),
        ("0.0025", 1),
        ("0.005", 2),
        ("0.01", 2),
        ("0.025", 2),
        ("0.05", 2),
        ("0.1", 2),
        ("0.25", 2),
        ("0.5", 2),
        ("1", 2),
        ("2.5", 2),
        ("5", 2),
        ("10", 2),
        ("30", 2),
        ("60", 3),
        ("+Inf", 4),
    ];
    let got: Vec<&str> = lines(&text)
        .into_iter()
        .filter(|x| x.starts_with(&format!("shadowcat_request_duration_seconds_bucket{{{l},")))
        .collect();
    let expect: Vec<String> = want
        .iter()
        .map(|(le, n)| format!("shadowcat_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {n}"))
        .collect();
    assert_eq!(got, expect);
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_sum{{{l}}} 121.0033"),
    );
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_count{{{l}}} 4"),
    );
    // The bound is inclusive: exactly 1 ms is in le="0.001".
    let i = "upstream=\"demo \\\"server\\\"\",class=\"initialize\"";
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_bucket{{{i},le=\"0.0005\"}} 0"),
    );
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_bucket{{{i},le=\"0.001\"}} 1"),
    );
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_sum{{{i}}} 0.001"),
    );
    let n = "upstream=\"demo \\\"server\\\"\",class=\"notification\"";
    has(
        &text,
        &format!("shadowcat_request_duration_seconds_sum{{{n}}} 0"),
    );
    has_not(
        &text,
        "shadowcat_request_duration_seconds_bucket{upstream=\"demo \\\"server\\\"\",class=\"ping\"",
    );

    has(&text, "shadowcat_upstream_errors_total{kind=\"timeout\"} 1");
    has(&text, "shadowcat_upstream_errors_total{kind=\"connect\"} 0");
    has(
        &text,
        "shadowcat_upstream_errors_total{kind=\"child_exit\"} 2",
    );
    has(
        &text,
        "shadowcat_upstream_errors_total{kind=\"protocol\"} 0",
    );
    has(&text, "shadowcat_rejected_total{reason=\"body\"} 1");
    has(&text, "shadowcat_rejected_total{reason=\"rate\"} 1");
    has(&text, "shadowcat_rejected_total{reason=\"sessions\"} 0");
    has(
        &text,
        "shadowcat_dropped_messages_total{reason=\"slow_client\"} 7",
    );
    has(
        &text,
        "shadowcat_rejected_total{reason=\"session_quota\"} 1",
    );
    has(&text, "shadowcat_rejected_total{reason=\"stream_quota\"} 0");
    has(
        &text,
        "shadowcat_dropped_messages_total{reason=\"unattributed\"} 2",
    );
    has(
        &text,
        "shadowcat_dropped_messages_total{reason=\"below_log_level\"} 0",
    );
    has(
        &text,
        "shadowcat_dropped_messages_total{reason=\"missing_capability\"} 0",
    );
    has(&text, "shadowcat_sessions_evicted_total 0");
    has(&text, "shadowcat_tape_dropped_total{reason=\"behind\"} 5");
    has(&text, "shadowcat_tape_dropped_total{reason=\"io\"} 0");
    has(&text, "shadowcat_audit_dropped_total{reason=\"io\"} 1");
    has(
        &text,
        "shadowcat_tool_calls_total{upstream=\"demo \\\"server\\\"\",tool=\"echo \\\"x\\\"\",outcome=\"tool_error\"} 1",
    );
    has(
        &text,
        "shadowcat_tool_calls_total{upstream=\"demo \\\"server\\\"\",tool=\"other\",outcome=\"error\"} 1",
    );
    has_not(
        &text,
        "shadowcat_tool_calls_total{upstream=\"demo \\\"server\\\"\",tool=\"never",
    );
    has(&text, "shadowcat_sessions 3");
    has(&text, "shadowcat_streams_open 2");
    has(&text, "shadowcat_connections_open 5");
    has(&text, "shadowcat_replay_buffer_bytes 12345");
    has(&text, "shadowcat_rate_limit_keys 7");
    has(&text, "shadowcat_bridge_waiting_calls 4");
    has(&text, "shadowcat_bridge_sessions 2");
    has(&text, "shadowcat_bytes_received_total 1024");
    has(&text, "shadowcat_bytes_sent_total 4096");

    // Children sorted by index; restarts = max(events, gauge); index 256 dropped.
    let kids: Vec<&str> = lines(&text)
        .into_iter()
        .filter(|x| x.starts_with("shadowcat_child_"))
        .collect();
    assert_eq!(
        kids,
        [
            "shadowcat_child_up{child=\"0\"} 1",
            "shadowcat_child_up{child=\"1\"} 0",
            "shadowcat_child_restarts_total{child=\"0\"} 3",
            "shadowcat_child_restarts_total{child=\"1\"} 2",
            "shadowcat_child_inflight{child=\"0\"} 4",
            "shadowcat_child_inflight{child=\"1\"} 0",
            "shadowcat_child_sessions{child=\"0\"} 2",
            "shadowcat_child_sessions{child=\"1\"} 1",
        ]
    );

    has(&text, "shadowcat_pool_connections 3");
    has(&text, "shadowcat_pool_idle_connections 1");
    has(&text, "shadowcat_pool_max_connections 32");
    has(
        &text,
        "shadowcat_pool_checkout_wait_seconds_bucket{le=\"+Inf\"} 0",
    );
    has(&text, "shadowcat_pool_checkout_wait_seconds_sum 0");
    has(&text, "shadowcat_pool_checkout_wait_seconds_count 0");
    has(&text, "shadowcat_pool_checkout_timeouts_total 0");
    assert!(text.ends_with('\n'));
}

#[test]
fn help_and_type_lines() {
    let (m, g) = sample();
    let text = m.render(&g);
    has(&text, "# TYPE shadowcat_request_duration_seconds histogram");
    has(&text, "# TYPE shadowcat_requests_total counter");
    has(&text, "# TYPE shadowcat_sessions gauge");
    has(
        &text,
        "# TYPE shadowcat_pool_checkout_wait_seconds histogram",
    );
    has(&text, "# HELP shadowcat_sessions Live MCP sessions.");
    // Units are spelled out in the HELP of every time and size family.
    for l in text.lines().filter(|l| l.starts_with("# HELP ")) {
        let name = l.split(' ').nth(2).unwrap();
        if name.ends_with("_seconds") {
            assert!(l.contains("seconds"), "{l}");
        }
        if name.contains("bytes") {
            assert!(l.contains("Bytes"), "{l}");
        }
    }
}

#[test]
fn pool_events_feed_the_pool_families() {
    let m = Arc::new(Metrics::new("up"));
    let ev = PoolEvents(m.clone());
    assert!(format!("{ev:?}").contains("PoolEvents"));
    // r2d2's event types have private fields: drive a real pool to get them.
    #[derive(Debug)]
    struct Nothing;
    impl r2d2::ManageConnection for Nothing {
        type Connection = ();
        type Error = std::io::Error;
        fn connect(&self) -> Result<(), std::io::Error> {
            Ok(())
        }
        fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
            Ok(())
        }
        fn has_broken(&self, _: &mut ()) -> bool {
            false
        }
    }
    let pool = r2d2::Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .connection_timeout(ms(50))
        .event_handler(Box::new(ev.clone()))
        .build_unchecked(Nothing);
    let held = pool.get().unwrap();
    assert!(pool.get_timeout(ms(20)).is_err());
    drop(held);
    let _again = pool.get().unwrap();
    let state = pool.state();
    let text = m.render(&Gauges {
        pool: Some(PoolInfo {
            connections: state.connections,
            idle: state.idle_connections,
            max: pool.max_size(),
        }),
        ..Gauges::default()
    });
    has(&text, "shadowcat_pool_checkout_wait_seconds_count 2");
    has(&text, "shadowcat_pool_checkout_timeouts_total 1");
    has(&text, "shadowcat_pool_connections_opened_total 1");
    has(&text, "shadowcat_pool_connections 1");
    has(&text, "shadowcat_pool_idle_connections 0");
    has(&text, "shadowcat_pool_max_connections 1");
}

#[test]
fn upstream_kind_specific_families_are_omitted() {
    let m = Metrics::new("x");
    let text = m.render(&Gauges::default());
    has_not(&text, "# HELP shadowcat_child_");
    has_not(&text, "# HELP shadowcat_pool_");
    has(&text, "# TYPE shadowcat_requests_total counter");
    has(&text, "# TYPE shadowcat_request_duration_seconds histogram");
    has_not(&text, "shadowcat_request_duration_seconds_bucket");
    has(&text, "shadowcat_sessions 0");
    strict_parse(&text);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
    assert_eq!(escape_label("plain/ü"), "plain/ü");
    assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    let m = Metrics::new("we\\ird\"\nname");
    m.request(MethodClass::Ping, 200, ms(1));
    let text = m.render(&Gauges::default());
    has(
        &text,
        "shadowcat_request_duration_seconds_count{upstream=\"we\\\\ird\\\"\\nname\",class=\"ping\"} 1",
    );
    let parsed = strict_parse(&text);
    let count = parsed
        .samples
        .iter()
        .find(|s| s.name == "shadowcat_request_duration_seconds_count")
        .unwrap();
    assert_eq!(
        count.labels[0],
        ("upstream".into(), "we\\ird\"\nname".into())
    );
}

#[test]
fn method_class_mapping() {
    let cases = [
        ("initialize", MethodClass::Initialize),
        ("tools/call", MethodClass::ToolsCall),
        ("tools/list", MethodClass::ToolsList),
        ("resources/read", MethodClass::ResourcesRead),
        ("resources/list", MethodClass::ResourcesList),
        ("resources/templates/list", MethodClass::ResourcesList),
        ("resources/subscribe", MethodClass::ResourcesSubscribe),
        ("resources/unsubscribe", MethodClass::ResourcesSubscribe),
        ("prompts/get", MethodClass::PromptsGet),
        ("prompts/list", MethodClass::PromptsList),
        ("completion/complete", MethodClass::Completion),
        ("logging/setLevel", MethodClass::Logging),
        ("ping", MethodClass::Ping),
        ("server/discover", MethodClass::Discover),
        ("", MethodClass::Invalid),
        ("tools/evil\"name", MethodClass::Other),
        ("notifications/initialized", MethodClass::Other), // with an id: a request
        ("Initialize", MethodClass::Other),
    ];
    for (method, want) in cases {
        assert_eq!(MethodClass::of(method, false, false), want, "{method:?}");
    }
    assert_eq!(
        MethodClass::of("notifications/initialized", true, false),
        MethodClass::Notification
    );
    assert_eq!(
        MethodClass::of("tools/call", true, false),
        MethodClass::Notification
    );
    assert_eq!(MethodClass::of("", false, true), MethodClass::Response);
    assert_eq!(
        MethodClass::of("whatever", true, true),
        MethodClass::Response
    );
    // Labels are distinct, and ALL is in discriminant order (used as array index).
    let labels: HashSet<&str> = MethodClass::ALL.iter().map(|c| c.label()).collect();
    assert_eq!(labels.len(), MethodClass::ALL.len());
    for (i, c) in MethodClass::ALL.iter().enumerate() {
        assert_eq!(*c as usize, i);
    }
    for (i, k) in UpstreamErrorKind::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i);
    }
    for (i, r) in Rejection::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
}

#[test]
fn tables_agree() {
    for (s, l) in STATUSES.iter().zip(STATUS_LABELS) {
        assert_eq!(s.to_string(), l);
    }
    assert_eq!(STATUS_LABELS[STATUSES.len()], "other");
    for (ns, l) in BOUNDS_NS.iter().zip(BOUND_LABELS) {
        assert_eq!(Seconds(*ns).to_string(), l);
    }
    assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(Seconds(0).to_string(), "0");
    assert_eq!(Seconds(1_500_000_000).to_string(), "1.5");
    assert_eq!(Seconds(1).to_string(), "0.000000001");
    assert_eq!(Seconds(u64::MAX).to_string(), "18446744073.709551615");
}

#[test]
fn concurrent_updates_add_up() {
    let m = Arc::new(Metrics::new("x"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    m.request(MethodClass::ToolsCall, 200, Duration::from_micros(i * t));
                    m.bytes_in(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = m.render(&Gauges::default());
    has(
        &text,
        "shadowcat_requests_total{class=\"tools/call\",status=\"200\"} 8000",
    );
    has(
        &text,
        "shadowcat_request_duration_seconds_bucket{upstream=\"x\",class=\"tools/call\",le=\"+Inf\"} 8000",
    );
    has(&text, "shadowcat_bytes_received_total 8000");
    strict_parse(&text);
}

#[test]
fn rendered_text_passes_the_strict_parser() {
    let (m, g) = sample();
    let parsed = strict_parse(&m.render(&g));
    let want_types = [
        ("shadowcat_build_info", "gauge"),
        ("shadowcat_requests_total", "counter"),
        ("shadowcat_request_duration_seconds", "histogram"),
        ("shadowcat_upstream_errors_total", "counter"),
        ("shadowcat_rejected_total", "counter"),
        ("shadowcat_dropped_messages_total", "counter"),
        ("shadowcat_tape_dropped_total", "counter"),
        ("shadowcat_audit_dropped_total", "counter"),
        ("shadowcat_tool_calls_total", "counter"),
        ("shadowcat_sessions", "gauge"),
        ("shadowcat_streams_open", "gauge"),
        ("shadowcat_connections_open", "gauge"),
        ("shadowcat_replay_buffer_bytes", "gauge"),
        ("shadowcat_rate_limit_keys", "gauge"),
        ("shadowcat_bridge_waiting_calls", "gauge"),
        ("shadowcat_bridge_sessions", "gauge"),
        ("shadowcat_sessions_evicted_total", "counter"),
        ("shadowcat_foreign_sessions_total", "counter"),
        ("shadowcat_config_reloads_total", "counter"),
        ("shadowcat_bytes_received_total", "counter"),
        ("shadowcat_bytes_sent_total", "counter"),
        ("shadowcat_child_up", "gauge"),
        ("shadowcat_child_restarts_total", "counter"),
        ("shadowcat_child_inflight", "gauge"),
        ("shadowcat_child_sessions", "gauge"),
        ("shadowcat_pool_connections", "gauge"),
        ("shadowcat_pool_idle_connections", "gauge"),
        ("shadowcat_pool_max_connections", "gauge"),
        ("shadowcat_pool_checkout_wait_seconds", "histogram"),
        ("shadowcat_pool_checkout_timeouts_total", "counter"),
        ("shadowcat_pool_connections_opened_total", "counter"),
        ("shadowcat_pool_connections_closed_total", "counter"),
        ("shadowcat_limits_store_fallbacks_total", "counter"),
    ];
    let got: Vec<(&str, &str)> = parsed
        .families
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(got, want_types);
}

/// Writes a rendered sample for checking with the real Python parser:
/// `SHADOWCAT_METRICS_SAMPLE=/tmp/sample.txt cargo test --lib metrics::tests::dump_sample
/// -- --ignored`, then `python -c "from prometheus_client.parser import ..."`.
#[test]
#[ignore]
fn dump_sample() {
    let (m, g) = sample();
    let path = std::env::var("SHADOWCAT_METRICS_SAMPLE")
        .unwrap_or_else(|_| "target/metrics-sample.txt".into());
    std::fs::write(&path, m.render(&g)).unwrap();
    println!("wrote {path}");
}

// ---- A strict little parser for the text format 0.0.4 ----

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug, Default)]
struct Parsed {
    /// (name, type) in order of appearance.
    families: Vec<(String, String)>,
    samples: Vec<Sample>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c))
        && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Parses `name{k="v",…} value` exactly (no timestamp, single spaces).
fn parse_sample(l: &str) -> Sample {
    let (series, value) = l
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {l}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {l}"));
            (name, parse_labels(body, l))
        }
    };
    assert!(is_name(name, true), "bad metric name in {l}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn parse_labels(body: &str, l: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {l}"));
        assert!(is_name(key, false), "bad label name {key:?} in {l}");
        assert!(!key.starts_with("__"), "reserved label in {l}");
        assert!(out.iter().all(|(k, _)| k != key), "duplicate label in {l}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => panic!("bad escape in {l}"),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => panic!("raw newline in {l}"),
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {l}"),
            }
        };
        out.push((key.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            assert!(!rest.is_empty(), "trailing comma in {l}");
        } else {
            assert!(rest.is_empty(), "junk after label in {l}");
        }
    }
    out
}

/// Checks the whole exposition and returns it parsed: every line is HELP, TYPE or a
/// sample; each family has exactly one HELP then one TYPE before its samples; families are
/// not interleaved; no series repeats; counters and gauges are finite and counters ≥ 0;
/// histogram series have increasing `le` ending in `+Inf`, non-decreasing counts,
/// `+Inf` == `_count`, and a `_sum`.
fn strict_parse(text: &str) -> Parsed {
    assert!(text.ends_with('\n'), "no final newline");
    let mut p = Parsed::default();
    let mut seen_families: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut current: Option<(String, String)> = None; // (name, type) once TYPE seen
    let mut pending_help: Option<String> = None;
    for l in text.lines() {
        assert!(!l.is_empty(), "blank line");
        assert_eq!(l, l.trim(), "stray whitespace: {l:?}");
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').expect("HELP without text");
            assert!(is_name(name, true), "{l}");
            assert!(pending_help.is_none(), "two HELP lines: {l}");
            assert!(seen_families.insert(name.to_owned()), "family again: {l}");
            pending_help = Some(name.to_owned());
            current = None;
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without type");
            assert_eq!(
                pending_help.take().as_deref(),
                Some(name),
                "TYPE w/o HELP: {l}"
            );
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unexpected type: {l}"
            );
            current = Some((name.to_owned(), kind.to_owned()));
            p.families.push((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!l.starts_with('#'), "unknown comment: {l}");
            let (fam, kind) = current.as_ref().unwrap_or_else(|| panic!("orphan: {l}"));
            let s = parse_sample(l);
            let ok = match kind.as_str() {
                "histogram" => [
                    format!("{fam}_bucket"),
                    format!("{fam}_sum"),
                    format!("{fam}_count"),
                ]
                .contains(&s.name),
                _ => &s.name == fam,
            };
            assert!(ok, "sample {l} outside its family {fam}");
            if kind != "histogram" {
                assert!(s.value.is_finite(), "{l}");
            }
            if kind == "counter" {
                assert!(s.value >= 0.0, "{l}");
            }
            let key = format!("{}{:?}", s.name, s.labels);
            assert!(series.insert(key), "series repeated: {l}");
            p.samples.push(s);
        }
    }
    assert!(pending_help.is_none(), "HELP without TYPE at the end");
    check_histograms(&p);
    p
}

fn check_histograms(p: &Parsed) {
    for (fam, _) in p.families.iter().filter(|(_, t)| t == "histogram") {
        type Key = Vec<(String, String)>;
        let mut buckets: HashMap<Key, Vec<(f64, f64)>> = HashMap::new();
        let mut sums: HashMap<Key, f64> = HashMap::new();
        let mut counts: HashMap<Key, f64> = HashMap::new();
        for s in &p.samples {
            if s.name == format!("{fam}_bucket") {
                let mut key = s.labels.clone();
                let le_at = key.iter().position(|(k, _)| k == "le").expect("no le");
                let (_, le) = key.remove(le_at);
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("bad le")
                };
                buckets.entry(key).or_default().push((le, s.value));
            } else if s.name == format!("{fam}_sum") {
                sums.insert(s.labels.clone(), s.value);
            } else if s.name == format!("{fam}_count") {
                counts.insert(s.labels.clone(), s.value);
            }
        }
        assert_eq!(buckets.len(), counts.len(), "{fam}: series without _count");
        for (key, bs) in &buckets {
            assert!(bs.windows(2).all(|w| w[0].0 < w[1].0), "{fam}: le order");
            assert!(
                bs.windows(2).all(|w| w[0].1 <= w[1].1),
                "{fam}: not cumulative"
            );
            let last = bs.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{fam}: no +Inf bucket");
            assert_eq!(Some(&last.1), counts.get(key), "{fam}: +Inf != _count");
            let sum = sums.get(key).unwrap_or_else(|| panic!("{fam}: no _sum"));
            assert!(sum.is_finite() && *sum >= 0.0, "{fam}: bad _sum");
        }
    }
}

#[test]
fn strict_parser_rejects_bad_text() {
    let bad = [
        "x 1\n",                                                              // no HELP/TYPE
        "# HELP x h\n# TYPE x gauge\nx 1\n# HELP x h\n# TYPE x gauge\nx 2\n", // twice
        "# HELP x h\n# TYPE x gauge\ny 1\n",                                  // wrong family
        "# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n",                           // unterminated
        "# HELP x h\n# TYPE x gauge\nx{a=\"\\t\"} 1\n",                       // bad escape
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        let r = std::panic::catch_unwind(|| strict_parse(text));
        assert!(r.is_err(), "accepted:\n{text}");
    }
}

#[test]
fn exclusive_tools_and_calls_of_shared_children() {
    let m = Metrics::new("demo");
    assert!(!m.render(&Gauges::default()).contains("exclusive"));
    m.exclusive_call(ExclusiveCause::Tool);
    m.exclusive_call(ExclusiveCause::Tool);
    m.exclusive_call(ExclusiveCause::Client);
    let text = m.render(&Gauges {
        exclusive: Some(ExclusiveInfo {
            learning: true,
            configured: vec!["a".into()],
            learned: vec!["b".into(), "c".into()],
            candidates: 1,
            full: 4,
        }),
        ..Gauges::default()
    });
    has(
        &text,
        "shadowcat_stdio_exclusive_tools{source=\"configured\"} 1",
    );
    has(
        &text,
        "shadowcat_stdio_exclusive_tools{source=\"learned\"} 2",
    );
    has(&text, "shadowcat_stdio_learning_full_total 4");
    has(
        &text,
        "shadowcat_stdio_exclusive_calls_total{cause=\"client\"} 1",
    );
    has(
        &text,
        "shadowcat_stdio_exclusive_calls_total{cause=\"tool\"} 2",
    );
}
