//! The official MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16, server mode)
//! through the proxy: in front of the demo server over stdio (shared and per-session children)
//! every active scenario passes; in front of server-everything over Streamable HTTP every
//! scenario that passes against server-everything directly still passes, and
//! dns-rebinding-protection passes too (the proxy adds the Host/Origin check).
//!
//! The suite runs as a Node 22 process (`conformance server --url … --suite active -o DIR`)
//! bounded to [`TIME_BOUND`]; per-scenario results are read from the `checks.json` files it
//! writes, so an assertion message names every failing scenario with its failure messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The active server suite of conformance 0.1.16 (`list --server` without the pending
/// json-schema-2020-12 and server-sse-polling): the first 30 of 0.2's `--requirements
/// 2025-11-25` set, the same scenarios in the same order.
const ACTIVE: &[&str] = crate::conformance26::SET_2025.split_at(30).0;

/// The scenario the proxy itself must make pass, whatever the upstream does.
const DNS_REBINDING: &str = "dns-rebinding-protection";

/// The conformance process is killed after this long (a full run takes about 1.5 s).
const TIME_BOUND: Duration = Duration::from_secs(120);

/// Scenario name → `Ok` or the scenario's failure messages.
pub(crate) type Outcomes = BTreeMap<String, Result<(), String>>;

/// Runs the active server suite against `url`, keeping its output under `outdir` (created if
/// needed). Every active scenario gets an entry: one that did not run (the process died or
/// timed out) is an `Err` saying so.
pub(crate) fn run_conformance(url: &str, outdir: &Path) -> Outcomes {
    let results = outdir.join("results");
    let args = ["server", "--url", url, "--suite", "active"];
    let run = run_suite(&conformance_js(), &args, outdir, TIME_BOUND);
    let stderr = run.stderr;
    let ended = match run.status {
        Some(s) => format!(
            "conformance exited with {s} after {:.1}s",
            run.took.as_secs_f64()
        ),
        None => format!("conformance killed after the {TIME_BOUND:?} bound"),
    };

    let mut out = Outcomes::new();
    let mut warnings = Vec::new();
    for entry in std::fs::read_dir(&results).into_iter().flatten().flatten() {
        let dir = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = scenario_of(&dir) else {
            continue;
        };
        let outcome = match std::fs::read_to_string(entry.path().join("checks.json")) {
            Ok(text) => match serde_json::from_str::<Vec<Value>>(&text) {
                Ok(checks) => {
                    warnings.extend(
                        checks
                            .iter()
                            .filter(|c| c["status"] == "WARNING")
                            .map(|c| format!("{name}: {}", describe(c))),
                    );
                    judge(&checks)
                }
                Err(e) => Err(format!("unreadable checks.json ({e})")),
            },
            // The CLI makes the directory first and writes checks.json only if the scenario
            // returned; a scenario that threw has its error on stderr.
            Err(_) => Err(format!(
                "no checks.json, the scenario threw: {}",
                thrown(&stderr, name)
            )),
        };
        out.insert(name.to_string(), outcome);
    }
    for name in ACTIVE {
        out.entry(name.to_string()).or_insert_with(|| {
            Err(format!(
                "not run ({ended}); stderr: {}",
                clip(stderr.trim(), 600)
            ))
        });
    }

    let passed = out.values().filter(|r| r.is_ok()).count();
    eprintln!(
        "conformance against {url}: {passed}/{} scenarios passed, wall time {:.2}s ({ended})",
        out.len(),
        run.took.as_secs_f64()
    );
    for w in warnings {
        eprintln!("  warning: {w}");
    }
    out
}

/// The scenario in a result directory name `server-<scenario>-<ISO time with : and . as ->`.
fn scenario_of(dir: &str) -> Option<&str> {
    let rest = dir.strip_prefix("server-")?;
    // "-2026-11-26T17-27-13-770Z"
    let cut = rest.len().checked_sub(25)?;
    if !rest.is_char_boundary(cut) {
        return None;
    }
    let (name, stamp) = rest.split_at(cut);
    let ok = stamp.starts_with('-') && stamp.ends_with('Z') && stamp.as_bytes()[11] == b'T';
    (ok && !name.is_empty()).then_some(name)
}

