use super::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn client(r: &str) -> Limiter {
    Limiter::new(Limits {
        per_client: Some(rate(r)),
        ..Limits::default()
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn parses_good_rates() {
    assert_eq!(
        rate("20/40"),
        Rate {
            per_sec: 20.0,
            burst: 40
        }
    );
    assert_eq!(
        rate("0.5/3"),
        Rate {
            per_sec: 0.5,
            burst: 3
        }
    );
    assert_eq!(rate(" 1 / 2 ").burst, 2);
    assert_eq!(rate("20/40").to_string(), "20/40");
    assert_eq!(rate("0.5/3").to_string(), "0.5/3");
    assert_eq!(rate(&rate("0.1/7").to_string()), rate("0.1/7"));
}

#[test]
fn refuses_bad_rates() {
    for bad in [
        "0/5",
        "-1/2",
        "5",
        "5/0",
        "nan/2",
        "inf/2",
        "-inf/2",
        "",
        "/",
        "a/b",
        "1/2/3",
        "5/1.5",
        "5/-1",
        "1/4294967296",
    ] {
        let err = bad.parse::<Rate>().unwrap_err();
        assert!(err.starts_with("rate limit "), "{bad}: {err}");
        assert!(!err.contains('\n'));
    }
    assert_eq!(
        "x".parse::<Rate>().unwrap_err(),
        "rate limit \"x\": expected RATE/BURST such as 20/40"
    );
    assert!("0/5".parse::<Rate>().unwrap_err().contains("RATE"));
    assert!("5/0".parse::<Rate>().unwrap_err().contains("BURST"));
}

#[test]
fn parses_tool_limits() {
    let t: ToolLimit = "echo=2/4".parse().unwrap();
    assert_eq!(t.tool, "echo");
    assert_eq!(t.rate, rate("2/4"));
    assert_eq!(t.to_string(), "echo=2/4");
    for bad in ["=2/4", "echo", "echo=", "echo=0/4", " =1/1", ""] {
        let err = bad.parse::<ToolLimit>().unwrap_err();
        assert!(err.starts_with("tool limit "), "{bad}: {err}");
    }
    assert_eq!(
        "echo".parse::<ToolLimit>().unwrap_err(),
        "tool limit \"echo\": expected NAME=RATE/BURST such as search=2/4"
    );
}

#[test]
fn parses_cidrs_and_tests_containment() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains(ip("10.255.1.2")));
    assert!(!c.contains(ip("11.0.0.1")));
    assert!(!c.contains(ip("::1")));
    assert_eq!(c.to_string(), "10.0.0.0/8");

    // Host bits are dropped.
    let c: Cidr = "192.168.1.77/24".parse().unwrap();
    assert_eq!(c.to_string(), "192.168.1.0/24");
    assert!(c.contains(ip("192.168.1.1")));
    assert!(!c.contains(ip("192.168.2.1")));

    // Bare addresses.
    let c: Cidr = "127.0.0.1".parse().unwrap();
    assert_eq!(c.prefix(), 32);
    assert!(c.contains(ip("127.0.0.1")));
    assert!(!c.contains(ip("127.0.0.2")));
    let c: Cidr = "::1".parse().unwrap();
    assert_eq!(c.to_string(), "::1/128");
    assert!(c.contains(ip("::1")));
    assert!(!c.contains(ip("::2")));
    assert!(!c.contains(ip("127.0.0.1")));

    // IPv6.
    let c: Cidr = "fd00::/8".parse().unwrap();
    assert!(c.contains(ip("fd12:3456::1")));
    assert!(!c.contains(ip("fe80::1")));
    assert!(!c.contains(ip("10.0.0.1")));

    // /0.
    let any4: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(any4.contains(ip("1.2.3.4")));
    assert!(any4.contains(ip("255.255.255.255")));
    assert!(!any4.contains(ip("2001:db8::1")));
    let any6: Cidr = "::/0".parse().unwrap();
    assert!(any6.contains(ip("2001:db8::1")));

    // IPv4-mapped IPv6 addresses are IPv4.
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains(ip("::ffff:10.1.2.3")));
    assert!(!c.contains(ip("::ffff:11.1.2.3")));
    let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
    assert!(mapped.contains(ip("10.9.9.9")));
    assert!(!mapped.contains(ip("11.9.9.9")));

    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0/8",
        "host/8",
        "",
        "[::1]/128",
    ] {
        let err = bad.parse::<Cidr>().unwrap_err();
        assert!(err.starts_with("cidr "), "{bad}: {err}");
    }
    assert!(
        "10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0 to 32")
    );
}

