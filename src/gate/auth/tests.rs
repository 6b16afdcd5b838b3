use super::*;
use crate::gate::auth::jwt_crypto::install;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::time::Instant;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn request(auth: &[&str]) -> Request {
    Request {
        method: "POST".into(),
        target: "/mcp".into(),
        version: crate::http::Version::Http11,
        headers: auth
            .iter()
            .map(|v| ("Authorization".to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        remote: "127.0.0.1:9".parse().unwrap(),
        client_cert: None,
    }
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "aud": RESOURCE, "exp": now() + 300});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs256(c: &Value) -> String {
    install();
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, pem: &str, c: &Value) -> String {
    install();
    let pem = std::fs::read(fixture(pem)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, c, &key).unwrap()
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir() -> Dir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("shadowcat-auth-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// HS256 with a secret and RS256/ES256 with `jwks` (a path), scope `mcp` required.
fn jwt_auth(d: &Dir, jwks: PathBuf, min_refresh: Duration) -> Auth {
    let secret = d.0.join("secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let cfg = AuthConfig {
        jwt: true,
        jwt_secret_file: Some(secret),
        jwks_file: Some(jwks),
        algorithms: vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256],
        leeway: Duration::from_secs(30),
        required_scopes: vec!["mcp".into()],
        issuer: Some("https://issuer.example".into()),
        jwks_min_refresh: min_refresh,
        ..AuthConfig::default()
    };
    Auth::new(&cfg, RESOURCE.into()).unwrap()
}

fn good() -> Value {
    json!({"iss": "https://issuer.example", "scope": "read mcp"})
}

/// The principal's name a token authenticates as.
fn check(a: &Auth, token: &str) -> Result<String, Denial> {
    a.authenticate(&request(&[&format!("Bearer {token}")]))
        .map(|p| p.name)
}

fn invalid(why: &str) -> Result<String, Denial> {
    Err(Denial::Invalid(why.into()))
}

#[test]
fn tokens_file_format() {
    let t = parse_tokens("# ops\n0123456789abcdefXYZ alice\n\n  fedcba9876543210  \n").unwrap();
    assert_eq!(t[0], ("alice".to_string(), b"0123456789abcdefXYZ".to_vec()));
    assert_eq!(t[1], ("line4".to_string(), b"fedcba9876543210".to_vec()));
    assert!(parse_tokens("short name").is_err());
    assert!(parse_tokens("0123456789abcdef a b").is_err());
    assert!(parse_tokens("0123456789abcdef a\n0123456789abcdeX a").is_err());
    assert!(parse_tokens("# nothing\n").is_err());
}

#[test]
fn static_tokens() {
    let d = dir();
    let f = d.0.join("tokens");
    std::fs::write(&f, "0123456789abcdef alice\nfedcba9876543210 bob\n").unwrap();
    let cfg = AuthConfig {
        tokens_file: Some(f),
        ..AuthConfig::default()
    };
    let a = Auth::new(&cfg, RESOURCE.into()).unwrap();
    let p = |v: &[&str]| a.authenticate(&request(v)).map(|p| p.name);
    assert_eq!(
        p(&["Bearer 0123456789abcdef"]),
        Ok("token:alice".to_owned())
    );
    assert_eq!(
        p(&["bearer   fedcba9876543210 "]),
        Ok("token:bob".to_owned())
    );
    assert_eq!(p(&["Bearer 0123456789abcdeX"]), invalid("unknown token"));
    assert_eq!(p(&[]), Err(Denial::Missing));
    assert_eq!(p(&["Basic 0123456789abcdef"]), Err(Denial::Missing));
    assert_eq!(p(&["Bearer "]), Err(Denial::Missing));
    // Two Authorization headers are refused, whatever they hold.
    assert_eq!(
        p(&["Bearer 0123456789abcdef", "Bearer 0123456789abcdef"]),
        Err(Denial::Missing)
    );
    // A JWT-shaped string is just an unknown token when JWT is off.
    assert_eq!(check(&a, &hs256(&claims(good()))), invalid("unknown token"));
}

#[test]
fn jwt_claims() {
    let d = dir();
    let a = jwt_auth(&d, fixture("jwks.json"), JWKS_MIN_REFRESH);
    let ok = Ok("jwt:alice".to_owned());
    assert_eq!(check(&a, &hs256(&claims(good()))), ok);
    let with = |v: Value| {
        let mut c = claims(good());
        for (k, x) in v.as_object().unwrap() {
            c[k] = x.clone();
        }
        c
    };
    // exp: inside the 30 s leeway passes, beyond it fails.
    assert_eq!(check(&a, &hs256(&with(json!({"exp": now() - 10})))), ok);
    assert_eq!(
        check(&a, &hs256(&with(json!({"exp": now() - 120})))),
        invalid("token expired")
    );
    assert_eq!(
        check(&a, &hs256(&with(json!({"nbf": now() + 120})))),
        invalid("token not yet valid")
    );
    // RFC 7519 NumericDates may have fractions (issue 12): exp, nbf and iat alike.
    let (later, earlier) = (now() as f64 + 300.25, now() as f64 - 5.5);
    let fractional = with(json!({"exp": later, "nbf": earlier, "iat": earlier}));
    assert_eq!(check(&a, &hs256(&fractional)), ok);
    assert_eq!(
        check(&a, &hs256(&with(json!({"exp": now() as f64 - 120.5})))),
        invalid("token expired")
    );
    assert_eq!(
        check(&a, &hs256(&with(json!({"exp": -1.5})))),
        invalid("malformed token")
    );
    assert_eq!(
        check(&a, &hs256(&with(json!({"aud": "http://other/mcp"})))),
        invalid("wrong audience")
    );
    assert_eq!(
        check(&a, &hs256(&with(json!({"aud": ["x", RESOURCE]})))),
        ok,
        "aud may be a list containing the resource"
    );
    assert_eq!(
        check(&a, &hs256(&with(json!({"iss": "https://evil.example"})))),
        invalid("wrong issuer")
    );
    let mut no_sub = claims(good());
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(check(&a, &hs256(&no_sub)), invalid("missing claim sub"));
    let mut no_exp = claims(good());
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&a, &hs256(&no_exp)), invalid("missing claim exp"));
    // Scopes: `scope` string or `scp` list; a missing one is 403 material.
    assert_eq!(
        check(&a, &hs256(&with(json!({"scope": "read"})))),
        Err(Denial::Scope("mcp".into()))
    );
    let mut scp = with(json!({"scp": ["x", "mcp"]}));
    scp.as_object_mut().unwrap().remove("scope");
    assert_eq!(check(&a, &hs256(&scp)), ok);
    // A bad signature, garbage, and an algorithm off the list.
    let t = hs256(&claims(good()));
    let forged = format!("{}x", &t[..t.len() - 1]);
    assert!(matches!(check(&a, &forged), Err(Denial::Invalid(_))));
    assert_eq!(check(&a, "a.b.c"), invalid("malformed token"));
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &claims(good()),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(check(&a, &hs384), invalid("algorithm HS384 not allowed"));
}

