//! The `jsonwebtoken` crypto provider on `ring`, the library rustls already links for TLS.
//!
//! `jsonwebtoken` parses tokens, JWKs and claims; the signatures go through a `CryptoProvider`.
//! Its built-in one (`rust_crypto`) would link a second set of RSA, P-256, P-384 and Ed25519
//! implementations (and bignum, ASN.1 and time crates) beside ring's, about 0.54 MB of the
//! release binary (docs/benchmarks.md, "Binary size"). This one maps every JWS algorithm to
//! ring's: HMAC, RSA PKCS#1 v1.5 and PSS (2048–8192-bit keys, as rustls), ECDSA P-256/P-384
//! (fixed-length `r || s`, as JWS) and Ed25519. Signing is here too, for the tests and
//! benchmarks that mint tokens; the proxy itself only verifies.
//!
//! [`install`] makes it the process-wide provider; `Jwt::load` calls it before any key or
//! token is touched, and so must anything else that signs or verifies (tests, benches).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// Makes ring the provider of every `jsonwebtoken` call in this process. Idempotent; if
/// another provider was installed first it stays (only tests could do that).
pub fn install() {
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_components_from_private_key,
        compute_digest,
    },
};

/// What one algorithm needs from ring.
#[derive(Clone, Copy)]
enum Scheme {
    Hmac(hmac::Algorithm),
    Rsa(&'static sig::RsaParameters, &'static dyn sig::RsaEncoding),
    Ecdsa(
        &'static sig::EcdsaVerificationAlgorithm,
        &'static sig::EcdsaSigningAlgorithm,
    ),
    Ed25519,
}

/// ring's scheme for `alg`; an algorithm a later `jsonwebtoken` adds is refused.
fn scheme(alg: Algorithm) -> Result<Scheme> {
    use Algorithm as A;
    Ok(match alg {
        A::HS256 => Scheme::Hmac(hmac::HMAC_SHA256),
        A::HS384 => Scheme::Hmac(hmac::HMAC_SHA384),
        A::HS512 => Scheme::Hmac(hmac::HMAC_SHA512),
        A::RS256 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256, &sig::RSA_PKCS1_SHA256),
        A::RS384 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384, &sig::RSA_PKCS1_SHA384),
        A::RS512 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512, &sig::RSA_PKCS1_SHA512),
        A::PS256 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA256, &sig::RSA_PSS_SHA256),
        A::PS384 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA384, &sig::RSA_PSS_SHA384),
        A::PS512 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA512, &sig::RSA_PSS_SHA512),
        A::ES256 => Scheme::Ecdsa(
            &sig::ECDSA_P256_SHA256_FIXED,
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        ),
        A::ES384 => Scheme::Ecdsa(
            &sig::ECDSA_P384_SHA384_FIXED,
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        ),
        A::EdDSA => Scheme::Ed25519,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

/// A verifier: the algorithm, ring's scheme for it and the public key (or HMAC key).
struct RingVerifier {
    alg: Algorithm,
    scheme: Scheme,
    key: DecodingKey,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    // The key must be of the algorithm's family: an RSA public key is never an HMAC secret.
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        scheme: scheme(*alg)?,
        key: key.clone(),
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let ok = match (self.scheme, self.key.kind()) {
            (Scheme::Rsa(params, _), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            (Scheme::Rsa(params, _), DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(params, der).verify(msg, signature)
            }
            (Scheme::Hmac(a), DecodingKeyKind::SecretOrDer(secret)) => {
                hmac::verify(&hmac::Key::new(a, secret), msg, signature)
            }
            (Scheme::Ecdsa(v, _), DecodingKeyKind::SecretOrDer(point)) => {
                sig::UnparsedPublicKey::new(v, point).verify(msg, signature)
            }
            (Scheme::Ed25519, DecodingKeyKind::SecretOrDer(raw)) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, raw).verify(msg, signature)
            }
            _ => return Err(signature::Error::new()),
        };
        ok.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// A signer, the key parsed once.
struct RingSigner {
    alg: Algorithm,
    key: SigningKey,
}

