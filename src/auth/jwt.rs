//! Tokens from an app's own login: JWTs (RFC 7519) that a trusted issuer signed with one of the
//! keys of its JWKS (RFC 7517). Plain Rust: parsing, the claims' checks and the signature, unit-
//! tested without Postgres. Which issuers are trusted, and their users, is issuers.rs.
//!
//! The algorithm comes from the key: an RSA key verifies RS256 or RS512 (its `alg`, when the JWKS
//! names one, must be the header's), a P-256 key ES256 and an Ed25519 key EdDSA, so a header cannot
//! make one kind of key verify another kind of signature. `none` and the HMAC algorithms are
//! refused: an issuer's keys are public.

use super::token::{decode_base64, decode_json, split, Parts};
use crate::error::{HatchatError, Result};
use jiff::{SignedDuration, Timestamp};
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// What `nbf` and `iat` may be ahead of this server's clock.
const LEEWAY: SignedDuration = SignedDuration::from_secs(60);
/// The longest token verified (a 4096-bit RSA signature with generous claims fits many times).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Issuer users' ids: name-based (version 5) uuids of `iss` and `sub` in this namespace.
const NAMESPACE: Uuid = Uuid::from_u128(0x6861_7463_6861_7400_8000_6973_7375_6572);

/// A public key of an issuer, with the id tokens name it by.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    kind: KeyKind,
    /// The JWKS's `alg` for the key, when it names one.
    alg: Option<String>,
}

#[derive(Debug, Clone)]
enum KeyKind {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point: 0x04, x, y.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// What an issuer requires of its tokens besides a signature.
pub struct Rules<'a> {
    pub audience: &'a str,
    pub username_claim: &'a str,
    pub max_lifetime: SignedDuration,
    pub now: Timestamp,
}

/// A token that verified: whose it is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: Uuid,
    pub sub: String,
    /// The username claim, as given (checked against the name rules where the user is made).
    pub username: Option<String>,
    pub expires_at: Timestamp,
}

/// A token whose shape is valid: its signature and claims are still to be checked.
pub struct Token<'a> {
    pub iss: String,
    pub kid: Option<String>,
    alg: String,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

/// The name-based uuid of an issuer's user: the same (`iss`, `sub`) always names the same user, and
/// two issuers never share one.
pub fn user_id(iss: &str, sub: &str) -> Uuid {
    // The issuer's length first: no (iss, sub) pair spells another's.
    let length = (iss.len() as u64).to_be_bytes();
    Uuid::new_v5(&NAMESPACE, &[&length[..], iss.as_bytes(), sub.as_bytes()].concat())
}

