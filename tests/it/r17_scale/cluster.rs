//! Three shadowcat instances (the demo over stdio, as processes) behind a real HAProxy
//! running `examples/haproxy.cfg`: Python SDK session clients and stateless 2026-07-28
//! clients at once; sessions stick to their instance, a kill -9 moves only that instance's
//! clients (once), a rolling restart fails no stateless call.
//!
//! Scaled down from the issue's 32 + 32 clients for 20 s to 8 + 6 for 6-10 s per test, so
//! the whole module stays within about a minute on a 2-core machine.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::infra::{HaProxy, haproxy_config, wait_until};
use super::stateless_echo;
use crate::lifecycle::wait_timeout;
use crate::support::{Conn, Peer, exe, free_port, get, run_py_args, wait_listening};

/// Health checks every 200 ms (fall 2, rise 2): a draining instance is out within ~0.5 s.
const CHECK_MS: u64 = 200;

/// One shadowcat process with a fixed id and port, restartable.
struct Instance {
    id: String,
    addr: SocketAddr,
    peer: Option<Peer>,
    /// More `reverse` flags.
    extra: Vec<String>,
}

impl Instance {
    fn start_with(id: &str, extra: &[String]) -> Instance {
        let mut i = Instance {
            id: id.to_owned(),
            addr: ([127, 0, 0, 1], free_port()).into(),
            peer: None,
            extra: extra.to_vec(),
        };
        i.spawn();
        i
    }

    fn spawn(&mut self) {
        let child = Command::new(exe())
            .args(["reverse", "--bind", &self.addr.to_string()])
            .args(["--instance-id", &self.id, "--trusted-proxy", "127.0.0.1"])
            .args(["--drain-time", "1s", "--shutdown-grace", "5s"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("shadowcat starts");
        self.peer = Some(Peer(child));
        wait_listening(self.addr);
        assert!(wait_until(Duration::from_secs(10), || get(
            self.addr,
            "/readyz",
            &[]
        )
        .status
            == 200));
    }

    fn kill9(&mut self) {
        self.peer = None; // Peer's drop: SIGKILL and reap.
    }

    /// SIGTERM, wait for the graceful exit (code 0), start again on the same port.
    fn restart(&mut self) {
        let mut peer = self.peer.take().expect("running");
        unsafe { libc::kill(peer.0.id() as i32, libc::SIGTERM) };
        let status = wait_timeout(&mut peer.0, Duration::from_secs(10)).expect("exits");
        assert_eq!(status.code(), Some(0), "{} exits cleanly", self.id);
        self.spawn();
    }

    /// Successful `tools/call`s it served so far.
    fn calls_served(&self) -> u64 {
        let text = get(self.addr, "/metrics", &[]).text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("shadowcat_requests_total{class=\"tools/call\",status=\"200\"} ")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

struct Cluster {
    instances: Vec<Instance>,
    _haproxy: HaProxy,
    front: SocketAddr,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Three instances started with `extra` flags.
    fn start_with(extra: &[String]) -> Cluster {
        let instances: Vec<Instance> = ["web1", "web2", "web3"]
            .iter()
            .map(|i| Instance::start_with(i, extra))
            .collect();
        let front: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let backends: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        let haproxy = HaProxy::start(&haproxy_config(front, &backends, CHECK_MS), front);
        let c = Cluster {
            instances,
            _haproxy: haproxy,
            front,
        };
        // Every server seen up (rise 2), then stateless calls reach all three.
        std::thread::sleep(Duration::from_millis(3 * CHECK_MS));
        c
    }
}

/// Stateless clients calling through `front` until stopped: (ok, failures, first errors).
struct Stateless {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<(u64, u64, Vec<String>)>>,
}

impl Stateless {
    fn start(front: SocketAddr, n: usize) -> Stateless {
        let stop = Arc::new(AtomicBool::new(false));
        static ID: AtomicU64 = AtomicU64::new(1);
        let handles = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
                    let mut conn = Conn::open(front);
                    while !stop.load(Ordering::Relaxed) {
                        let id = ID.fetch_add(1, Ordering::Relaxed);
                        // A connection HAProxy closes or resets is a failed call (the helper
                        // panics on it; caught here and counted).
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            stateless_echo(&mut conn, id, &[])
                        }));
                        let (good, what) = match &r {
                            Ok(r) => (
                                r.status == 200
                                    && r.messages().last().is_some_and(|m| {
                                        m["result"]["content"][0]["text"] == format!("Echo: s{id}")
                                    }),
                                format!("{} {}", r.status, r.text()),
                            ),
                            Err(_) => (false, "connection failed".to_owned()),
                        };
                        if good {
                            ok += 1;
                        } else {
                            failed += 1;
                            if errors.len() < 5 {
                                errors.push(what);
                            }
                            conn = Conn::open(front);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    (ok, failed, errors)
                })
            })
            .collect();
        Stateless { stop, handles }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, 0, Vec::new());
        for h in self.handles {
            let (ok, failed, errors) = h.join().expect("stateless client");
            total.0 += ok;
            total.1 += failed;
            total.2.extend(errors);
        }
        total
    }
}