#[test]
fn untrusted_peer_ignores_forwarded_for() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    let got = client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &trusted);
    assert_eq!(got, ip("203.0.113.9"));
    // No trusted proxies at all: never believed.
    assert_eq!(
        client_ip(ip("10.0.0.1"), ["1.2.3.4"].into_iter(), &[]),
        ip("10.0.0.1")
    );
}

#[test]
fn trusted_peer_gives_the_rightmost_untrusted_entry() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    // The client put a spoofed address first; the proxy appended the real one.
    let got = client_ip(
        ip("10.0.0.1"),
        ["6.6.6.6, 198.51.100.7"].into_iter(),
        &trusted,
    );
    assert_eq!(got, ip("198.51.100.7"));
    // A spoofed trusted address left of the real client does not help either.
    let got = client_ip(
        ip("10.0.0.1"),
        ["10.9.9.9, 198.51.100.7"].into_iter(),
        &trusted,
    );
    assert_eq!(got, ip("198.51.100.7"));
}

#[test]
fn chains_of_trusted_proxies_are_skipped() {
    let trusted = cidrs(&["10.0.0.0/8", "fd00::/8"]);
    let got = client_ip(
        ip("10.0.0.1"),
        ["6.6.6.6, 198.51.100.7, 10.0.0.3", "fd00::5,10.0.0.2"].into_iter(),
        &trusted,
    );
    assert_eq!(got, ip("198.51.100.7"));
    // Every entry trusted: the leftmost one, appended by a trusted proxy.
    let got = client_ip(ip("10.0.0.1"), ["10.0.0.7, 10.0.0.3"].into_iter(), &trusted);
    assert_eq!(got, ip("10.0.0.7"));
}

#[test]
fn garbage_stops_the_walk() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    // Nothing left of the garbage is believed; the last trusted hop is charged.
    let got = client_ip(
        ip("10.0.0.1"),
        ["6.6.6.6, unknown, 10.0.0.3"].into_iter(),
        &trusted,
    );
    assert_eq!(got, ip("10.0.0.3"));
    let got = client_ip(ip("10.0.0.1"), ["6.6.6.6, garbage"].into_iter(), &trusted);
    assert_eq!(got, ip("10.0.0.1"));
}

#[test]
fn absent_or_empty_header_gives_the_peer() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    assert_eq!(
        client_ip(ip("10.0.0.1"), std::iter::empty(), &trusted),
        ip("10.0.0.1")
    );
    assert_eq!(
        client_ip(ip("10.0.0.1"), ["", " , "].into_iter(), &trusted),
        ip("10.0.0.1")
    );
}

#[test]
fn forwarded_for_forms_and_canonical_results() {
    let trusted = cidrs(&["10.0.0.0/8"]);
    let one = |v: &str| client_ip(ip("10.0.0.1"), [v].into_iter(), &trusted);
    assert_eq!(one("1.2.3.4:5678"), ip("1.2.3.4"));
    assert_eq!(one("[2001:db8::1]:443"), ip("2001:db8::1"));
    assert_eq!(one("[2001:db8::1]"), ip("2001:db8::1"));
    assert_eq!(one("2001:db8::1"), ip("2001:db8::1"));
    assert_eq!(one("::ffff:1.2.3.4"), ip("1.2.3.4"));
    // A mapped trusted peer is trusted, and a mapped untrusted peer comes back as IPv4.
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.1"), ["1.2.3.4"].into_iter(), &trusted),
        ip("1.2.3.4")
    );
    assert_eq!(
        client_ip(ip("::ffff:8.8.8.8"), ["1.2.3.4"].into_iter(), &trusted),
        ip("8.8.8.8")
    );
}

