//! Notification streams through SQL: fair forwarding (one user's backlog never fills the batch),
//! setting an undeliverable notification aside (forwarder role only; the user's next goes on),
//! retention of the newest `hatchat.max_notifications`, and purging with expired rooms.

mod common;
use common::*;
use serde_json::{json, Value};

fn create_room(db: &mut postgres::Client, by: &User, kind: &str, users: &[&User]) -> String {
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let room: Value = db
        .query_one("SELECT hatchat.create_room($1, $2, $3)", &[&by.token(), &kind, &names])
        .expect("create_room")
        .get(0);
    room["id"].as_str().unwrap().to_string()
}

fn post(db: &mut postgres::Client, by: &User, room: &str, message: &str) {
    let body = json!({"timestamp": 1, "type": "text", "message": message});
    db.query_one("SELECT hatchat.post_room_message($1, $2, $3)", &[&by.token(), &room, &body])
        .expect("post_room_message");
}

fn page(db: &mut postgres::Client, user: &User, after: i64, limit: i32) -> Vec<Value> {
    let page: Value = db
        .query_one("SELECT hatchat.get_notifications($1, $2, $3)", &[&user.token(), &after, &limit])
        .unwrap()
        .get(0);
    page.as_array().unwrap().clone()
}

fn ids(notes: &[Value]) -> Vec<i64> {
    notes.iter().map(|n| n["id"].as_i64().unwrap()).collect()
}

/// The ids `notifications_to_forward(row_limit)` returns for `user`, in order.
fn forwarded_ids(batch: &Value, user: &User) -> Vec<i64> {
    batch
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["userId"] == json!(user.id))
        .map(|n| n["id"].as_i64().unwrap())
        .collect()
}

/// Calls notifications_to_forward(row_limit) as if `users` were the only ones with pending
/// notifications: everyone else's are marked forwarded in a transaction that is rolled back, so
/// other tests' notifications neither crowd this one out nor are lost.
fn to_forward_among(db: &mut postgres::Client, users: &[&User], row_limit: i32) -> Value {
    let ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id).collect();
    let mut tx = db.transaction().unwrap();
    // As the functions' owner: on Citus a transaction may not reach the same shards as two users
    // ("cannot perform query on placements that were modified in this transaction by a different
    // user"), and notifications_to_forward runs as its owner.
    tx.batch_execute("SET LOCAL ROLE hatchat_owner").unwrap();
    // Locked in user order, as fan_out does, so a concurrent post cannot deadlock with this; one
    // user per statement, as Citus takes row locks only in single-shard queries.
    let others: Vec<uuid::Uuid> = tx
        .query("SELECT user_id FROM hatchat.inboxes WHERE NOT (user_id = ANY($1)) ORDER BY user_id", &[&ids])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for user in &others {
        tx.execute("SELECT 1 FROM hatchat.inboxes WHERE user_id = $1 FOR UPDATE", &[user]).unwrap();
    }
    tx.execute(
        "UPDATE hatchat.notifications SET forwarded_at = now() \
          WHERE forwarded_at IS NULL AND NOT (user_id = ANY($1))",
        &[&ids],
    )
    .unwrap();
    tx.execute("UPDATE hatchat.inboxes SET pending_since = NULL WHERE NOT (user_id = ANY($1))", &[&ids])
        .unwrap();
    // The call itself as the caller (a superuser, so a forwarder).
    tx.batch_execute("RESET ROLE").unwrap();
    let batch: Value =
        tx.query_one("SELECT hatchat.notifications_to_forward($1)", &[&row_limit]).unwrap().get(0);
    tx.rollback().unwrap();
    batch
}

#[test]
fn one_users_backlog_does_not_fill_the_forwarding_batch() {
    let mut db = connect();
    let sender = register(&mut db, "alice");
    let (busy, quiet) = (register(&mut db, "bob"), register(&mut db, "carol"));
    let busy_room = create_room(&mut db, &sender, "fair/v1", &[&sender, &busy]);
    let quiet_room = create_room(&mut db, &sender, "fair/v1", &[&sender, &quiet]);
    for i in 0..500 {
        post(&mut db, &sender, &busy_room, &format!("m{i}"));
    }
    post(&mut db, &sender, &quiet_room, "hello");

    let batch = to_forward_among(&mut db, &[&busy, &quiet], 100);
    assert_eq!(forwarded_ids(&batch, &quiet), [1], "the quiet user's one is in the first page");
    let busy_ids = forwarded_ids(&batch, &busy);
    assert!(!busy_ids.is_empty() && busy_ids.len() < 100, "{}", busy_ids.len());
    assert_eq!(busy_ids, (1..=busy_ids.len() as i64).collect::<Vec<_>>(), "each user's in id order");
    assert!(batch.as_array().unwrap().len() <= 100);
    // Alone, a backlog still fills the batch.
    let alone = to_forward_among(&mut db, &[&busy], 100);
    assert_eq!(forwarded_ids(&alone, &busy), (1..=100).collect::<Vec<_>>());
}

