//! Trust boundary II: the attacks that got in where two features meet, each tried as an attacker
//! would and refused. A room's sender is the server's word; a deleted user's id is never anyone
//! else's; a delete reaches every copy of a payload; events never pass for messages; reactions are
//! bounded; read positions follow the ban rules.
mod common;

use common::*;
use postgres::Client;
use serde_json::{json, Value};

fn call(db: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Value {
    db.query_one(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// A channel of `owner`'s with `member` in it, whose posts notify the other members.
fn notifying_channel(db: &mut Client, owner: &User, member: &User, prefix: &str) -> String {
    let channel = channel_id(prefix);
    call(
        db,
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"notifyMembers\": true}')",
        &[&owner.token(), &channel],
    );
    invite(db, owner, &channel, member).unwrap();
    channel
}

/// A room of Alice and Mallory with one post of Alice's in it; its id.
fn room_of(db: &mut Client, alice: &User, mallory: &User) -> String {
    let users = vec![alice.username.clone(), mallory.username.clone()];
    let room =
        call(db, "SELECT hatchat.create_room($1, $2, $3)", &[&alice.token(), &channel_id("game"), &users]);
    let room = room["id"].as_str().unwrap().to_string();
    let post = json!({"timestamp": 1, "type": "text", "message": "your move"});
    call(db, "SELECT hatchat.post_room_message($1, $2, $3)", &[&alice.token(), &room, &post]);
    room
}

fn room_messages(db: &mut Client, reader: &User, room: &str) -> Value {
    call(db, "SELECT hatchat.get_room($1, $2)", &[&reader.token(), &room])["messages"].clone()
}

#[test]
fn no_path_but_the_room_functions_writes_to_a_room() {
    let mut db = connect();
    let (alice, mallory) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let room = room_of(&mut db, &alice, &mallory);
    let before = room_messages(&mut db, &alice, &room);
    let forged = json!({"from": "$$", "type": "event", "message": "GAME_OVER: mallory wins"});

    let alone = db.query_one("SELECT hatchat.send_message($1, $2, $3)", &[&mallory.token(), &room, &forged]);
    assert_eq!(sqlstate(alone), "23505", "a plain send into a room");
    let with_id =
        db.query_one("SELECT hatchat.send_message($1, $2, $3, 'x1')", &[&mallory.token(), &room, &forged]);
    assert_eq!(sqlstate(with_id), "23505", "a plain send with a client id into a room");
    let text = db.query_one(
        "SELECT hatchat.send_message_text($1, $2, $3)",
        &[&mallory.token(), &room, &forged.to_string()],
    );
    assert_eq!(sqlstate(text), "23505", "the gateway's lone send into a room");
    let batch = json!([{"token": mallory.token(), "channelId": room, "payload": forged}]);
    let answer = call(&mut db, "SELECT hatchat.send_messages($1)", &[&batch]);
    assert_eq!(answer[0]["error"]["sqlstate"], "23505", "a batch item into a room: {answer}");
    // The server secret is no exception: it posts through post_system_message.
    let mut admin = connect();
    admin.execute("SELECT hatchat.set_api_secret('trust-boundary-secret-19f3')", &[]).unwrap();
    let by_secret =
        db.query_one("SELECT hatchat.send_message('trust-boundary-secret-19f3', $1, $2)", &[&room, &forged]);
    assert_eq!(sqlstate(by_secret), "23505", "the secret's plain send into a room");

    // Editing or reacting to a proper room post is no way in either.
    let edited =
        db.query_one("SELECT hatchat.edit_message($1, $2, 1, $3)", &[&alice.token(), &room, &forged]);
    assert_eq!(sqlstate(edited), "23505", "an edit in a room");
    let reacted = db.query_one("SELECT hatchat.react($1, $2, 1, '👍')", &[&mallory.token(), &room]);
    assert_eq!(sqlstate(reacted), "23505", "a reaction in a room");
    assert_eq!(room_messages(&mut db, &alice, &room), before, "nothing reached the room");
    let notified = call(&mut db, "SELECT hatchat.get_notifications($1)", &[&alice.token()]);
    assert!(!notified.to_string().contains("GAME_OVER"), "{notified}");

    // A stranger to the room is still told only that much.
    let carol = register(&mut db, "carol");
    let stranger = db.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&carol.token(), &room]);
    assert_eq!(sqlstate(stranger), "42501");

    // Erasure is never withheld: Alice deletes her post, and the room shows posts only.
    call(&mut db, "SELECT hatchat.delete_message($1, $2, 1)", &[&alice.token(), &room]);
    assert_eq!(room_messages(&mut db, &alice, &room), json!([]), "no delete event, no erased post");
    let notified = call(&mut db, "SELECT hatchat.get_notifications($1)", &[&mallory.token()]);
    for n in notified.as_array().unwrap() {
        assert!(n.get("event").is_none(), "a room's events notify nobody: {n}");
    }
}

#[test]
fn a_deleted_users_id_is_never_registered_again() {
    let mut db = connect();
    let (alice, mallory) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let channel = create_channel(&mut db, &alice, "self");
    let said = send(&mut db, &alice, &channel, json!("I, alice, said this")).unwrap();
    db.execute("SELECT hatchat.delete_user($1, $2)", &[&alice.token(), &alice.id]).unwrap();

    let taken = db.query_one(
        "SELECT hatchat.register_user($1, $2, $3)",
        &[&alice.id, &mallory.public_pem, &format!("m-{}", short_id())],
    );
    assert_eq!(sqlstate(taken), "23505", "a deleted user's id");
    let (message, _) = error_text(db.query_one(
        "SELECT hatchat.register_user($1, $2, $3)",
        &[&alice.id, &mallory.public_pem, &format!("m-{}", short_id())],
    ));
    assert!(message.contains("deleted user"), "{message}");
    // No token of the id verifies, so nobody is the author of what it wrote.
    let as_alice = User { key_name: "bob".into(), ..alice.clone() };
    let edit = db.query_one(
        "SELECT hatchat.edit_message($1, $2, $3, '\"mallory\"')",
        &[&as_alice.token(), &channel, &said["seq"].as_i64().unwrap()],
    );
    assert_eq!(sqlstate(edit), "28000");
    // The username is free again, under a new id.
    let again = register_named(&mut db, &alice.username);
    assert_ne!(again, alice.id);
}

fn register_named(db: &mut Client, username: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    db.query_one("SELECT hatchat.register_user($1, $2, $3)", &[&id, &fixture("bob.pub.pem"), &username])
        .expect("a freed username registers again");
    id
}

#[test]
fn a_delete_erases_every_copy_of_the_payload() {
    let mut db = connect();
    let (alice, bob) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let channel = notifying_channel(&mut db, &alice, &bob, "erase");
    let marker = format!("erase-me-{}", short_id());
    let sent = send(&mut db, &alice, &channel, json!({"text": format!("{marker} original")})).unwrap();
    let seq = sent["seq"].as_i64().unwrap();
    call(
        &mut db,
        "SELECT hatchat.edit_message($1, $2, $3, $4)",
        &[&alice.token(), &channel, &seq, &json!({"text": format!("{marker} edited")})],
    );
    assert_eq!(copies(&mut db, &marker), 4, "the message, its edit, and Bob's two notifications");
    call(&mut db, "SELECT hatchat.delete_message($1, $2, $3)", &[&alice.token(), &channel, &seq]);
    assert_eq!(copies(&mut db, &marker), 0, "every copy is erased");
}

/// Rows of any table of schema hatchat whose text holds `marker`, read as the superuser.
fn copies(db: &mut Client, marker: &str) -> i64 {
    let tables: Vec<String> = db
        .query("SELECT relname::text FROM pg_class WHERE relnamespace = 'hatchat'::regnamespace AND relkind = 'r'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let pattern = format!("%{marker}%");
    tables
        .iter()
        .map(|table| {
            let sql = format!("SELECT count(*) FROM hatchat.{table} t WHERE t::text LIKE $1");
            db.query_one(&sql, &[&pattern]).unwrap().get::<_, i64>(0)
        })
        .sum()
}

#[test]
fn notifications_of_events_name_their_kind_and_target() {
    let mut db = connect();
    let (alice, bob) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let channel = notifying_channel(&mut db, &alice, &bob, "typed");
    let seq = send(&mut db, &alice, &channel, json!("hi")).unwrap()["seq"].as_i64().unwrap();
    // A payload shaped as a reaction, then a real reaction: only the second is an event.
    send(&mut db, &bob, &channel, json!({"reaction": "👍", "action": "add"})).unwrap();
    call(&mut db, "SELECT hatchat.react($1, $2, $3, '👍')", &[&bob.token(), &channel, &seq]);
    let notes = call(&mut db, "SELECT hatchat.get_notifications($1)", &[&alice.token()]);
    // The two join messages notified first; then the two above.
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 4, "{notes:?}");
    let notes = &notes[2..];
    assert!(notes[0].get("event").is_none() && notes[0].get("target").is_none(), "{}", notes[0]);
    assert_eq!((&notes[1]["event"], &notes[1]["target"]), (&json!("reaction"), &json!(seq)), "{}", notes[1]);
}

#[test]
fn reactions_are_bounded_per_user_and_per_message() {
    let mut db = connect();
    let (alice, bob) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let channel = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &channel, &bob).unwrap();
    let seq = send(&mut db, &alice, &channel, json!("react to me")).unwrap()["seq"].as_i64().unwrap();
    db.batch_execute("SET hatchat.max_reactions_per_user = 2; SET hatchat.max_reactions_per_message = 3")
        .unwrap();
    let react = |db: &mut Client, who: &User, what: &str| {
        db.query_one("SELECT hatchat.react($1, $2, $3, $4)", &[&who.token(), &channel, &seq, &what])
    };
    react(&mut db, &alice, "a").unwrap();
    react(&mut db, &alice, "b").unwrap();
    assert_eq!(sqlstate(react(&mut db, &alice, "c")), "23505", "a third of one user's");
    react(&mut db, &bob, "c").unwrap();
    assert_eq!(sqlstate(react(&mut db, &bob, "d")), "23505", "a fourth distinct one on the message");
    react(&mut db, &bob, "a").unwrap();
    let folded =
        call(&mut db, "SELECT hatchat.get_messages($1, $2, fold => true)", &[&alice.token(), &channel]);
    let reactions: i64 = db
        .query_one("SELECT count(*) FROM hatchat.reactions WHERE channel_id = $1", &[&channel])
        .unwrap()
        .get(0);
    assert_eq!(reactions, 4, "{folded}");
}

