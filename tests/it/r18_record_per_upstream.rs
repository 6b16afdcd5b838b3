//! Issue #18, recording per upstream: `record = "DIR"` in an `[upstream.NAME]` table records
//! that member's conversations as the member saw them (its own names, none of the other
//! members' calls), and `shadowcat replay` of such a tape serves as that member alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The `.jsonl` tapes of `dir`, each as its lines parsed.
fn tapes_in(dir: &Path) -> Vec<(PathBuf, Vec<Value>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("tape readable");
            let lines = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (p, lines)
        })
        .collect()
}

fn call(id: u64, tool: &str, message: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"message": message}}})
    .to_string()
}

/// The text of a `tools/call` answer (JSON or the last SSE message).
fn answer_text(r: &Resp) -> String {
    let v = r.messages().pop().unwrap_or_else(|| r.json());
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_owned()
}

/// A proxy in front of the demo over stdio (shared, recorded to `DIR/demo-tapes`) and a
/// second demo (prefix `b`, not recorded); and the demo's tape directory.
fn federation(dir: &TempDir) -> (shadowcat::Shadowcat, PathBuf) {
    let demo_tapes = dir.path().join("demo-tapes");
    let file = dir.path().join("fed.toml");
    let demo = format!("'{}' demo-server", exe());
    std::fs::write(
        &file,
        format!(
            "[upstream.demo]\nstdio = \"{demo}\"\nstdio-mode = \"shared\"\n\
             record = \"{}\"\nrecord-keep = \"2d\"\n\n\
             [upstream.second]\nstdio = \"{demo}\"\nprefix = \"b\"\n",
            demo_tapes.display()
        ),
    )
    .expect("config written");
    (
        demo_proxy(&["--config", file.to_str().unwrap()]),
        demo_tapes,
    )
}

/// `shadowcat replay TAPE --http` on a free port.
fn replay(tape: &Path) -> (Peer, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(exe())
        .arg("replay")
        .arg(tape)
        .args(["--http", &addr.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("replay starts");
    wait_listening(addr);
    (Peer(child), addr)
}

#[test]
fn r18_record_per_upstream_member_tape_replays_as_that_member() {
    let dir = TempDir::new("r18-record-per-upstream");
    let (p, demo_tapes) = federation(&dir);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let a = c.post(Some(&sid), &call(1, "demo__echo", "to-the-demo"));
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(answer_text(&a).contains("to-the-demo"), "{}", a.text());
    let b = c.post(Some(&sid), &call(2, "b__echo", "to-the-second"));
    assert_eq!(b.status, 200, "{}", b.text());
    assert!(answer_text(&b).contains("to-the-second"), "{}", b.text());
    // Sessions end, and the member's tapes close, written out, with the proxy.
    p.shutdown(Duration::from_secs(2));
    drop(p);

    let tapes = tapes_in(&demo_tapes);
    assert_eq!(
        tapes.len(),
        1,
        "one tape for the one member session: {tapes:?}"
    );
    let (path, lines) = &tapes[0];
    let header = &lines[0];
    assert_eq!(header["upstream"]["name"], "demo", "{header}");
    assert_eq!(header["upstream"]["kind"], "stdio", "{header}");
    assert_eq!(header["upstream"]["mode"], "shared", "{header}");
    assert!(
        header["server"]["info"]["name"].is_string(),
        "the header names the member: {header}"
    );
    let sid_short = short_sid(&sid);
    assert_eq!(header["session"], sid_short, "{header}");
    let text = std::fs::read_to_string(path).expect("tape");
    let called = lines[1..]
        .iter()
        .find(|l| l["dir"] == "c2s" && l["msg"]["method"] == "tools/call")
        .unwrap_or_else(|| panic!("the call is on the tape:\n{text}"));
    assert_eq!(called["msg"]["params"]["name"], "echo", "{called}");
    assert!(
        !text.contains("demo__echo"),
        "the member's own names:\n{text}"
    );
    assert!(
        !text.contains("to-the-second") && !text.contains("b__echo"),
        "nothing of the other member's calls:\n{text}"
    );
    assert!(
        lines[1..]
            .iter()
            .any(|l| l["dir"] == "s2c" && l["msg"]["result"].to_string().contains("to-the-demo")),
        "its answer is on the tape:\n{text}"
    );

    // The recorded member, replayed, is a fixture of the demo alone.
    let (_replay, addr) = replay(path);
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    let r = c.post(Some(&sid), &call(7, "echo", "to-the-demo"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(answer_text(&r).contains("to-the-demo"), "{}", r.text());
}

/// The Python SDK asks the demo for `test_sampling` through the federation: the demo's
/// sampling request and the client's answer are on its tape with the demo's own id (not the
/// federation's `fed:` one), and the replayed tape asks the client again.
#[test]
fn r18_record_per_upstream_server_requests_with_the_members_ids() {
    let dir = TempDir::new("r18-record-per-upstream-s2c");
    let (p, demo_tapes) = federation(&dir);
    let url = format!("http://{}/mcp", p.local_addr());
    let live = run_py_args("sampling.py", &url, &["demo__"]);
    assert_eq!(live["sampling"]["requests"], 1, "{live}");
    p.shutdown(Duration::from_secs(2));
    drop(p);

    let tapes = tapes_in(&demo_tapes);
    assert_eq!(tapes.len(), 1, "{tapes:?}");
    let (path, lines) = &tapes[0];
    let text = std::fs::read_to_string(path).expect("tape");
    let asked = lines[1..]
        .iter()
        .find(|l| l["dir"] == "s2c" && l["msg"]["method"] == "sampling/createMessage")
        .unwrap_or_else(|| panic!("the demo's request is on its tape:\n{text}"));
    let id = &asked["msg"]["id"];
    assert!(
        !id.as_str().is_some_and(|s| s.starts_with("fed:")),
        "the demo's own id: {asked}"
    );
    assert!(
        lines[1..].iter().any(|l| l["dir"] == "c2s"
            && l["msg"]["id"] == *id
            && l["msg"]["method"].is_null()
            && l["msg"]["result"].is_object()),
        "the client's answer, with the demo's id:\n{text}"
    );
    assert!(!text.contains("demo__"), "the demo's own names:\n{text}");

    let (_replay, addr) = replay(path);
    let again = run_py_args("sampling.py", &format!("http://{addr}/mcp"), &[]);
    assert_eq!(again["sampling"]["requests"], 1, "{again}");
    assert_eq!(
        again["sampling"]["result"], live["sampling"]["result"],
        "{again}"
    );
}
