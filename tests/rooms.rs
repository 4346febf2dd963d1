//! Rooms through SQL, case by case as ganomede-chat describes them: creating (new, existing,
//! by the secret, by a non-participant, by a banned user), reading, posting (stored, notified,
//! blocked, muted, chat disabled, by the secret), system messages, capping, expiry and purging.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

pub const SECRET: &str = "test-server-secret-4b1d9f0e7c";

fn with_secret(db: &mut postgres::Client) {
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
}

fn create_room(
    db: &mut postgres::Client,
    token: &str,
    kind: &str,
    users: &[&str],
) -> Result<Value, postgres::Error> {
    let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    db.query_one("SELECT hatchat.create_room($1, $2, $3)", &[&token, &kind, &users]).map(|r| r.get(0))
}

fn get_room(db: &mut postgres::Client, token: &str, id: &str) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.get_room($1, $2)", &[&token, &id]).map(|r| r.get(0))
}

fn post(db: &mut postgres::Client, token: &str, id: &str, body: Value) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.post_room_message($1, $2, $3)", &[&token, &id, &body]).map(|r| r.get(0))
}

fn notifications(db: &mut postgres::Client, user: &User) -> Vec<Value> {
    let page: Value =
        db.query_one("SELECT hatchat.get_notifications($1, 0, 1000)", &[&user.token()]).unwrap().get(0);
    page.as_array().unwrap().clone()
}

fn text(timestamp: i64, message: &str) -> Value {
    json!({"timestamp": timestamp, "type": "text", "message": message})
}

/// alice and bob, and their room.
fn room_of_two(db: &mut postgres::Client) -> (User, User, String) {
    let alice = register(db, "alice");
    let bob = register(db, "bob");
    let room = create_room(db, &alice.token(), "triominos/v1", &[&bob.username, &alice.username]).unwrap();
    (alice, bob, room["id"].as_str().unwrap().to_string())
}

#[test]
fn creating_a_room_names_it_by_type_and_sorted_usernames() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    // Names are matched ignoring case, and spelled as registered.
    let room =
        create_room(&mut db, &bob.token(), "triominos/v1", &[&bob.username, &alice.username.to_uppercase()])
            .unwrap();
    let mut users = vec![alice.username.clone(), bob.username.clone()];
    users.sort();
    let id = format!("triominos/v1/{}", users.join("/"));
    assert_eq!(room, json!({"id": id, "type": "triominos/v1", "users": users, "messages": []}));
}

#[test]
fn creating_an_existing_room_returns_it_and_refreshes_its_expiry() {
    let mut db = connect();
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, &bob.token(), &id, text(1, "hello")).unwrap();
    let expires = |db: &mut postgres::Client| -> String {
        db.query_one("SELECT expires_at::text FROM hatchat.channels WHERE id = $1", &[&id]).unwrap().get(0)
    };
    let before = expires(&mut db);
    std::thread::sleep(Duration::from_millis(20));
    let again =
        create_room(&mut db, &alice.token(), "triominos/v1", &[&alice.username, &bob.username]).unwrap();
    assert_eq!(again["messages"][0]["message"], json!("hello"));
    assert!(expires(&mut db) > before, "the expiry moved forward");
}

#[test]
fn the_secret_creates_any_room_and_others_must_be_participants() {
    let mut db = connect();
    with_secret(&mut db);
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let carol = register(&mut db, "carol");
    let room = create_room(&mut db, SECRET, "chess/v1", &[&alice.username, &bob.username]).unwrap();
    assert_eq!(room["users"].as_array().unwrap().len(), 2);
    let outsider = create_room(&mut db, &carol.token(), "chess/v1", &[&alice.username, &bob.username]);
    assert_eq!(sqlstate(outsider), "28000", "not a participant: 401, as ganomede-chat answers");
    let unknown =
        create_room(&mut db, &alice.token(), "chess/v1", &[&alice.username, "nobody-xyz", "ghost-abc"]);
    let (message, _) =
        error_text(create_room(&mut db, &alice.token(), "chess/v1", &[&alice.username, "nobody-xyz"]));
    assert_eq!(sqlstate(unknown), "P0002");
    assert!(message.contains("nobody-xyz"), "{message}");
    let invalid = create_room(&mut db, "Bearer nope", "chess/v1", &[&alice.username]);
    assert_eq!(sqlstate(invalid), "28000");
    for (kind, users) in [
        ("", vec![alice.username.as_str()]),
        ("chess", vec![]),
        ("chess", vec![&alice.username, &alice.username]),
    ] {
        assert_eq!(
            sqlstate(create_room(&mut db, &alice.token(), kind, &users)),
            "22023",
            "{kind:?} {users:?}"
        );
    }
}

