//! Channels through SQL: creation, the three invite models with owner, member and stranger,
//! owner-only changes, membership-only views, leaving, and what deletion removes.

mod common;
use common::*;
use serde_json::{json, Value};

fn channel(db: &mut postgres::Client, reader: &User, id: &str) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.get_channel($1, $2)", &[&reader.token(), &id]).map(|r| r.get(0))
}

fn member_ids(db: &mut postgres::Client, reader: &User, id: &str) -> Vec<String> {
    let channel = channel(db, reader, id).unwrap();
    channel["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

fn join_messages(db: &mut postgres::Client, reader: &User, id: &str, user: &User) -> usize {
    messages(db, reader, id)
        .iter()
        .filter(|m| m["fromUserId"] == json!(SYSTEM) && m["payload"]["userId"] == json!(user.id))
        .filter(|m| m["payload"]["event"] == json!("join"))
        .count()
}

#[test]
fn creating_a_channel_makes_the_owner_its_first_member_with_a_join_message() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let id = channel_id("general");
    let created: Value =
        db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &id]).unwrap().get(0);
    assert_eq!(created["id"], json!(id));
    assert_eq!(created["ownerId"], json!(alice.id));
    assert_eq!(created["inviteModel"], json!("owner"), "the default invite model");
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let seen = channel(&mut db, &alice, &id).unwrap();
    assert_eq!(seen["members"], json!([{"id": alice.id, "username": alice.username}]));
    let history = messages(&mut db, &alice, &id);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["seq"], json!(1));
    assert_eq!(history[0]["fromUserId"], json!(SYSTEM));
    let sentence = format!("user {} has joined the channel", alice.id);
    assert_eq!(history[0]["payload"]["message"], json!(sentence));
}

#[test]
fn channel_ids_and_models_are_validated_and_unique() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let id = create_channel(&mut db, &alice, "member");
    let taken = db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &id]);
    assert_eq!(sqlstate(taken), "23505");
    for (bad_id, model) in [("", "owner"), (&*"x".repeat(201), "owner"), ("ok-id", "everyone")] {
        let result =
            db.query_one("SELECT hatchat.create_channel($1, $2, $3)", &[&alice.token(), &bad_id, &model]);
        assert_eq!(sqlstate(result), "22023", "{bad_id:?} {model}");
        assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", bad_id), 0);
    }
    let long_id = format!("{}/é-{}", "x".repeat(187), short_id());
    assert_eq!(long_id.chars().count(), 200);
    db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &long_id]).unwrap();
    let anonymous = db.query_one("SELECT hatchat.create_channel('nope', 'x')", &[]);
    assert_eq!(sqlstate(anonymous), "28000");
}

/// For each invite model: what the owner, a member and a stranger may do.
#[test]
fn invite_models_with_owner_member_and_stranger() {
    let mut db = connect();
    // (model, owner adds, member adds other, stranger adds self, stranger adds other)
    let expectations = [
        ("owner", Ok(()), Err("42501"), Err("42501"), Err("42501")),
        ("member", Ok(()), Ok(()), Err("42501"), Err("42501")),
        ("self", Ok(()), Ok(()), Ok(()), Err("42501")),
    ];
    for (model, owner_adds, member_adds, stranger_self, stranger_other) in expectations {
        let owner = register(&mut db, "alice");
        let member = register(&mut db, "bob");
        let stranger = register(&mut db, "carol");
        let target = register(&mut db, "dave");
        let extra = register(&mut db, "dave");
        let id = create_channel(&mut db, &owner, model);
        let outcome = |r: Result<Value, postgres::Error>| match r {
            Ok(v) => {
                assert_eq!(v["joined"], json!(true));
                Ok(())
            }
            Err(e) => Err(if e.code().unwrap().code() == "42501" { "42501" } else { "other" }),
        };
        assert_eq!(outcome(invite(&mut db, &owner, &id, &member)), owner_adds, "{model}: owner adds");
        assert_eq!(outcome(invite(&mut db, &member, &id, &target)), member_adds, "{model}: member adds");
        assert_eq!(outcome(invite(&mut db, &stranger, &id, &stranger)), stranger_self, "{model}: self");
        assert_eq!(outcome(invite(&mut db, &extra, &id, &target)), stranger_other, "{model}: stranger adds");

        let members = member_ids(&mut db, &owner, &id);
        assert_eq!(members.contains(&target.id.to_string()), member_adds.is_ok(), "{model}");
        assert_eq!(members.contains(&stranger.id.to_string()), stranger_self.is_ok(), "{model}");
        assert!(!members.contains(&extra.id.to_string()), "{model}");
    }
}

