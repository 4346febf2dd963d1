//! Self-signed request tokens: `b64(header).b64(claim).b64(signature)`, the signature being
//! RSASSA-PKCS1-v1_5 over the ASCII text of the first two parts joined by `.`. Plain Rust: parsing,
//! expiry and signature checks, unit-tested without Postgres.
//!
//! Every failure is the same 28000 error to the caller. The `detail` of a failure found in the
//! token alone (its shape, its `exp`) helps a developer fix their signer and reveals nothing about
//! the database; "no such user" and "wrong signature" share one detail-less error.

use crate::auth::keys::VerifyingKey;
use crate::error::{HatchatError, Result};
use crate::time;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use ring::signature::{RsaParameters, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA512};
use serde::Deserialize;
use uuid::Uuid;

/// Far above any real token (a 4096-bit signature is 683 base64 characters); bounds the work an
/// anonymous caller can make us do before any check.
const MAX_TOKEN_BYTES: usize = 8192;

/// Standard base64, padded or not. URL-safe input is mapped onto it first.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    RsaSha512,
}

impl Algorithm {
    /// JWT names (`RS512`), Node's crypto names (`RSA-SHA512`) and WebCrypto's hash names
    /// (`SHA-512`, which Hatch@'s web client writes). Anything else, `none` included, is refused.
    fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "RS512" | "RSA-SHA512" | "SHA-512" => Some(Self::RsaSha512),
            "RS256" | "RSA-SHA256" | "SHA-256" => Some(Self::RsaSha256),
            _ => None,
        }
    }

    fn ring_parameters(self) -> &'static RsaParameters {
        match self {
            Self::RsaSha256 => &RSA_PKCS1_2048_8192_SHA256,
            Self::RsaSha512 => &RSA_PKCS1_2048_8192_SHA512,
        }
    }
}

/// A token whose shape is valid; its signature and lifetime are still to be checked.
#[derive(Debug)]
pub struct SignedToken<'a> {
    pub algorithm: Algorithm,
    pub user_id: Uuid,
    pub expires_at: Timestamp,
    /// The whole token, without `Bearer `: what a verified signature is remembered by.
    pub text: &'a str,
    signing_input: &'a str,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Claim {
    id: Option<String>,
    exp: Option<serde_json::Value>,
}

/// The raw Authorization value may carry a `Bearer ` prefix (any case), as HTTP sends it.
pub fn strip_bearer(raw: &str) -> &str {
    let raw = raw.trim();
    // Looks at the first word only: a token is long, and this runs for every request.
    let is_bearer = raw.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer"));
    match raw.get(6..) {
        Some(rest) if is_bearer && (rest.is_empty() || rest.starts_with(char::is_whitespace)) => {
            rest.trim_start()
        }
        _ => raw,
    }
}

pub fn parse(raw: &str) -> Result<SignedToken<'_>> {
    let token = strip_bearer(raw);
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let Parts { header, claims: claim, signature, signing_input } = split(token)?;
    let header: Header = decode_json(header, "header")?;
    let alg = header.alg.ok_or_else(|| malformed("the header has no \"alg\""))?;
    let algorithm = Algorithm::from_header(&alg)
        .ok_or_else(|| malformed(format!("unsupported alg {alg:?}: use RS512 (or SHA-512) or RS256")))?;
    let claim: Claim = decode_json(claim, "claim")?;
    let user_id = claim
        .id
        .as_deref()
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| malformed("the claim's \"id\" must be the user's uuid"))?;
    let expires_at = parse_exp(claim.exp.as_ref())?;
    let signature = decode_base64(signature).ok_or_else(|| malformed("the signature is not base64"))?;
    Ok(SignedToken { algorithm, user_id, expires_at, text: token, signing_input, signature })
}

impl SignedToken<'_> {
    /// Refuses a token that has expired, or that lives longer than the server allows: a leaked
    /// token must not be replayable for longer than `max_lifetime`.
    pub fn check_lifetime(&self, now: Timestamp, max_lifetime: SignedDuration) -> Result<()> {
        if self.expires_at <= now {
            return Err(malformed(format!("the token expired at {}", time::format(self.expires_at))));
        }
        let latest = now.checked_add(max_lifetime).unwrap_or(Timestamp::MAX);
        if self.expires_at > latest {
            return Err(malformed(format!(
                "exp {} is more than {}s ahead (hatchat.max_token_lifetime)",
                time::format(self.expires_at),
                max_lifetime.as_secs()
            )));
        }
        Ok(())
    }

    pub fn verify(&self, key: &VerifyingKey) -> Result<()> {
        let parameters = self.algorithm.ring_parameters();
        if key.verify(parameters, self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(HatchatError::unauthenticated())
        }
    }
}