#[test]
fn banned_users_cannot_create_rooms_or_post() {
    let mut db = connect();
    let (alice, bob, id) = room_of_two(&mut db);
    db.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&bob.id]).unwrap();
    let banned = create_room(&mut db, &bob.token(), "go/v1", &[&alice.username, &bob.username]);
    assert_eq!(sqlstate(banned), "42501");
    assert_eq!(sqlstate(post(&mut db, &bob.token(), &id, text(1, "hi"))), "42501");
    // Reading is not a write.
    get_room(&mut db, &bob.token(), &id).unwrap();
    db.execute("SELECT hatchat.unban_user(NULL, $1)", &[&bob.id]).unwrap();
    post(&mut db, &bob.token(), &id, text(1, "back")).unwrap();
}

#[test]
fn get_room_lists_messages_newest_first_for_participants_and_the_secret() {
    let mut db = connect();
    with_secret(&mut db);
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, &alice.token(), &id, text(1429084002258, "Hey bob!")).unwrap();
    post(&mut db, &bob.token(), &id, text(1429084002259, "Hi Alice :)")).unwrap();
    let room = get_room(&mut db, &alice.token(), &id).unwrap();
    assert_eq!(
        room["messages"],
        json!([
            {"timestamp": 1429084002259_i64, "from": bob.username, "type": "text", "message": "Hi Alice :)"},
            {"timestamp": 1429084002258_i64, "from": alice.username, "type": "text", "message": "Hey bob!"},
        ])
    );
    assert_eq!(get_room(&mut db, SECRET, &id).unwrap(), room);
    let carol = register(&mut db, "carol");
    assert_eq!(sqlstate(get_room(&mut db, &carol.token(), &id)), "28000");
    assert_eq!(sqlstate(get_room(&mut db, "Bearer x.y.z", &id)), "28000");
    assert_eq!(sqlstate(get_room(&mut db, &alice.token(), "triominos/v1/nobody/none")), "P0002");
    // A plain channel is not a room.
    let channel = create_channel(&mut db, &alice, "owner");
    assert_eq!(sqlstate(get_room(&mut db, &alice.token(), &channel)), "P0002");
}

#[test]
fn posting_stores_notifies_the_others_and_honours_blocks() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let carol = register(&mut db, "carol");
    let room =
        create_room(&mut db, &alice.token(), "party/v1", &[&alice.username, &bob.username, &carol.username])
            .unwrap();
    let id = room["id"].as_str().unwrap();
    db.query_one("SELECT hatchat.block_user($1, $2)", &[&carol.token(), &alice.id]).unwrap();

    let body = json!({"timestamp": 1429084016939_i64, "type": "txt", "message": "Good thanks, let's play", "push": {"badge": 1}});
    let answer = post(&mut db, &alice.token(), id, body).unwrap();
    assert_eq!(answer["roomId"], json!(id));
    assert_eq!(answer["from"], json!(alice.username));

    let to_bob = notifications(&mut db, &bob);
    assert_eq!(to_bob.len(), 1);
    let note = &to_bob[0];
    assert_eq!(note["from"], json!("chat/v1"));
    assert_eq!(note["to"], json!(bob.username));
    assert_eq!(note["type"], json!("message"));
    assert_eq!(
        note["data"],
        json!({"roomId": id, "from": alice.username, "timestamp": 1429084016939_i64, "type": "txt", "message": "Good thanks, let's play"})
    );
    assert_eq!(note["push"], json!({"badge": 1}));
    assert!(notifications(&mut db, &alice).is_empty(), "not the sender");
    assert!(notifications(&mut db, &carol).is_empty(), "carol blocked alice");
    assert_eq!(
        get_room(&mut db, &carol.token(), id).unwrap()["messages"].as_array().unwrap().len(),
        1,
        "still stored"
    );
}

