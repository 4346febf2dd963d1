//! Users' RSA public keys: PEM parsing with the rules registration enforces, and a per-backend
//! cache so a key is parsed once per backend rather than on every request, and a token that is
//! sent again and again (clients reuse one until it expires) is verified once.

use crate::error::{HatchatError, Result};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

/// Below this, RSA signatures are forgeable with public effort (NIST SP 800-131A).
pub const MIN_KEY_BITS: usize = 2048;
const MAX_PEM_BYTES: usize = 16 * 1024;

/// A checked RSA public key, kept as PKCS#1 DER for ring, which verifies a 2048-bit signature in
/// about 30 µs (the `rsa` crate takes about 280 µs: too slow to pay on every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pkcs1_der: Vec<u8>,
}

impl VerifyingKey {
    pub fn verify(
        &self,
        algorithm: &'static ring::signature::RsaParameters,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        ring::signature::UnparsedPublicKey::new(algorithm, &self.pkcs1_der).verify(message, signature).is_ok()
    }
}

/// The PEM labels a public key may carry: SPKI (what WebCrypto and `openssl pkey -pubout` write)
/// and PKCS#1.
const SPKI_LABEL: &str = "PUBLIC KEY";
const PKCS1_LABEL: &str = "RSA PUBLIC KEY";

/// Accepts SPKI (`BEGIN PUBLIC KEY`) and PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM, the base64 wrapped
/// at any width or not at all, with LF or CRLF line ends: Hatch@'s web client writes the whole
/// base64 on one line, which a strict RFC 7468 parser (64-column lines) refuses. Nothing but
/// base64 may stand between the BEGIN and the matching END line. 2048 to 4096 bits (`rsa` refuses
/// a modulus over `RsaPublicKey::MAX_SIZE`, 4096 bits, while decoding).
pub fn parse_public_key(pem: &str) -> Result<VerifyingKey> {
    let pem = pem.trim();
    if pem.len() > MAX_PEM_BYTES {
        return Err(HatchatError::invalid(format!(
            "public key is longer than {MAX_PEM_BYTES} bytes; expected one RSA public key in PEM"
        )));
    }
    let key = decode_pem(pem).ok_or_else(|| {
        HatchatError::invalid(
            "public key must be an RSA key of 2048 to 4096 bits in PEM (-----BEGIN PUBLIC KEY----- \
             or -----BEGIN RSA PUBLIC KEY-----)",
        )
    })?;
    let bits = key.n().bits();
    if bits < MIN_KEY_BITS {
        return Err(HatchatError::invalid(format!(
            "public key has {bits} bits; at least {MIN_KEY_BITS} are required"
        )));
    }
    let der = key.to_pkcs1_der().map_err(|e| HatchatError::invalid(format!("public key: {e}")))?;
    Ok(VerifyingKey { pkcs1_der: der.as_bytes().to_vec() })
}

/// The RSA key in a PEM of one of the two labels, or None.
fn decode_pem(pem: &str) -> Option<RsaPublicKey> {
    if let Some(body) = pem_body(pem, SPKI_LABEL) {
        RsaPublicKey::from_public_key_der(&pem_base64(body)?).ok()
    } else if let Some(body) = pem_body(pem, PKCS1_LABEL) {
        RsaPublicKey::from_pkcs1_der(&pem_base64(body)?).ok()
    } else {
        None
    }
}

/// What stands between `-----BEGIN {label}-----` at the start and `-----END {label}-----` at the
/// end (the END label must match the BEGIN one).
fn pem_body<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    pem.strip_prefix("-----BEGIN ")?
        .strip_prefix(label)?
        .strip_prefix("-----")?
        .strip_suffix("-----")?
        .strip_suffix(label)?
        .strip_suffix("-----END ")
}

/// The bytes of a PEM body: standard padded base64, whitespace anywhere (line breaks of any width,
/// `\r\n`), nothing else (no RFC 1421 headers, no second PEM block).
fn pem_base64(body: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let digits: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(digits).ok()
}

/// Parsed keys by user id. An entry is only used while the stored PEM is byte-for-byte the one it
/// was parsed from, so a user deleted and registered again with a new key (in any backend) is
/// never verified against the old one.
pub struct KeyCache {
    entries: HashMap<Uuid, Entry>,
    capacity: usize,
}

struct Entry {
    pem: String,
    key: VerifyingKey,
    /// The SHA-256 of the last token text whose signature verified against `key`. The same bytes
    /// against the same key verify the same way, so skipping the check for them is exact, not a
    /// shortcut: measured, RSA verification was a fifth of a batched send's database CPU. (A
    /// digest rather than the text: a token may be 8 kB, and the cache holds thousands.)
    last_verified: Option<[u8; 32]>,
}