/// Runs the SDK session driver through `front` in a thread.
fn sessions(front: SocketAddr, clients: usize, secs: u64) -> JoinHandle<Value> {
    let url = format!("http://{front}/mcp");
    std::thread::spawn(move || {
        run_py_args("scale.py", &url, &[&clients.to_string(), &secs.to_string()])
    })
}

fn clients(out: &Value) -> Vec<Value> {
    out["clients"].as_array().cloned().unwrap_or_default()
}

#[test]
fn haproxy_keeps_sessions_on_their_instance_and_a_kill_moves_only_its_clients() {
    let mut c = Cluster::start();
    // Stateless calls spread over all three (least connections).
    let before: Vec<u64> = c.instances.iter().map(Instance::calls_served).collect();
    let stateless = Stateless::start(c.front, 6);
    let driver = sessions(c.front, 8, 8);
    let held = |c: &Cluster| -> Vec<f64> {
        c.instances
            .iter()
            .map(|i| super::metric(&get(i.addr, "/metrics", &[]).text(), "shadowcat_sessions"))
            .collect()
    };
    // Every SDK client has its session (Python starts in a second or two), then some calls.
    assert!(wait_until(Duration::from_secs(20), || held(&c)
        .iter()
        .sum::<f64>()
        >= 8.0));
    std::thread::sleep(Duration::from_millis(1000));
    let mid: Vec<u64> = c.instances.iter().map(Instance::calls_served).collect();
    for (i, inst) in c.instances.iter().enumerate() {
        assert!(mid[i] > before[i], "{} served no call: {mid:?}", inst.id);
    }
    // kill -9 mid-run the instance holding the most sessions (least connections does not
    // promise every instance some: the SDK clients' GET streams count as connections).
    let held = held(&c);
    let victim = (0..3)
        .max_by(|a, b| held[*a].total_cmp(&held[*b]))
        .unwrap_or(0);
    let victim_id = c.instances[victim].id.clone();
    assert!(held[victim] > 0.0, "{held:?}");
    let killed_at = Instant::now();
    c.instances[victim].kill9();
    let out = driver.join().expect("driver");
    let (ok, failed, errors) = stateless.finish();
    eprintln!(
        "sessions: {out}\nstateless: {ok} ok, {failed} failed {errors:?} (kill at {killed_at:?})"
    );
    let all = clients(&out);
    assert_eq!(all.len(), 8);
    let first: std::collections::HashSet<String> = all
        .iter()
        .filter_map(|c| c["instances"][0].as_str().map(str::to_owned))
        .collect();
    assert!(
        first.len() >= 2,
        "sessions spread over the instances: {first:?} {held:?}"
    );
    assert!(first.contains(&victim_id));
    for cl in &all {
        let instances: Vec<&str> = cl["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let errors = cl["errors"].as_array().unwrap();
        assert!(cl["ok"].as_u64().unwrap() > 0, "{cl}");
        if instances[0] == victim_id {
            // Its instance died: one failure, then a new session elsewhere, which stays.
            assert_eq!(errors.len(), 1, "{cl}");
            assert!(instances.len() == errors.len() + 1, "{cl}");
            assert!(instances[1..].iter().all(|i| *i != victim_id), "{cl}");
        } else {
            assert!(
                errors.is_empty() && instances.len() == 1,
                "session moved or failed: {cl}"
            );
        }
    }
    // Stateless calls: HAProxy retries one that hit the dead instance on another one.
    assert!(ok > 0);
    assert_eq!(failed, 0, "{errors:?}");
}

#[test]
fn rolling_restart_behind_haproxy_fails_no_stateless_call() {
    let mut c = Cluster::start();
    let stateless = Stateless::start(c.front, 6);
    let driver = sessions(c.front, 6, 12);
    let held = |c: &Cluster| -> f64 {
        c.instances
            .iter()
            .map(|i| super::metric(&get(i.addr, "/metrics", &[]).text(), "shadowcat_sessions"))
            .sum()
    };
    assert!(wait_until(Duration::from_secs(20), || held(&c) >= 6.0));
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..c.instances.len() {
        c.instances[i].restart();
        // Back in HAProxy's rotation (rise 2) before the next one goes.
        std::thread::sleep(Duration::from_millis(3 * CHECK_MS));
    }
    let out = driver.join().expect("driver");
    let (ok, failed, errors) = stateless.finish();
    eprintln!("sessions: {out}\nstateless: {ok} ok, {failed} failed {errors:?}");
    assert!(ok > 0);
    assert_eq!(
        failed, 0,
        "stateless calls failed during the rolling restart: {errors:?}"
    );
    for cl in clients(&out) {
        let errors = cl["errors"].as_array().unwrap();
        let instances = cl["instances"].as_array().unwrap();
        assert!(cl["ok"].as_u64().unwrap() > 0, "{cl}");
        // Each failure is its instance going away (at most one per restart), followed by a
        // new session; no wrong answers.
        assert!(errors.len() <= 3, "{cl}");
        assert!(instances.len() <= errors.len() + 1, "{cl}");
        assert!(!cl.to_string().contains("wrong answer"), "{cl}");
    }
}

/// A stateless 2026-07-28 `tools/call` of `test_sampling` declaring `sampling`, with
/// `requestState` and `inputResponses` when retrying.
fn sampling_call(conn: &mut Conn, id: u64, retry: Option<(&str, &str)>) -> Value {
    let mut params = serde_json::json!({
        "name": "test_sampling",
        "arguments": {"prompt": "Say hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}},
    });
    if let Some((state, key)) = retry {
        params["requestState"] = state.into();
        params["inputResponses"] = serde_json::json!({ key: {"role": "assistant",
            "content": {"type": "text", "text": "hi"}, "model": "m"} });
    }
    let body = serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params});
    let mut h: Vec<(&str, &str)> = crate::support::JSON_HEADERS.to_vec();
    h.extend([
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "test_sampling"),
    ]);
    conn.request("POST", "/mcp", &h, body.to_string().as_bytes())
        .json()
}