#[test]
fn muted_senders_are_answered_but_not_stored_and_chat_disabled_users_are_refused() {
    let mut db = connect();
    let (alice, bob, id) = room_of_two(&mut db);
    db.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&bob.id]).unwrap();
    let answer = post(&mut db, &bob.token(), &id, text(5, "shh")).unwrap();
    assert_eq!(answer["message"], json!("shh"), "answered as usual");
    assert!(get_room(&mut db, &alice.token(), &id).unwrap()["messages"].as_array().unwrap().is_empty());
    assert!(notifications(&mut db, &alice).is_empty(), "not delivered");
    db.execute("SELECT hatchat.mute_user(NULL, $1, false)", &[&bob.id]).unwrap();

    db.query_one("SELECT hatchat.set_chat_disabled($1, true)", &[&alice.token()]).unwrap();
    assert_eq!(sqlstate(post(&mut db, &alice.token(), &id, text(6, "can I?"))), "42501");
    post(&mut db, &bob.token(), &id, text(7, "hello?")).unwrap();
    assert!(notifications(&mut db, &alice).is_empty(), "chat disabled: no notifications");
    let told = notifications(&mut db, &bob);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["type"], json!("chat-disabled"));
    assert_eq!(told[0]["data"], json!({"receiver": alice.username}));
}

#[test]
fn posting_checks_each_field_and_the_room() {
    let mut db = connect();
    let (alice, _, id) = room_of_two(&mut db);
    let cases = [
        (json!({"type": "t", "message": "m"}), "timestamp"),
        (json!({"timestamp": "soon", "type": "t", "message": "m"}), "timestamp"),
        (json!({"timestamp": 1, "type": "", "message": "m"}), "type"),
        (json!({"timestamp": 1, "type": "t"}), "message"),
        (json!({"timestamp": 1, "type": "t", "message": 42}), "message"),
        (json!([1, 2]), "the body"),
    ];
    for (body, field) in cases {
        let (message, _) = error_text(post(&mut db, &alice.token(), &id, body.clone()));
        assert_eq!(sqlstate(post(&mut db, &alice.token(), &id, body.clone())), "22023", "{body}");
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let huge = db.query_one(
        "SELECT hatchat.post_room_message($1, $2, '{\"timestamp\": 1e400, \"type\": \"t\", \"message\": \"m\"}')",
        &[&alice.token(), &id],
    );
    assert_eq!(sqlstate(huge), "22023");
    assert_eq!(sqlstate(post(&mut db, &alice.token(), "no/such/room", text(1, "x"))), "P0002");
    let carol = register(&mut db, "carol");
    assert_eq!(sqlstate(post(&mut db, &carol.token(), &id, text(1, "x"))), "28000");
    assert!(get_room(&mut db, &alice.token(), &id).unwrap()["messages"].as_array().unwrap().is_empty());
}

#[test]
fn the_secret_posts_as_double_dollar_and_system_messages_create_rooms() {
    let mut db = connect();
    with_secret(&mut db);
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, SECRET, &id, text(1, "from the server")).unwrap();
    let messages = get_room(&mut db, &alice.token(), &id).unwrap()["messages"].clone();
    assert_eq!(messages[0]["from"], json!("$$"));

    let carol = register(&mut db, "carol");
    let dave = register(&mut db, "dave");
    let body = json!({"type": "triominos/v1", "users": [carol.username, dave.username], "timestamp": 1429084016939_i64, "message": "ALICE_DISCONNECTED"});
    let posted: Value =
        db.query_one("SELECT hatchat.post_system_message($1, $2)", &[&SECRET, &body]).unwrap().get(0);
    let room_id = posted["roomId"].as_str().unwrap();
    let room = get_room(&mut db, &carol.token(), room_id).unwrap();
    assert_eq!(
        room["messages"],
        json!([{"timestamp": 1429084016939_i64, "from": "$$", "type": "event", "message": "ALICE_DISCONNECTED"}])
    );
    for user in [&carol, &dave] {
        let notes = notifications(&mut db, user);
        assert_eq!(notes.len(), 1, "every user of the room is notified");
        assert_eq!(notes[0]["data"]["type"], json!("event"));
    }
    let by_user = db.query_one("SELECT hatchat.post_system_message($1, $2)", &[&carol.token(), &body]);
    assert_eq!(sqlstate(by_user), "28000", "system messages need the secret");
    let wrong = db.query_one("SELECT hatchat.post_system_message('not-the-secret-at-all', $1)", &[&body]);
    assert_eq!(sqlstate(wrong), "28000");
    let _ = bob;
}