enum SigningKey {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes = key.as_bytes();
    let key = match scheme(*alg)? {
        Scheme::Hmac(a) => SigningKey::Hmac(hmac::Key::new(a, bytes)),
        Scheme::Rsa(_, enc) => SigningKey::Rsa(
            sig::RsaKeyPair::from_der(bytes)
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?,
            enc,
        ),
        Scheme::Ecdsa(_, s) => SigningKey::Ecdsa(
            sig::EcdsaKeyPair::from_pkcs8(s, bytes, &SystemRandom::new())
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        Scheme::Ed25519 => SigningKey::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
    };
    Ok(Box::new(RingSigner { alg: *alg, key }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Hmac(k) => Ok(hmac::sign(k, msg).as_ref().to_vec()),
            SigningKey::Rsa(k, enc) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(*enc, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
            SigningKey::Ecdsa(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SigningKey::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

// The key utilities build a JWK from a key (`Jwk::from_encoding_key`) or hash one for a
// thumbprint; the proxy uses neither, they are here so that no call can reach the crate's
// "no provider" panic.

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair =
        sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((c.n, c.e))
}

/// ring has no parser for a bare RSA public key; nothing here needs one.
fn rsa_components_from_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::InvalidRsaKey("RSA public key DER is not supported".into()).into())
}

fn ec_components_from_private_key(
    pkcs8: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, half) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    match pair.public_key().as_ref() {
        [4, xy @ ..] if xy.len() == 2 * half => {
            let (x, y) = xy.split_at(half);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_components_from_private_key(pkcs8: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde_json::{Value, json};

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
        std::fs::read(dir.join(name)).unwrap()
    }

    fn roundtrip(alg: Algorithm, enc: &EncodingKey, dec: &DecodingKey) -> bool {
        install();
        let claims = json!({"sub": "alice", "exp": jsonwebtoken::get_current_timestamp() + 60});
        let token = encode(&Header::new(alg), &claims, enc).unwrap();
        let mut v = Validation::new(alg);
        v.validate_aud = false;
        decode::<Value>(&token, dec, &v).is_ok()
    }

    #[test]
    fn hmac_signs_and_verifies_and_a_wrong_secret_fails() {
        let enc = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(roundtrip(
                alg,
                &enc,
                &DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef")
            ));
            assert!(!roundtrip(
                alg,
                &enc,
                &DecodingKey::from_secret(b"another secret, as long")
            ));
        }
    }

    #[test]
    fn rsa_and_ec_from_the_fixture_keys_and_their_jwks() {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&fixture("jwks.json")).unwrap();
        let key = |kid: &str| DecodingKey::from_jwk(set.find(kid).unwrap()).unwrap();
        let rsa = EncodingKey::from_rsa_pem(&fixture("rsa1.pem")).unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
        ] {
            assert!(roundtrip(alg, &rsa, &key("rsa1")), "{alg:?}");
        }
        let ec = EncodingKey::from_ec_pem(&fixture("ec1.pem")).unwrap();
        assert!(roundtrip(Algorithm::ES256, &ec, &key("ec1")));
        // Another key of the same family, and keys of the wrong family, are refused.
        assert!(!roundtrip(Algorithm::RS256, &rsa, &key("ec1")));
        assert!(!roundtrip(Algorithm::ES256, &ec, &key("rsa1")));
        let rsa2 = EncodingKey::from_rsa_pem(&fixture("rsa2.pem")).unwrap();
        assert!(!roundtrip(Algorithm::RS256, &rsa2, &key("rsa1")));
    }

    #[test]
    fn ed25519_signs_and_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let public = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let enc = EncodingKey::from_ed_der(pkcs8.as_ref());
        assert!(roundtrip(
            Algorithm::EdDSA,
            &enc,
            &DecodingKey::from_ed_der(&public)
        ));
        let mut other = public.clone();
        other[0] ^= 1;
        assert!(!roundtrip(
            Algorithm::EdDSA,
            &enc,
            &DecodingKey::from_ed_der(&other)
        ));
    }

    #[test]
    fn key_utilities_answer_without_panicking() {
        install();
        let rsa = EncodingKey::from_rsa_pem(&fixture("rsa1.pem")).unwrap();
        let (n, e) = rsa_components_from_private_key(rsa.as_bytes()).unwrap();
        assert_eq!((n.len(), e), (256, vec![1, 0, 1]));
        assert!(rsa_components_from_public_key(b"\x30\x00").is_err());
        let ec = EncodingKey::from_ec_pem(&fixture("ec1.pem")).unwrap();
        let (_, x, y) = ec_components_from_private_key(ec.as_bytes(), Algorithm::ES256).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        assert!(ec_components_from_private_key(b"junk", Algorithm::ES256).is_err());
        assert_eq!(
            compute_digest(b"", ThumbprintHash::SHA256).unwrap().len(),
            32
        );
    }
}
