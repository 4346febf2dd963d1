//! Tokens through SQL: every defect is the same 28000, and nothing tells a stranger whether a user
//! exists.

mod common;
use common::*;
use uuid::Uuid;

fn authenticate(token: &str) -> Result<Uuid, postgres::Error> {
    connect().query_one("SELECT hatchat.authenticate($1)", &[&token]).map(|row| row.get(0))
}

fn claim(id: &Uuid, exp: &str) -> String {
    format!(r#"{{"id":"{id}","exp":{exp}}}"#)
}

fn flip_first_char(text: &str) -> String {
    let first = if text.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &text[1..])
}

fn iso_in(seconds: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    format!("\"{}\"", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

#[test]
fn a_good_token_names_its_user_with_or_without_bearer() {
    let alice = register(&mut connect(), "alice");
    assert_eq!(authenticate(&alice.token()).unwrap(), alice.id);
    assert_eq!(authenticate(&alice.token_expiring_in(60)).unwrap(), alice.id);
    assert_eq!(authenticate(&format!("bearer {}", alice.token_expiring_in(60))).unwrap(), alice.id);
}

#[test]
fn jwt_style_tokens_are_accepted_too() {
    let alice = register(&mut connect(), "alice");
    let exp = (jiff::Timestamp::now().as_second() + 60).to_string();
    let rs512 = alice.sign(r#"{"alg":"RS512","typ":"JWT"}"#, &claim(&alice.id, &exp));
    assert_eq!(authenticate(&rs512).unwrap(), alice.id);
    // URL-safe, unpadded parts, as JWT libraries write them.
    let url = |s: String| s.replace('+', "-").replace('/', "_").trim_end_matches('=').to_string();
    let header = url(b64(r#"{"alg":"RSA-SHA512"}"#));
    let body = url(b64(claim(&alice.id, &exp)));
    let token = sign_parts("alice", &header, &body);
    let (input, signature) = token.rsplit_once('.').unwrap();
    assert_eq!(authenticate(&format!("{input}.{}", url(signature.into()))).unwrap(), alice.id);
}

#[test]
fn every_token_defect_is_the_same_28000() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let good = alice.token_expiring_in(60);
    let parts: Vec<&str> = good.split('.').collect();
    let header = r#"{"alg":"SHA-512","type":"JWT"}"#;
    let stranger = User { id: Uuid::new_v4(), ..alice.clone() };
    let wrong_key = User { key_name: "bob".into(), ..alice.clone() };
    let other_claim = b64(claim(&alice.id, &iso_in(50)));
    let cases: Vec<(&str, String)> = vec![
        ("unknown user", stranger.token_expiring_in(60)),
        ("wrong key", wrong_key.token_expiring_in(60)),
        ("tampered claim", format!("{}.{}.{}", parts[0], other_claim, parts[2])),
        ("tampered header", format!("{}.{}.{}", b64(r#"{"alg":"RS512"}"#), parts[1], parts[2])),
        ("tampered signature", format!("{}.{}.{}", parts[0], parts[1], flip_first_char(parts[2]))),
        ("bad encoding", format!("{}.%%%.{}", parts[0], parts[2])),
        ("not json", format!("{}.{}.{}", parts[0], b64("hello"), parts[2])),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("empty", String::new()),
        ("alg none", format!("{}.{}.", b64(r#"{"alg":"none"}"#), parts[1])),
        ("alg HS512", alice.sign(r#"{"alg":"HS512"}"#, &claim(&alice.id, &iso_in(60)))),
        ("expired", alice.sign(header, &claim(&alice.id, &iso_in(-1)))),
        ("exp too far ahead", alice.sign(header, &claim(&alice.id, &iso_in(25 * 3600)))),
        ("no exp", alice.sign(header, &format!(r#"{{"id":"{}"}}"#, alice.id))),
        ("exp not a date", alice.sign(header, &claim(&alice.id, "\"soon\""))),
        ("no id", alice.sign(header, &format!(r#"{{"exp":{}}}"#, iso_in(60)))),
        ("id not a uuid", alice.sign(header, &format!(r#"{{"id":"alice","exp":{}}}"#, iso_in(60)))),
    ];
    for (defect, token) in cases {
        let result = authenticate(&token);
        assert_eq!(sqlstate(authenticate(&token)), "28000", "{defect}");
        let (message, _) = error_text(result);
        assert_eq!(message, "invalid or expired token", "{defect}");
    }
}

#[test]
fn unknown_user_and_wrong_key_are_indistinguishable() {
    let alice = register(&mut connect(), "alice");
    let stranger = User { id: Uuid::new_v4(), ..alice.clone() };
    let wrong_key = User { key_name: "bob".into(), ..alice.clone() };
    let unknown = error_text(authenticate(&stranger.token()));
    let forged = error_text(authenticate(&wrong_key.token()));
    assert_eq!(unknown, forged);
    assert_eq!(unknown.1, None, "no detail that could hint at the cause");
}

#[test]
fn shape_problems_carry_a_detail_that_helps_fix_the_signer() {
    let alice = register(&mut connect(), "alice");
    let header = r#"{"alg":"SHA-512","type":"JWT"}"#;
    let millis = (jiff::Timestamp::now().as_millisecond() + 60_000).to_string();
    let (_, detail) = error_text(authenticate(&alice.sign(header, &claim(&alice.id, &millis))));
    assert!(detail.unwrap().contains("milliseconds"));
    let (_, detail) = error_text(authenticate(&alice.sign(header, &claim(&alice.id, &iso_in(-5)))));
    assert!(detail.unwrap().contains("expired"));
}

#[test]
fn max_token_lifetime_is_a_setting() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    db.batch_execute("SET hatchat.max_token_lifetime = '30s'").unwrap();
    let result = db.query_one("SELECT hatchat.authenticate($1)", &[&alice.token_expiring_in(60)]);
    assert_eq!(sqlstate(result), "28000");
    let short = db.query_one("SELECT hatchat.authenticate($1)", &[&alice.token_expiring_in(20)]).unwrap();
    assert_eq!(short.get::<_, Uuid>(0), alice.id);
    db.batch_execute("RESET hatchat.max_token_lifetime").unwrap();
    db.query_one("SELECT hatchat.authenticate($1)", &[&alice.token_expiring_in(3600)]).unwrap();
}

#[test]
fn misspelt_settings_are_refused() {
    let mut db = connect();
    db.query_one("SELECT hatchat.get_user($1)", &[&Uuid::nil()]).unwrap(); // loads the library
    let result = db.batch_execute("SET hatchat.max_payload_byte = 10");
    assert!(result.is_err(), "an unknown hatchat.* setting must not be silently accepted");
}

#[test]
fn a_claim_or_header_that_is_a_json_array_is_refused() {
    let alice = register(&mut connect(), "alice");
    let header = r#"{"alg":"SHA-512","type":"JWT"}"#;
    let array_claim = alice.sign(header, &format!(r#"["{}",{}]"#, alice.id, iso_in(60)));
    let result = authenticate(&array_claim);
    let (message, detail) = error_text(authenticate(&array_claim));
    assert_eq!(sqlstate(result), "28000");
    assert_eq!(message, "invalid or expired token");
    assert!(detail.as_deref().unwrap_or_default().contains("claim must be a JSON object"), "{detail:?}");
    let array_header = alice.sign(r#"["SHA-512"]"#, &claim(&alice.id, &iso_in(60)));
    let (_, detail) = error_text(authenticate(&array_header));
    assert!(detail.as_deref().unwrap_or_default().contains("header must be a JSON object"), "{detail:?}");
}

/// A backend that has verified a token once sends its next sends in one statement, trusting the
/// signature it checked (send_message's short way). Every change to the sender in the meantime
/// must still count at once: a ban, a mute, chat disabled, leaving the channel, the account
/// deleted and its id registered again with another key, the token's expiry.
#[test]
fn a_token_verified_before_still_meets_every_change_to_its_user() {
    let mut sender = connect(); // one session: its backend remembers the token
    let mut admin = connect();
    let alice = register(&mut admin, "alice");
    let bob = register(&mut admin, "bob");
    let channel = create_channel(&mut admin, &alice, "self");
    invite(&mut admin, &bob, &channel, &bob).unwrap();
    let token = bob.token_expiring_in(4);
    let send = |db: &mut postgres::Client, n: i32| {
        db.query_one("SELECT hatchat.send_message($1, $2, to_jsonb($3::int))", &[&token, &channel, &n])
            .map(|row| row.get::<_, serde_json::Value>(0))
    };
    let stored = |db: &mut postgres::Client| {
        // The test's sends are the channel's only numbers (join messages are objects).
        count(db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND jsonb_typeof(payload) = 'number'", &channel)
    };
    assert!(send(&mut sender, 1).unwrap()["seq"].is_i64());
    assert!(send(&mut sender, 2).unwrap()["seq"].is_i64(), "again, by the short way");

    admin.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&bob.id]).unwrap();
    assert_eq!(sqlstate(send(&mut sender, 3)), "42501", "banned");
    admin.execute("SELECT hatchat.unban_user(NULL, $1)", &[&bob.id]).unwrap();
    assert!(send(&mut sender, 4).unwrap()["seq"].is_i64(), "the ban lifted");

    admin.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&bob.id]).unwrap();
    assert_eq!(send(&mut sender, 5).unwrap()["seq"], serde_json::Value::Null, "muted: answered, not stored");
    admin.execute("SELECT hatchat.mute_user(NULL, $1, false)", &[&bob.id]).unwrap();

    admin.execute("SELECT hatchat.set_chat_disabled($1, true)", &[&bob.token()]).unwrap();
    assert_eq!(sqlstate(send(&mut sender, 6)), "42501", "chat disabled");
    admin.execute("SELECT hatchat.set_chat_disabled($1, false)", &[&bob.token()]).unwrap();

    admin.execute("SELECT hatchat.leave_channel($1, $2)", &[&bob.token(), &channel]).unwrap();
    assert_eq!(sqlstate(send(&mut sender, 7)), "42501", "no longer a member");
    invite(&mut admin, &bob, &channel, &bob).unwrap();
    assert!(send(&mut sender, 8).unwrap()["seq"].is_i64(), "a member again");
    assert_eq!(stored(&mut admin), 4, "1, 2, 4 and 8");

    admin.execute("SELECT hatchat.delete_user($1, $2)", &[&bob.token(), &bob.id]).unwrap();
    assert_eq!(sqlstate(send(&mut sender, 9)), "28000", "deleted");
    // A deleted user's id is never registered again (with another key or any), so the token
    // stays refused for good.
    let carol_key = fixture("carol.pub.pem");
    let again = admin.execute(
        "SELECT hatchat.register_user($1, $2, $3)",
        &[&bob.id, &carol_key, &format!("bob2-{}", short_id())],
    );
    assert_eq!(sqlstate(again), "23505", "a deleted user's id registered again");
    assert_eq!(sqlstate(send(&mut sender, 10)), "28000", "the deleted user's token");
    assert_eq!(stored(&mut admin), 4, "nothing stored by the refused sends");

    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(sqlstate(send(&mut sender, 11)), "28000", "the token expired");
}