#[test]
fn rooms_keep_only_their_newest_messages_without_renumbering() {
    let mut db = connect();
    db.batch_execute("SET hatchat.room_max_messages = 3").unwrap();
    let (alice, _, id) = room_of_two(&mut db);
    for i in 0..5 {
        post(&mut db, &alice.token(), &id, text(i, &format!("m{i}"))).unwrap();
    }
    let room = get_room(&mut db, &alice.token(), &id).unwrap();
    let kept: Vec<&str> =
        room["messages"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(kept, ["m4", "m3", "m2"]);
    let seqs: Vec<i64> = db
        .query("SELECT seq FROM hatchat.messages WHERE channel_id = $1 ORDER BY seq", &[&id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, [3, 4, 5], "the remaining messages keep their seqs");
}

#[test]
fn channels_cap_and_notify_when_asked() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = channel_id("capped");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"maxMessages\": 2, \"notify\": true}')",
        &[&alice.token(), &id],
    )
    .unwrap();
    invite(&mut db, &alice, &id, &bob).unwrap();
    for i in 0..4 {
        send(&mut db, &alice, &id, json!(i)).unwrap();
    }
    let kept: Vec<i64> = messages(&mut db, &alice, &id).iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(kept, [5, 6]);
    let notes = notifications(&mut db, &bob);
    let sent: Vec<&Value> = notes
        .iter()
        .filter(|n| n["data"]["from"] == json!(alice.username))
        .map(|n| &n["data"]["message"])
        .collect();
    assert_eq!(sent, [&json!(0), &json!(1), &json!(2), &json!(3)]);
    let bad = db.query_one(
        "SELECT hatchat.create_channel($1, 'x-opt', 'owner', '{\"maxMessage\": 2}')",
        &[&alice.token()],
    );
    assert_eq!(sqlstate(bad), "22023");
}

#[test]
fn expired_rooms_and_channels_are_gone_at_once_and_purged_later() {
    let mut db = connect();
    db.batch_execute("SET hatchat.room_ttl = 1").unwrap();
    let (alice, bob, id) = room_of_two(&mut db);
    let channel = channel_id("short");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'self', '{\"ttlSeconds\": 1}')",
        &[&alice.token(), &channel],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(sqlstate(get_room(&mut db, &alice.token(), &id)), "P0002");
    assert_eq!(sqlstate(post(&mut db, &bob.token(), &id, text(1, "late"))), "P0002");
    assert_eq!(sqlstate(send(&mut db, &alice, &channel, json!("late"))), "P0002");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &id),
        1,
        "not purged yet"
    );

    let purged: i32 = db.query_one("SELECT hatchat.purge_expired()", &[]).unwrap().get(0);
    assert!(purged >= 2, "{purged}");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &id), 0);
    // The id is free again: creating the room anew gives an empty one.
    let fresh =
        create_room(&mut db, &alice.token(), "triominos/v1", &[&alice.username, &bob.username]).unwrap();
    assert_eq!(fresh["messages"], json!([]));
}

#[test]
fn posting_refreshes_expiry() {
    let mut db = connect();
    db.batch_execute("SET hatchat.room_ttl = 2").unwrap();
    let (alice, _, id) = room_of_two(&mut db);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(800));
        post(&mut db, &alice.token(), &id, text(i, "still here")).unwrap();
    }
    get_room(&mut db, &alice.token(), &id).unwrap();
}

