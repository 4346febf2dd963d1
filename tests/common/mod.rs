//! What the SQL suites share: a connection to the test database, users with real RSA keys, and
//! tokens signed the way the seed's web client signs them.
#![allow(dead_code)] // each suite uses its own part of this module

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postgres::{Client, NoTls};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

pub const SYSTEM: &str = "00000000-0000-0000-0000-000000000000";

pub fn database_url() -> String {
    std::env::var("HATCHAT_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "HATCHAT_TEST_DATABASE_URL is not set: run scripts/test.sh, or point it at a database \
             where `CREATE EXTENSION hatchat` has been done"
        )
    })
}

pub fn connect() -> Client {
    Client::connect(&database_url(), NoTls).expect("connect to the test database")
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
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

#[derive(Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub key_name: String,
    pub public_pem: String,
}

impl User {
    /// A token as the seed's web client makes it: ISO exp 60 s ahead, `Bearer ` prefix.
    pub fn token(&self) -> String {
        format!("Bearer {}", self.token_expiring_in(60))
    }

    pub fn token_expiring_in(&self, seconds: i64) -> String {
        let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
        let claim = format!(r#"{{"id":"{}","exp":"{}"}}"#, self.id, exp.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"));
        self.sign(r#"{"alg":"SHA-512","type":"JWT"}"#, &claim)
    }

    /// Signs arbitrary header and claim JSON with this user's key (SHA-512).
    pub fn sign(&self, header: &str, claim: &str) -> String {
        sign_parts(&self.key_name, &b64(header), &b64(claim))
    }
}

/// `header.claim.signature` over the given (already encoded) first two parts.
pub fn sign_parts(key_name: &str, header: &str, claim: &str) -> String {
    let input = format!("{header}.{claim}");
    let digest = Sha512::digest(input.as_bytes());
    let signature = private_key(key_name).sign(Pkcs1v15Sign::new::<Sha512>(), &digest).unwrap();
    format!("{input}.{}", b64(signature))
}

/// Registers a fresh user (random id, unique name) whose key is the named fixture.
pub fn register(db: &mut Client, key_name: &str) -> User {
    let id = Uuid::new_v4();
    let username = format!("{key_name}-{}", short_id());
    let public_pem = fixture(&format!("{key_name}.pub.pem"));
    db.query_one("SELECT hatchat.register_user($1, $2, $3)", &[&id, &public_pem, &username])
        .expect("register_user");
    User { id, username, key_name: key_name.into(), public_pem }
}

/// A channel id no other test uses.
pub fn channel_id(prefix: &str) -> String {
    format!("{prefix}-{}", short_id())
}

pub fn create_channel(db: &mut Client, owner: &User, model: &str) -> String {
    let id = channel_id(model);
    db.query_one("SELECT hatchat.create_channel($1, $2, $3)", &[&owner.token(), &id, &model])
        .expect("create_channel");
    id
}

pub fn invite(db: &mut Client, by: &User, channel: &str, user: &User) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.invite($1, $2, $3)", &[&by.token(), &channel, &user.id])
        .map(|row| row.get(0))
}

pub fn send(db: &mut Client, from: &User, channel: &str, payload: Value) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.send_message($1, $2, $3)", &[&from.token(), &channel, &payload])
        .map(|row| row.get(0))
}

pub fn messages(db: &mut Client, reader: &User, channel: &str) -> Vec<Value> {
    let all: Value = db
        .query_one("SELECT hatchat.get_messages($1, $2, row_limit => 1000)", &[&reader.token(), &channel])
        .expect("get_messages")
        .get(0);
    all.as_array().unwrap().clone()
}

/// The SQLSTATE of a failed call (panics if the call succeeded).
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    let error = result.expect_err("the call should have failed");
    match error.code() {
        Some(code) => code.code().to_string(),
        None => panic!("not a database error: {error}"),
    }
}

/// The message and detail of a failed call.
pub fn error_text<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> (String, Option<String>) {
    let error = result.expect_err("the call should have failed");
    let db = error.as_db_error().expect("a database error");
    (db.message().to_string(), db.detail().map(str::to_string))
}

/// Rows in a table for one channel, read as the superuser (the API cannot see deleted data).
pub fn count(db: &mut Client, sql: &str, param: &str) -> i64 {
    db.query_one(sql, &[&param]).unwrap().get(0)
}
