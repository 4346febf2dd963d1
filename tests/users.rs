//! Users through SQL: registration rules, viewing, renaming, deleting and what deletion cascades.

mod common;
use common::*;
use serde_json::{json, Value};
use uuid::Uuid;

fn register_raw(id: &Uuid, pem: &str, username: &str) -> Result<Value, postgres::Error> {
    connect()
        .query_one("SELECT hatchat.register_user($1, $2, $3)", &[id, &pem, &username])
        .map(|row| row.get(0))
}

fn user_count(db: &mut postgres::Client, id: &Uuid) -> i64 {
    db.query_one("SELECT count(*) FROM hatchat.users WHERE id = $1", &[id]).unwrap().get(0)
}

#[test]
fn register_returns_the_user_and_get_user_shows_it_to_anyone() {
    let mut db = connect();
    let id = Uuid::new_v4();
    let name = format!("  alice-{}  ", short_id());
    let pem = fixture("alice.pub.pem");
    let registered = register_raw(&id, &pem, &name).unwrap();
    let expected = json!({"id": id, "username": name.trim(), "publicKey": pem.trim()});
    assert_eq!(registered, expected);
    let seen: Value = db.query_one("SELECT hatchat.get_user($1)", &[&id]).unwrap().get(0);
    assert_eq!(seen, expected);
}

#[test]
fn pkcs1_keys_register_and_authenticate() {
    let mut db = connect();
    let id = Uuid::new_v4();
    register_raw(&id, &fixture("dave.pkcs1.pub.pem"), &format!("dave-{}", short_id())).unwrap();
    let user = User { id, username: String::new(), key_name: "dave".into(), public_pem: String::new() };
    let who: Uuid = db.query_one("SELECT hatchat.authenticate($1)", &[&user.token()]).unwrap().get(0);
    assert_eq!(who, id);
}

#[test]
fn duplicate_ids_and_usernames_conflict_and_change_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let again = register_raw(&alice.id, &fixture("bob.pub.pem"), &format!("bob-{}", short_id()));
    assert_eq!(sqlstate(again), "23505");
    let other = Uuid::new_v4();
    let shouting = alice.username.to_uppercase();
    let taken = register_raw(&other, &fixture("bob.pub.pem"), &shouting);
    let (message, _) = error_text(register_raw(&other, &fixture("bob.pub.pem"), &shouting));
    assert_eq!(sqlstate(taken), "23505");
    assert!(message.contains("taken"), "{message}");
    assert_eq!(user_count(&mut db, &other), 0);
    let key: String =
        db.query_one("SELECT public_key FROM hatchat.users WHERE id = $1", &[&alice.id]).unwrap().get(0);
    assert_eq!(key.trim(), alice.public_pem.trim());
}

#[test]
fn registration_refuses_bad_names_keys_and_ids() {
    let mut db = connect();
    let good_pem = fixture("alice.pub.pem");
    let cases: Vec<(Uuid, String, String)> = vec![
        (Uuid::new_v4(), good_pem.clone(), "".into()),
        (Uuid::new_v4(), good_pem.clone(), "   ".into()),
        (Uuid::new_v4(), good_pem.clone(), "x".repeat(65)),
        (Uuid::new_v4(), good_pem.clone(), "a/b".into()),
        (Uuid::new_v4(), fixture("small.pub.pem"), format!("s-{}", short_id())),
        (Uuid::new_v4(), "not a key".into(), format!("s-{}", short_id())),
        (Uuid::new_v4(), fixture("alice.key.pem"), format!("s-{}", short_id())),
        (Uuid::nil(), good_pem.clone(), format!("s-{}", short_id())),
    ];
    for (id, pem, name) in cases {
        let result = register_raw(&id, &pem, &name);
        assert_eq!(sqlstate(result), "22023", "{name:?} / {}", &pem[..20.min(pem.len())]);
        if !id.is_nil() {
            assert_eq!(user_count(&mut db, &id), 0);
        }
    }
    let small = error_text(register_raw(&Uuid::new_v4(), &fixture("small.pub.pem"), "tiny-key"));
    assert!(small.0.contains("1024 bits"), "{}", small.0);
}

#[test]
fn null_arguments_are_errors_not_silent_nulls() {
    let mut db = connect();
    let result = db.query_one("SELECT hatchat.register_user(NULL, 'k', 'n')", &[]);
    assert_eq!(sqlstate(result), "22023");
    let result = db.query_one("SELECT hatchat.get_user(NULL)", &[]);
    assert_eq!(sqlstate(result), "22023");
    let result = db.query_one("SELECT hatchat.list_channels(NULL)", &[]);
    assert_eq!(sqlstate(result), "28000");
}