fn malformed(detail: impl Into<String>) -> HatchatError {
    HatchatError::unauthenticated_with(detail)
}

/// A token's three parts, and what its signature covers (the first two, joined by their dot): the
/// same for a self-signed token and an issuer's JWT.
pub struct Parts<'a> {
    pub header: &'a str,
    pub claims: &'a str,
    pub signature: &'a str,
    pub signing_input: &'a str,
}

pub fn split(token: &str) -> Result<Parts<'_>> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a token has three base64 parts: header.claims.signature"));
    };
    let signing_input = &token[..header.len() + 1 + claims.len()];
    Ok(Parts { header, claims, signature, signing_input })
}

/// Standard or URL-safe alphabet, padded or not.
pub fn decode_base64(part: &str) -> Option<Vec<u8>> {
    if part.contains(['-', '_']) {
        return LENIENT_BASE64.decode(part.replace('-', "+").replace('_', "/")).ok();
    }
    LENIENT_BASE64.decode(part).ok()
}

pub fn decode_json<T: for<'de> Deserialize<'de>>(part: &str, name: &str) -> Result<T> {
    let bytes = decode_base64(part).ok_or_else(|| malformed(format!("the {name} is not base64")))?;
    // serde maps a JSON array onto a struct's fields in order, so `[id, exp]` would pass for
    // `{id, exp}`: only an object is a header or a claim.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed(format!("the {name} must be a JSON object, not an array or a scalar")));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| malformed(format!("the {name} is not a JSON object of the expected shape")))
}

