//! The conformance suite 0.2.0-alpha.12 with `--requirements 2026-07-28` (37 scored scenarios,
//! the 10 scenarios of the tasks extension and 3 pending ones, all run) and
//! `--requirements 2025-11-25` (33 scenarios) through `shadowcat reverse --stdio
//! "shadowcat demo-server --era E"`, shared and per-session, and against `shadowcat demo-server
//! --era E --http` directly and through `shadowcat reverse --upstream`, for each era of the demo
//! (issue #13). Each test asserts a floor: the scenarios that pass today must keep passing; the
//! counts are printed, and the tasks extension is reported apart and never asserted.
//!
//! What passes today (2026-12-07, end of day; before, in brackets, the morning's counts):
//!
//! | demo era | mode | 2026-07-28 scored | 2025-11-25 |
//! |---|---|---|---|
//! | dual | shared | **37/37** (37) | 33/33 |
//! | dual | per-session | **37/37** (36) | 33/33 |
//! | dual | HTTP, through the proxy | **37/37** (37; pending 3/3) | 33/33 |
//! | legacy (bridged) | shared | 36/37 (35) | 33/33 |
//! | legacy (bridged) | per-session | 36/37 (36) | 33/33 |
//! | legacy (bridged) | HTTP, through the proxy | 36/37 (34) | 33/33 |
//! | legacy | HTTP, directly | 5/37 (what any legacy server passes) | 33/33 |
//! | modern | shared | **37/37** (37) | **33/33** (30), session-era clients bridged (part B) |
//! | modern | per-session | **37/37** (36) | **33/33** (2), session-era clients bridged (part B) |
//! | modern | HTTP, directly | **37/37** (pending 3/3) | not run (a 2026-07-28-only server) |
//! | modern | HTTP, through the proxy | **37/37** (37; pending 3/3) | 31/33 (not run), session-era clients bridged (part B) |
//!
//! What fails, and why (none of it the demo's: every scenario passes against
//! `demo-server --era modern --http` directly):
//! * `input-required-result-basic-elicitation`, legacy demo bridged (every mode): the scenario
//!   wants the server's own input key `user_name`; a session-era server names no key, so the
//!   bridge names them `input-N`. Not fixable in a bridge.
//! * modern, HTTP through the proxy, 2025-11-25: `resources-(un)subscribe` (not bridged over
//!   HTTP: -32601).
//! * pending `http-custom-header-server-validation` over stdio (every era) and legacy over HTTP:
//!   the proxy does not check `Mcp-Param-*` headers against `x-mcp-header` arguments (-32020).
//! * tasks extension (never scored): 1/10 passes vacuously everywhere (`tasks-status-notifications`,
//!   all checks skipped); the demo implements no tasks.
//!
//! Fixed on 2026-12-07: per-session `server-stateless` `sep-2575-server-honors-notification-filter`
//! (the shared stateless child's listen notifications go to the listen their subscription id
//! names); legacy over HTTP `multiple-input-requests` and `sep-2575-missing-capability-http-400`
//! (the upstream's SSE body is read by a thread of its own, `bridge::pump`); modern 2025-11-25
//! `resources-(un)subscribe` (the proxy's own `subscriptions/listen` on the child) and
//! `tools-call-with-logging` (a listen in flight is no cause of an untagged log), and part B
//! per-session (2/33 before); legacy shared `server-stateless`'s no-log-without-logLevel check
//! (its `test_logging_tool` call waited behind a parked call: a capable call now gets a new
//! bridge session on a child no exclusive call holds, while there is room).

use std::sync::Mutex;

use shadowcat::Shadowcat;

use crate::support::*;

/// The scored server scenarios of `--requirements 2026-07-28`.
pub const SCORED_2026: [&str; 37] = [
    "server-stateless",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "sep-2164-resource-not-found",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "caching",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
];