pub fn parse(raw: &str) -> Result<Token<'_>> {
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(refused(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let Parts { header, claims, signature, signing_input } = split(raw)?;
    let header: Header = decode_json(header, "header")?;
    let alg = header.alg.ok_or_else(|| refused("the header has no \"alg\""))?;
    let claims: Map<String, Value> = decode_json(claims, "claims")?;
    let iss = claims.get("iss").and_then(Value::as_str).ok_or_else(|| refused("no \"iss\" claim"))?;
    let signature = decode_base64(signature).ok_or_else(|| refused("the signature is not base64"))?;
    Ok(Token { iss: iss.to_string(), kid: header.kid, alg, claims, signing_input, signature })
}

impl Token<'_> {
    /// The user the token claims to speak for, before anything is verified: what to read.
    pub fn claimed_user_id(&self) -> Option<Uuid> {
        self.claims.get("sub").and_then(Value::as_str).map(|sub| user_id(&self.iss, sub))
    }

    /// `exp`, unverified: for a token `verify` has already accepted.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.time("exp").ok().flatten()
    }

    /// Checks the signature with the key the header names (by `kid`; without one, the issuer's
    /// only key), then the claims.
    pub fn verify(&self, keys: &[Key], rules: &Rules) -> Result<Verified> {
        let key = self.key(keys)?;
        let message = self.signing_input.as_bytes();
        let verified = match checker(key, &self.alg)? {
            Checker::Rsa(n, e, hash) => {
                signature::RsaPublicKeyComponents { n, e }.verify(hash, message, &self.signature)
            }
            Checker::Other(algorithm, key) => {
                UnparsedPublicKey::new(algorithm, key).verify(message, &self.signature)
            }
        };
        verified.map_err(|_| HatchatError::unauthenticated())?;
        self.check_claims(rules)
    }

    fn key<'k>(&self, keys: &'k [Key]) -> Result<&'k Key> {
        match &self.kid {
            Some(kid) => keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or_else(|| unknown_key(&self.iss, kid)),
            None if keys.len() == 1 => Ok(&keys[0]),
            None => Err(refused("the token names no key (\"kid\") and its issuer has several")),
        }
    }

    fn check_claims(&self, rules: &Rules) -> Result<Verified> {
        let audience_named = match self.claims.get("aud") {
            Some(Value::String(aud)) => aud == rules.audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(rules.audience)),
            _ => false,
        };
        if !audience_named {
            return Err(refused(format!("the token's \"aud\" does not name {:?}", rules.audience)));
        }
        let expires_at = self.time("exp")?.ok_or_else(|| refused("no \"exp\" claim"))?;
        if expires_at <= rules.now {
            return Err(refused("the token has expired"));
        }
        if expires_at > rules.now.checked_add(rules.max_lifetime).unwrap_or(Timestamp::MAX) {
            return Err(refused(format!(
                "exp is more than {}s ahead (hatchat.max_token_lifetime)",
                rules.max_lifetime.as_secs()
            )));
        }
        let ahead = rules.now.checked_add(LEEWAY).unwrap_or(Timestamp::MAX);
        for claim in ["nbf", "iat"] {
            if self.time(claim)?.is_some_and(|at| at > ahead) {
                return Err(refused(format!("the token's \"{claim}\" is in the future")));
            }
        }
        let sub = match self.claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= 255 => sub.clone(),
            _ => return Err(refused("\"sub\" must be a string of 1..255 bytes")),
        };
        let username = self.claims.get(rules.username_claim).and_then(Value::as_str).map(str::to_string);
        Ok(Verified { user_id: user_id(&self.iss, &sub), sub, username, expires_at })
    }

    /// A NumericDate claim (seconds), if present.
    fn time(&self, claim: &str) -> Result<Option<Timestamp>> {
        let Some(value) = self.claims.get(claim) else { return Ok(None) };
        let seconds = value.as_f64().filter(|s| s.is_finite() && s.abs() < 1e11);
        let at = seconds.and_then(|s| Timestamp::from_millisecond((s * 1000.0) as i64).ok());
        at.map(Some).ok_or_else(|| refused(format!("\"{claim}\" must be NumericDate seconds")))
    }
}

/// How `key` checks a signature of the header's algorithm, if its kind (and its `alg`) allows it.
fn checker<'k>(key: &'k Key, alg: &str) -> Result<Checker<'k>> {
    if let Some(named) = key.alg.as_deref().filter(|named| *named != alg) {
        return Err(refused(format!("the key is for {named}, the token says {alg}")));
    }
    match (&key.kind, alg) {
        (KeyKind::Rsa { n, e }, "RS256") => Ok(Checker::Rsa(n, e, &signature::RSA_PKCS1_2048_8192_SHA256)),
        (KeyKind::Rsa { n, e }, "RS512") => Ok(Checker::Rsa(n, e, &signature::RSA_PKCS1_2048_8192_SHA512)),
        (KeyKind::P256(point), "ES256") => Ok(Checker::Other(&signature::ECDSA_P256_SHA256_FIXED, point)),
        (KeyKind::Ed25519(x), "EdDSA") => Ok(Checker::Other(&signature::ED25519, x)),
        _ => Err(refused(format!("alg {alg:?} does not match the key (RS256, RS512, ES256 or EdDSA)"))),
    }
}

enum Checker<'k> {
    /// n, e, and the hash.
    Rsa(&'k [u8], &'k [u8], &'static signature::RsaParameters),
    Other(&'static dyn signature::VerificationAlgorithm, &'k [u8]),
}

/// An issuer's keys from a JWKS document (`{"keys": [...]}`). Private parts are ignored, and so
/// are keys hatchat cannot verify with (for encryption, other curves): an issuer's JWKS may hold
/// them beside its signing keys. A JWKS whose keys are all of that kind is refused (22023), so an
/// operator learns at once.
pub fn parse_jwks(document: &Value) -> Result<Vec<Key>> {
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| HatchatError::invalid("a JWKS is {\"keys\": [...]}"))?;
    if keys.len() > 100 {
        return Err(HatchatError::invalid("a JWKS of at most 100 keys"));
    }
    let parsed: Vec<Result<Key>> = keys.iter().map(parse_jwk).collect();
    let usable: Vec<Key> = parsed.iter().filter_map(|key| key.as_ref().ok().cloned()).collect();
    match parsed.into_iter().find_map(Result::err) {
        Some(error) if usable.is_empty() => Err(error),
        _ => Ok(usable),
    }
}

