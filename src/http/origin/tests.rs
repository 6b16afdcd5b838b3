use super::*;

#[test]
fn origin_and_host_rules() {
    assert!(is_loopback_host("localhost:8080"));
    assert!(is_loopback_host("127.0.0.1"));
    assert!(is_loopback_host("[::1]:9"));
    assert!(!is_loopback_host("evil.example"));
    assert!(!is_loopback_host("localhost.evil.example:80"));
    assert!(loopback_origin("http://localhost:3000"));
    assert!(loopback_origin("https://127.0.0.1"));
    assert!(!loopback_origin("http://evil.example"));
    assert!(!loopback_origin("null"));
    assert!(!loopback_origin("file://localhost"));
}