#[test]
fn burst_allows_exactly_burst_requests_then_denies() {
    let l = client("1/5");
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(l.check("ip:1.2.3.4", None, t0), Ok(()));
    }
    let d = l.check("ip:1.2.3.4", None, t0).unwrap_err();
    assert_eq!(d.scope, Scope::Client);
    assert_eq!(d.retry_after, secs(1.0));
}

#[test]
fn retry_after_arithmetic() {
    let t0 = Instant::now();

    let l = client("2/1");
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_millis(500));
    assert_eq!(d.retry_after_secs(), 1);

    let l = client("0.1/1");
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_secs(10));
    assert_eq!(d.retry_after_secs(), 10);

    // A third of a request per second: 3 s, not 3 s and a rounding error.
    let l = Limiter::new(Limits {
        per_client: Some(Rate {
            per_sec: 1.0 / 3.0,
            burst: 1,
        }),
        ..Limits::default()
    });
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_secs(3));
    assert_eq!(d.retry_after_secs(), 3);

    // 0.3/s: 3.333... s, rounded up to 4 for the header.
    let l = client("0.3/1");
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_nanos(3_333_333_334));
    assert_eq!(d.retry_after_secs(), 4);

    // Sub-second waits still say 1.
    let l = client("1000/1");
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_millis(1));
    assert_eq!(d.retry_after_secs(), 1);
}

#[test]
fn retry_after_secs_edges() {
    let d = |retry_after| Denied {
        scope: Scope::Client,
        retry_after,
    };
    assert_eq!(d(Duration::ZERO).retry_after_secs(), 1);
    assert_eq!(d(Duration::from_nanos(1)).retry_after_secs(), 1);
    assert_eq!(d(Duration::from_secs(2)).retry_after_secs(), 2);
    assert_eq!(d(Duration::new(2, 1)).retry_after_secs(), 3);
    assert_eq!(d(Duration::MAX).retry_after_secs(), u64::MAX);
}

#[test]
fn partial_refill_shortens_the_wait() {
    let l = client("2/1");
    let t0 = Instant::now();
    l.check("k", None, t0).unwrap();
    let d = l.check("k", None, t0 + secs(0.25)).unwrap_err();
    assert_eq!(d.retry_after, secs(0.25));
    assert_eq!(d.retry_after_secs(), 1);
    assert!(l.check("k", None, t0 + secs(0.5)).is_ok());
}

#[test]
fn coming_back_after_retry_after_is_allowed() {
    for r in ["3/1", "7/2", "0.3/1", "1000/5", "0.7/3", "123.456/4"] {
        let l = client(r);
        let mut now = Instant::now();
        for _ in 0..50 {
            let d = loop {
                match l.check("k", None, now) {
                    Ok(()) => {}
                    Err(d) => break d,
                }
            };
            // A microsecond early is too early; on time is enough.
            if d.retry_after > Duration::from_micros(1) {
                assert!(
                    l.check("k", None, now + d.retry_after - Duration::from_micros(1))
                        .is_err(),
                    "{r}"
                );
            }
            now += d.retry_after;
            assert_eq!(l.check("k", None, now), Ok(()), "{r}");
        }
    }
}

#[test]
fn refill_caps_at_burst() {
    let l = client("2/3");
    let t0 = Instant::now();
    for _ in 0..3 {
        l.check("k", None, t0).unwrap();
    }
    let later = t0 + Duration::from_secs(1000);
    for _ in 0..3 {
        l.check("k", None, later).unwrap();
    }
    assert!(l.check("k", None, later).is_err());
}

#[test]
fn time_going_backwards_refills_nothing() {
    let l = client("1/1");
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(5);
    l.check("k", None, t1).unwrap();
    let d = l.check("k", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_secs(1));
    assert!(l.check("k", None, t1 + secs(0.5)).is_err());
    assert!(l.check("k", None, t1 + secs(1.0)).is_ok());
}

#[test]
fn keys_are_independent() {
    let l = client("1/1");
    let t0 = Instant::now();
    l.check("principal:alice", None, t0).unwrap();
    assert!(l.check("principal:alice", None, t0).is_err());
    assert!(l.check("ip:10.0.0.1", None, t0).is_ok());
    assert!(l.check("ip:10.0.0.1", None, t0).is_err());
    assert!(l.check("principal:bob", None, t0).is_ok());
    assert_eq!(l.buckets(), 3);
    assert_eq!(l.keys(), 3);
}

