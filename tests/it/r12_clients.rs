//! Issue #12, items 3, 4 and 6: no client can spy on, reconfigure or lock out another. A stdio
//! child's messages reach only the request or session they provably belong to (and each
//! session's own log level); the admin API refuses what a browser page could send it (DNS
//! rebinding, CSRF); one client cannot take every session or stream slot, and `Retry-After`
//! tells the real wait.

use std::net::SocketAddr;

use crate::support::*;

/// POSTed within the admin tests: what a CSRF form can send.
const FORM: [(&str, &str); 1] = [("Content-Type", "text/plain")];
const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn admin_proxy() -> shadowcat::Shadowcat {
    demo_proxy(&["--admin-bind", "127.0.0.1:0"])
}

fn admin(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    Conn::open(addr).request(method, path, headers, b"")
}

#[test]
fn r12_4_admin_refuses_foreign_host_names() {
    let p = admin_proxy();
    let a = p.local_addr();
    let ad = p.admin_addr().expect("admin listener");
    let sid = Conn::open(a).initialize();
    let rebound = format!("rebind.attacker.example:{}", ad.port());
    for path in ["/admin/sessions", "/admin/config", "/admin/upstreams"] {
        let r = admin(ad, "GET", path, &[("Host", &rebound)]);
        assert_eq!(
            r.status,
            403,
            "GET {path} under a rebound name: {}",
            r.text()
        );
        assert!(!r.text().contains(&sid[..8]), "{path} leaked the session");
    }
    let kill = format!("/admin/sessions/{}", &sid[..8]);
    let mut h = JSON.to_vec();
    h.push(("Host", &rebound));
    assert_eq!(admin(ad, "DELETE", &kill, &h).status, 403);
    let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200, "the session survived the rebound DELETE");
    // The operator's own names still work.
    for host in [
        format!("127.0.0.1:{}", ad.port()),
        format!("localhost:{}", ad.port()),
    ] {
        let r = admin(ad, "GET", "/admin/sessions", &[("Host", &host)]);
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.json()["count"], 1);
    }
}

#[test]
fn r12_4_admin_refuses_browser_origins_and_form_posts() {
    let p = admin_proxy();
    let a = p.local_addr();
    let ad = p.admin_addr().expect("admin listener");
    let pids = p.stdio_child_pids();
    let restart = "/admin/upstreams/shadowcat/restart";
    // A cross-site form POST: Origin and a CORS-safelisted type.
    let mut h = FORM.to_vec();
    h.push(("Origin", "https://evil.example"));
    let r = admin(ad, "POST", restart, &h);
    assert_eq!(r.status, 403, "{}", r.text());
    // Any Origin at all, even with the right type or on a read, even a loopback one.
    for origin in ["https://evil.example", "http://localhost:1", "null"] {
        let mut h = JSON.to_vec();
        h.push(("Origin", origin));
        assert_eq!(admin(ad, "POST", restart, &h).status, 403, "{origin}");
        let r = admin(ad, "GET", "/admin/config", &[("Origin", origin)]);
        assert_eq!(r.status, 403, "{origin}");
    }
    // No Origin but no JSON either (a form, or a bare curl -d): 415.
    assert_eq!(admin(ad, "POST", restart, &FORM).status, 415);
    assert_eq!(admin(ad, "POST", restart, &[]).status, 415);
    let sid = Conn::open(a).initialize();
    let kill = format!("/admin/sessions/{}", &sid[..8]);
    assert_eq!(admin(ad, "DELETE", &kill, &FORM).status, 415);
    assert_eq!(
        p.stdio_child_pids(),
        pids,
        "no refused request restarted a child"
    );
    let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200, "no refused request ended the session");
    // The operator's JSON requests pass.
    let json_utf8 = [("Content-Type", "application/json; charset=utf-8")];
    assert_eq!(admin(ad, "DELETE", &kill, &json_utf8).status, 200);
    let r = admin(ad, "POST", restart, &JSON);
    assert_eq!(r.status, 200, "{}", r.text());
}