/// The tasks extension (`io.modelcontextprotocol/tasks`), run but never scored.
pub const TASKS: [&str; 10] = [
    "tasks-lifecycle",
    "tasks-capability-negotiation",
    "tasks-wire-fields",
    "tasks-request-state-removal",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-dispatch-and-envelope",
    "tasks-status-notifications",
    "tasks-required-task-error",
    "tasks-mrtr-composition",
];

/// Pending in 2026-07-28, run but never scored.
pub const PENDING_2026: [&str; 3] = [
    "json-schema-2020-12",
    "http-header-validation",
    "http-custom-header-server-validation",
];

/// `--requirements 2025-11-25`: the 30 scored scenarios and 3 unscored ones.
pub const SET_2025: [&str; 33] = [
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "server-session-lifecycle",
    "json-schema-2020-12",
    "server-sse-polling",
];

/// What any session-era server passes of the 2026-07-28 set (the legacy demo over HTTP, directly).
const FLOOR_UNBRIDGED: [&str; 5] = [
    "sep-2164-resource-not-found",
    "input-required-result-missing-input-response",
    "input-required-result-unsupported-methods",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
];

/// Every scored scenario but `failing`.
fn scored_but(failing: &[&str]) -> Vec<&'static str> {
    SCORED_2026
        .into_iter()
        .filter(|s| !failing.contains(s))
        .collect()
}

/// One conformance run at a time: each spawns Node and opens dozens of streams, and the
/// scenarios have sub-second waits of their own.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// Every scenario of the 2026-07-28 set, scored or not.
pub fn all_2026() -> Vec<&'static str> {
    let mut all: Vec<&str> = SCORED_2026.to_vec();
    all.extend(TASKS);
    all.extend(PENDING_2026);
    all
}

/// Runs both requirement sets against `url` and asserts the floors; prints the counts.
/// `floor25: None` skips the 2025-11-25 run.
pub fn assert_floors(label: &str, url: &str, floor26: &[&str], floor25: Option<&[&str]>) {
    let dir = TempDir::new("conformance26");
    let out26 = run_requirements(url, "2026-07-28", &dir.path().join("r2026"), &all_2026());
    let scored = passing_of(&out26, &SCORED_2026);
    let tasks = passing_of(&out26, &TASKS);
    let pending = passing_of(&out26, &PENDING_2026);
    eprintln!(
        "{label}: 2026-07-28 scored {}/37, tasks extension {}/10, pending {}/3",
        scored.len(),
        tasks.len(),
        pending.len()
    );
    eprintln!(
        "{label}: 2026-07-28 failing:\n{}",
        failing_of(&out26, &all_2026())
    );
    let passed26 = passing_of(&out26, &all_2026());
    let lost: Vec<&&str> = floor26.iter().filter(|s| !passed26.contains(**s)).collect();
    assert!(
        lost.is_empty(),
        "{label}: 2026-07-28 scenarios that passed before fail now: {lost:?}\nfailing:\n{}",
        failing_of(&out26, &all_2026())
    );
    let Some(floor25) = floor25 else {
        return;
    };
    let out25 = run_requirements(url, "2025-11-25", &dir.path().join("r2025"), &SET_2025);
    let passed25 = passing_of(&out25, &SET_2025);
    eprintln!(
        "{label}: 2025-11-25 {}/33, failing:\n{}",
        passed25.len(),
        failing_of(&out25, &SET_2025)
    );
    let lost: Vec<&&str> = floor25.iter().filter(|s| !passed25.contains(**s)).collect();
    assert!(
        lost.is_empty(),
        "{label}: 2025-11-25 scenarios that passed before fail now: {lost:?}\nfailing:\n{}",
        failing_of(&out25, &SET_2025)
    );
}

/// The proxies' `--input-timeout`. Several scenarios start a call that asks the client for
/// input and never retry it (they check the `InputRequiredResult` only). Such a call is parked
/// and lets its shared stdio child go to shared calls, and no longer counts against the 16
/// bridge sessions; but the suite's client declares `sampling`, `elicitation` and `roots` in
/// every request's `_meta`, so each of its `tools/call`s is exclusive on its child and waits
/// behind the parked one (the child may still speak for it). Measured with the default 5 min
/// (legacy demo, stdio shared, 2 children): 10/37 scored instead of 34/37, the later scenarios
/// timing out. Hence 3 s here.
const INPUT_TIMEOUT: &str = "3s";