/// Issue #17 with #13: a bridged call waiting for input lives on one instance; its
/// `requestState` names it before the first `.`, and the example's HAProxy rules send the
/// client's retry there (without them, leastconn would send two retries in three elsewhere,
/// which refuse a foreign state).
#[test]
fn haproxy_sends_a_request_state_retry_to_the_instance_holding_the_call() {
    let legacy = format!("{} demo-server --era legacy", exe());
    let c = Cluster::start_with(&["--stdio".into(), legacy]);
    let mut owners = std::collections::HashSet::new();
    for round in 0..6u64 {
        // A fresh connection each time, so leastconn has every server to choose from.
        let first = sampling_call(&mut Conn::open(c.front), 10 * round + 1, None);
        let r = &first["result"];
        assert_eq!(r["resultType"], "input_required", "{first}");
        let state = r["requestState"].as_str().expect("requestState").to_owned();
        let key = r["inputRequests"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .expect("an input request");
        owners.insert(state.split('.').next().unwrap_or_default().to_owned());
        let done = sampling_call(
            &mut Conn::open(c.front),
            10 * round + 2,
            Some((&state, &key)),
        );
        assert_eq!(
            done["result"]["resultType"], "complete",
            "round {round}: {done}"
        );
        let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
        assert_eq!(text, "LLM response: hi", "{done}");
    }
    // The calls were spread, so the rules, not luck, kept each retry on its instance.
    assert!(owners.len() >= 2, "all on one instance: {owners:?}");
}

/// Statuses of `n` stateless echo calls sent from the loopback address `src` (a socket bound
/// to it before connecting: HAProxy then sees that address as the client's), one connection
/// each.
fn calls_from(front: SocketAddr, src: &str, n: usize) -> Vec<u16> {
    let script = r#"
import socket, sys
front_host, front_port, src, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
body = ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
        '{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
        '"io.modelcontextprotocol/clientCapabilities":{}}}}').encode()
head = ("POST /mcp HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        "Mcp-Method: tools/call\r\nMcp-Name: echo\r\nConnection: close\r\n"
        "Content-Length: %d\r\n\r\n" % (front_host, front_port, len(body))).encode()
out = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((front_host, front_port))
    s.sendall(head + body)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    out.append(data.split(b" ")[1].decode() if data.count(b" ") else "0")
print(" ".join(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .args([front.ip().to_string(), front.port().to_string()])
        .args([src.to_owned(), n.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect()
}

/// `option forwardfor` in examples/haproxy.cfg and `--trusted-proxy 127.0.0.1` on the
/// instances: each instance keys its per-client limit by the client's own address, not
/// HAProxy's. A client at 127.0.0.2 that runs into its limit leaves a client at 127.0.0.3
/// untouched (without the forwarded address both would be "127.0.0.1", one bucket: checked
/// by hand with another --trusted-proxy, the second client got 429s).
#[test]
fn r17_haproxy_passes_the_client_address_for_per_client_limits() {
    let c = Cluster::start_with(&["--rate-limit".into(), "1/3".into()]);
    let a = calls_from(c.front, "127.0.0.2", 24);
    assert!(a.iter().all(|s| *s == 200 || *s == 429), "{a:?}");
    assert!(a.contains(&429), "127.0.0.2 never limited: {a:?}");
    // Three instances with three requests of burst each: at most 9 at once, plus refill.
    assert!(a.iter().filter(|s| **s == 200).count() <= 9 + 3, "{a:?}");
    let b = calls_from(c.front, "127.0.0.3", 3);
    assert_eq!(
        b,
        vec![200, 200, 200],
        "127.0.0.3 shares 127.0.0.2's bucket: {a:?} {b:?}"
    );
}