#[test]
fn unknown_users_are_404() {
    let result = connect().query_one("SELECT hatchat.get_user($1)", &[&Uuid::new_v4()]);
    assert_eq!(sqlstate(result), "P0002");
}

#[test]
fn the_system_user_exists_and_cannot_be_taken_over() {
    let mut db = connect();
    let system: Value = db.query_one("SELECT hatchat.get_user($1)", &[&Uuid::nil()]).unwrap().get(0);
    assert_eq!(system, json!({"id": SYSTEM, "username": "system", "publicKey": null}));
    let name_taken = register_raw(&Uuid::new_v4(), &fixture("alice.pub.pem"), "SYSTEM");
    assert_eq!(sqlstate(name_taken), "22023", "a reserved name");
    // A token naming the system user, signed by anyone, is refused like any bad token.
    let fake = User {
        id: Uuid::nil(),
        username: "system".into(),
        key_name: "alice".into(),
        public_pem: String::new(),
    };
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.authenticate($1)", &[&fake.token()])), "28000");
    let update = db.query_one("SELECT hatchat.update_user($1, $2, 'x')", &[&fake.token(), &Uuid::nil()]);
    assert_eq!(sqlstate(update), "28000");
    let delete = db.execute("SELECT hatchat.delete_user($1, $2)", &[&fake.token(), &Uuid::nil()]);
    assert_eq!(sqlstate(delete), "28000");
    assert_eq!(user_count(&mut db, &Uuid::nil()), 1);
}

#[test]
fn users_rename_only_themselves() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let new_name = format!("alice2-{}", short_id());
    let renamed: Value = db
        .query_one("SELECT hatchat.update_user($1, $2, $3)", &[&alice.token(), &alice.id, &new_name])
        .unwrap()
        .get(0);
    assert_eq!(renamed["username"], json!(new_name));
    // Changing only the case of one's own name is not a conflict with oneself.
    let upper = new_name.to_uppercase();
    db.query_one("SELECT hatchat.update_user($1, $2, $3)", &[&alice.token(), &alice.id, &upper]).unwrap();

    let not_yours = db.query_one("SELECT hatchat.update_user($1, $2, 'hijack')", &[&bob.token(), &alice.id]);
    assert_eq!(sqlstate(not_yours), "42501");
    let taken = db
        .query_one("SELECT hatchat.update_user($1, $2, $3)", &[&bob.token(), &bob.id, &upper.to_lowercase()]);
    assert_eq!(sqlstate(taken), "23505");
    let bad = db.query_one("SELECT hatchat.update_user($1, $2, '')", &[&bob.token(), &bob.id]);
    assert_eq!(sqlstate(bad), "22023");
    let bob_now: Value = db.query_one("SELECT hatchat.get_user($1)", &[&bob.id]).unwrap().get(0);
    assert_eq!(bob_now["username"], json!(bob.username));
}

#[test]
fn deleting_a_user_removes_memberships_and_owned_channels_but_keeps_their_messages_elsewhere() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let owned = create_channel(&mut db, &bob, "owner");
    send(&mut db, &bob, &owned, json!("bob's own channel")).unwrap();
    let shared = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &shared, &bob).unwrap();
    send(&mut db, &bob, &shared, json!({"text": "bye"})).unwrap();

    let not_yours = db.execute("SELECT hatchat.delete_user($1, $2)", &[&alice.token(), &bob.id]);
    assert_eq!(sqlstate(not_yours), "42501");
    db.execute("SELECT hatchat.delete_user($1, $2)", &[&bob.token(), &bob.id]).unwrap();

    assert_eq!(sqlstate(db.query_one("SELECT hatchat.get_user($1)", &[&bob.id])), "P0002");
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.authenticate($1)", &[&bob.token()])), "28000");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &owned), 0);
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1", &owned), 0);
    let members: Value =
        db.query_one("SELECT hatchat.get_channel($1, $2)", &[&alice.token(), &shared]).unwrap().get(0);
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    let history = messages(&mut db, &alice, &shared);
    let bye = history.iter().find(|m| m["payload"] == json!({"text": "bye"})).expect("bob's message stays");
    assert_eq!(bye["username"], Value::Null);
    assert_eq!(bye["fromUserId"], json!(bob.id));
}