#[test]
fn a_banned_user_moves_no_read_position() {
    let mut db = connect();
    let (alice, bob) = (register(&mut db, "alice"), register(&mut db, "bob"));
    let channel = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &channel, &bob).unwrap();
    send(&mut db, &alice, &channel, json!("one")).unwrap();
    db.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&bob.id]).unwrap();
    let before = call(&mut db, "SELECT hatchat.get_channel($1, $2)", &[&bob.token(), &channel]);
    let moved = db.query_one("SELECT hatchat.mark_read($1, $2, 1)", &[&bob.token(), &channel]);
    assert_eq!(sqlstate(moved), "42501", "mark_read by a banned user");
    let receipts = db.query_one("SELECT hatchat.set_read_receipts($1, false)", &[&bob.token()]);
    assert_eq!(sqlstate(receipts), "42501", "set_read_receipts by a banned user");
    assert_eq!(call(&mut db, "SELECT hatchat.get_channel($1, $2)", &[&bob.token(), &channel]), before);
}

#[test]
fn a_listener_without_the_secret_learns_nothing_from_a_wake_up() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    // A role with nothing but CONNECT may LISTEN, but may not read the secret the keys are made with.
    let mut app = app_connection();
    assert_eq!(sqlstate(app.query_one("SELECT hatchat.wake_secret()", &[])), "42501");
    assert_eq!(sqlstate(app.query_one("SELECT secret FROM hatchat.wake_secret", &[])), "42501");
    app.batch_execute(&format!("LISTEN {}", hatchat_wire::wake::NOTIFY_CHANNEL)).unwrap();
    send(&mut db, &alice, &channel, json!("hi")).unwrap();
    // What it hears is the keyed hash (heard() keys with the secret, as the gateway does), and not
    // the plain FNV-1a hash of `c:<channel id>` that 0.3.0 sent, which anyone could test a guess with.
    let mut listener = connect();
    listener.batch_execute(&format!("LISTEN {}", hatchat_wire::wake::NOTIFY_CHANNEL)).unwrap();
    send(&mut db, &alice, &channel, json!("again")).unwrap();
    assert!(heard(&mut listener, &channel, std::time::Duration::from_secs(10)), "the keyed wake-up arrives");
    let fnv = format!("c:{channel}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let payloads = heard_payloads(&mut app, std::time::Duration::from_secs(2));
    assert!(!payloads.is_empty(), "the plain role hears the wake-ups");
    assert!(payloads.iter().all(|p| !p.contains(&format!("{fnv:016x}"))), "{payloads:?}");
}

/// Every wake-up payload a LISTENing connection hears within `wait`.
fn heard_payloads(listener: &mut Client, wait: std::time::Duration) -> Vec<String> {
    use postgres::fallible_iterator::FallibleIterator;
    let deadline = std::time::Instant::now() + wait;
    let mut notifications = listener.notifications();
    let mut heard = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match notifications.timeout_iter(left).next() {
            Ok(Some(n)) if !left.is_zero() => heard.push(n.payload().to_string()),
            _ => return heard,
        }
    }
}
