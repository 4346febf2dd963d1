//! What the SQL suites share: a connection to the test database, users with real RSA keys, and
//! tokens signed the way Hatch@'s web client signs them.
#![allow(dead_code)] // each suite uses its own part of this module

#[path = "signing.rs"]
mod signing;
pub use signing::*;
#[path = "skip.rs"]
mod skip;

#[path = "issuer.rs"]
pub mod issuer;

use postgres::{Client, NoTls};
use serde_json::Value;
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

#[derive(Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub key_name: String,
    pub public_pem: String,
}

impl User {
    /// A token as Hatch@'s web client makes it: ISO exp 60 s ahead, `Bearer ` prefix.
    pub fn token(&self) -> String {
        format!("Bearer {}", self.token_expiring_in(60))
    }

    pub fn token_expiring_in(&self, seconds: i64) -> String {
        seed_token(&self.key_name, self.id, seconds)
    }

    /// Signs arbitrary header and claim JSON with this user's key (SHA-512).
    pub fn sign(&self, header: &str, claim: &str) -> String {
        sign_parts(&self.key_name, &b64(header), &b64(claim))
    }
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

/// Whether the test database is a Citus cluster's (scripts/test-citus.sh): the few tests that look
/// at locks or at the owner role look the cluster's way there.
pub fn on_citus(db: &mut Client) -> bool {
    db.query_one(skip::CITUS_INSTALLED, &[]).unwrap().get(0)
}

/// True, having said so on the terminal with `reason`, when the test database is a Citus
/// cluster's: a test that does not apply to a cluster begins with
/// `if skip_on_citus("why") { return; }` (tests/common/skip.rs).
pub fn skip_on_citus(reason: &str) -> bool {
    skip::announce_skip(on_citus(&mut connect()), reason)
}

/// Backends waiting for a lock whose statement contains `text`. On Citus the wait happens on the
/// worker holding the row, for the coordinator's statement: `citus_lock_waits` links the two.
pub fn lock_waiters(db: &mut Client, text: &str) -> i64 {
    let pattern = format!("%{text}%");
    let sql = if on_citus(db) {
        "SELECT count(*) FROM citus_lock_waits WHERE blocked_statement LIKE $1"
    } else {
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1 \
            AND datname = current_database()"
    };
    db.query_one(sql, &[&pattern]).unwrap().get(0)
}

/// Rows in a table for one channel, read as the superuser (the API cannot see deleted data).
pub fn count(db: &mut Client, sql: &str, param: &str) -> i64 {
    db.query_one(sql, &[&param]).unwrap().get(0)
}

/// A connection as a login role with no privileges beyond what PUBLIC gets.
/// A login role whose sessions run under `hatchat.registration = policy` (set for the role by the
/// superuser, as an operator sets it for a database), with nothing beyond what PUBLIC gets.
pub fn session_under(policy: &str) -> Client {
    let role = format!("hatchat_test_registration_{policy}");
    connect()
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN;
                 END IF;
             END $$;
             ALTER ROLE {role} SET hatchat.registration = '{policy}'"
        ))
        .unwrap();
    let mut config: postgres::Config = database_url().parse().unwrap();
    config.user(&role);
    config.connect(NoTls).unwrap()
}

pub fn app_connection() -> Client {
    connect()
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_test_app') THEN
                     CREATE ROLE hatchat_test_app LOGIN;
                 END IF;
             END $$",
        )
        .unwrap();
    let mut config: postgres::Config = database_url().parse().unwrap();
    config.user("hatchat_test_app");
    config.connect(NoTls).unwrap()
}

/// Whether a wake-up naming `channel` (or everyone) arrives within `wait`; wake-ups about other
/// tests' channels are skipped. Decoded with the wire contract's own decoder.
pub fn heard(listener: &mut Client, channel: &str, wait: std::time::Duration) -> bool {
    use hatchat_wire::wake::{Kind, Secret, WakeUp};
    use postgres::fallible_iterator::FallibleIterator;
    let hex: String = listener.query_one("SELECT hatchat.wake_secret()", &[]).unwrap().get(0);
    let wanted = Secret::from_hex(&hex).expect("32 hex digits").key(Kind::Channel, channel);
    let deadline = std::time::Instant::now() + wait;
    let mut notifications = listener.notifications();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Some(next) = notifications.timeout_iter(left).next().unwrap() else { return false };
        assert_eq!(next.channel(), hatchat_wire::wake::NOTIFY_CHANNEL);
        let wake = WakeUp::decode(next.payload()).expect("every announcement is a wake-up");
        if wake.all || wake.channels.contains(&wanted) {
            return true;
        }
    }
}

/// A call's answer as a batch item would carry it: the value, or `{"error": {sqlstate, message,
/// detail?}}` for the error it raised.
pub fn as_batch_answer(result: Result<postgres::Row, postgres::Error>) -> Value {
    match result {
        Ok(row) => row.get(0),
        Err(error) => {
            let db_error = error.as_db_error().expect("a database error");
            let mut body =
                serde_json::json!({"sqlstate": db_error.code().code(), "message": db_error.message()});
            if let Some(detail) = db_error.detail() {
                body["detail"] = detail.into();
            }
            serde_json::json!({ "error": body })
        }
    }
}
