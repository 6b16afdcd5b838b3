use super::*;

fn req(headers: &[(&str, &str)], version: Version) -> Request {
    Request {
        method: "POST".into(),
        target: "/mcp?x=1".into(),
        version,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        remote: "127.0.0.1:1".parse().expect("addr"),
        client_cert: None,
    }
}

#[test]
fn request_accessors() {
    let r = req(
        &[("X-A", "1"), ("x-a", "2"), ("Host", "h")],
        Version::Http11,
    );
    assert_eq!(r.path(), "/mcp");
    assert_eq!(r.header("X-a"), Some("1"));
    assert_eq!(r.header_all("X-A").collect::<Vec<_>>(), vec!["1", "2"]);
    assert_eq!(r.header("missing"), None);
    assert!(r.wants_keep_alive());
    assert!(!req(&[("Connection", "foo, Close")], Version::Http11).wants_keep_alive());
    assert!(!req(&[], Version::Http10).wants_keep_alive());
    assert!(req(&[("Connection", "Keep-Alive")], Version::Http10).wants_keep_alive());
}

#[test]
fn chunk_sizes() {
    assert_eq!(parse_chunk_size(b"1a").ok(), Some(26));
    assert_eq!(parse_chunk_size(b"0").ok(), Some(0));
    assert_eq!(parse_chunk_size(b"A ; name=val").ok(), Some(10));
    assert_eq!(parse_chunk_size(b"ffffffffffffffff").ok(), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"+5",
        b"0x5",
        b" 5",
        b"5 ",
        b"5x",
        b"11111111111111111",
        b"5;\x01",
    ] {
        assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn framing_rules() {
    // An HTTP/1.1 request needs its Host (see `host_rules`).
    let f = |h: &[(&str, &str)]| {
        let mut all = vec![("Host", "h")];
        all.extend_from_slice(h);
        body_framing(&req(&all, Version::Http11), 100)
    };
    let reject = |s| Err(ReadError::Reject(s, ""));
    let status = |r: Result<BodyFraming, ReadError>| match r {
        Err(ReadError::Reject(s, _)) => reject(s),
        other => other,
    };
    assert_eq!(f(&[]), Ok(BodyFraming::None));
    assert_eq!(f(&[("Content-Length", "007")]), Ok(BodyFraming::Length(7)));
    assert_eq!(
        f(&[("Transfer-Encoding", " Chunked ")]),
        Ok(BodyFraming::Chunked)
    );
    for bad in ["abc", "+5", "-1", "1 2", "5,5", "", "1234567890123456789"] {
        assert_eq!(status(f(&[("Content-Length", bad)])), reject(400), "{bad}");
    }
    assert_eq!(
        status(f(&[("Content-Length", "5"), ("content-length", "5")])),
        reject(400)
    );
    assert_eq!(status(f(&[("Content-Length", "101")])), reject(413));
    for bad in ["gzip, chunked", "identity", "xchunked", "chunked, chunked"] {
        assert_eq!(
            status(f(&[("Transfer-Encoding", bad)])),
            reject(400),
            "{bad}"
        );
    }
    let dup = [
        ("Transfer-Encoding", "chunked"),
        ("Transfer-Encoding", "chunked"),
    ];
    assert_eq!(status(f(&dup)), reject(400));
    let both = [("Transfer-Encoding", "chunked"), ("Content-Length", "3")];
    assert_eq!(status(f(&both)), reject(400));
    let te10 = body_framing(
        &req(&[("Transfer-Encoding", "chunked")], Version::Http10),
        9,
    );
    assert_eq!(status(te10), reject(400));
    assert_eq!(status(f(&[("Host", "a")])), reject(400));
}

#[test]
fn host_rules() {
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host field (an empty value is
    // allowed); HTTP/1.0 may have none. More than one is refused in either version.
    let f = |h: &[(&str, &str)], v| match body_framing(&req(h, v), 100) {
        Err(ReadError::Reject(s, _)) => s,
        Err(ReadError::Closed) => 1,
        Ok(_) => 200,
    };
    assert_eq!(f(&[], Version::Http11), 400);
    assert_eq!(f(&[("Content-Length", "0")], Version::Http11), 400);
    assert_eq!(f(&[("Host", "")], Version::Http11), 200);
    assert_eq!(f(&[("hOST", "a:1")], Version::Http11), 200);
    assert_eq!(f(&[("Host", "a"), ("Host", "a")], Version::Http11), 400);
    assert_eq!(f(&[], Version::Http10), 200);
    assert_eq!(f(&[("Host", "a"), ("Host", "b")], Version::Http10), 400);
}

#[test]
fn head_scanner_limits() {
    let mut s = HeadScan::default();
    assert_eq!(s.scan(b"\r\nGET / HTTP/1.1\r\nA: b\r\n").ok(), Some(None));
    assert_eq!(
        s.scan(b"\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nrest").ok(),
        Some(Some(26))
    );
    let long = vec![b'a'; MAX_LINE + 1];
    assert!(matches!(
        HeadScan::default().scan(&long),
        Err(ReadError::Reject(431, _))
    ));
    let many = "A: b\r\n".repeat(MAX_HEADERS + 1);
    let many = format!("GET / HTTP/1.1\r\n{many}");
    let r = HeadScan::default().scan(many.as_bytes());
    assert!(matches!(r, Err(ReadError::Reject(431, _))));
}

#[test]
fn head_parsing() {
    let remote = "127.0.0.1:1".parse().expect("addr");
    let r = parse_head(b"GET /a?b HTTP/1.0\r\nX: \xff\r\n\r\n", remote).expect("valid");
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a?b"));
    assert_eq!(r.version, Version::Http10);
    assert_eq!(r.header("x"), Some("\u{fffd}"));
    let status = |h: &[u8]| match parse_head(h, remote) {
        Err(ReadError::Reject(s, _)) => s,
        _ => 0,
    };
    assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status(b"\r\nGET / HTTP/1.2\r\n\r\n"), 505);
    assert_eq!(status(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET /  HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTX/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nA : x\r\n\r\n"), 400);
    assert_eq!(status(b"GET /\x01 HTTP/1.1\r\n\r\n"), 400);
}
