use super::*;

fn refused_url() -> String {
    // A port that was just free: nothing listens, so connects are refused.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/mcp")
}

fn set_of(urls: Vec<String>, failures: u32) -> ReplicaSet {
    let mut urls = urls.into_iter();
    let cfg = HttpUpstreamConfig {
        url: urls.next().expect("one url"),
        replicas: urls.collect(),
        pool: 2,
        stream_slots: 2,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        stream_idle: Duration::from_secs(2),
        reconnect_max: Duration::from_secs(1),
        headers: Vec::new(),
        tls: Default::default(),
        input_timeout: Duration::from_secs(5),
        breaker: ReplicaConfig {
            failures,
            backoff: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            probe_interval: Duration::from_secs(60),
        },
    };
    ReplicaSet::new(&cfg, None).expect("set")
}

fn ping() -> Call<'static> {
    Call {
        msg: crate::jsonrpc::Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .expect("message"),
        session: None,
        deadline: Instant::now() + Duration::from_secs(5),
        headers: Vec::new(),
    }
}

#[test]
fn verdicts_count_no_answer_and_5xx_only() {
    let relay = |status| Reply::Relay {
        status,
        content_type: String::new(),
        body: Vec::new(),
    };
    assert!(matches!(verdict(Ok(&relay(503))), Verdict::Failed(_)));
    assert_eq!(verdict(Ok(&relay(404))), Verdict::Answered);
    assert_eq!(verdict(Ok(&Reply::Accepted)), Verdict::Answered);
    // A timeout may be a slow call: probed at once, not counted.
    assert!(matches!(verdict(Err(&Error::Timeout)), Verdict::Suspect(_)));
    assert_eq!(verdict(Err(&Error::UpstreamSessionLost)), Verdict::Answered);
    assert_eq!(verdict(Err(&Error::UpstreamBusy)), Verdict::Neutral);
    let refused = Error::UpstreamUnreachable {
        upstream: "x".into(),
        source: Box::new(ureq::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))),
    };
    assert!(matches!(verdict(Err(&refused)), Verdict::Failed(_)));
    assert!(undelivered(&refused));
    let reset = Error::UpstreamUnreachable {
        upstream: "x".into(),
        source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    };
    assert!(
        !undelivered(&reset),
        "a reset may come after the request arrived"
    );
}

#[test]
fn refused_replicas_are_skipped_then_ejected_and_then_none_is_left() {
    let set = set_of(vec![refused_url(), refused_url()], 2);
    assert_eq!(set.name().split('+').nth(1), Some("1"));
    assert!(set.ready().is_ok());
    // Each stateless request tries both replicas (never delivered), one failure each.
    let e = set.forward(ping()).err().expect("both refuse");
    assert!(undelivered(&e), "{e}");
    let shown = set.replicas();
    assert!(shown.iter().all(|r| r.failures == 1 && r.state == "closed"));
    // The second failure in a row ejects both.
    set.forward(ping()).err().expect("both refuse");
    let shown = set.replicas();
    assert!(
        shown.iter().all(|r| r.state == "open" && r.ejections == 1),
        "{shown:?}"
    );
    assert!(
        shown.iter().all(|r| r.inflight == 0),
        "nothing left in flight"
    );
    let e = set.forward(ping()).err().expect("none left");
    assert!(
        matches!(e, Error::Unavailable(ref why) if why.contains("all 2 replicas are ejected")),
        "{e}"
    );
    assert!(set.ready().is_err());
    set.shutdown(Duration::from_millis(100));
}

#[test]
fn a_session_on_an_ejected_replica_is_lost() {
    let set = set_of(vec![refused_url(), refused_url()], 1);
    let cfg = crate::config::SessionConfig {
        max: 4,
        max_per_client: 4,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    };
    let table = crate::session::Sessions::new(&cfg);
    let binding = Binding {
        child: 1,
        upstream_id: Mutex::new(Some("abc".into())),
        ..Binding::default()
    };
    let s = table
        .build(String::new(), binding, None, String::new())
        .expect("session");
    set.set.replicas[1].sessions.store(1, Ordering::Relaxed);
    let call = Call {
        session: Some(&s),
        ..ping()
    };
    // Refused: the replica is ejected (one failure suffices here) and the session lost.
    assert!(matches!(set.forward(call), Err(Error::UpstreamSessionLost)));
    assert_eq!(set.replicas()[1].state, "open");
    assert_eq!(set.replicas()[0].state, "closed", "the other is untouched");
    let call = Call {
        session: Some(&s),
        ..ping()
    };
    assert!(matches!(set.forward(call), Err(Error::UpstreamSessionLost)));
    set.close(&s);
    assert_eq!(set.replicas()[1].sessions, 0);
    set.shutdown(Duration::from_millis(100));
}

/// A loopback server answering each of its first `n` requests with `response`.
fn fixture(response: &'static str, n: usize) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/mcp", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ = s.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn an_initialize_answered_5xx_goes_to_the_next_replica() {
    let bad = fixture(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        4,
    );
    let good = fixture(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\n\
         Content-Length: 36\r\nConnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        4,
    );
    let set = set_of(vec![bad, good], 3);
    let init = || Call {
        msg: crate::jsonrpc::Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        )
        .expect("message"),
        ..ping()
    };
    // The second goes to the replica with fewer sessions first: the failing one.
    for _ in 0..2 {
        let (binding, reply) = set.initialize(init()).expect("initialized");
        assert_eq!(binding.child, 1);
        assert_eq!(lock(&binding.upstream_id).as_deref(), Some("s1"));
        assert!(matches!(reply, Reply::Message(_)));
    }
    let shown = set.replicas();
    assert!(shown[0].failures >= 1, "{shown:?}");
    assert_eq!(shown[0].last_error.as_deref(), Some("answered 503"));
    assert_eq!(shown[1].sessions, 2);
    set.shutdown(Duration::from_millis(100));
}
