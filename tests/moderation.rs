//! Moderation and the server secret through SQL: who may set the secret, ban and mute; how only a
//! salted hash is kept; what bans, mutes, blocks and disabled chat do in plain channels; and the
//! notification stream's paging.

mod common;
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "test-server-secret-4b1d9f0e7c";

#[test]
fn only_admins_set_the_secret_and_only_its_salted_hash_is_stored() {
    let mut admin = connect();
    admin.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let stored: Vec<u8> = admin.query_one("SELECT hash FROM hatchat.api_secret", &[]).unwrap().get(0);
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(SECRET));
    let row: Value = admin.query_one("SELECT to_jsonb(s) FROM hatchat.api_secret s", &[]).unwrap().get(0);
    assert!(!row.to_string().contains(SECRET), "no plaintext anywhere in the row");
    assert_eq!(sqlstate(admin.execute("SELECT hatchat.set_api_secret('short')", &[])), "22023");

    let mut app = app_connection();
    assert_eq!(
        sqlstate(app.execute("SELECT hatchat.set_api_secret($1)", &[&"another-long-secret-value"])),
        "42501"
    );
    let who: uuid::Uuid = app.query_one("SELECT hatchat.authenticate($1)", &[&SECRET]).unwrap().get(0);
    assert!(who.is_nil(), "the secret acts as the system");
    let bearer: uuid::Uuid =
        app.query_one("SELECT hatchat.authenticate($1)", &[&format!("Bearer {SECRET}")]).unwrap().get(0);
    assert!(bearer.is_nil());
    assert_eq!(
        sqlstate(app.query_one("SELECT hatchat.authenticate('test-server-secret-4b1d9f0e7d')", &[])),
        "28000"
    );
}

#[test]
fn bans_and_mutes_need_an_admin_role_or_the_secret() {
    let mut admin = connect();
    admin.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let mut app = app_connection();
    let alice = register(&mut app, "alice");
    let bob = register(&mut app, "bob");
    let by_user = app
        .query_one("SELECT hatchat.ban_user($1, $2, now() + interval '1 day')", &[&alice.token(), &bob.id]);
    assert_eq!(sqlstate(by_user), "42501");
    let anonymous = app.query_one("SELECT hatchat.mute_user(NULL, $1, true)", &[&bob.id]);
    assert_eq!(sqlstate(anonymous), "28000", "an ordinary role needs the secret");
    let banned: Value = app
        .query_one("SELECT hatchat.ban_user($1, $2, now() + interval '1 day')", &[&SECRET, &bob.id])
        .unwrap()
        .get(0);
    assert_eq!(banned["userId"], json!(bob.id));
    assert!(banned["bannedUntil"].is_string());
    let muted: Value =
        admin.query_one("SELECT hatchat.mute_user(NULL, $1, true)", &[&bob.id]).unwrap().get(0);
    assert_eq!(muted["muted"], json!(true));
    let unknown = app.query_one("SELECT hatchat.unban_user($1, $2)", &[&SECRET, &uuid::Uuid::new_v4()]);
    assert_eq!(sqlstate(unknown), "P0002");
}

#[test]
fn a_ban_refuses_every_write_until_it_ends() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let channel = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &channel, &bob).unwrap();
    db.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&bob.id]).unwrap();
    let writes: Vec<Result<u64, postgres::Error>> = vec![
        db.execute("SELECT hatchat.send_message($1, $2, '1')", &[&bob.token(), &channel]),
        db.execute("SELECT hatchat.create_channel($1, $2)", &[&bob.token(), &channel_id("banned")]),
        db.execute("SELECT hatchat.update_user($1, $2, 'new-name-x')", &[&bob.token(), &bob.id]),
        db.execute("SELECT hatchat.leave_channel($1, $2)", &[&bob.token(), &channel]),
        db.execute("SELECT hatchat.block_user($1, $2)", &[&bob.token(), &alice.id]),
    ];
    for write in writes {
        assert_eq!(sqlstate(write), "42501");
    }
    let (message, _) = error_text(send(&mut db, &bob, &channel, json!(1)));
    assert!(message.contains("banned until"), "{message}");
    assert_eq!(messages(&mut db, &bob, &channel).len(), 2, "reading is allowed");
    let batch: Value = db
        .query_one(
            "SELECT hatchat.send_messages($1)",
            &[&json!([{"token": bob.token(), "channelId": channel, "payload": 1}])],
        )
        .unwrap()
        .get(0);
    assert_eq!(batch[0]["error"]["sqlstate"], json!("42501"));
    db.execute("SELECT hatchat.ban_user(NULL, $1, now() - interval '1 second')", &[&bob.id]).unwrap();
    send(&mut db, &bob, &channel, json!("free again")).unwrap();
}