#[test]
fn reserved_names_are_refused_at_register_and_rename_in_any_case() {
    let mut db = connect();
    let bob = register(&mut db, "bob");
    for name in ["$$", "SYSTEM", " system ", "System"] {
        let id = Uuid::new_v4();
        let (message, _) = error_text(register_raw(&id, &fixture("alice.pub.pem"), name));
        assert_eq!(sqlstate(register_raw(&id, &fixture("alice.pub.pem"), name)), "22023", "{name:?}");
        assert!(message.contains("reserved"), "{name:?}: {message}");
        assert_eq!(user_count(&mut db, &id), 0, "{name:?}");
        let renamed = db.query_one("SELECT hatchat.update_user($1, $2, $3)", &[&bob.token(), &bob.id, &name]);
        assert_eq!(sqlstate(renamed), "22023", "{name:?}");
    }
    let bob_now: Value = db.query_one("SELECT hatchat.get_user($1)", &[&bob.id]).unwrap().get(0);
    assert_eq!(bob_now["username"], json!(bob.username), "nothing renamed");
}

/// The base64 of a PEM wrapped at `width` columns with `newline` line ends.
fn rewrapped(pem: &str, width: usize, newline: &str) -> String {
    let base64: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let lines: Vec<&str> = base64.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!(
        "-----BEGIN PUBLIC KEY-----{newline}{}{newline}-----END PUBLIC KEY-----{newline}",
        lines.join(newline)
    )
}

#[test]
fn one_line_and_rewrapped_pems_register_and_their_tokens_work() {
    let mut db = connect();
    let one_line = include_str!("fixtures/keys/alice.oneline.pub.pem");
    let alice = fixture("alice.pub.pem");
    assert_eq!(one_line.lines().count(), 3, "Hatch@'s web client export: the base64 on one line");
    for (what, pem) in [
        ("one line", one_line.to_string()),
        ("one line, CRLF", one_line.replace('\n', "\r\n")),
        ("76 columns, CRLF", rewrapped(&alice, 76, "\r\n")),
        ("76 columns", rewrapped(&alice, 76, "\n")),
        ("20 columns", rewrapped(&alice, 20, "\n")),
    ] {
        let id = Uuid::new_v4();
        let registered = register_raw(&id, &pem, &format!("wrap-{}", short_id()));
        assert!(registered.is_ok(), "{what}: {registered:?}");
        let user = User { id, username: String::new(), key_name: "alice".into(), public_pem: pem };
        let who: Uuid = db.query_one("SELECT hatchat.authenticate($1)", &[&user.token()]).unwrap().get(0);
        assert_eq!(who, id, "{what}");
    }
}

const SECRET: &str = "test-server-secret-4b1d9f0e7c";

/// `session_under(policy)`, with the server secret set for the calls that carry it.
fn session_with_secret(policy: &str) -> postgres::Client {
    connect().execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    session_under(policy)
}

fn register_with(
    db: &mut postgres::Client,
    secret: Option<&str>,
) -> (Uuid, Result<postgres::Row, postgres::Error>) {
    let id = Uuid::new_v4();
    let sql = "SELECT hatchat.register_user($1, $2, $3, $4)";
    (id, db.query_one(sql, &[&id, &fixture("alice.pub.pem"), &format!("r-{}", short_id()), &secret]))
}

#[test]
fn registration_follows_the_operators_policy() {
    let mut admin = connect();
    // open (the default): anyone, and what the call carries is not looked at.
    let mut open = session_with_secret("open");
    register_with(&mut open, None).1.unwrap();
    register_with(&mut open, Some("not the secret")).1.unwrap();

    // secret: only a call with the server secret; a wrong one is no secret.
    let mut app = session_with_secret("secret");
    let (id, refused) = register_with(&mut app, None);
    let (message, _) = error_text(refused);
    assert!(message.contains("needs the server secret"), "{message}");
    assert_eq!(user_count(&mut admin, &id), 0);
    assert_eq!(sqlstate(register_with(&mut app, None).1), "42501");
    assert_eq!(sqlstate(register_with(&mut app, Some("test-server-secret-4b1d9f0e7d")).1), "28000");
    let (id, allowed) = register_with(&mut app, Some(SECRET));
    allowed.unwrap();
    assert_eq!(user_count(&mut admin, &id), 1);
    // A client cannot lift the policy for its own session.
    assert_eq!(sqlstate(app.batch_execute("SET hatchat.registration = 'open'").map(|_| 0)), "42501");

    // closed: nobody, not even with the secret.
    let mut closed = session_with_secret("closed");
    for secret in [None, Some(SECRET)] {
        let (id, refused) = register_with(&mut closed, secret);
        assert_eq!(sqlstate(refused), "42501");
        assert_eq!(user_count(&mut admin, &id), 0);
    }
    // Only a superuser (or a role granted SET on it) chooses; a bad value is refused.
    assert_eq!(sqlstate(admin.batch_execute("SET hatchat.registration = 'sometimes'").map(|_| 0)), "22023");
}