#[test]
fn jwt_keys_from_a_set() {
    let d = dir();
    let a = jwt_auth(&d, fixture("jwks.json"), JWKS_MIN_REFRESH);
    let c = claims(good());
    let ok = Ok("jwt:alice".to_owned());
    assert_eq!(
        check(&a, &signed(Algorithm::RS256, "rsa1", "rsa1.pem", &c)),
        ok
    );
    assert_eq!(
        check(&a, &signed(Algorithm::ES256, "ec1", "ec1.pem", &c)),
        ok
    );
    // The key named by kid must be of the header's algorithm.
    assert_eq!(
        check(&a, &signed(Algorithm::RS256, "ec1", "rsa1.pem", &c)),
        invalid("algorithm does not match the key")
    );
    // Signed by a key not in the set (under a kid that is), and an unknown kid.
    assert_eq!(
        check(&a, &signed(Algorithm::RS256, "rsa1", "rsa2.pem", &c)),
        invalid("bad signature")
    );
    assert_eq!(
        check(&a, &signed(Algorithm::RS256, "rsa2", "rsa2.pem", &c)),
        invalid("unknown key id")
    );
    // Algorithm confusion: HS256 signed with the RSA public key's bytes as the secret
    // is checked against the HMAC secret, never against the JWK.
    let public = std::fs::read(fixture("jwks.json")).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa1".into());
    let confused = encode(&h, &c, &EncodingKey::from_secret(&public)).unwrap();
    assert_eq!(check(&a, &confused), invalid("bad signature"));
}

#[test]
fn a_remembered_token_still_expires() {
    let d = dir();
    let secret = d.0.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let cfg = AuthConfig {
        jwt: true,
        jwt_secret_file: Some(secret),
        algorithms: vec![Algorithm::HS256],
        leeway: Duration::ZERO,
        ..AuthConfig::default()
    };
    let a = Auth::new(&cfg, RESOURCE.into()).unwrap();
    let exp = now() + 1;
    let t = hs256(&claims(json!({"exp": exp})));
    assert_eq!(check(&a, &t), Ok("jwt:alice".to_owned()));
    assert_eq!(check(&a, &t), Ok("jwt:alice".to_owned()), "from the cache");
    let deadline = Instant::now() + Duration::from_secs(3);
    while now() <= exp && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(check(&a, &t), invalid("token expired"));
}