#[test]
fn only_the_forwarder_sets_a_notification_aside_and_the_next_one_goes_on() {
    let mut db = connect();
    let sender = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let room = create_room(&mut db, &sender, "aside/v1", &[&sender, &bob]);
    for i in 0..3 {
        post(&mut db, &sender, &room, &format!("m{i}"));
    }
    let pending = "SELECT count(*) FROM hatchat.notifications \
                    WHERE user_id = $1::text::uuid AND forwarded_at IS NULL AND undeliverable_at IS NULL";
    let bob_id = bob.id.to_string();

    let mut app = app_connection();
    let refused = app.query_one("SELECT hatchat.mark_undeliverable($1, 1, 'nope')", &[&bob.id]);
    assert_eq!(sqlstate(refused), "42501");
    let listed = app.query_one("SELECT hatchat.undeliverable_notifications()", &[]);
    assert_eq!(sqlstate(listed), "42501");
    assert_eq!(count(&mut db, pending, &bob_id), 3, "nothing was set aside");

    let long_reason = format!("HTTP 400: {}", "x".repeat(2000));
    let marked: i32 = db
        .query_one("SELECT hatchat.mark_undeliverable($1, 1, $2)", &[&bob.id, &long_reason])
        .unwrap()
        .get(0);
    assert_eq!(marked, 1);
    let again: i32 =
        db.query_one("SELECT hatchat.mark_undeliverable($1, 1, 'again')", &[&bob.id]).unwrap().get(0);
    assert_eq!(again, 0, "set aside once");
    assert_eq!(count(&mut db, pending, &bob_id), 2);
    let batch = to_forward_among(&mut db, &[&bob], 100);
    assert_eq!(forwarded_ids(&batch, &bob), [2, 3], "the next ones go on, in order");

    let aside: Value = db.query_one("SELECT hatchat.undeliverable_notifications(1000)", &[]).unwrap().get(0);
    let mine: Vec<&Value> =
        aside.as_array().unwrap().iter().filter(|n| n["userId"] == json!(bob.id)).collect();
    assert_eq!(mine.len(), 1, "{aside}");
    assert_eq!(mine[0]["id"], json!(1));
    assert_eq!(mine[0]["body"]["data"]["message"], json!("m0"));
    let reason = mine[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("HTTP 400: xxx") && reason.chars().count() == 500, "{}", reason.len());
    assert!(mine[0]["at"].is_string());
    // Marking forwarded skips what was set aside, and the user's stream still shows it.
    let forwarded: i32 = db.query_one("SELECT hatchat.mark_forwarded($1, 3)", &[&bob.id]).unwrap().get(0);
    assert_eq!(forwarded, 2);
    assert_eq!(ids(&page(&mut db, &bob, 0, 50)), [1, 2, 3]);
    let bad = db.query_one("SELECT hatchat.undeliverable_notifications(0)", &[]);
    assert_eq!(sqlstate(bad), "22023");
}

#[test]
fn each_user_keeps_the_newest_notifications_without_renumbering() {
    let mut db = connect();
    db.batch_execute("SET hatchat.max_notifications = 5").unwrap();
    let sender = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let room = create_room(&mut db, &sender, "kept/v1", &[&sender, &bob]);
    for i in 1..=8 {
        post(&mut db, &sender, &room, &format!("m{i}"));
    }
    let kept = page(&mut db, &bob, 0, 50);
    assert_eq!(ids(&kept), [4, 5, 6, 7, 8]);
    let said: Vec<&str> = kept.iter().map(|n| n["data"]["message"].as_str().unwrap()).collect();
    assert_eq!(said, ["m4", "m5", "m6", "m7", "m8"]);
    let stored = count(
        &mut db,
        "SELECT count(*) FROM hatchat.notifications WHERE user_id = $1::text::uuid",
        &bob.id.to_string(),
    );
    assert_eq!(stored, 5, "the older ones are deleted, not hidden");
    // Paging goes on from any id, also one that was deleted.
    assert_eq!(ids(&page(&mut db, &bob, 2, 2)), [4, 5]);
    assert_eq!(ids(&page(&mut db, &bob, 5, 2)), [6, 7]);
    assert_eq!(ids(&page(&mut db, &bob, 7, 2)), [8]);
    assert_eq!(ids(&page(&mut db, &bob, 8, 2)), Vec::<i64>::new());
    post(&mut db, &sender, &room, "m9");
    assert_eq!(ids(&page(&mut db, &bob, 0, 50)), [5, 6, 7, 8, 9], "ids go on from the counter");
}

#[test]
fn purging_an_expired_room_deletes_its_notifications() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let carol = register(&mut db, "carol");
    let doomed = create_room(&mut db, &alice, "doomed/v1", &[&alice, &bob, &carol]);
    let kept = create_room(&mut db, &alice, "kept/v1", &[&alice, &bob]);
    post(&mut db, &alice, &doomed, "going");
    post(&mut db, &alice, &kept, "staying");
    post(&mut db, &alice, &doomed, "going too");
    db.execute(
        "UPDATE hatchat.channels SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&doomed],
    )
    .unwrap();

    let purged: i32 = db.query_one("SELECT hatchat.purge_expired()", &[]).unwrap().get(0);
    assert!(purged >= 1);
    let left = page(&mut db, &bob, 0, 50);
    assert_eq!(ids(&left), [2]);
    assert_eq!(left[0]["data"]["roomId"], json!(kept));
    let about_doomed =
        count(&mut db, "SELECT count(*) FROM hatchat.notifications WHERE channel_id = $1", &doomed);
    assert_eq!(about_doomed, 0);
    // Nothing about the purged room is left to forward: the user's next pending one is the kept one,
    // and a user who had nothing else no longer waits for forwarding.
    let batch = to_forward_among(&mut db, &[&bob, &carol], 100);
    assert_eq!(
        batch,
        json!([{"userId": bob.id, "id": 2, "body": left[0].as_object().unwrap().iter()
        .filter(|(k, _)| *k != "id" && *k != "createdAt").map(|(k, v)| (k.clone(), v.clone()))
        .collect::<serde_json::Map<_, _>>()}])
    );
    let waits =
        "SELECT count(*) FROM hatchat.inboxes WHERE user_id = $1::text::uuid AND pending_since IS NOT NULL";
    assert_eq!(count(&mut db, waits, &carol.id.to_string()), 0);
    assert_eq!(page(&mut db, &carol, 0, 50), Vec::<Value>::new());
}