/// `exp` is NumericDate seconds (JWT) or an ISO-8601 string (what Hatch@'s web client sends).
fn parse_exp(exp: Option<&serde_json::Value>) -> Result<Timestamp> {
    const HINT: &str = "the claim needs \"exp\": NumericDate seconds or an ISO-8601 timestamp";
    match exp {
        Some(serde_json::Value::Number(n)) => {
            let seconds = n.as_f64().filter(|s| s.is_finite()).ok_or_else(|| malformed(HINT))?;
            // Milliseconds (JavaScript's Date.now()) would land tens of thousands of years ahead.
            if seconds > 1e11 {
                return Err(malformed("exp looks like milliseconds; NumericDate is in seconds"));
            }
            time::from_unix_seconds(seconds).ok_or_else(|| malformed(HINT))
        }
        Some(serde_json::Value::String(s)) => time::parse(s).ok_or_else(|| malformed(HINT)),
        _ => Err(malformed(HINT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::parse_public_key;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::{Pkcs1v15Sign, RsaPrivateKey};
    use sha2::{Digest, Sha256, Sha512};

    const ALICE_KEY: &str = include_str!("../../tests/fixtures/keys/alice.key.pem");
    const ALICE_PUB: &str = include_str!("../../tests/fixtures/keys/alice.pub.pem");
    const BOB_PUB: &str = include_str!("../../tests/fixtures/keys/bob.pub.pem");
    const USER: &str = "6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn sign(header: &str, claim: &str, hash: Algorithm) -> String {
        let key = RsaPrivateKey::from_pkcs8_pem(ALICE_KEY).unwrap();
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claim.as_bytes()));
        let signature = match hash {
            Algorithm::RsaSha512 => {
                key.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input.as_bytes())).unwrap()
            }
            Algorithm::RsaSha256 => {
                key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes())).unwrap()
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn seed_client_token() -> String {
        let claim = format!(r#"{{"id":"{USER}","exp":"2026-11-22T12:01:00.000Z"}}"#);
        sign(r#"{"alg":"SHA-512","type":"JWT"}"#, &claim, Algorithm::RsaSha512)
    }

    fn alice() -> VerifyingKey {
        parse_public_key(ALICE_PUB).unwrap()
    }

    fn detail_of(raw: &str) -> String {
        parse(raw).unwrap_err().detail().unwrap_or_default().to_string()
    }

    #[test]
    fn accepts_the_seed_clients_token() {
        let raw = format!("Bearer {}", seed_client_token());
        let token = parse(&raw).unwrap();
        assert_eq!(token.user_id, Uuid::parse_str(USER).unwrap());
        assert_eq!(token.algorithm, Algorithm::RsaSha512);
        token.check_lifetime(now(), SignedDuration::from_hours(24)).unwrap();
        token.verify(&alice()).unwrap();
    }

    #[test]
    fn accepts_jwt_style_rs256_with_numeric_exp_and_url_safe_base64() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = now().as_second() + 30;
        // A JWT library writes every part URL-safe and unpadded; "??>>" makes a '_' appear.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"??>>"}"#);
        let claim = URL_SAFE_NO_PAD.encode(format!(r#"{{"id":"{USER}","exp":{exp}}}"#));
        assert!(header.contains('_') || header.contains('-'), "{header}");
        let input = format!("{header}.{claim}");
        let key = RsaPrivateKey::from_pkcs8_pem(ALICE_KEY).unwrap();
        let sig = key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes())).unwrap();
        let raw = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        let token = parse(&raw).unwrap();
        assert_eq!(token.algorithm, Algorithm::RsaSha256);
        token.check_lifetime(now(), SignedDuration::from_hours(24)).unwrap();
        token.verify(&alice()).unwrap();
    }

    #[test]
    fn refuses_a_signature_by_another_key() {
        let token = seed_client_token();
        let bob = parse_public_key(BOB_PUB).unwrap();
        let error = parse(&token).unwrap().verify(&bob).unwrap_err();
        assert_eq!(error, HatchatError::unauthenticated());
    }

    #[test]
    fn refuses_a_tampered_claim_or_header() {
        let token = seed_client_token();
        let parts: Vec<&str> = token.split('.').collect();
        let other = format!(r#"{{"id":"{USER}","exp":"2026-11-22T12:02:00.000Z"}}"#);
        let tampered_claim = format!("{}.{}.{}", parts[0], b64(other.as_bytes()), parts[2]);
        assert!(parse(&tampered_claim).unwrap().verify(&alice()).is_err());
        let header = b64(br#"{"alg":"RS512","type":"JWT"}"#);
        let tampered_header = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(parse(&tampered_header).unwrap().verify(&alice()).is_err());
    }

    #[test]
    fn refuses_alg_none_and_unknown_algorithms() {
        let claim = b64(format!(r#"{{"id":"{USER}","exp":"2026-11-22T12:01:00Z"}}"#).as_bytes());
        for alg in ["none", "HS256", "ES256", "rs512"] {
            let header = b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
            let raw = format!("{header}.{claim}.");
            assert!(detail_of(&raw).contains("unsupported alg"), "{alg}");
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        let good = seed_client_token();
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            ("", "empty"),
            ("Bearer ", "empty"),
            ("abc", "three base64 parts"),
            ("a.b", "three base64 parts"),
            ("a.b.c.d", "three base64 parts"),
            ("!!!.x.y", "header is not base64"),
        ];
        for (raw, expected) in cases {
            assert!(detail_of(raw).contains(expected), "{raw:?}: {}", detail_of(raw));
        }
        let not_json = format!("{}.{}.{}", b64(b"{1,2}"), parts[1], parts[2]);
        assert!(detail_of(&not_json).contains("header is not a JSON object"));
        let bad_sig = format!("{}.{}.@@@", parts[0], parts[1]);
        assert!(detail_of(&bad_sig).contains("signature is not base64"));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(detail_of(&huge).contains("longer than"));
    }

    #[test]
    fn refuses_claims_without_a_uuid_or_exp() {
        let header = b64(br#"{"alg":"RS512"}"#);
        let cases = [
            (r#"{"exp":1}"#, "\"id\""),
            (r#"{"id":"bob","exp":1}"#, "\"id\""),
            (&*format!(r#"{{"id":"{USER}"}}"#), "\"exp\""),
            (&*format!(r#"{{"id":"{USER}","exp":"tomorrow"}}"#), "\"exp\""),
            (&*format!(r#"{{"id":"{USER}","exp":true}}"#), "\"exp\""),
            (&*format!(r#"{{"id":"{USER}","exp":1795000000000}}"#), "milliseconds"),
        ];
        for (claim, expected) in cases {
            let raw = format!("{header}.{}.AAAA", b64(claim.as_bytes()));
            assert!(detail_of(&raw).contains(expected), "{claim}: {}", detail_of(&raw));
        }
    }

    #[test]
    fn refuses_a_claim_or_header_that_is_not_an_object() {
        // serde would map a sequence onto the struct's fields in order: `[id, exp]` as `{id, exp}`.
        let claim = format!(r#"["{USER}","2026-11-22T12:01:00Z"]"#);
        let array_claim = sign(r#"{"alg":"RS512"}"#, &claim, Algorithm::RsaSha512);
        assert!(
            detail_of(&array_claim).contains("claim must be a JSON object"),
            "{}",
            detail_of(&array_claim)
        );
        let claim = format!(r#"{{"id":"{USER}","exp":"2026-11-22T12:01:00Z"}}"#);
        let array_header = sign(r#"["RS512"]"#, &claim, Algorithm::RsaSha512);
        assert!(detail_of(&array_header).contains("header must be a JSON object"));
        for not_an_object in [r#" ["RS512"] "#, r#""RS512""#, "512", "null"] {
            let raw = sign(not_an_object, &claim, Algorithm::RsaSha512);
            assert!(detail_of(&raw).contains("header must be a JSON object"), "{not_an_object}");
        }
        // Whitespace around an object is still an object.
        let spaced = sign("\n {\"alg\":\"RS512\"} ", &claim, Algorithm::RsaSha512);
        parse(&spaced).unwrap().verify(&alice()).unwrap();
    }

    #[test]
    fn lifetime_is_bounded_on_both_sides() {
        let token_at = |exp: &str| {
            sign(r#"{"alg":"RS512"}"#, &format!(r#"{{"id":"{USER}","exp":"{exp}"}}"#), Algorithm::RsaSha512)
        };
        let day = SignedDuration::from_hours(24);
        let expired = token_at("2026-11-22T11:59:59Z");
        let err = parse(&expired).unwrap().check_lifetime(now(), day).unwrap_err();
        assert!(err.detail().unwrap().contains("expired"));
        let exactly_now = token_at("2026-11-22T12:00:00Z");
        assert!(parse(&exactly_now).unwrap().check_lifetime(now(), day).is_err());
        let too_long = token_at("2026-11-23T12:00:01Z");
        let err = parse(&too_long).unwrap().check_lifetime(now(), day).unwrap_err();
        assert!(err.detail().unwrap().contains("hatchat.max_token_lifetime"));
        let longest = token_at("2026-11-23T12:00:00Z");
        parse(&longest).unwrap().check_lifetime(now(), day).unwrap();
    }

    #[test]
    fn bearer_prefix_is_optional_and_case_insensitive() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer   abc "), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("  abc"), "abc");
        assert_eq!(strip_bearer("Bearer"), "");
        assert_eq!(strip_bearer("BEARER\tabc"), "abc");
        assert_eq!(strip_bearer("Bearerabc"), "Bearerabc");
        assert_eq!(strip_bearer("Bear"), "Bear");
        assert_eq!(strip_bearer("Beäre abc"), "Beäre abc");
    }

    /// The parser takes anything anyone sends: it must never panic, and nothing but a token signed by
    /// the key may verify against it.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// One token signed by alice, made once (signing is slow).
        fn valid_token() -> &'static str {
            static TOKEN: OnceLock<String> = OnceLock::new();
            TOKEN.get_or_init(seed_client_token)
        }

        /// A token whose parts are well-formed but whose signature is anything.
        fn shaped_token() -> impl Strategy<Value = String> {
            let alg = prop::sample::select(vec!["RS512", "RS256", "SHA-512", "none", ""]);
            let exp = prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just(r#""2026-11-22T12:01:00Z""#.to_string()),
                ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ];
            (alg, exp, prop::collection::vec(any::<u8>(), 0..600)).prop_map(|(alg, exp, signature)| {
                let header = b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
                let claim = b64(format!(r#"{{"id":"{USER}","exp":{exp}}}"#).as_bytes());
                format!("{header}.{claim}.{}", b64(&signature))
            })
        }

        /// Parsing never panics; whatever parses must not verify against alice's key.
        fn never_authenticates(raw: &str) -> Result<(), TestCaseError> {
            if let Ok(token) = parse(raw) {
                prop_assert!(token.verify(&alice()).is_err(), "{raw:?} verified");
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn arbitrary_strings_never_authenticate(raw in "\\PC{0,300}") {
                never_authenticates(&raw)?;
            }

            #[test]
            fn arbitrary_bytes_never_authenticate(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                never_authenticates(&String::from_utf8_lossy(&bytes))?;
            }

            #[test]
            fn well_shaped_tokens_with_any_signature_never_authenticate(raw in shaped_token()) {
                never_authenticates(&raw)?;
            }

            /// A changed byte may only verify if it spells the same token: the signing input
            /// untouched and the signature the same bytes (`+` and `-` are one base64 digit here).
            #[test]
            fn a_changed_byte_never_verifies(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let original = parse(valid_token()).unwrap();
                let mut bytes = valid_token().as_bytes().to_vec();
                let at = at.index(bytes.len());
                prop_assume!(bytes[at] != byte);
                bytes[at] = byte;
                let Ok(raw) = String::from_utf8(bytes) else { return Ok(()) };
                if let Ok(token) = parse(&raw) {
                    if token.verify(&alice()).is_ok() {
                        prop_assert_eq!(token.signing_input, original.signing_input, "{:?}", raw);
                        prop_assert_eq!(&token.signature, &original.signature, "{:?}", raw);
                    }
                }
            }
        }
    }
}