/// A scenario passes when no check failed and at least one succeeded (the CLI's own rule).
fn judge(checks: &[Value]) -> Result<(), String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] == "FAILURE")
        .map(describe)
        .collect();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    if !checks.iter().any(|c| c["status"] == "SUCCESS") {
        let statuses: Vec<String> = checks.iter().map(|c| c["status"].to_string()).collect();
        return Err(format!(
            "no successful check (statuses: [{}])",
            statuses.join(", ")
        ));
    }
    Ok(())
}

/// One check as `id [status]: message (details: …)`.
fn describe(check: &Value) -> String {
    let msg = check["errorMessage"]
        .as_str()
        .or_else(|| check["description"].as_str())
        .unwrap_or("");
    let mut s = format!(
        "{} [{}]: {msg}",
        check["id"].as_str().unwrap_or("?"),
        check["status"].as_str().unwrap_or("?")
    );
    if let Some(d) = check.get("details").filter(|d| !d.is_null()) {
        s.push_str(&format!(" (details: {})", clip(&d.to_string(), 400)));
    }
    s
}

/// The error the CLI printed for a scenario that threw.
fn thrown(stderr: &str, name: &str) -> String {
    let marker = format!("Failed to run scenario {name}:");
    match stderr.find(&marker) {
        Some(at) => clip(
            &stderr[at..].lines().take(8).collect::<Vec<_>>().join(" | "),
            600,
        ),
        None => "no error printed on stderr".into(),
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn passing(out: &Outcomes) -> BTreeSet<String> {
    out.iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| s.clone())
        .collect()
}

/// The failing scenarios, one line each with their messages.
fn failures(out: &Outcomes) -> String {
    out.iter()
        .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("  {s}: {e}")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every active scenario passes through a proxy in front of the demo server.
fn demo_passes_everything(flags: &[&str]) {
    let p = demo_proxy(flags);
    let dir = TempDir::new("conformance");
    let out = run_conformance(&format!("http://{}/mcp", p.local_addr()), dir.path());
    let failed = failures(&out);
    assert!(
        failed.is_empty(),
        "conformance through `shadowcat reverse {}` (demo server over stdio): {}/{} scenarios \
         pass; failing:\n{failed}",
        flags.join(" "),
        passing(&out).len(),
        out.len()
    );
    let ran: BTreeSet<&str> = out.keys().map(String::as_str).collect();
    assert_eq!(
        ran,
        ACTIVE.iter().copied().collect::<BTreeSet<_>>(),
        "the active suite is not the 30 scenarios of conformance 0.1.16"
    );
}

#[test]
fn conformance_demo_stdio_shared() {
    demo_passes_everything(&[]);
}

#[test]
fn conformance_demo_stdio_per_session() {
    // The suite opens one session per scenario and never ends them; each holds its own child
    // until idle expiry, so the cap must cover all of them (at the cap: 503, by design). It is
    // one client, so its quota (by default half of the children) must cover them too.
    demo_passes_everything(&[
        "--stdio-mode",
        "per-session",
        "--stdio-children",
        "40",
        "--max-sessions-per-client",
        "40",
    ]);
}

#[test]
fn conformance_everything_http_matches_direct() {
    let (_everything, addr) = everything_http();
    let upstream = format!("http://{addr}/mcp");
    let dir = TempDir::new("conformance-everything");

    let direct = run_conformance(&upstream, &dir.path().join("direct"));
    assert!(
        direct.get("server-initialize").is_some_and(|r| r.is_ok()),
        "server-everything itself fails server-initialize, the comparison would be empty:\n{}",
        failures(&direct)
    );

    let p = demo_proxy(&["--upstream", &upstream]);
    let proxied = run_conformance(
        &format!("http://{}/mcp", p.local_addr()),
        &dir.path().join("proxied"),
    );

    let mut want = passing(&direct);
    want.insert(DNS_REBINDING.to_string());
    let through = passing(&proxied);
    let lost: Vec<String> = want
        .difference(&through)
        .map(|s| match proxied.get(s) {
            Some(Err(e)) => format!("  {s}: {e}"),
            _ => format!("  {s}: missing"),
        })
        .collect();
    assert!(
        lost.is_empty(),
        "scenarios passing against server-everything directly (plus {DNS_REBINDING}) that fail \
         through the proxy:\n{}\npassing directly: {:?}\npassing through the proxy: {:?}",
        lost.join("\n"),
        passing(&direct),
        through
    );
}