fn parse_jwk(jwk: &Value) -> Result<Key> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| {
        field(name)
            .and_then(decode_base64)
            .ok_or_else(|| HatchatError::invalid(format!("a JWK's {name:?} must be base64url")))
    };
    let kind = match (field("kty"), field("crv")) {
        (Some("RSA"), _) => {
            let n = bytes("n")?;
            if n.len() < 256 {
                return Err(HatchatError::invalid("an RSA key of at least 2048 bits"));
            }
            KeyKind::Rsa { n, e: bytes("e")? }
        }
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(HatchatError::invalid("a P-256 key's x and y are 32 bytes each"));
            }
            KeyKind::P256([&[4u8][..], &x, &y].concat())
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err(HatchatError::invalid("an Ed25519 key's x is 32 bytes"));
            }
            KeyKind::Ed25519(x)
        }
        (kty, crv) => {
            return Err(HatchatError::invalid(format!(
                "keys of kind {kty:?} {crv:?} are not supported: RSA, EC P-256 or OKP Ed25519"
            )))
        }
    };
    if field("use").is_some_and(|u| u != "sig") {
        return Err(HatchatError::invalid("a JWK for verifying has \"use\": \"sig\" (or none)"));
    }
    Ok(Key { kid: field("kid").map(str::to_string), kind, alg: field("alg").map(str::to_string) })
}

/// The detail of a token signed by a key its issuer's JWKS does not hold (yet): the gateway reads
/// it to fetch the issuer's keys again (hatchat_wire::issuers).
fn unknown_key(iss: &str, kid: &str) -> HatchatError {
    HatchatError::unauthenticated_with(hatchat_wire::issuers::unknown_key_detail(iss, kid))
}