/// The user ids of a room's members, sorted (read behind the API).
fn member_ids(db: &mut postgres::Client, id: &str) -> Vec<uuid::Uuid> {
    let rows = db.query("SELECT user_id FROM hatchat.members WHERE channel_id = $1 ORDER BY user_id", &[&id]);
    rows.unwrap().iter().map(|row| row.get(0)).collect()
}

fn sorted(mut ids: Vec<uuid::Uuid>) -> Vec<uuid::Uuid> {
    ids.sort();
    ids
}

fn message_count(db: &mut postgres::Client, id: &str) -> i64 {
    count(db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1", id)
}

fn rename(db: &mut postgres::Client, user: &User, name: &str) {
    db.query_one("SELECT hatchat.update_user($1, $2, $3)", &[&user.token(), &user.id, &name]).unwrap();
}

/// The message and detail of a failure, as one text to search for leaks.
fn whole_error<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    let (message, detail) = error_text(result);
    format!("{message} {}", detail.unwrap_or_default())
}

fn system_message(
    db: &mut postgres::Client,
    kind: &str,
    users: &[&str],
    message: &str,
) -> Result<Value, postgres::Error> {
    let body = json!({"type": kind, "users": users, "timestamp": 1, "message": message});
    db.query_one("SELECT hatchat.post_system_message($1, $2)", &[&SECRET, &body]).map(|r| r.get(0))
}

#[test]
fn a_username_that_changed_hands_never_opens_the_old_holders_room() {
    let mut db = connect();
    with_secret(&mut db);
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, &alice.token(), &id, text(1, "for bob only")).unwrap();
    let old_name = alice.username.clone();
    rename(&mut db, &alice, &format!("alice-moved-{}", short_id()));
    let mallory = register(&mut db, "carol");
    rename(&mut db, &mallory, &old_name);

    let taken = create_room(&mut db, &mallory.token(), "triominos/v1", &[&old_name, &bob.username]);
    let refused =
        whole_error(create_room(&mut db, &mallory.token(), "triominos/v1", &[&old_name, &bob.username]));
    assert_eq!(sqlstate(taken), "28000", "mallory holds the name, not the membership");
    assert!(
        refused.contains("not one of the room's users") && !refused.contains("for bob only"),
        "{refused}"
    );
    assert_eq!(sqlstate(get_room(&mut db, &mallory.token(), &id)), "28000");
    assert_eq!(sqlstate(post(&mut db, &mallory.token(), &id, text(2, "it's me, alice"))), "28000");

    // bob names the room's users by their current names: one of them is no longer a member.
    let other = create_room(&mut db, &bob.token(), "triominos/v1", &[&old_name, &bob.username]);
    let text409 =
        whole_error(create_room(&mut db, &bob.token(), "triominos/v1", &[&old_name, &bob.username]));
    assert_eq!(sqlstate(other), "23505");
    assert!(text409.contains("other members") && !text409.contains("for bob only"), "{text409}");
    // The server secret follows the same rule.
    let by_secret = system_message(&mut db, "triominos/v1", &[&old_name, &bob.username], "MALLORY_JOINED");
    assert_eq!(sqlstate(by_secret), "23505");

    assert_eq!(member_ids(&mut db, &id), sorted(vec![alice.id, bob.id]), "no member added");
    assert_eq!(message_count(&mut db, &id), 1, "nothing posted");
    // The members themselves still reach it by id.
    assert_eq!(
        get_room(&mut db, &alice.token(), &id).unwrap()["messages"][0]["message"],
        json!("for bob only")
    );
}

#[test]
fn a_deleted_users_name_registered_again_does_not_open_their_rooms() {
    let mut db = connect();
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, &alice.token(), &id, text(1, "just us")).unwrap();
    db.execute("SELECT hatchat.delete_user($1, $2)", &[&alice.token(), &alice.id]).unwrap();
    let mallory_id = uuid::Uuid::new_v4();
    db.query_one(
        "SELECT hatchat.register_user($1, $2, $3)",
        &[&mallory_id, &fixture("carol.pub.pem"), &alice.username],
    )
    .unwrap();
    let mallory = User {
        id: mallory_id,
        username: alice.username.clone(),
        key_name: "carol".into(),
        public_pem: String::new(),
    };

    let names = [alice.username.as_str(), bob.username.as_str()];
    let refused = whole_error(create_room(&mut db, &mallory.token(), "triominos/v1", &names));
    assert_eq!(sqlstate(create_room(&mut db, &mallory.token(), "triominos/v1", &names)), "28000");
    assert!(!refused.contains("just us"), "{refused}");
    assert_eq!(sqlstate(get_room(&mut db, &mallory.token(), &id)), "28000");
    assert_eq!(sqlstate(create_room(&mut db, &bob.token(), "triominos/v1", &names)), "23505");
    assert_eq!(member_ids(&mut db, &id), vec![bob.id], "mallory was not added");
    assert_eq!(message_count(&mut db, &id), 1);
}

