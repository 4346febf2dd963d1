//! A trusted issuer for the tests: an app's login with its own ES256 or Ed25519 keys (made fresh
//! per test), its JWKS, and the tokens it signs. No database here: the SQL and HTTP suites share it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub enum IssuerKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl IssuerKey {
    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        IssuerKey::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
        )
    }

    pub fn eddsa() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        IssuerKey::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            IssuerKey::Es256(_) => "ES256",
            IssuerKey::EdDsa(_) => "EdDSA",
        }
    }

    /// The public key as a JWK named `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            IssuerKey::Es256(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                       "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            IssuerKey::EdDsa(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.public_key().as_ref())})
            }
        }
    }

    pub fn sign(&self, input: &str) -> Vec<u8> {
        match self {
            IssuerKey::Es256(key) => {
                key.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec()
            }
            IssuerKey::EdDsa(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
        }
    }
}

/// An app's login: its `iss`, the audience it names, and its current key.
pub struct Issuer {
    pub iss: String,
    pub audience: String,
    pub kid: String,
    pub key: IssuerKey,
}

impl Issuer {
    pub fn new(name: &str, key: IssuerKey) -> Self {
        Issuer { iss: format!("https://{name}.example"), audience: "hatchat".into(), kid: "k1".into(), key }
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk(&self.kid)]})
    }

    /// A token for `sub`, named `username`, valid for 5 minutes.
    pub fn token(&self, sub: &str, username: &str) -> String {
        self.token_with(json!({}), json!({"sub": sub, "preferred_username": username}))
    }

    /// A token whose header and claims are the defaults with `header` and `claims` laid over them
    /// (a null removes a default).
    pub fn token_with(&self, header: Value, claims: Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut h = json!({"alg": self.key.alg(), "typ": "JWT", "kid": self.kid});
        let mut c = json!({"iss": self.iss, "aud": self.audience, "iat": now, "exp": now + 300});
        merge(&mut h, header);
        merge(&mut c, claims);
        let input = format!("{}.{}", b64(h.to_string().as_bytes()), b64(c.to_string().as_bytes()));
        format!("{input}.{}", b64(&self.key.sign(&input)))
    }
}

fn merge(base: &mut Value, over: Value) {
    for (k, v) in over.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(&k);
        } else {
            base[k] = v;
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}
