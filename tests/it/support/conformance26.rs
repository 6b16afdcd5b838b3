//! The conformance suite 0.2.0-alpha.12 (`conformance-2026`) in server mode, run with
//! `--requirements <revision>` against a URL under a time bound, its per-scenario outcomes read
//! back from the `checks.json` files it writes ([`run_requirements`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Peer, conformance_2026_js, node22};

/// The suite is killed after this long (a whole run takes 5–20 s).
pub const CONFORMANCE26_BOUND: Duration = Duration::from_secs(240);

/// Scenario name → `Ok` or its failing checks.
pub type Outcomes26 = BTreeMap<String, Result<(), String>>;

/// How a bounded run of a conformance suite ended.
pub struct SuiteRun {
    /// `Some` when it exited by itself, `None` when it was killed at the bound.
    pub status: Option<ExitStatus>,
    /// Its wall-clock time.
    pub took: Duration,
    /// What it wrote to stderr (scenarios that threw say so there).
    pub stderr: String,
}

/// Runs `script` (a conformance suite's CLI) under Node 22 with `args` then `-o
/// OUTDIR/results`, stdout and stderr into files under `outdir` (created if needed), killed
/// after `bound`. Both suites' runners (0.1.16 and 0.2) go through here.
pub fn run_suite(script: &Path, args: &[&str], outdir: &Path, bound: Duration) -> SuiteRun {
    std::fs::create_dir_all(outdir).expect("create the output dir");
    let stderr_path = outdir.join("stderr.txt");
    let start = Instant::now();
    let child = Command::new(node22())
        .arg(script)
        .args(args)
        .arg("-o")
        .arg(outdir.join("results"))
        .stdin(Stdio::null())
        .stdout(File::create(outdir.join("stdout.txt")).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("Node 22 runs the conformance suite");
    let mut node = Peer(child);
    let status: Option<ExitStatus> = loop {
        if let Some(s) = node.0.try_wait().expect("wait for conformance") {
            break Some(s);
        }
        if start.elapsed() > bound {
            break None; // dropping `node` kills it
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(node);
    SuiteRun {
        status,
        took: start.elapsed(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Runs `server --url URL --requirements REVISION -o DIR/results` and reads every scenario's
/// outcome. A scenario passes when none of its checks is a FAILURE (the CLI's own rule, so the
/// counts match its summary; a scenario whose checks were all SKIPPED or WARNING passes).
/// `expected` scenarios that wrote nothing (the process died or timed out) are failures.
pub fn run_requirements(url: &str, revision: &str, outdir: &Path, expected: &[&str]) -> Outcomes26 {
    let results = outdir.join("results");
    let args = ["server", "--url", url, "--requirements", revision];
    let run = run_suite(&conformance_2026_js(), &args, outdir, CONFORMANCE26_BOUND);
    let ended = match run.status {
        Some(s) => format!("exited with {s} after {:.1}s", run.took.as_secs_f64()),
        None => format!("killed after the {CONFORMANCE26_BOUND:?} bound"),
    };
    let stderr = run.stderr;
    let mut out = Outcomes26::new();
    for entry in std::fs::read_dir(&results).into_iter().flatten().flatten() {
        let dir = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = scenario_of(&dir) else {
            continue;
        };
        let outcome = match std::fs::read_to_string(entry.path().join("checks.json")) {
            Ok(text) => match serde_json::from_str::<Vec<Value>>(&text) {
                Ok(checks) => {
                    let failed: Vec<String> = checks
                        .iter()
                        .filter(|c| c["status"] == "FAILURE")
                        .map(describe)
                        .collect();
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(failed.join("; "))
                    }
                }
                Err(e) => Err(format!("unreadable checks.json ({e})")),
            },
            Err(_) => Err("no checks.json: the scenario threw (see stderr.txt)".into()),
        };
        out.insert(name.to_string(), outcome);
    }
    for name in expected {
        out.entry(name.to_string()).or_insert_with(|| {
            Err(format!(
                "not run (conformance {ended}); stderr: {}",
                clip(&stderr, 400)
            ))
        });
    }
    eprintln!(
        "conformance {revision} against {url}: {}/{} scenarios passed ({ended})",
        out.values().filter(|r| r.is_ok()).count(),
        out.len()
    );
    out
}

/// The scenario in a result directory name `server-<scenario>-<ISO time with : and . as ->`.
fn scenario_of(dir: &str) -> Option<&str> {
    let rest = dir.strip_prefix("server-")?;
    let cut = rest.len().checked_sub(25)?;
    if !rest.is_char_boundary(cut) {
        return None;
    }
    let (name, stamp) = rest.split_at(cut);
    let ok = stamp.starts_with('-') && stamp.ends_with('Z') && stamp.as_bytes()[11] == b'T';
    (ok && !name.is_empty()).then_some(name)
}

fn describe(check: &Value) -> String {
    let msg = check["errorMessage"]
        .as_str()
        .or_else(|| check["description"].as_str())
        .unwrap_or("");
    format!(
        "{}: {}",
        check["id"].as_str().unwrap_or("?"),
        clip(msg, 200)
    )
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The passing scenarios among `names`.
pub fn passing_of(out: &Outcomes26, names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| out.get(**n).is_some_and(|r| r.is_ok()))
        .map(|n| n.to_string())
        .collect()
}

/// The failing scenarios among `names`, one line each with their failing checks.
pub fn failing_of(out: &Outcomes26, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| match out.get(*n) {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(format!("  {n}: {e}")),
            None => Some(format!("  {n}: missing")),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
