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

#[test]
fn authorities_are_parsed_not_pattern_matched() {
    // Loopback: localhost in any case, 127.0.0.0/8, [::1]; an optional port of up to five
    // digits (RFC 3986 also allows an empty one); spaces and tabs around the value.
    for ok in [
        "localhost",
        "LocalHost:1",
        "localhost:",
        "127.0.0.1:65535",
        "127.255.0.9",
        "[::1]",
        "[::1]:8080",
        "[0:0:0:0:0:0:0:1]:80",
        " localhost:80\t",
    ] {
        assert!(is_loopback_host(ok), "{ok:?} is loopback");
    }
    // Not an authority (so not loopback), though each starts like one: bytes after `]`, a
    // second port, userinfo, a path, ports that are not 0..=65535, brackets around IPv4,
    // broken brackets, pct-encoding that is not.
    for bad in [
        "[::1]evil.example",
        "[::1].evil.example",
        "[::1]:80:evil.example",
        "[::1]:80]",
        "127.0.0.1:80:evil.example",
        "localhost:80:80",
        "localhost:1@evil.example",
        "user@localhost",
        "localhost/x",
        "localhost?",
        "localhost#",
        "localhost:65536",
        "localhost:123456",
        "localhost:-1",
        "localhost:+80",
        "localhost: 80",
        "[127.0.0.1]",
        "[::1",
        "::1",
        "[[::1]]",
        "[::1%25lo]",
        "local%host",
        "",
        ":80",
        "local host",
        "localhost\u{0}",
    ] {
        assert_eq!(parse_authority(bad), None, "{bad:?} is no authority");
        assert!(!is_loopback_host(bad), "{bad:?} is not loopback");
    }
    // Valid authorities whose host is not loopback.
    assert_eq!(
        parse_authority("evil.example:443"),
        Some(Host::Name("evil.example"))
    );
    assert_eq!(
        parse_authority("%6cocalhost"),
        Some(Host::Name("%6cocalhost"))
    );
    assert!(!is_loopback_host("%6cocalhost"));
    assert!(!is_loopback_host("localhost."));
    assert!(!is_loopback_host("127.0.0.1.nip.io"));
    assert!(!is_loopback_host("[::ffff:127.0.0.1]"));
    assert!(!is_loopback_host("10.0.0.1:80"));
    assert_eq!(
        parse_authority("10.0.0.1:80"),
        Some(Host::Ip([10, 0, 0, 1].into()))
    );
}

#[test]
fn origins_are_scheme_and_authority_only() {
    for ok in [
        "http://localhost",
        "https://localhost:8443",
        "http://127.0.0.1:3000",
        "http://[::1]",
        "https://[::1]:1",
    ] {
        assert!(loopback_origin(ok), "{ok:?} is a loopback origin");
    }
    for bad in [
        "http://[::1].evil.example",
        "http://[::1]evil.example",
        "http://[::1]:80.evil.example",
        "http://127.0.0.1:80:evil.example",
        "http://localhost:1@evil.example",
        "http://localhost/x",
        "http://localhost?x",
        "http:// localhost",
        "http://",
        "ws://localhost",
        "localhost",
        "null",
    ] {
        assert!(!loopback_origin(bad), "{bad:?} is not a loopback origin");
    }
}
