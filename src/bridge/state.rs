//! The `requestState` codec: what a bridged call waiting for input hands its client, and how
//! the client's retry is checked before anything reaches the upstream.
//!
//! A state is `<instance>.base64url(payload || HMAC-SHA256(key, payload))`, the key random per
//! process; the instance name in clear lets a load balancer send the retry to the instance that
//! holds the waiting call (examples/haproxy.cfg), and the payload names it again under the MAC.
//! The payload names the instance (another instance's state is *foreign*), the waiting call
//! (a random token), its expiry (Unix milliseconds), and digests of the principal and of the
//! request it belongs to (method and target name), so a state cannot be replayed by another
//! principal or on another request. Every check fails closed, with no detail about which
//! field was wrong beyond tamper, foreign or expired.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Format version of the payload.
const VERSION: u8 = 1;
/// Length of the MAC.
const MAC: usize = 32;
/// Longest state text accepted (the instance name is at most 64 bytes).
pub const MAX_STATE: usize = 320;

/// What a state says, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The waiting call.
    pub token: u128,
    /// Unix milliseconds after which the state is refused.
    pub expires_ms: u64,
    /// Digest of the principal (authentication on) or of nothing.
    pub principal: [u8; 8],
    /// Digest of the request's method and target name.
    pub request: [u8; 8],
}

/// Seals and opens states for one instance.
pub struct Codec {
    key: [u8; 32],
    instance: String,
}

impl Codec {
    /// A codec with key `key` for instance `instance` (cut to 64 bytes).
    pub fn new(key: [u8; 32], instance: &str) -> Codec {
        let mut end = instance.len().min(64);
        while !instance.is_char_boundary(end) {
            end -= 1;
        }
        Codec {
            key,
            instance: instance[..end].to_owned(),
        }
    }

    /// The state text for `s`.
    pub fn seal(&self, s: &State) -> String {
        let mut p = Vec::with_capacity(64 + self.instance.len());
        p.push(VERSION);
        p.push(self.instance.len() as u8);
        p.extend_from_slice(self.instance.as_bytes());
        p.extend_from_slice(&s.token.to_be_bytes());
        p.extend_from_slice(&s.expires_ms.to_be_bytes());
        p.extend_from_slice(&s.principal);
        p.extend_from_slice(&s.request);
        let mac = hmac(&self.key, &p);
        p.extend_from_slice(&mac);
        format!("{}.{}", self.instance, URL_SAFE_NO_PAD.encode(p))
    }

    /// Verifies `text` and returns what it says, if it is this instance's, untampered and not
    /// expired at `now_ms`.
    pub fn open(&self, text: &str, now_ms: u64) -> Result<State, Error> {
        let bad = |why: &str| Error::InvalidParams(format!("requestState {why}"));
        if text.len() > MAX_STATE {
            return Err(bad("is not valid"));
        }
        let (named_in_clear, text) = text.split_once('.').ok_or_else(|| bad("is not valid"))?;
        if named_in_clear != self.instance {
            return Err(bad("belongs to another instance"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad("is not valid"))?;
        if raw.len() < 2 + MAC {
            return Err(bad("is not valid"));
        }
        let (p, mac) = raw.split_at(raw.len() - MAC);
        // The MAC first: nothing of an unverified payload is read. A foreign instance's key
        // differs, so its states fail here too; the instance name tells the two apart.
        let good = hmac(&self.key, p);
        let same = good.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let n = usize::from(p[1]);
        let named = p.get(2..2 + n);
        if !same {
            return Err(match named {
                Some(name) if p[0] == VERSION && name != self.instance.as_bytes() => {
                    bad("belongs to another instance")
                }
                _ => bad("failed verification (tampered)"),
            });
        }
        if named != Some(self.instance.as_bytes()) {
            return Err(bad("belongs to another instance"));
        }
        let rest = &p[2 + n..];
        if p[0] != VERSION || rest.len() != 16 + 8 + 8 + 8 {
            return Err(bad("is not valid"));
        }
        let mut token = [0u8; 16];
        token.copy_from_slice(&rest[..16]);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&rest[16..24]);
        let mut principal = [0u8; 8];
        principal.copy_from_slice(&rest[24..32]);
        let mut request = [0u8; 8];
        request.copy_from_slice(&rest[32..40]);
        let s = State {
            token: u128::from_be_bytes(token),
            expires_ms: u64::from_be_bytes(exp),
            principal,
            request,
        };
        if s.expires_ms <= now_ms {
            return Err(bad("expired"));
        }
        Ok(s)
    }
}

/// The first 8 bytes of SHA-256 over the parts, each length-prefixed.
pub fn digest(parts: &[&str]) -> [u8; 8] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (32 bytes: shorter than the block).
pub fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            token: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            expires_ms: 10_000,
            principal: digest(&["alice"]),
            request: digest(&["tools/call", "trigger-sampling"]),
        }
    }

    #[test]
    fn hmac_matches_rfc4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero-padded the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn round_trip() {
        let c = Codec::new([7; 32], "proxy-a");
        let text = c.seal(&state());
        assert!(text.len() <= MAX_STATE);
        assert_eq!(c.open(&text, 9_999).unwrap(), state());
    }

    #[test]
    fn tampered_states_are_refused() {
        let c = Codec::new([7; 32], "proxy-a");
        let text = c.seal(&state());
        let sealed = text
            .strip_prefix("proxy-a.")
            .expect("the instance in clear");
        let mut raw = URL_SAFE_NO_PAD.decode(sealed).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let e = c
                .open(&format!("proxy-a.{}", URL_SAFE_NO_PAD.encode(&raw)), 0)
                .unwrap_err();
            assert_eq!(e.rpc_code(), -32602, "byte {i}");
            raw[i] ^= 1;
        }
        // The name in clear is only for routing: another name there is foreign, none is junk.
        let e = c.open(&format!("proxy-b.{sealed}"), 0).unwrap_err();
        assert!(e.to_string().contains("another instance"), "{e}");
        for junk in ["", "x", "!!!", sealed, &"A".repeat(400)] {
            assert!(c.open(junk, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn expired_states_are_refused() {
        let c = Codec::new([7; 32], "proxy-a");
        let text = c.seal(&state());
        let e = c.open(&text, 10_000).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn foreign_instances_are_refused() {
        let a = Codec::new([7; 32], "proxy-a");
        let b = Codec::new([8; 32], "proxy-b");
        let e = b.open(&a.seal(&state()), 0).unwrap_err();
        assert!(e.to_string().contains("another instance"), "{e}");
        // Same key, other name (a misconfigured fleet): still foreign, never accepted.
        let c = Codec::new([7; 32], "proxy-c");
        assert!(c.open(&a.seal(&state()), 0).is_err());
    }
}
