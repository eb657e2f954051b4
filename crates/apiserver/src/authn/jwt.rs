//! Compact JWS (JWT) with ES256: the service-account token format.
//!
//! Why ES256 rather than upstream's usual RS256: `ring` (already linked
//! through rustls) can generate P-256 keys but not RSA keys, and ES256 is
//! one of the algorithms upstream's service-account authenticator accepts
//! (`--service-account-key-file` may hold an ECDSA key). Signatures are 64
//! bytes and signing costs microseconds.
//!
//! Only what service-account tokens need: a fixed header
//! (`{"alg":"ES256","kid":…}`), JSON claims, and verification that checks
//! the algorithm, the signature, `exp`/`nbf` and an audience.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// How far clocks may disagree when checking `nbf` and `exp` (upstream
/// allows a minute of leeway too).
pub const LEEWAY_SECS: i64 = 60;

/// The DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte
/// uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A signing key (the API server's `sa.key`) and its key id.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pub verifier: Verifier,
}

/// A public key (`sa.pub`) that checks tokens.
#[derive(Clone)]
pub struct Verifier {
    /// The uncompressed P-256 point.
    point: Vec<u8>,
    /// Upstream's key id: base64url(SHA-256(SPKI DER)).
    pub kid: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtError::Malformed => "malformed token",
            JwtError::Algorithm => "unexpected signing algorithm",
            JwtError::Signature => "invalid signature",
            JwtError::Expired => "token has expired",
            JwtError::NotYetValid => "token is not valid yet",
        })
    }
}

impl Signer {
    /// From a PKCS#8 DER P-256 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        let verifier = Verifier::from_point(key.public_key().as_ref().to_vec());
        Ok(Signer { key, rng, verifier })
    }

    /// A new key as PKCS#8 DER.
    pub fn generate_pkcs8() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("P-256 key generation").as_ref().to_vec()
    }

    /// The signed compact token for `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.verifier.kid});
        let mut out = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.key.sign(&self.rng, out.as_bytes()).expect("ECDSA signing");
        out.push('.');
        out.push_str(&B64.encode(sig.as_ref()));
        out
    }
}

impl Verifier {
    fn from_point(point: Vec<u8>) -> Verifier {
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &spki(&point)));
        Verifier { point, kid }
    }

    /// From a SubjectPublicKeyInfo DER of a P-256 key.
    pub fn from_spki(der: &[u8]) -> Result<Verifier, String> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(p) if p.len() == 65 && p[0] == 4 => Ok(Verifier::from_point(p.to_vec())),
            _ => Err("not a P-256 public key".into()),
        }
    }

    /// The key as SubjectPublicKeyInfo DER (what `sa.pub` holds, as PEM).
    pub fn spki_der(&self) -> Vec<u8> {
        spki(&self.point)
    }

    /// The key as a JWK (for `/openid/v1/jwks`).
    pub fn jwk(&self) -> Value {
        json!({"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256", "x": B64.encode(&self.point[1..33]), "y": B64.encode(&self.point[33..65])})
    }

    /// The claims of `token` if it is signed by this key and valid at
    /// `now`. The audience is the caller's to judge (see
    /// [`token_audiences`]): a TokenReview reports which of the requested
    /// audiences the token is for, and why not when none.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, JwtError> {
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else { return Err(JwtError::Malformed) };
        let header: Value = B64.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(JwtError::Algorithm);
        }
        let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
        let signed = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point).verify(signed.as_bytes(), &sig).map_err(|_| JwtError::Signature)?;
        let claims: Value = B64.decode(c).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
        if claims["exp"].as_i64().is_none_or(|exp| now > exp + LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

/// The `aud` claim, a string or an array of strings as RFC 7519 allows.
pub fn token_audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    }
}

fn spki(point: &[u8]) -> Vec<u8> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    der
}

/// Does `token` look like a JWT (three base64url parts, a JSON header)?
/// Cheap: no decoding, so other bearer tokens are told apart for free.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pkcs8(&Signer::generate_pkcs8()).unwrap()
    }

    fn claims(now: i64) -> Value {
        json!({"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:default:default", "aud": ["api"], "iat": now, "nbf": now, "exp": now + 3600})
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let t = s.sign(&claims(1000));
        assert!(looks_like_jwt(&t));
        assert_eq!(s.verifier.verify(&t, 1500).unwrap()["sub"], "system:serviceaccount:default:default");
        // The public key alone verifies too.
        let v = Verifier::from_spki(&s.verifier.spki_der()).unwrap();
        assert_eq!(v.kid, s.verifier.kid);
        assert!(v.verify(&t, 1500).is_ok());
    }

    #[test]
    fn tampered_payload_fails() {
        let s = signer();
        let t = s.sign(&claims(1000));
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(1000);
        c["sub"] = json!("system:serviceaccount:kube-system:admin");
        let forged = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
        assert_eq!(s.verifier.verify(&forged, 1500), Err(JwtError::Signature));
        let mut sig = B64.decode(parts[2]).unwrap();
        sig[5] ^= 1;
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
        assert_eq!(s.verifier.verify(&bad_sig, 1500), Err(JwtError::Signature));
        assert_eq!(s.verifier.verify("eyJ.x", 1500), Err(JwtError::Malformed));
        assert_eq!(s.verifier.verify("a.b.c", 1500), Err(JwtError::Malformed));
    }

    #[test]
    fn other_keys_and_algorithms_fail() {
        let t = signer().sign(&claims(1000));
        assert_eq!(signer().verifier.verify(&t, 1500), Err(JwtError::Signature));
        // alg=none with no signature must not pass.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(claims(1000).to_string()));
        assert_eq!(signer().verifier.verify(&none, 1500), Err(JwtError::Algorithm));
    }

    #[test]
    fn expiry_and_not_before() {
        let s = signer();
        let t = s.sign(&claims(1000));
        assert!(s.verifier.verify(&t, 1000 + 3600 + LEEWAY_SECS).is_ok());
        assert_eq!(s.verifier.verify(&t, 1000 + 3600 + LEEWAY_SECS + 1), Err(JwtError::Expired));
        assert_eq!(s.verifier.verify(&t, 1000 - LEEWAY_SECS - 1), Err(JwtError::NotYetValid));
        let mut c = claims(1000);
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(s.verifier.verify(&s.sign(&c), 1000), Err(JwtError::Expired));
    }

    #[test]
    fn audiences_as_array_or_string() {
        assert_eq!(token_audiences(&claims(1000)), vec!["api".to_string()]);
        let mut c = claims(1000);
        c["aud"] = json!("api");
        assert_eq!(token_audiences(&c), vec!["api".to_string()]);
        c["aud"] = json!(["a", "b"]);
        assert_eq!(token_audiences(&c), vec!["a".to_string(), "b".to_string()]);
        c.as_object_mut().unwrap().remove("aud");
        assert!(token_audiences(&c).is_empty());
    }

    #[test]
    fn jwt_shape() {
        assert!(!looks_like_jwt("0123456789abcdef0123456789abcdef"));
        assert!(!looks_like_jwt("eyJhbGciOiJ.only-one"));
    }
}