/// `shadowcat reverse --stdio "<exe> demo-server --era ERA"` in process, per-session if asked;
/// `Err` when it does not start.
fn stdio_front(era: &str, per_session: bool) -> Result<Shadowcat, String> {
    init_log();
    let command = format!("'{}' demo-server --era {era}", exe());
    let mut args = vec![
        "--stdio",
        command.as_str(),
        "--input-timeout",
        INPUT_TIMEOUT,
    ];
    if per_session {
        // The 2025-11-25 run opens a session per scenario and never ends them.
        args.extend([
            "--stdio-mode",
            "per-session",
            "--stdio-children",
            "60",
            "--max-sessions-per-client",
            "60",
        ]);
    }
    Shadowcat::start(config(&args)).map_err(|e| e.to_string())
}

fn through_stdio(era: &str, per_session: bool, floor26: &[&str], floor25: &[&str]) {
    let floor25 = Some(floor25);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let label = format!(
        "demo --era {era} over stdio, {}",
        if per_session { "per-session" } else { "shared" }
    );
    match stdio_front(era, per_session) {
        Ok(proxy) => {
            let url = format!("http://{}/mcp", proxy.local_addr());
            assert_floors(&label, &url, floor26, floor25);
        }
        Err(e) => {
            assert!(
                floor26.is_empty() && floor25.is_some_and(<[&str]>::is_empty),
                "{label}: the proxy does not start: {e}"
            );
            eprintln!("{label}: the proxy does not start (0/37, 0/33): {e}");
        }
    }
}

/// 37/37: the dual demo serves 2026-07-28 requests as `--era modern` does; the proxy serves
/// `subscriptions/listen` itself over a bridge session (a shared child's notifications carry
/// no request id).
#[test]
fn conformance26_dual_stdio_shared() {
    through_stdio("dual", false, &SCORED_2026, &SET_2025);
}

/// 37/37 (36 before 2026-12-07: the stateless requests share one child, and its listen
/// notifications now go to the listen call their subscription id names).
#[test]
fn conformance26_dual_stdio_per_session() {
    through_stdio("dual", true, &SCORED_2026, &SET_2025);
}

/// 36/37 through the bridge: all scored scenarios but `basic-elicitation` (it expects the
/// input key `user_name`, which only the demo's modern era names; the bridge names keys
/// `input-N`). 35/37 before 2026-12-07 end of day: `server-stateless`'s no-log-without-logLevel
/// check, whose `test_logging_tool` call waited behind a parked call; a capable call now gets
/// a new bridge session on a child no exclusive call holds rather than one beside the parked
/// call. 26/37 before parking.
#[test]
fn conformance26_legacy_stdio_shared() {
    let failing = ["input-required-result-basic-elicitation"];
    through_stdio("legacy", false, &scored_but(&failing), &SET_2025);
}

/// 36/37 through the bridge: all but `basic-elicitation` (the key `user_name`).
#[test]
fn conformance26_legacy_stdio_per_session() {
    let failing = ["input-required-result-basic-elicitation"];
    through_stdio("legacy", true, &scored_but(&failing), &SET_2025);
}

/// 37/37: the proxy keeps a 2026-07-28-only child (it refused `initialize`) as a stateless
/// upstream. 2025-11-25: 33/33 (30 before 2026-12-07), session-era clients bridged
/// (`bridge::modern_upstream`), `resources/(un)subscribe` served from the proxy's own
/// `subscriptions/listen` on the child; `tools-call-with-logging` gets its logs since the
/// 2026-07-28 run's listen calls, still in flight on the child, no longer count as possible
/// causes of an untagged log (their notifications are tagged).
#[test]
fn conformance26_modern_stdio_shared() {
    through_stdio("modern", false, &SCORED_2026, &SET_2025);
}