impl KeyCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), capacity }
    }

    /// Checks `token_text` with `verify` against the user's key, unless that very text already
    /// verified against that very key in this backend.
    pub fn verify_once(
        &mut self,
        user_id: Uuid,
        pem: &str,
        token_text: &str,
        verify: impl FnOnce(&VerifyingKey) -> Result<()>,
    ) -> Result<()> {
        let digest: [u8; 32] = Sha256::digest(token_text.as_bytes()).into();
        let entry = self.entry(user_id, pem)?;
        if entry.last_verified == Some(digest) {
            return Ok(());
        }
        verify(&entry.key)?;
        entry.last_verified = Some(digest);
        Ok(())
    }

    /// The PEM that `token_text` last verified against for this user in this backend, if it did:
    /// whoever sends it again is who signed it, as long as that user's stored key is still this PEM
    /// (the caller must check that, in the same snapshot as whatever it then does).
    pub fn verified_with(&self, user_id: Uuid, token_text: &str) -> Option<&str> {
        let entry = self.entries.get(&user_id)?;
        let digest: [u8; 32] = Sha256::digest(token_text.as_bytes()).into();
        (entry.last_verified == Some(digest)).then_some(entry.pem.as_str())
    }

    fn entry(&mut self, user_id: Uuid, pem: &str) -> Result<&mut Entry> {
        if self.entries.get(&user_id).is_some_and(|entry| entry.pem == pem) {
            return Ok(self.entries.get_mut(&user_id).expect("just found"));
        }
        let key = parse_public_key(pem)?;
        if self.entries.len() >= self.capacity {
            // Dropping everything is crude but bounded and O(1) amortised; a backend that serves
            // more users than the capacity re-parses, which is correct, only slower.
            self.entries.clear();
        }
        let entry = Entry { pem: pem.to_string(), key, last_verified: None };
        Ok(self.entries.entry(user_id).insert_entry(entry).into_mut())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = include_str!("../../tests/fixtures/keys/alice.pub.pem");
    const BOB: &str = include_str!("../../tests/fixtures/keys/bob.pub.pem");
    const PKCS1: &str = include_str!("../../tests/fixtures/keys/dave.pkcs1.pub.pem");
    const SMALL: &str = include_str!("../../tests/fixtures/keys/small.pub.pem");
    const BIG: &str = include_str!("../../tests/fixtures/keys/big.pub.pem");

    #[test]
    fn accepts_spki_pkcs1_and_crlf() {
        parse_public_key(ALICE).unwrap();
        parse_public_key(PKCS1).unwrap();
        parse_public_key(BIG).unwrap();
        parse_public_key(&ALICE.replace('\n', "\r\n")).unwrap();
        parse_public_key(&format!("\n  {ALICE}  \n")).unwrap();
    }

    /// The base64 of a PEM, rewrapped at `width` columns with `newline` line ends.
    fn rewrapped(pem: &str, label: &str, width: usize, newline: &str) -> String {
        let base64: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
        let lines: Vec<&str> =
            base64.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!(
            "-----BEGIN {label}-----{newline}{}{newline}-----END {label}-----{newline}",
            lines.join(newline)
        )
    }

    #[test]
    fn accepts_any_wrapping_of_the_base64() {
        let alice = parse_public_key(ALICE).unwrap();
        let one_line = include_str!("../../tests/fixtures/keys/alice.oneline.pub.pem");
        assert_eq!(parse_public_key(one_line).unwrap(), alice, "Hatch@'s web client export");
        for (width, newline) in
            [(1, "\n"), (20, "\r\n"), (64, "\n"), (76, "\r\n"), (76, "\n"), (10_000, "\r\n")]
        {
            let pem = rewrapped(ALICE, "PUBLIC KEY", width, newline);
            assert_eq!(parse_public_key(&pem).unwrap(), alice, "{width} {newline:?}");
        }
        let dave = parse_public_key(PKCS1).unwrap();
        assert_eq!(parse_public_key(&rewrapped(PKCS1, "RSA PUBLIC KEY", 10_000, "\n")).unwrap(), dave);
        assert_eq!(parse_public_key(&rewrapped(PKCS1, "RSA PUBLIC KEY", 76, "\r\n")).unwrap(), dave);
    }

    #[test]
    fn keeps_the_other_pem_rules() {
        let one_line = rewrapped(ALICE, "PUBLIC KEY", 10_000, "\n");
        let body = one_line.lines().nth(1).unwrap();
        let cases = [
            ("another label", one_line.replace("PUBLIC KEY", "CERTIFICATE")),
            ("private label", one_line.replace("PUBLIC KEY", "PRIVATE KEY")),
            ("END does not match", one_line.replace("END PUBLIC KEY", "END RSA PUBLIC KEY")),
            ("no END", format!("-----BEGIN PUBLIC KEY-----\n{body}\n")),
            ("a header line", one_line.replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n")),
            ("text after END", format!("{one_line}trailing")),
            ("two keys", format!("{one_line}{one_line}")),
            ("not base64", one_line.replace(&body[10..14], "!@#$")),
            ("cut short", one_line.replace(body, &body[..body.len() - 8])),
            ("SPKI in an RSA PUBLIC KEY label", one_line.replace("PUBLIC KEY", "RSA PUBLIC KEY")),
            ("PKCS#1 in a PUBLIC KEY label", rewrapped(PKCS1, "PUBLIC KEY", 64, "\n")),
            ("huge", one_line.replacen("-----\n", &format!("-----\n{}", " ".repeat(MAX_PEM_BYTES)), 1)),
        ];
        for (what, pem) in cases {
            let error = parse_public_key(&pem).unwrap_err();
            assert_eq!(error.sqlstate_code(), "22023", "{what}");
        }
        let huge = include_str!("../../tests/fixtures/keys/huge.pub.pem");
        let error = parse_public_key(huge).unwrap_err().to_string();
        assert!(error.contains("4096"), "{error}");
    }

    #[test]
    fn refuses_small_keys_and_garbage() {
        let small = parse_public_key(SMALL).unwrap_err().to_string();
        assert!(small.contains("1024 bits"), "{small}");
        for bad in ["", "hello", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
            let error = parse_public_key(bad).unwrap_err();
            assert_eq!(error.sqlstate_code(), "22023");
            assert!(error.to_string().contains("PEM"), "{error}");
        }
        let private = include_str!("../../tests/fixtures/keys/alice.key.pem");
        assert!(parse_public_key(private).is_err());
    }

    /// Runs `verify_once` and says which key the check saw (None: it was skipped).
    fn checked_with(
        cache: &mut KeyCache,
        id: Uuid,
        pem: &str,
        token: &str,
        ok: bool,
    ) -> Option<VerifyingKey> {
        let mut seen = None;
        let outcome = cache.verify_once(id, pem, token, |key| {
            seen = Some(key.clone());
            if ok {
                Ok(())
            } else {
                Err(HatchatError::unauthenticated())
            }
        });
        assert_eq!(outcome.is_ok(), ok || seen.is_none());
        seen
    }

    #[test]
    fn a_token_is_verified_once_per_key() {
        let mut cache = KeyCache::new(2);
        let id = Uuid::new_v4();
        let alice = parse_public_key(ALICE).unwrap();
        assert_eq!(checked_with(&mut cache, id, ALICE, "t1", true), Some(alice.clone()));
        assert_eq!(checked_with(&mut cache, id, ALICE, "t1", true), None, "the same text again");
        assert_eq!(checked_with(&mut cache, id, ALICE, "t2", false), Some(alice.clone()), "another text");
        assert_eq!(
            checked_with(&mut cache, id, ALICE, "t2", false),
            Some(alice),
            "failures are not remembered"
        );
        let bob = parse_public_key(BOB).unwrap();
        assert_eq!(checked_with(&mut cache, id, BOB, "t1", false), Some(bob), "a new key checks again");
        assert!(checked_with(&mut cache, id, ALICE, "t1", true).is_some(), "and forgets the old");
    }

    #[test]
    fn only_a_verified_text_is_known_and_only_with_its_key() {
        let mut cache = KeyCache::new(2);
        let (alice, other) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(cache.verified_with(alice, "t1"), None, "nothing verified yet");
        checked_with(&mut cache, alice, ALICE, "t1", false);
        assert_eq!(cache.verified_with(alice, "t1"), None, "a failed check is not remembered");
        checked_with(&mut cache, alice, ALICE, "t1", true);
        assert_eq!(cache.verified_with(alice, "t1"), Some(ALICE));
        assert_eq!(cache.verified_with(alice, "t2"), None, "another text");
        assert_eq!(cache.verified_with(other, "t1"), None, "another user");
        checked_with(&mut cache, alice, BOB, "t2", true);
        assert_eq!(cache.verified_with(alice, "t1"), None, "the key changed");
        assert_eq!(cache.verified_with(alice, "t2"), Some(BOB));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let mut cache = KeyCache::new(2);
        for _ in 0..5 {
            checked_with(&mut cache, Uuid::new_v4(), ALICE, "t", true);
        }
        assert!(cache.len() <= 2);
        assert!(cache.verify_once(Uuid::new_v4(), "not a key", "t", |_| Ok(())).is_err());
    }
}