#[test]
fn global_limit_refuses_across_keys() {
    let l = Limiter::new(Limits {
        global: Some(rate("1/3")),
        ..Limits::default()
    });
    let t0 = Instant::now();
    assert!(l.check("ip:1.1.1.1", None, t0).is_ok());
    assert!(l.check("ip:2.2.2.2", None, t0).is_ok());
    assert!(l.check("principal:carol", Some("echo"), t0).is_ok());
    let d = l.check("ip:3.3.3.3", None, t0).unwrap_err();
    assert_eq!(d.scope, Scope::Global);
    assert_eq!(d.retry_after, Duration::from_secs(1));
    // The global bucket alone keeps no keyed state.
    assert_eq!(l.buckets(), 0);
    assert!(l.check("ip:3.3.3.3", None, t0 + secs(1.0)).is_ok());
}

#[test]
fn tool_limit_applies_to_that_tool_per_key() {
    let l = Limiter::new(Limits {
        tools: vec!["echo=1/1".parse().unwrap()],
        ..Limits::default()
    });
    let t0 = Instant::now();
    assert!(l.check("a", Some("echo"), t0).is_ok());
    let d = l.check("a", Some("echo"), t0).unwrap_err();
    assert_eq!(d.scope, Scope::Tool);
    assert_eq!(d.retry_after, Duration::from_secs(1));
    // Other tools and other methods are not limited; other keys have their own bucket.
    for _ in 0..10 {
        assert!(l.check("a", Some("add"), t0).is_ok());
        assert!(l.check("a", None, t0).is_ok());
    }
    assert!(l.check("b", Some("echo"), t0).is_ok());
    assert!(l.check("b", Some("echo"), t0).is_err());
    assert_eq!(l.buckets(), 2);
}

#[test]
fn charging_is_all_or_nothing() {
    let t0 = Instant::now();
    // Refused by the tool bucket: the client's token is not taken.
    let l = Limiter::new(Limits {
        per_client: Some(rate("1/2")),
        tools: vec!["echo=1/1".parse().unwrap()],
        ..Limits::default()
    });
    assert!(l.check("a", Some("echo"), t0).is_ok());
    for _ in 0..5 {
        assert_eq!(
            l.check("a", Some("echo"), t0).unwrap_err().scope,
            Scope::Tool
        );
    }
    assert!(l.check("a", None, t0).is_ok());
    assert_eq!(l.check("a", None, t0).unwrap_err().scope, Scope::Client);

    // Refused by the client bucket: the global token is not taken.
    let l = Limiter::new(Limits {
        per_client: Some(rate("1/1")),
        global: Some(rate("1/2")),
        ..Limits::default()
    });
    assert!(l.check("a", None, t0).is_ok());
    for _ in 0..5 {
        assert_eq!(l.check("a", None, t0).unwrap_err().scope, Scope::Client);
    }
    assert!(l.check("b", None, t0).is_ok());
    assert_eq!(l.check("c", None, t0).unwrap_err().scope, Scope::Global);
    // A new key refused by the global bucket alone is not stored.
    assert_eq!(l.keys(), 2);

    // Refused by the global bucket: the client's and the tool's tokens are not taken.
    let l = Limiter::new(Limits {
        per_client: Some(rate("1/1")),
        global: Some(rate("1/1")),
        tools: vec!["echo=1/1".parse().unwrap()],
        ..Limits::default()
    });
    assert!(l.check("a", None, t0).is_ok());
    let t1 = t0 + secs(0.5);
    let d = l.check("b", Some("echo"), t1).unwrap_err();
    assert_eq!(d.scope, Scope::Global);
    assert_eq!(d.retry_after, secs(0.5));
    assert!(l.check("b", Some("echo"), t0 + secs(1.0)).is_ok());
}