#[test]
fn jwks_is_reread_for_an_unknown_kid() {
    let d = dir();
    let jwks = d.0.join("jwks.json");
    std::fs::copy(fixture("jwks.json"), &jwks).unwrap();
    let rotated = signed(Algorithm::RS256, "rsa2", "rsa2.pem", &claims(good()));
    // Within the refresh interval the old set is kept, so the new kid is unknown.
    let slow = jwt_auth(&d, jwks.clone(), Duration::from_secs(3600));
    std::fs::copy(fixture("jwks-rsa2.json"), &jwks).unwrap();
    assert_eq!(check(&slow, &rotated), invalid("unknown key id"));
    // With no interval, the unknown kid makes one re-read and the token passes.
    std::fs::copy(fixture("jwks.json"), &jwks).unwrap();
    let fast = jwt_auth(&d, jwks.clone(), Duration::ZERO);
    std::fs::copy(fixture("jwks-rsa2.json"), &jwks).unwrap();
    assert_eq!(check(&fast, &rotated), Ok("jwt:alice".to_owned()));
    // A broken file fails the re-read an unknown kid asks for, and the keys already
    // loaded stay.
    std::fs::write(&jwks, "not json").unwrap();
    let old = signed(Algorithm::RS256, "rsa1", "rsa1.pem", &claims(good()));
    assert_eq!(check(&fast, &old), invalid("unknown key id"));
    assert_eq!(check(&fast, &rotated), Ok("jwt:alice".to_owned()));
}

#[test]
fn start_up_failures() {
    let d = dir();
    let bad = d.0.join("bad.json");
    std::fs::write(&bad, r#"{"keys": []}"#).unwrap();
    let cfg = |jwks: PathBuf| AuthConfig {
        jwt: true,
        jwks_file: Some(jwks),
        algorithms: vec![Algorithm::RS256],
        ..AuthConfig::default()
    };
    let err = |c: AuthConfig| Auth::new(&c, RESOURCE.into()).err().unwrap().to_string();
    assert!(err(cfg(bad)).contains("the key set is empty"));
    assert!(err(cfg(d.0.join("missing.json"))).contains("--jwks-file"));
    let short = d.0.join("short");
    std::fs::write(&short, "tooshort\n").unwrap();
    let c = AuthConfig {
        jwt: true,
        jwt_secret_file: Some(short),
        algorithms: vec![Algorithm::HS256],
        ..AuthConfig::default()
    };
    assert!(err(c).contains("at least 16 bytes"));
}

#[test]
fn challenges_and_metadata() {
    assert_eq!(
        metadata_url("https://mcp.example.com/api/mcp"),
        "https://mcp.example.com/.well-known/oauth-protected-resource/api/mcp"
    );
    assert_eq!(
        metadata_url("http://127.0.0.1:9/"),
        "http://127.0.0.1:9/.well-known/oauth-protected-resource"
    );
    let d = dir();
    let a = jwt_auth(&d, fixture("jwks.json"), JWKS_MIN_REFRESH);
    let meta =
        "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp\"";
    assert_eq!(a.challenge(&Denial::Missing), format!("Bearer {meta}"));
    assert_eq!(
        a.challenge(&Denial::Invalid("bad \"x\"\r\n".into())),
        format!("Bearer error=\"invalid_token\", error_description=\"bad x\", {meta}")
    );
    assert_eq!(
        a.challenge(&Denial::Scope("mcp".into())),
        format!("Bearer error=\"insufficient_scope\", scope=\"mcp\", {meta}")
    );
    assert!(a.is_metadata_path("/.well-known/oauth-protected-resource", "/mcp"));
    assert!(a.is_metadata_path("/.well-known/oauth-protected-resource/mcp", "/mcp"));
    assert!(!a.is_metadata_path("/.well-known/oauth-protected-resource/x", "/mcp"));
    let doc: Value = serde_json::from_slice(&a.metadata().body).unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["scopes_supported"], json!(["mcp"]));
    assert!(doc.get("authorization_servers").is_none());
}

#[test]
fn algorithm_lists() {
    assert_eq!(
        parse_algorithms("RS256, ES256,RS256").unwrap(),
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert!(parse_algorithms("none").is_err());
    assert!(parse_algorithms("").is_err());
}

#[test]
fn token_compare() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[test]
fn r15_jwt_scopes_are_kept_for_policy_and_static_tokens_have_none() {
    let d = dir();
    let secret = d.0.join("secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let tokens = d.0.join("tokens");
    std::fs::write(&tokens, "static-token-0123456789 ops\n").unwrap();
    let cfg = AuthConfig {
        jwt: true,
        jwt_secret_file: Some(secret),
        tokens_file: Some(tokens),
        algorithms: vec![Algorithm::HS256],
        leeway: Duration::from_secs(30),
        ..AuthConfig::default()
    };
    let a = Auth::new(&cfg, RESOURCE.into()).unwrap();
    let long = "x".repeat(MAX_SCOPE_LEN + 1);
    let t = hs256(&claims(json!({"scope": format!("read {long} admin")})));
    let who = |t: &str| a.authenticate(&request(&[&format!("Bearer {t}")])).unwrap();
    let p = who(&t);
    assert_eq!(p.name, "jwt:alice");
    assert_eq!(
        &p.scopes[..],
        ["read", "admin"],
        "too long a scope is left out"
    );
    assert_eq!(who(&t), p, "the same from the cache");
    assert!(who("static-token-0123456789").scopes.is_empty());
}