#[test]
fn inviting_a_member_again_is_a_quiet_no_op() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = create_channel(&mut db, &alice, "owner");
    assert_eq!(invite(&mut db, &alice, &id, &bob).unwrap()["joined"], json!(true));
    let again = invite(&mut db, &alice, &id, &bob).unwrap();
    assert_eq!(again, json!({"channelId": id, "userId": bob.id, "joined": false}));
    assert_eq!(join_messages(&mut db, &alice, &id, &bob), 1);
    assert_eq!(member_ids(&mut db, &alice, &id).len(), 2);
}

#[test]
fn inviting_into_missing_channels_or_unknown_users_is_404() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let missing = invite(&mut db, &alice, &channel_id("nowhere"), &bob);
    assert_eq!(sqlstate(missing), "P0002");
    let id = create_channel(&mut db, &alice, "owner");
    let ghost = User { id: uuid::Uuid::new_v4(), ..bob.clone() };
    assert_eq!(sqlstate(invite(&mut db, &alice, &id, &ghost)), "P0002");
    let system = User { id: uuid::Uuid::nil(), ..bob };
    assert_eq!(sqlstate(invite(&mut db, &alice, &id, &system)), "P0002");
    assert_eq!(member_ids(&mut db, &alice, &id).len(), 1);
}

#[test]
fn only_the_owner_changes_or_deletes_a_channel() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = create_channel(&mut db, &alice, "owner");
    invite(&mut db, &alice, &id, &bob).unwrap();

    let by_member = db.query_one("SELECT hatchat.update_channel($1, $2, 'self')", &[&bob.token(), &id]);
    assert_eq!(sqlstate(by_member), "42501");
    let bad_model = db.query_one("SELECT hatchat.update_channel($1, $2, 'all')", &[&alice.token(), &id]);
    assert_eq!(sqlstate(bad_model), "22023");
    let missing = db.query_one("SELECT hatchat.update_channel($1, 'no-such', 'self')", &[&alice.token()]);
    assert_eq!(sqlstate(missing), "P0002");
    assert_eq!(channel(&mut db, &alice, &id).unwrap()["inviteModel"], json!("owner"));

    let updated: Value =
        db.query_one("SELECT hatchat.update_channel($1, $2, 'self')", &[&alice.token(), &id]).unwrap().get(0);
    assert_eq!(updated["inviteModel"], json!("self"));

    let delete_by_member = db.execute("SELECT hatchat.delete_channel($1, $2)", &[&bob.token(), &id]);
    assert_eq!(sqlstate(delete_by_member), "42501");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &id), 1);
}

#[test]
fn deleting_a_channel_removes_its_members_and_messages() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = create_channel(&mut db, &alice, "member");
    invite(&mut db, &alice, &id, &bob).unwrap();
    send(&mut db, &bob, &id, json!({"text": "hello"})).unwrap();
    db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &id]).unwrap();

    assert_eq!(sqlstate(channel(&mut db, &alice, &id)), "P0002");
    for table in ["channels WHERE id", "members WHERE channel_id", "messages WHERE channel_id"] {
        let sql = format!("SELECT count(*) FROM hatchat.{table} = $1");
        assert_eq!(count(&mut db, &sql, &id), 0, "{table}");
    }
    let listed: Value = db.query_one("SELECT hatchat.list_channels($1)", &[&bob.token()]).unwrap().get(0);
    assert!(!listed.as_array().unwrap().iter().any(|c| c["id"] == json!(id)));
    let again = db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &id]);
    assert_eq!(sqlstate(again), "P0002");
}

#[test]
fn channels_are_visible_to_members_only() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let first = create_channel(&mut db, &alice, "owner");
    let second = create_channel(&mut db, &alice, "self");
    assert_eq!(sqlstate(channel(&mut db, &bob, &first)), "42501");
    assert_eq!(sqlstate(channel(&mut db, &bob, "no-such-channel")), "P0002");

    let listed: Value = db.query_one("SELECT hatchat.list_channels($1)", &[&alice.token()]).unwrap().get(0);
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![first.as_str(), second.as_str()], "oldest first");
    assert_eq!(listed[0]["ownerId"], json!(alice.id));
    let none: Value = db.query_one("SELECT hatchat.list_channels($1)", &[&bob.token()]).unwrap().get(0);
    assert_eq!(none, json!([]));
}