#[test]
fn the_longest_wait_wins() {
    let t0 = Instant::now();
    let l = Limiter::new(Limits {
        per_client: Some(rate("1/1")),
        global: Some(rate("0.1/1")),
        tools: vec!["echo=0.5/1".parse().unwrap()],
        ..Limits::default()
    });
    assert!(l.check("a", Some("echo"), t0).is_ok());
    let d = l.check("a", Some("echo"), t0).unwrap_err();
    assert_eq!(
        d,
        Denied {
            scope: Scope::Global,
            retry_after: Duration::from_secs(10)
        }
    );
    // After 9.5 s the global bucket needs 0.5 s, the client none, the tool none.
    let d = l.check("a", Some("echo"), t0 + secs(9.5)).unwrap_err();
    assert_eq!(d.scope, Scope::Global);
    assert_eq!(d.retry_after, secs(0.5));

    let l = Limiter::new(Limits {
        per_client: Some(rate("1/1")),
        global: Some(rate("100/1")),
        tools: vec!["echo=0.25/1".parse().unwrap()],
        ..Limits::default()
    });
    assert!(l.check("a", Some("echo"), t0).is_ok());
    let d = l.check("a", Some("echo"), t0).unwrap_err();
    assert_eq!(d.scope, Scope::Tool);
    assert_eq!(d.retry_after, Duration::from_secs(4));
    let d = l.check("a", None, t0).unwrap_err();
    assert_eq!(d.scope, Scope::Client);
    assert_eq!(d.retry_after, Duration::from_secs(1));
}

#[test]
fn key_count_stays_bounded_under_key_spraying() {
    let l = Limiter::new(Limits {
        per_client: Some(rate("0.001/2")),
        tools: vec!["echo=0.001/1".parse().unwrap()],
        max_keys: 1000,
        ..Limits::default()
    });
    let t0 = Instant::now();
    for i in 0..100_000u32 {
        let tool = (i % 2 == 0).then_some("echo");
        assert!(l.check(&format!("ip:{i}"), tool, t0).is_ok());
        if i % 997 == 0 {
            assert!(l.keys() <= 1000);
        }
    }
    assert!(l.keys() <= 1000);
    assert!(l.keys() > 900, "{}", l.keys());
    assert!(l.buckets() <= 2000);
}

#[test]
fn full_buckets_are_evicted_first() {
    let l = Limiter::with_shards(
        Limits {
            per_client: Some(rate("1/1")),
            max_keys: 3,
            ..Limits::default()
        },
        1,
    );
    let t0 = Instant::now();
    l.check("a", None, t0).unwrap();
    l.check("b", None, t0).unwrap();
    l.check("c", None, t0 + secs(0.5)).unwrap();
    // "a" is the least recently used but "b" too is full again at 1.2 s; "c" is not.
    let t1 = t0 + secs(1.2);
    l.check("d", None, t1).unwrap();
    assert_eq!(l.keys(), 2);
    // "c" kept its state: 0.7 tokens, 0.3 s to go.
    let d = l.check("c", None, t1).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_nanos(300_000_000));
}

#[test]
fn least_recently_used_is_evicted_when_none_is_full() {
    let l = Limiter::with_shards(
        Limits {
            per_client: Some(rate("0.001/1")),
            max_keys: 2,
            ..Limits::default()
        },
        1,
    );
    let t0 = Instant::now();
    l.check("a", None, t0).unwrap();
    l.check("b", None, t0).unwrap();
    // A refused check counts as use: "a" is now more recent than "b".
    assert!(l.check("a", None, t0).is_err());
    l.check("c", None, t0).unwrap();
    assert_eq!(l.keys(), 2);
    assert!(l.check("a", None, t0).is_err(), "a kept its empty bucket");
    assert!(l.check("c", None, t0).is_err(), "c kept its empty bucket");
    // "b" was evicted: it gets a fresh bucket (and pushes out the least recent, "a").
    assert!(l.check("b", None, t0).is_ok());
    assert!(l.check("a", None, t0).is_ok());
}