#[test]
fn a_room_id_held_by_an_ordinary_channel_is_409_and_reveals_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let kind = format!("team-{}", short_id());
    let segment = format!("general-{}", short_id());
    let channel = format!("{kind}/{segment}");
    db.query_one("SELECT hatchat.create_channel($1, $2, 'owner')", &[&alice.token(), &channel]).unwrap();
    send(&mut db, &alice, &channel, json!({"text": "secret plan"})).unwrap();
    let before = message_count(&mut db, &channel);
    let mallory = register(&mut db, "carol");
    rename(&mut db, &mallory, &segment);

    let result = create_room(&mut db, &mallory.token(), &kind, &[&segment]);
    let refused = whole_error(create_room(&mut db, &mallory.token(), &kind, &[&segment]));
    assert_eq!(sqlstate(result), "23505");
    for leak in ["secret plan", alice.username.as_str(), "owner", "private", "member"] {
        assert!(!refused.contains(leak), "{leak:?} in {refused}");
    }
    assert_eq!(member_ids(&mut db, &channel), vec![alice.id], "mallory was not added");
    assert_eq!(message_count(&mut db, &channel), before, "nothing posted");
    assert_eq!(sqlstate(post(&mut db, &mallory.token(), &channel, text(1, "hi"))), "P0002");
}

#[test]
fn a_squatted_room_id_blocks_the_room_but_never_opens_it() {
    let mut db = connect();
    with_secret(&mut db);
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let mallory = register(&mut db, "carol");
    let mut names = [alice.username.clone(), bob.username.clone()];
    names.sort();
    let id = format!("t/{}", names.join("/"));
    db.query_one("SELECT hatchat.create_channel($1, $2, 'self')", &[&mallory.token(), &id]).unwrap();
    send(&mut db, &mallory, &id, json!({"from": "$$", "type": "event", "message": "fake history"})).unwrap();
    let before = message_count(&mut db, &id);

    let squatted = create_room(&mut db, &alice.token(), "t", &[&alice.username, &bob.username]);
    let refused = whole_error(create_room(&mut db, &alice.token(), "t", &[&alice.username, &bob.username]));
    assert_eq!(sqlstate(squatted), "23505");
    assert!(!refused.contains("fake history") && !refused.contains(&mallory.username), "{refused}");
    let by_secret = system_message(&mut db, "t", &[&alice.username, &bob.username], "GAME_STARTED");
    assert_eq!(sqlstate(by_secret), "23505");
    let (missing, _) = error_text(get_room(&mut db, &alice.token(), &id));
    assert!(missing.contains("room") && missing.contains("not found"), "{missing}");
    assert_eq!(sqlstate(get_room(&mut db, &mallory.token(), &id)), "P0002", "not a room, even for its owner");
    assert_eq!(sqlstate(post(&mut db, &alice.token(), &id, text(1, "hi"))), "P0002");
    assert_eq!(sqlstate(post(&mut db, SECRET, &id, text(1, "hi"))), "P0002");

    assert_eq!(member_ids(&mut db, &id), vec![mallory.id], "no room member added");
    assert_eq!(message_count(&mut db, &id), before, "nothing posted");
}

