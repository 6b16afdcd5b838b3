//! Issue #18: the conformance suite (0.1.16, server mode) recorded through the proxy in front of
//! the demo server, then run again against `shadowcat replay DIR` of those tapes (one per
//! session the suite opened, replayed as one: each replayed session answers a request from the
//! first tape that recorded it). The replay must pass every scenario the live run passed,
//! except the ones listed in [`NOT_REPLAYABLE`] (and in README "Tapes"), which ask for more
//! than recorded answers to the requests they send.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::conformance::{Outcomes, run_conformance};
use crate::support::*;

/// Scenarios a replay cannot pass, and why (README "Tapes" lists them too).
const NOT_REPLAYABLE: [(&str, &str); 1] = [(
    "dns-rebinding-protection",
    "checks the proxy's Host/Origin refusal, which is the live proxy's, not an answer on a tape",
)];

fn passing(out: &Outcomes) -> BTreeSet<&str> {
    out.iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| s.as_str())
        .collect()
}

#[test]
fn r18_conformance_replayed_from_its_tapes_passes_what_it_passed() {
    let dir = TempDir::new("r18-conformance-replay");
    let tapes = dir.path().join("tapes");
    let recording = demo_proxy(&["--record", tapes.to_str().unwrap()]);
    let live = run_conformance(
        &format!("http://{}/mcp", recording.local_addr()),
        &dir.path().join("live"),
    );
    // Every session ends (and its tape closes) with the proxy.
    recording.shutdown(Duration::from_secs(2));
    drop(recording);

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(exe())
        .arg("replay")
        .arg(&tapes)
        .args(["--http", &addr.to_string(), "--answer-timeout", "5s"])
        .stderr(Stdio::null())
        .spawn()
        .expect("replay starts");
    let _replay = Peer(child);
    wait_listening(addr);
    let replayed = run_conformance(&format!("http://{addr}/mcp"), &dir.path().join("replayed"));

    let skipped: BTreeSet<&str> = NOT_REPLAYABLE.iter().map(|(s, _)| *s).collect();
    let want: BTreeSet<&str> = passing(&live).difference(&skipped).copied().collect();
    assert!(
        want.len() >= 25,
        "the live run passed only {:?}",
        passing(&live)
    );
    let got = passing(&replayed);
    let lost: Vec<String> = want
        .difference(&got)
        .map(|s| match replayed.get(*s) {
            Some(Err(e)) => format!("  {s}: {e}"),
            _ => format!("  {s}: missing"),
        })
        .collect();
    assert!(
        lost.is_empty(),
        "scenarios passing live that fail against the replay of their tapes:\n{}",
        lost.join("\n")
    );
    for (s, why) in NOT_REPLAYABLE {
        eprintln!(
            "not replayable: {s} ({why}); against the replay: {}",
            if got.contains(s) { "passed" } else { "failed" }
        );
    }
}