#[test]
fn a_muted_sender_is_answered_but_nothing_is_stored() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    db.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&alice.id]).unwrap();
    let answer = send(&mut db, &alice, &channel, json!("into the void")).unwrap();
    assert_eq!(answer["seq"], Value::Null);
    assert_eq!(answer["channelId"], json!(channel));
    let batch: Value = db
        .query_one(
            "SELECT hatchat.send_messages($1)",
            &[&json!([{"token": alice.token(), "channelId": channel, "payload": 2}])],
        )
        .unwrap()
        .get(0);
    assert_eq!(batch[0]["seq"], Value::Null);
    assert_eq!(messages(&mut db, &alice, &channel).len(), 1, "only the join message");
    assert_eq!(
        sqlstate(send(&mut db, &alice, "no-such-channel", json!(1))),
        "P0002",
        "still told what is wrong"
    );
}

#[test]
fn blocks_are_per_user_and_listed() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let list = |db: &mut postgres::Client| -> Value {
        db.query_one("SELECT hatchat.list_blocked($1)", &[&alice.token()]).unwrap().get(0)
    };
    assert_eq!(list(&mut db), json!([]));
    db.query_one("SELECT hatchat.block_user($1, $2)", &[&alice.token(), &bob.id]).unwrap();
    db.query_one("SELECT hatchat.block_user($1, $2)", &[&alice.token(), &bob.id]).unwrap();
    assert_eq!(list(&mut db), json!([{"id": bob.id, "username": bob.username}]));
    let own = db.query_one("SELECT hatchat.block_user($1, $2)", &[&alice.token(), &alice.id]);
    assert_eq!(sqlstate(own), "22023");
    let someone_elses = db.query_one("SELECT hatchat.list_blocked($1, $2)", &[&bob.token(), &alice.id]);
    assert_eq!(sqlstate(someone_elses), "42501");
    let ghost = db.query_one("SELECT hatchat.block_user($1, $2)", &[&alice.token(), &uuid::Uuid::new_v4()]);
    assert_eq!(sqlstate(ghost), "P0002");
    db.query_one("SELECT hatchat.unblock_user($1, $2)", &[&alice.token(), &bob.id]).unwrap();
    assert_eq!(list(&mut db), json!([]));
}

#[test]
fn notification_streams_page_by_id() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = channel_id("notes");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"notify\": true}')",
        &[&alice.token(), &id],
    )
    .unwrap();
    invite(&mut db, &alice, &id, &bob).unwrap();
    for i in 0..5 {
        send(&mut db, &alice, &id, json!(i)).unwrap();
    }
    let page = |db: &mut postgres::Client, after: i64, limit: i32| -> Vec<i64> {
        let notes: Value = db
            .query_one("SELECT hatchat.get_notifications($1, $2, $3)", &[&bob.token(), &after, &limit])
            .unwrap()
            .get(0);
        notes.as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect()
    };
    let all = page(&mut db, 0, 100);
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>(), "ids count up from 1 without gaps");
    assert_eq!(page(&mut db, 2, 2), [3, 4]);
    for (after, limit) in [(-1_i64, 10_i32), (0, 0), (0, 1001)] {
        let bad =
            db.query_one("SELECT hatchat.get_notifications($1, $2, $3)", &[&bob.token(), &after, &limit]);
        assert_eq!(sqlstate(bad), "22023");
    }
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let by_secret = db.query_one("SELECT hatchat.get_notifications($1)", &[&SECRET]);
    assert_eq!(sqlstate(by_secret), "42501", "the secret has no stream of its own");
}
