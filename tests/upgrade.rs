//! The upgrade path, as an operator meets it: data written through the previous release's API is
//! read back, unchanged, through the new release's API after `ALTER EXTENSION hatchat UPDATE`.
//!
//! Two phases, run by `scripts/test-upgrade.sh` around the upgrade (ignored otherwise, because
//! each needs a database in a given state): `before_upgrade` writes through the old release and
//! records what its reads answered; `after_upgrade` asks the same reads of the new release and
//! requires every field answered before to be answered again with the same value (a new release
//! may add fields), then writes once more to show the counters carry on.
mod common;

use common::*;
use postgres::Client;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the first phase leaves for the second: who exists, and what the reads answered.
fn state_path() -> String {
    std::env::var("HATCHAT_UPGRADE_STATE").expect("HATCHAT_UPGRADE_STATE: run scripts/test-upgrade.sh")
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id, "username": user.username, "keyName": user.key_name})
}

fn user_from(value: &Value) -> User {
    let key_name = value["keyName"].as_str().unwrap().to_string();
    User {
        id: value["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
        username: value["username"].as_str().unwrap().to_string(),
        public_pem: fixture(&format!("{key_name}.pub.pem")),
        key_name,
    }
}

fn call(db: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Value {
    db.query_one(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The reads both releases answer, by name.
fn reads(db: &mut Client, alice: &User, bob: &User, carol: &User, channel: &str, room: &str) -> Value {
    json!({
        "alice": call(db, "SELECT hatchat.get_user($1)", &[&alice.id]),
        "bob": call(db, "SELECT hatchat.get_user($1)", &[&bob.id]),
        "channel": call(db, "SELECT hatchat.get_channel($1, $2)", &[&alice.token(), &channel]),
        "aliceChannels": call(db, "SELECT hatchat.list_channels($1)", &[&alice.token()]),
        "messages": call(
            db,
            "SELECT hatchat.get_messages($1, $2, row_limit => 1000)",
            &[&bob.token(), &channel],
        ),
        "room": call(db, "SELECT hatchat.get_room($1, $2)", &[&bob.token(), &room]),
        "bobNotifications": call(db, "SELECT hatchat.get_notifications($1)", &[&bob.token()]),
        "carolBlocks": call(db, "SELECT hatchat.list_blocked($1)", &[&carol.token()]),
    })
}

#[test]
#[ignore = "phase 1 of scripts/test-upgrade.sh: needs the previous release installed"]
fn before_upgrade() {
    let mut db = connect();
    let (alice, bob, carol) =
        (register(&mut db, "alice"), register(&mut db, "bob"), register(&mut db, "carol"));
    let channel = channel_id("upgrade");
    call(
        &mut db,
        "SELECT hatchat.create_channel($1, $2, 'member', '{\"maxMessages\": 100}')",
        &[&alice.token(), &channel],
    );
    invite(&mut db, &alice, &channel, &bob).unwrap();
    for payload in [json!({"text": "one"}), json!([1e300, "two", null]), json!("three")] {
        send(&mut db, &alice, &channel, payload).unwrap();
    }
    send(&mut db, &bob, &channel, json!({"text": "from bob"})).unwrap();

    let users = vec![alice.username.clone(), bob.username.clone()];
    let room = call(&mut db, "SELECT hatchat.create_room($1, 'upgrade/v1', $2)", &[&alice.token(), &users]);
    let room = room["id"].as_str().unwrap().to_string();
    let post = json!({"timestamp": 1429084002258_i64, "type": "text", "message": "hi bob"});
    call(&mut db, "SELECT hatchat.post_room_message($1, $2, $3)", &[&alice.token(), &room, &post]);
    call(&mut db, "SELECT hatchat.block_user($1, $2)", &[&carol.token(), &alice.id]);

    let answered = reads(&mut db, &alice, &bob, &carol, &channel, &room);
    // Two join messages, then the four sends.
    assert_eq!(answered["messages"].as_array().unwrap().len(), 6, "{answered}");
    assert_eq!(answered["bobNotifications"].as_array().unwrap().len(), 1, "{answered}");
    let state = json!({
        "users": [user_json(&alice), user_json(&bob), user_json(&carol)],
        "channel": channel,
        "room": room,
        "answered": answered,
    });
    std::fs::write(state_path(), state.to_string()).expect("write the upgrade state");
}

#[test]
#[ignore = "phase 2 of scripts/test-upgrade.sh: needs the database phase 1 wrote, updated"]
fn after_upgrade() {
    let state: Value = serde_json::from_str(&std::fs::read_to_string(state_path()).unwrap()).unwrap();
    let users: Vec<User> = state["users"].as_array().unwrap().iter().map(user_from).collect();
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let (channel, room) = (state["channel"].as_str().unwrap(), state["room"].as_str().unwrap());
    let mut db = connect();
    let version: String =
        db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'hatchat'", &[]).unwrap().get(0);
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "the extension was updated to this release");

    let now = reads(&mut db, alice, bob, carol, channel, room);
    assert_answered_again(&state["answered"], &now, "$");

    // The channel's counter carries on without a gap.
    let next = send(&mut db, bob, channel, json!({"text": "after the upgrade"})).unwrap();
    assert_eq!(next["seq"], 7, "{next}");

    // Read positions and unread counts carry on: Alice's read position stays where it was, and
    // Bob's new message is one more unread for her.
    let before = &state["answered"]["channel"];
    let channel_now = call(&mut db, "SELECT hatchat.get_channel($1, $2)", &[&alice.token(), &channel]);
    assert_eq!(
        (&channel_now["lastSeq"], &channel_now["readSeq"]),
        (&json!(7), &before["readSeq"]),
        "{channel_now}"
    );
    assert_eq!(channel_now["unread"], before["unread"].as_i64().unwrap() + 1, "{channel_now}");
}

/// Every field of `before` is in `now` with the same value; `now` may hold more fields.
fn assert_answered_again(before: &Value, now: &Value, at: &str) {
    match (before, now) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, value) in old {
                let field = new.get(key).unwrap_or_else(|| panic!("{at}.{key} is gone after the upgrade"));
                assert_answered_again(value, field, &format!("{at}.{key}"));
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            assert_eq!(old.len(), new.len(), "{at}: {before} became {now}");
            for (i, (o, n)) in old.iter().zip(new).enumerate() {
                assert_answered_again(o, n, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(before, now, "{at} changed in the upgrade"),
    }
}

#[test]
fn a_changed_answer_is_seen() {
    // The comparison itself can fail: a value that changed, a field that went, a row that went.
    let before = json!({"a": [{"seq": 1, "p": "x"}], "b": 1});
    assert_answered_again(&before, &json!({"a": [{"seq": 1, "p": "x", "new": true}], "b": 1, "c": 2}), "$");
    for changed in [
        json!({"a": [{"seq": 1, "p": "y"}], "b": 1}),
        json!({"a": [{"seq": 1}], "b": 1}),
        json!({"a": [], "b": 1}),
    ] {
        let outcome = std::panic::catch_unwind(|| assert_answered_again(&before, &changed, "$"));
        assert!(outcome.is_err(), "{changed} should differ from {before}");
    }
}
