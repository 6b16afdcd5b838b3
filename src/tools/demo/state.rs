//! The MRTR `requestState` of the demo server: the answers gathered so far, sealed so the
//! client can neither read-and-rely on nor change them. `base64url(payload) "." base64url(tag)`
//! where the payload is JSON `{"f": fixture, "x": expiry (Unix ms), "a": answers}` and the tag
//! is HMAC-SHA256 under a key drawn once per process: a tampered state, one from another demo
//! process, one for another fixture, or one older than [`TTL`] is refused.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// How long a `requestState` stays valid.
pub(super) const TTL: Duration = Duration::from_secs(300);
/// A longer `requestState` is refused before any decoding.
pub(super) const MAX_STATE: usize = 64 * 1024;

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key));
        if random.is_err() {
            // No /dev/urandom: the clock, the pid and an address still differ per process.
            let mut h = Sha256::new();
            h.update(format!(
                "{:?}{}{:p}",
                SystemTime::now(),
                std::process::id(),
                &key
            ));
            key.copy_from_slice(&h.finalize());
        }
        key
    })
}

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seals `answers` of fixture `fixture` into a `requestState`.
pub(super) fn seal(fixture: &str, answers: &Map<String, Value>) -> String {
    seal_with(key(), fixture, answers, now_ms() + TTL.as_millis() as u64)
}

fn seal_with(key: &[u8; 32], fixture: &str, answers: &Map<String, Value>, expiry: u64) -> String {
    let payload = json!({"f": fixture, "x": expiry, "a": answers});
    let body = B64.encode(payload.to_string());
    let tag = B64.encode(hmac(key, body.as_bytes()));
    format!("{body}.{tag}")
}

/// Opens a `requestState` for fixture `fixture`: its answers, or why it is refused.
pub(super) fn open(state: &str, fixture: &str) -> Result<Map<String, Value>, String> {
    open_with(key(), state, fixture, now_ms())
}

fn open_with(
    key: &[u8; 32],
    state: &str,
    fixture: &str,
    now: u64,
) -> Result<Map<String, Value>, String> {
    let refused = |why: &str| Err(format!("Invalid requestState: {why}"));
    if state.len() > MAX_STATE {
        return refused("too long");
    }
    let Some((body, tag)) = state.split_once('.') else {
        return refused("malformed");
    };
    let Ok(tag) = B64.decode(tag) else {
        return refused("malformed");
    };
    let expected = hmac(key, body.as_bytes());
    let same = tag.len() == expected.len()
        && tag
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return refused("integrity check failed");
    }
    let payload: Value = match B64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(payload) => payload,
        None => return refused("malformed"),
    };
    if payload["f"] != fixture {
        return refused("issued for another request");
    }
    if payload["x"].as_u64().is_none_or(|expiry| expiry < now) {
        return refused("expired");
    }
    match payload.get("a") {
        Some(Value::Object(answers)) => Ok(answers.clone()),
        _ => refused("malformed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Map<String, Value> {
        let mut a = Map::new();
        a.insert(
            "step1".into(),
            json!({"action": "accept", "content": {"name": "A"}}),
        );
        a
    }

    #[test]
    fn round_trips() {
        let state = seal("multi", &answers());
        assert_eq!(open(&state, "multi"), Ok(answers()));
    }

    #[test]
    fn refuses_tampering_other_fixtures_foreign_keys_and_expiry() {
        let key = [7u8; 32];
        let state = seal_with(&key, "multi", &answers(), 1_000);
        assert!(open_with(&key, &state, "multi", 999).is_ok());
        let tampered = format!("{state}-TAMPERED");
        assert!(open_with(&key, &tampered, "multi", 999).is_err());
        let (body, tag) = state.split_once('.').expect("dot");
        let mut forged = body.as_bytes().to_vec();
        forged[3] ^= 1;
        let forged = format!("{}.{tag}", String::from_utf8_lossy(&forged));
        assert!(open_with(&key, &forged, "multi", 999).is_err());
        assert!(
            open_with(&key, &state, "other", 999).is_err(),
            "another fixture"
        );
        assert!(
            open_with(&[8u8; 32], &state, "multi", 999).is_err(),
            "another process"
        );
        let expired = open_with(&key, &state, "multi", 1_001);
        assert_eq!(expired, Err("Invalid requestState: expired".into()));
        assert!(open_with(&key, "no-dot", "multi", 0).is_err());
        assert!(open_with(&key, &"x".repeat(MAX_STATE + 1), "multi", 0).is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero padded like HMAC does.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac(&key, b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