#[test]
fn members_leave_but_the_owner_cannot() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let carol = register(&mut db, "carol");
    let id = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &id, &bob).unwrap();

    db.execute("SELECT hatchat.leave_channel($1, $2)", &[&bob.token(), &id]).unwrap();
    assert_eq!(sqlstate(channel(&mut db, &bob, &id)), "42501");
    let last = messages(&mut db, &alice, &id).pop().unwrap();
    assert_eq!(last["payload"]["event"], json!("leave"));
    assert_eq!(last["payload"]["userId"], json!(bob.id));

    let owner = db.execute("SELECT hatchat.leave_channel($1, $2)", &[&alice.token(), &id]);
    assert_eq!(sqlstate(owner), "42501");
    let stranger = db.execute("SELECT hatchat.leave_channel($1, $2)", &[&carol.token(), &id]);
    assert_eq!(sqlstate(stranger), "42501");
    let missing = db.execute("SELECT hatchat.leave_channel($1, 'no-such-channel')", &[&carol.token()]);
    assert_eq!(sqlstate(missing), "P0002");
    assert_eq!(member_ids(&mut db, &alice, &id), vec![alice.id.to_string()]);
}

/// However a channel goes (its owner deletes it, it expires and is purged, its owner deletes their
/// account), its messages go with it: none is left behind in the table.
#[test]
fn a_channels_messages_go_with_it_however_it_goes() {
    let mut db = connect();
    let stored = "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1";
    let alice = register(&mut db, "alice");
    let deleted = create_channel(&mut db, &alice, "owner");
    send(&mut db, &alice, &deleted, json!("a")).unwrap();
    db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &deleted]).unwrap();
    assert_eq!(count(&mut db, stored, &deleted), 0, "deleted by its owner");

    let expiring = channel_id("expiring");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"ttlSeconds\": 1}')",
        &[&alice.token(), &expiring],
    )
    .unwrap();
    send(&mut db, &alice, &expiring, json!("b")).unwrap();
    db.execute(
        "UPDATE hatchat.channels SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&expiring],
    )
    .unwrap();
    db.query_one("SELECT hatchat.purge_expired()", &[]).unwrap();
    assert_eq!(count(&mut db, stored, &expiring), 0, "purged");

    let bob = register(&mut db, "bob");
    let owned = create_channel(&mut db, &bob, "owner");
    send(&mut db, &bob, &owned, json!("c")).unwrap();
    db.execute("SELECT hatchat.delete_user($1, $2)", &[&bob.token(), &bob.id]).unwrap();
    assert_eq!(count(&mut db, stored, &owned), 0, "with its owner's account");
}

/// A send refreshes its channel's expiry only in steps of 1% of the TTL (a minute at most): a
/// busy channel's counter row keeps its indexed `expires_at`, so its updates stay HOT instead of
/// rewriting the row's index entries per message. An expiry further behind is refreshed in full.
#[test]
fn sends_refresh_a_channels_expiry_in_steps() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let id = channel_id("ttl");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"ttlSeconds\": 3600}')",
        &[&alice.token(), &id],
    )
    .unwrap();
    let expiry = |db: &mut postgres::Client| -> f64 {
        let sql = "SELECT extract(epoch FROM expires_at - clock_timestamp())::float8 FROM hatchat.channels WHERE id = $1";
        db.query_one(sql, &[&id]).unwrap().get(0)
    };
    let stored = |db: &mut postgres::Client| -> String {
        db.query_one("SELECT expires_at::text FROM hatchat.channels WHERE id = $1", &[&id]).unwrap().get(0)
    };
    send(&mut db, &alice, &id, json!(1)).unwrap();
    let first = stored(&mut db);
    for n in 2..5 {
        send(&mut db, &alice, &id, json!(n)).unwrap();
    }
    assert_eq!(stored(&mut db), first, "sends within a minute of the last refresh keep the stored expiry");

    db.execute(
        "UPDATE hatchat.channels SET expires_at = now() + interval '3000 seconds' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    send(&mut db, &alice, &id, json!("refresh")).unwrap();
    let left = expiry(&mut db);
    assert!((3590.0..=3600.0).contains(&left), "refreshed to a full TTL: {left} s left");
}