fn refused(detail: impl Into<String>) -> HatchatError {
    HatchatError::unauthenticated_with(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use rsa::{Pkcs1v15Sign, RsaPrivateKey};
    use serde_json::json;
    use sha2::{Digest, Sha256, Sha512};

    const ALICE_KEY: &str = include_str!("../../tests/fixtures/keys/alice.key.pem");
    const ISS: &str = "https://app.example";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    enum Signer {
        Rsa(RsaPrivateKey),
        P256(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    impl Signer {
        fn rsa() -> Self {
            Signer::Rsa(RsaPrivateKey::from_pkcs8_pem(ALICE_KEY).unwrap())
        }
        fn p256() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Signer::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
            )
        }
        fn ed() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }

        fn jwk(&self, kid: &str) -> Value {
            match self {
                Signer::Rsa(key) => json!({"kty": "RSA", "kid": kid, "n": b64(&key.n().to_bytes_be()),
                                           "e": b64(&key.e().to_bytes_be())}),
                Signer::P256(key) => {
                    let point = key.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])})
                }
                Signer::Ed(key) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.public_key().as_ref())})
                }
            }
        }

        fn sign(&self, alg: &str, input: &str) -> Vec<u8> {
            match self {
                Signer::Rsa(key) if alg == "RS256" => {
                    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes())).unwrap()
                }
                Signer::Rsa(key) => {
                    key.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input.as_bytes())).unwrap()
                }
                Signer::P256(key) => {
                    key.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec()
                }
                Signer::Ed(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
            }
        }

        fn token(&self, header: Value, claims: Value) -> String {
            let input =
                format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
            let alg = header["alg"].as_str().unwrap_or("").to_string();
            format!("{input}.{}", b64(&self.sign(&alg, &input)))
        }
    }

    fn now() -> Timestamp {
        "2026-12-06T12:00:00Z".parse().unwrap()
    }

    fn claims() -> Value {
        let now = now().as_second();
        json!({"iss": ISS, "aud": "chat", "sub": "u-1", "exp": now + 300, "iat": now, "name": "alice"})
    }

    fn rules() -> Rules<'static> {
        Rules {
            audience: "chat",
            username_claim: "name",
            max_lifetime: SignedDuration::from_secs(3600),
            now: now(),
        }
    }

    fn check(token: &str, keys: &[Key]) -> Result<Verified> {
        parse(token)?.verify(keys, &rules())
    }

    fn keys(signer: &Signer) -> Vec<Key> {
        parse_jwks(&json!({"keys": [signer.jwk("k1")]})).unwrap()
    }

    #[test]
    fn a_good_token_of_each_algorithm_verifies() {
        for (signer, alg) in [
            (Signer::rsa(), "RS256"),
            (Signer::rsa(), "RS512"),
            (Signer::p256(), "ES256"),
            (Signer::ed(), "EdDSA"),
        ] {
            let token = signer.token(json!({"alg": alg, "kid": "k1"}), claims());
            let verified = check(&token, &keys(&signer)).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
            assert_eq!(verified.user_id, user_id(ISS, "u-1"));
            assert_eq!(verified.username.as_deref(), Some("alice"));
            assert_eq!(verified.user_id.get_version_num(), 5);
        }
    }

    #[test]
    fn each_broken_rule_is_refused_on_its_own() {
        let signer = Signer::p256();
        let keys = keys(&signer);
        let now = now().as_second();
        let with = |field: &str, value: Value| {
            let mut c = claims();
            c[field] = value;
            signer.token(json!({"alg": "ES256", "kid": "k1"}), c)
        };
        let cases = [
            ("expired", with("exp", json!(now - 1))),
            ("too long", with("exp", json!(now + 7200))),
            ("not yet", with("nbf", json!(now + 120))),
            ("issued in the future", with("iat", json!(now + 120))),
            ("wrong audience", with("aud", json!("other"))),
            ("no sub", with("sub", json!(null))),
            ("exp in milliseconds", with("exp", json!((now + 300) * 1000))),
            ("unknown kid", signer.token(json!({"alg": "ES256", "kid": "k2"}), claims())),
            ("alg none", signer.token(json!({"alg": "none", "kid": "k1"}), claims())),
            ("HS256 over the key", signer.token(json!({"alg": "HS256", "kid": "k1"}), claims())),
            ("another family's alg", signer.token(json!({"alg": "RS256", "kid": "k1"}), claims())),
        ];
        for (what, token) in cases {
            let error = check(&token, &keys).expect_err(what);
            assert_eq!(error.sqlstate_code(), "28000", "{what}");
        }
        // A tampered claim: the signature no longer matches.
        let token = signer.token(json!({"alg": "ES256", "kid": "k1"}), claims());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut c = claims();
        c["sub"] = json!("u-2");
        parts[1] = b64(c.to_string().as_bytes());
        assert!(check(&parts.join("."), &keys).is_err(), "tampered");
        // A key of the same kind that is not the issuer's.
        let stranger = Signer::p256().token(json!({"alg": "ES256", "kid": "k1"}), claims());
        assert!(check(&stranger, &keys).is_err(), "another key");
    }

    #[test]
    fn an_unknown_key_says_which_issuer_to_ask_again() {
        let signer = Signer::ed();
        let token = signer.token(json!({"alg": "EdDSA", "kid": "new"}), claims());
        let error = check(&token, &keys(&signer)).unwrap_err();
        let detail = error.detail().unwrap();
        assert_eq!(hatchat_wire::issuers::unknown_key_issuer(detail), Some(ISS), "{detail}");
    }

    #[test]
    fn the_keys_alg_decides_not_the_header() {
        let signer = Signer::rsa();
        let mut jwk = signer.jwk("k1");
        jwk["alg"] = json!("RS512");
        let keys = parse_jwks(&json!({"keys": [jwk]})).unwrap();
        let rs256 = signer.token(json!({"alg": "RS256", "kid": "k1"}), claims());
        assert!(check(&rs256, &keys).is_err(), "the key is for RS512 only");
        let rs512 = signer.token(json!({"alg": "RS512", "kid": "k1"}), claims());
        assert!(check(&rs512, &keys).is_ok());
    }

    #[test]
    fn two_issuers_never_share_a_user() {
        assert_ne!(user_id("https://a.example", "u-1"), user_id("https://b.example", "u-1"));
        assert_ne!(user_id("a", "b\0c"), user_id("a\0b", "c"));
        assert_eq!(user_id(ISS, "u-1"), user_id(ISS, "u-1"));
    }

    #[test]
    fn keys_hatchat_cannot_verify_with_are_refused() {
        for jwk in [
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
        ] {
            assert_eq!(parse_jwks(&json!({"keys": [jwk]})).unwrap_err().sqlstate_code(), "22023");
        }
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_authenticate(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            let keys = keys(&Signer::rsa());
            proptest::prop_assert!(parse(&text).and_then(|t| t.verify(&keys, &rules())).is_err());
            let _ = crate::auth::issuer_of(&text);
            // The same bytes as each part of a well-formed token, with a real issuer's claims.
            let header = b64(&bytes);
            let claims = b64(claims().to_string().as_bytes());
            for token in [format!("{header}.{claims}.{header}"), format!("{}.{header}.{header}", b64(br#"{"alg":"RS256"}"#))] {
                proptest::prop_assert!(parse(&token).and_then(|t| t.verify(&keys, &rules())).is_err());
            }
        }
    }
}