#[test]
fn sweep_drops_full_buckets() {
    let l = Limiter::new(Limits {
        per_client: Some(rate("1/1")),
        tools: vec!["slow=0.1/1".parse().unwrap()],
        ..Limits::default()
    });
    let t0 = Instant::now();
    l.check("a", None, t0).unwrap();
    l.check("b", Some("slow"), t0).unwrap();
    l.check("c", None, t0 + secs(5.0)).unwrap();
    assert_eq!(l.buckets(), 4);
    l.sweep(t0 + secs(0.5));
    assert_eq!(l.buckets(), 4);
    // At 2 s: "a" is full; "b"'s client bucket is full but its tool bucket is not.
    l.sweep(t0 + secs(2.0));
    assert_eq!(l.keys(), 2);
    assert_eq!(l.buckets(), 3);
    assert!(l.check("b", Some("slow"), t0 + secs(2.0)).is_err());
    // At 9 s: "c" is full; "b"'s tool bucket holds 0.9 tokens.
    l.sweep(t0 + secs(9.0));
    assert_eq!(l.keys(), 1);
    assert_eq!(l.buckets(), 2);
    l.sweep(t0 + secs(100.0));
    assert_eq!(l.keys(), 0);
    assert_eq!(l.buckets(), 0);
}

#[test]
fn off_when_nothing_is_configured() {
    let l = Limiter::new(Limits::default());
    assert!(l.is_off());
    let t0 = Instant::now();
    for _ in 0..100 {
        assert!(l.check("a", Some("echo"), t0).is_ok());
    }
    assert_eq!(l.buckets(), 0);
    assert!(!client("1/1").is_off());
    let tools_only = Limiter::new(Limits {
        tools: vec!["echo=1/1".parse().unwrap()],
        ..Limits::default()
    });
    assert!(!tools_only.is_off());
    // A request without a limited tool touches nothing.
    assert!(tools_only.check("a", Some("add"), t0).is_ok());
    assert_eq!(tools_only.keys(), 0);
    let global_only = Limiter::new(Limits {
        global: Some(rate("1/1")),
        ..Limits::default()
    });
    assert!(!global_only.is_off());
}

#[test]
fn duplicate_tool_limits_use_the_last() {
    let l = Limiter::new(Limits {
        tools: vec!["echo=1/1".parse().unwrap(), "echo=1/3".parse().unwrap()],
        ..Limits::default()
    });
    let t0 = Instant::now();
    for _ in 0..3 {
        assert!(l.check("a", Some("echo"), t0).is_ok());
    }
    assert!(l.check("a", Some("echo"), t0).is_err());
}

#[test]
fn tiny_rates_and_zero_max_keys_do_not_panic() {
    let l = Limiter::new(Limits {
        per_client: Some(rate("1e-300/1")),
        max_keys: 0,
        ..Limits::default()
    });
    let t0 = Instant::now();
    l.check("a", None, t0).unwrap();
    let d = l.check("a", None, t0).unwrap_err();
    assert_eq!(d.retry_after, Duration::MAX);
    assert_eq!(d.retry_after_secs(), u64::MAX);
    l.check("b", None, t0).unwrap();
    assert_eq!(l.keys(), 1);
}

#[test]
fn labels_and_messages() {
    assert_eq!(Scope::Client.as_str(), "client");
    assert_eq!(Scope::Global.as_str(), "global");
    assert_eq!(Scope::Tool.as_str(), "tool");
    let d = Denied {
        scope: Scope::Tool,
        retry_after: secs(2.5),
    };
    assert_eq!(d.to_string(), "rate limit exceeded (tool); retry after 3s");
}

#[test]
fn limiter_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Limiter>();

    let l = Arc::new(Limiter::new(Limits {
        per_client: Some(rate("1/50")),
        global: Some(rate("1/450")),
        ..Limits::default()
    }));
    let t0 = Instant::now();
    let allowed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = Arc::clone(&l);
            let allowed = Arc::clone(&allowed);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let key = format!("ip:10.0.0.{}", (i + t) % 10);
                    if l.check(&key, None, t0).is_ok() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 10 keys × 50 would be 500; the global bucket holds 450.
    assert_eq!(allowed.load(Ordering::Relaxed), 450);
    assert_eq!(l.keys(), 10);

    let l = Arc::new(client("1/50"));
    let allowed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = Arc::clone(&l);
            let allowed = Arc::clone(&allowed);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let key = format!("ip:10.0.0.{}", (i * 7 + t) % 10);
                    if l.check(&key, None, t0).is_ok() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 500);
}