#[test]
fn a_room_of_another_type_under_the_same_id_is_409() {
    let mut db = connect();
    let (alice, bob, _) = room_of_two(&mut db);
    let kind = format!("x-{}", short_id());
    let room = create_room(&mut db, &alice.token(), &kind, &[&alice.username, &bob.username]).unwrap();
    let mut names = [alice.username.clone(), bob.username.clone()];
    names.sort();
    // Type "x/<first>" with the second user forms the same id as type "x" with both.
    let (first, second) = (&names[0], &names[1]);
    let user = if *second == bob.username { &bob } else { &alice };
    let other = create_room(&mut db, &user.token(), &format!("{kind}/{first}"), &[second]);
    assert_eq!(sqlstate(other), "23505");
    let id = room["id"].as_str().unwrap();
    assert_eq!(member_ids(&mut db, id), sorted(vec![alice.id, bob.id]));
    let kept: String =
        db.query_one("SELECT type FROM hatchat.channels WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(kept, kind);
}

#[test]
fn room_posts_obey_the_payload_and_depth_limits() {
    let mut db = connect();
    with_secret(&mut db);
    db.batch_execute("SET hatchat.max_payload_bytes = 200; SET hatchat.max_json_depth = 5").unwrap();
    let (alice, bob, id) = room_of_two(&mut db);
    post(&mut db, &alice.token(), &id, text(1, "fits")).unwrap();
    let big = text(2, &"x".repeat(300));
    assert_eq!(sqlstate(post(&mut db, &alice.token(), &id, big.clone())), "54000");
    let mut deep = json!("bottom");
    for _ in 0..8 {
        deep = json!([deep]);
    }
    let nested = json!({"timestamp": 3, "type": "text", "message": "deep", "push": deep.clone()});
    let (message, _) = error_text(post(&mut db, &alice.token(), &id, nested.clone()));
    assert_eq!(sqlstate(post(&mut db, &alice.token(), &id, nested.clone())), "22023");
    assert!(message.contains("hatchat.max_json_depth") || message.contains("deep"), "{message}");
    assert_eq!(message_count(&mut db, &id), 1, "nothing stored");
    assert!(notifications(&mut db, &bob).len() == 1, "only the post that fitted notified");

    let kind = format!("limits-{}", short_id());
    let users = [alice.username.as_str(), bob.username.as_str()];
    let body = |message: Value, push: Value| json!({"type": kind, "users": users, "timestamp": 4, "message": message, "push": push});
    for (too_much, code) in
        [(body(json!("x".repeat(300)), json!(null)), "54000"), (body(json!("m"), deep), "22023")]
    {
        let result = db.query_one("SELECT hatchat.post_system_message($1, $2)", &[&SECRET, &too_much]);
        assert_eq!(sqlstate(result), code, "{too_much}");
    }
    let mut sorted_names = users.map(str::to_string);
    sorted_names.sort();
    let system_room = format!("{kind}/{}", sorted_names.join("/"));
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &system_room), 0);
}

/// A room's member list is fixed for everyone, the server secret included: an added member would
/// make the room stop matching the users it is named by.
#[test]
fn nobody_adds_members_to_a_room_not_even_the_secret() {
    let mut db = connect();
    with_secret(&mut db);
    let (alice, _bob, id) = room_of_two(&mut db);
    let carol = register(&mut db, "carol");
    let by_secret = db.query_one("SELECT hatchat.invite($1, $2, $3)", &[&SECRET, &id, &carol.id]);
    assert_eq!(sqlstate(by_secret), "42501");
    assert_eq!(sqlstate(invite(&mut db, &alice, &id, &carol)), "42501");
    let members = count(&mut db, "SELECT count(*) FROM hatchat.members WHERE channel_id = $1", &id);
    assert_eq!(members, 2);
}

/// Deleting a channel takes its notifications with it, as purging an expired one does.
#[test]
fn a_deleted_channels_notifications_go_with_it() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = channel_id("noted");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"notify\": true}')",
        &[&alice.token(), &id],
    )
    .unwrap();
    invite(&mut db, &alice, &id, &bob).unwrap();
    send(&mut db, &alice, &id, json!("soon gone")).unwrap();
    let stored = "SELECT count(*) FROM hatchat.notifications WHERE channel_id = $1";
    assert!(count(&mut db, stored, &id) > 0, "the join and the message notified");
    db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &id]).unwrap();
    assert_eq!(count(&mut db, stored, &id), 0);
}