/// 37/37: stateless requests share one child probed with `server/discover`; its listen
/// notifications go to the listen call their subscription id names (36/37 before).
/// 2025-11-25: 33/33 (2/33 before 2026-12-07), session-era clients bridged to their own child,
/// `resources/(un)subscribe` served from the proxy's own `subscriptions/listen` on it.
#[test]
fn conformance26_modern_stdio_per_session() {
    through_stdio("modern", true, &SCORED_2026, &SET_2025);
}

/// The demo over HTTP (`demo-server --era ERA --http`), directly or through `shadowcat reverse
/// --upstream`.
fn over_http(era: &str, proxied: bool, floor26: &[&str], floor25: Option<&[&str]>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_log();
    let (_demo, addr) = demo_http(era);
    let upstream = format!("http://{addr}/mcp");
    if proxied {
        let proxy = Shadowcat::start(config(&[
            "--upstream",
            &upstream,
            "--input-timeout",
            INPUT_TIMEOUT,
        ]))
        .expect("proxy starts");
        let label = format!("demo --era {era} over HTTP, through the proxy");
        assert_floors(
            &label,
            &format!("http://{}/mcp", proxy.local_addr()),
            floor26,
            floor25,
        );
    } else {
        assert_floors(
            &format!("demo --era {era} over HTTP, directly"),
            &upstream,
            floor26,
            floor25,
        );
    }
}

/// `--era modern --http` directly: every scored 2026-07-28 scenario passes, and the 3 pending
/// ones too (`test_custom_headers` with its `x-mcp-header` parameter, the SEP-2106 schema, a
/// no-argument tool first); the tasks extension does not (no tasks).
#[test]
fn conformance26_modern_http_direct() {
    let mut floor = SCORED_2026.to_vec();
    floor.extend(PENDING_2026);
    over_http("modern", false, &floor, None);
}

/// Through the proxy: 37/37 (pending: 3/3). 2025-11-25: 31/33, session-era clients bridged
/// to the 2026-07-28-only HTTP upstream (part B, `upstream::http` `modern.rs`; not run before
/// 2026-12-07, when it failed entirely): `resources-subscribe` and `resources-unsubscribe`
/// fail (not bridged over HTTP: -32601).
#[test]
fn conformance26_modern_http_through_proxy() {
    let mut floor = SCORED_2026.to_vec();
    floor.extend(PENDING_2026);
    let floor25: Vec<&str> = SET_2025
        .into_iter()
        .filter(|s| !["resources-subscribe", "resources-unsubscribe"].contains(s))
        .collect();
    over_http("modern", true, &floor, Some(&floor25));
}

/// `--era legacy --http` directly: 33/33 of 2025-11-25 (Mcp-Session-Id sessions, server
/// requests on the POST stream, the GET stream); of 2026-07-28 only the 5 that pass against
/// any legacy server.
#[test]
fn conformance26_legacy_http_direct() {
    over_http("legacy", false, &FLOOR_UNBRIDGED, Some(&SET_2025));
}

/// Through the proxy, bridged: 36/37 and 33/33 (34/37 before 2026-12-07: the upstream's SSE
/// body, which blocks in its read, is now read by a thread of its own, so input requests
/// made together go in one round and a -32021 is an HTTP 400). Failing: `basic-elicitation`
/// (the key `user_name`).
#[test]
fn conformance26_legacy_http_through_proxy() {
    let failing = ["input-required-result-basic-elicitation"];
    over_http("legacy", true, &scored_but(&failing), Some(&SET_2025));
}

/// `--era dual --http` through the proxy: 37/37 (pending 3/3) and 33/33.
#[test]
fn conformance26_dual_http_through_proxy() {
    let mut floor = SCORED_2026.to_vec();
    floor.extend(PENDING_2026);
    over_http("dual", true, &floor, Some(&SET_2025));
}
