//! Issue #17: many instances behind a load balancer. Session ids that name their instance,
//! graceful scale-in, shared limits in Redis, and three instances behind a real HAProxy.
//! Real `haproxy` and `redis-server` (Debian packages, `scripts/lib.sh` installs them) run
//! on free loopback ports, started and stopped by the tests (`infra.rs`); a test whose
//! binary is missing fails with the install hint rather than passing quietly.

use crate::support::{Conn, demo_proxy, get, session_headers};

mod infra;

/// The value of an unlabelled counter in a `/metrics` text, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn session_ids_name_their_instance_and_foreign_ones_are_404() {
    let a = demo_proxy(&["--instance-id", "web-a"]);
    let b = demo_proxy(&["--instance-id", "web-b"]);
    let sid = Conn::open(a.local_addr()).initialize();
    let (instance, random) = sid.split_once('.').expect("instance.random");
    assert_eq!(instance, "web-a");
    assert_eq!(random.len(), 32);
    // At its own instance the session works; at another it is unknown (the client
    // re-initializes there) and counted as foreign.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(
        Conn::open(a.local_addr()).post(Some(&sid), ping).status,
        200
    );
    let r = Conn::open(b.local_addr()).post(Some(&sid), ping);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -32001);
    let del = Conn::open(b.local_addr()).request("DELETE", "/mcp", &session_headers(&sid), b"");
    assert_eq!(del.status, 404);
    let m = get(b.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 2.0);
    // An unknown id of its own instance is not foreign.
    let own = format!("web-b.{random}");
    assert_eq!(
        Conn::open(b.local_addr()).post(Some(&own), ping).status,
        404
    );
    let m = get(b.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 2.0);
    let m = get(a.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 0.0);
}
