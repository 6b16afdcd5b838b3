//! Micro benchmarks of the proxy's hot path, in ns per operation.
//!
//! `cargo bench --bench hotpath` runs each case 5 times for about 100 ms and prints the median
//! (with min and max). Under `cargo test` (no `--bench` argument) each case runs once, briefly,
//! as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shadowcat::Binding;
use shadowcat::internals::ReplayLimits;
use shadowcat::internals::SessionConfig;
use shadowcat::internals::Sessions;
use shadowcat::internals::sse_event;
use shadowcat::internals::{Message, jsonrpc};

/// A typical client request.
const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
/// The child's reply to it, carrying the proxy's rewritten id.
const CHILD_REPLY: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Echo: hello"}]}}"#;

struct Bench {
    runs: usize,
    target: Duration,
}

impl Bench {
    /// Times `f`: calibrates an iteration count that takes about `target`, then runs that many
    /// iterations `runs` times and prints the median ns/op.
    fn run(&self, name: &str, mut f: impl FnMut()) {
        let mut iters: u64 = 1;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let e = t.elapsed();
            if e >= self.target / 10 || iters >= 1 << 30 {
                let scale = self.target.as_secs_f64() / e.as_secs_f64().max(1e-9);
                iters = ((iters as f64 * scale).ceil() as u64).max(1);
                break;
            }
            iters *= 2;
        }
        let mut ns: Vec<f64> = (0..self.runs)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        println!(
            "{name:<52} {:>9.1} ns/op   (min {:.1}, max {:.1}; {iters} iters x {})",
            ns[ns.len() / 2],
            ns[0],
            ns[ns.len() - 1],
            self.runs
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let b = if full {
        Bench {
            runs: 5,
            target: Duration::from_millis(100),
        }
    } else {
        Bench {
            runs: 1,
            target: Duration::from_millis(1),
        }
    };
    if full {
        println!(
            "hotpath: median of {} runs of ~{:?} each, ns/op",
            b.runs, b.target
        );
    } else {
        println!("hotpath: smoke run (numbers meaningless); measure with cargo bench");
    }

    b.run("jsonrpc::Message::parse (tools/call request)", || {
        black_box(Message::parse(black_box(REQUEST)).is_ok());
    });

    // What src/child.rs does per call: swap in a child-unique id, serialise the line ...
    let mut msg = Message::parse(REQUEST).expect("valid request");
    let mut next = 1u64;
    b.run("id rewrite: id.replace(raw_u64) + to_vec", || {
        let client_id = msg.id.replace(jsonrpc::raw_u64(next));
        next += 1;
        black_box(msg.to_vec());
        msg.id = client_id;
    });

    // ... and on the way back: parse the reply, look at its id, restore the client's id.
    let client_id = msg.id.clone().expect("request has an id");
    b.run(
        "id restore: parse reply + id_u64 + restore + to_vec",
        || {
            let mut reply = Message::parse(black_box(CHILD_REPLY)).expect("valid reply");
            black_box(reply.id.as_deref().and_then(jsonrpc::id_u64));
            reply.id = Some(client_id.clone());
            black_box(reply.to_vec());
        },
    );

    b.run("id round trip: parse + rewrite + to_vec + restore", || {
        let mut req = Message::parse(black_box(REQUEST)).expect("valid request");
        let original = req.id.replace(jsonrpc::raw_u64(next));
        next += 1;
        black_box(req.to_vec());
        let mut reply = Message::parse(black_box(CHILD_REPLY)).expect("valid reply");
        black_box(reply.id.as_deref().and_then(jsonrpc::id_u64));
        reply.id = original;
        black_box(reply.to_vec());
    });

    println!(
        "{:<52} {:>9}   (child::rewrite_progress_token is private)",
        "progress-token rewrite", "skipped"
    );

    b.run("proxy::sse_event (framing one reply)", || {
        black_box(sse_event(black_box(CHILD_REPLY)));
    });

    let sessions = Sessions::new(&SessionConfig {
        max: 20_000,
        max_per_client: 20_000,
        idle: Duration::from_secs(3600),
        replay: ReplayLimits::default(),
    });
    let ids: Vec<String> = (0..10_000)
        .map(|_| {
            sessions
                .create(
                    "2025-11-25".into(),
                    Binding::default(),
                    None,
                    "ip:127.0.0.1".into(),
                )
                .expect("room for 10,000 sessions")
                .id
                .clone()
        })
        .collect();
    let mut i = 0usize;
    b.run("session::Sessions::get (hit, 10,000 sessions)", || {
        // A stride co-prime to 10,000 walks all sessions in a cache-unfriendly order.
        i = (i + 7_919) % ids.len();
        black_box(sessions.get_as(black_box(&ids[i]), None).is_some());
    });
    let missing = "0123456789abcdef0123456789abcdef";
    b.run("session::Sessions::get (miss, 10,000 sessions)", || {
        black_box(sessions.get_as(black_box(missing), None).is_none());
    });

    gate(&b);
}

/// Issue #7: what the gate costs per request. A JWT's signature is checked once, then the
/// token is remembered (`auth::JWT_CACHE_TTL`); `jsonwebtoken::decode` alone is what a first
/// sight (or a client minting a new token per request) costs.
fn gate(b: &Bench) {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use shadowcat::internals::{Auth, AuthConfig};
    use shadowcat::internals::{Limiter, Limits};

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let read = |name: &str| std::fs::read(fixtures.join(name)).expect("fixture");
    let aud = "http://bench.invalid/mcp";
    let claims = serde_json::json!({"sub": "bench", "aud": aud, "exp": 4_000_000_000u64});
    let secret = b"bench-secret-0123456789abcdef0123";
    shadowcat::internals::install_jwt_crypto();
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, key).expect("sign")
    };
    let hs = sign(Algorithm::HS256, "hs", &EncodingKey::from_secret(secret));
    let rs = sign(
        Algorithm::RS256,
        "rsa1",
        &EncodingKey::from_rsa_pem(&read("rsa1.pem")).expect("rsa key"),
    );
    let es = sign(
        Algorithm::ES256,
        "ec1",
        &EncodingKey::from_ec_pem(&read("ec1.pem")).expect("ec key"),
    );
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&read("jwks.json")).expect("jwks");
    let key = |kid: &str| DecodingKey::from_jwk(set.find(kid).expect("kid")).expect("jwk");
    let (rs_key, es_key) = (key("rsa1"), key("ec1"));
    let hs_key = DecodingKey::from_secret(secret);
    for (name, token, key, alg) in [
        (
            "jwt signature + claims, HS256 (jsonwebtoken::decode)",
            &hs,
            &hs_key,
            Algorithm::HS256,
        ),
        (
            "jwt signature + claims, RS256 2048 (jsonwebtoken::decode)",
            &rs,
            &rs_key,
            Algorithm::RS256,
        ),
        (
            "jwt signature + claims, ES256 P-256 (jsonwebtoken::decode)",
            &es,
            &es_key,
            Algorithm::ES256,
        ),
    ] {
        let mut v = Validation::new(alg);
        v.set_audience(&[aud]);
        b.run(name, || {
            let ok = jsonwebtoken::decode::<serde_json::Value>(black_box(token), key, &v).is_ok();
            assert!(ok);
        });
    }

    let dir = std::env::temp_dir().join(format!("shadowcat-hotpath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tokens = dir.join("tokens");
    let lines: String = (0..100)
        .map(|i| format!("bench-token-{i:04}-0123456789 c{i}\n"))
        .collect();
    std::fs::write(&tokens, lines).expect("tokens file");
    let jwks = fixtures.join("jwks.json");
    let cfg = AuthConfig {
        tokens_file: Some(tokens),
        jwt: true,
        jwks_file: Some(jwks),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        leeway: Duration::from_secs(30),
        jwks_min_refresh: Duration::from_secs(10),
        ..AuthConfig::default()
    };
    let auth = Auth::new(&cfg, aud.into()).expect("auth");
    let _ = std::fs::remove_dir_all(&dir);
    let request = |token: &str| shadowcat::http::Request {
        method: "POST".into(),
        target: "/mcp".into(),
        version: shadowcat::http::Version::Http11,
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        body: Vec::new(),
        remote: "127.0.0.1:9".parse().expect("addr"),
        client_cert: None,
    };
    let last = request("bench-token-0099-0123456789");
    b.run("auth: static token, last of 100 (constant time)", || {
        black_box(auth.authenticate(black_box(&last)).is_ok());
    });
    let remembered = request(&rs);
    b.run("auth: RS256 JWT already verified (cache hit)", || {
        black_box(auth.authenticate(black_box(&remembered)).is_ok());
    });
    let limiter = Limiter::new(Limits {
        per_client: "1000000000/1000000000".parse().ok(),
        global: "1000000000/1000000000".parse().ok(),
        tools: vec!["echo=1000000000/1000000000".parse().expect("tool limit")],
        max_keys: 10_000,
    });
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let mut k = 0usize;
    b.run(
        "ratelimit: client + global + tool buckets, 1,000 keys",
        || {
            k = (k + 617) % keys.len();
            black_box(
                limiter
                    .check(black_box(&keys[k]), Some("echo"), Instant::now())
                    .is_ok(),
            );
        },
    );
}
