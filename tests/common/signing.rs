//! Keys and tokens for the test suites (SQL and HTTP): the fixture RSA keys, and tokens signed the
//! way Hatch@'s web client signs them. No database here, so the gateway suites share this file.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha512};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// A fixture key file, compiled in (paths relative to this file, whichever crate includes it).
pub fn fixture(name: &str) -> String {
    macro_rules! keys {
        ($($file:literal),*) => {
            match name {
                $($file => include_str!(concat!("../fixtures/keys/", $file)),)*
                other => panic!("no fixture {other}"),
            }
        };
    }
    keys!(
        "alice.key.pem",
        "alice.pub.pem",
        "bob.key.pem",
        "bob.pub.pem",
        "carol.key.pem",
        "carol.pub.pem",
        "dave.key.pem",
        "dave.pub.pem",
        "dave.pkcs1.pub.pem",
        "small.pub.pem"
    )
    .to_string()
}

/// The four 2048-bit fixture keys, parsed once.
pub fn private_key(name: &str) -> Arc<RsaPrivateKey> {
    static KEYS: OnceLock<Vec<(String, Arc<RsaPrivateKey>)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|n| {
                let key = RsaPrivateKey::from_pkcs8_pem(&fixture(&format!("{n}.key.pem"))).unwrap();
                (n.to_string(), Arc::new(key))
            })
            .collect()
    });
    keys.iter().find(|(n, _)| n == name).map(|(_, k)| Arc::clone(k)).expect("known fixture")
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

pub fn short_id() -> String {
    Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// `header.claim.signature` over the given (already encoded) first two parts.
pub fn sign_parts(key_name: &str, header: &str, claim: &str) -> String {
    let input = format!("{header}.{claim}");
    let digest = Sha512::digest(input.as_bytes());
    let signature = private_key(key_name).sign(Pkcs1v15Sign::new::<Sha512>(), &digest).unwrap();
    format!("{input}.{}", b64(signature))
}

/// Hatch@'s web client's token: header `{"alg":"SHA-512","type":"JWT"}`, claim `{id, exp}` with an
/// ISO exp `seconds` ahead, standard base64 (no `Bearer ` prefix).
pub fn seed_token(key_name: &str, user_id: Uuid, seconds: i64) -> String {
    let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    let claim = format!(r#"{{"id":"{user_id}","exp":"{}"}}"#, exp.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"));
    sign_parts(key_name, &b64(r#"{"alg":"SHA-512","type":"JWT"}"#), &b64(claim))
}
