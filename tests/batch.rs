//! `send_messages` (group commit) and its announcements: each item of a batch answers exactly as it
//! would alone, failed items store nothing, good items take consecutive seqs in item order; a batch
//! is announced once it commits, never before and never when it rolls back.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn batch(db: &mut postgres::Client, items: Value) -> Result<Vec<Value>, postgres::Error> {
    db.query_one("SELECT hatchat.send_messages($1)", &[&items])
        .map(|row| row.get::<_, Value>(0).as_array().unwrap().clone())
}

/// What the same item answers when sent alone: its result, or `{"error": {sqlstate, message}}`.
fn alone(db: &mut postgres::Client, item: &Value) -> Value {
    let result = db.query_one(
        "SELECT hatchat.send_message($1, $2, $3)",
        &[&item["token"].as_str(), &item["channelId"].as_str(), &item.get("payload")],
    );
    as_batch_answer(result)
}

#[test]
fn each_item_answers_as_it_would_alone_and_failures_store_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let stranger = register(&mut db, "carol");
    let first = create_channel(&mut db, &alice, "owner");
    let second = create_channel(&mut db, &bob, "owner");
    invite(&mut db, &alice, &first, &bob).unwrap();
    db.batch_execute("SET hatchat.max_payload_bytes = 200").unwrap();

    let expired = alice.token_expiring_in(-5);
    let items = json!([
        {"token": alice.token(), "channelId": first, "payload": {"n": 1}},
        {"token": "Bearer not.a.token", "channelId": first, "payload": {"n": "bad token"}},
        {"token": format!("Bearer {expired}"), "channelId": first, "payload": {"n": "expired"}},
        {"token": bob.token(), "channelId": second, "payload": {"n": 2}},
        {"token": stranger.token(), "channelId": first, "payload": {"n": "stranger"}},
        {"token": bob.token(), "channelId": first, "payload": {"n": 3}},
        {"token": alice.token(), "channelId": "no-such-channel", "payload": {"n": "missing"}},
        {"token": alice.token(), "channelId": first, "payload": "x".repeat(300)},
        {"token": alice.token(), "channelId": first},
        {"token": alice.token(), "channelId": first, "payload": null},
        "not an object",
    ]);
    let answers = batch(&mut db, items.clone()).unwrap();
    assert_eq!(answers.len(), 11);

    let good: Vec<i64> = [0, 5, 9].iter().map(|&i| answers[i]["seq"].as_i64().unwrap()).collect();
    assert_eq!(good, vec![3, 4, 5], "consecutive seqs, in item order, after the two join messages");
    assert_eq!(answers[3]["seq"], json!(2), "the other channel has its own counter");
    assert_eq!(answers[0]["channelId"], json!(first));
    assert_eq!(answers[5]["fromUserId"], json!(bob.id));
    let codes: Vec<&str> = answers.iter().map(|a| a["error"]["sqlstate"].as_str().unwrap_or("ok")).collect();
    assert_eq!(
        codes,
        ["ok", "28000", "28000", "ok", "42501", "ok", "P0002", "54000", "22023", "ok", "22023"]
    );

    // The failed items, sent alone now, answer the same (and still store nothing).
    for index in [1, 2, 4, 6, 7, 8] {
        assert_eq!(answers[index], alone(&mut db, &items[index]), "item {index}");
    }
    let stored = messages(&mut db, &alice, &first);
    let payloads: Vec<&Value> = stored.iter().skip(2).map(|m| &m["payload"]).collect();
    assert_eq!(payloads, vec![&json!({"n": 1}), &json!({"n": 3}), &Value::Null]);
    let created: Vec<&str> = stored.iter().map(|m| m["createdAt"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] < w[1]), "createdAt strictly increases: {created:?}");
    let answered: Vec<&Value> = [0, 5, 9].iter().map(|&i| &answers[i]["createdAt"]).collect();
    let kept: Vec<&Value> = stored[2..].iter().map(|m| &m["createdAt"]).collect();
    assert_eq!(answered, kept, "each answer names the stored message");
}

#[test]
fn the_batch_itself_must_be_an_array_of_bounded_size() {
    let mut db = connect();
    for bad in [json!({"token": "x"}), json!("items"), json!(null)] {
        assert_eq!(sqlstate(batch(&mut db, bad)), "22023");
    }
    let null = db.query_one("SELECT hatchat.send_messages(NULL)", &[]);
    assert_eq!(sqlstate(null), "22023");
    let too_many = Value::Array(vec![json!({}); 1001]);
    assert_eq!(sqlstate(batch(&mut db, too_many)), "22023");
    assert_eq!(batch(&mut db, json!([])).unwrap(), Vec::<Value>::new());
}

#[test]
fn single_and_batched_sends_and_joins_are_announced() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let mut listener = connect();
    listener.batch_execute("LISTEN hatchat").unwrap();
    let wait = Duration::from_millis(2000);

    send(&mut db, &alice, &channel, json!(1)).unwrap();
    assert!(heard(&mut listener, &channel, wait));
    batch(&mut db, json!([{"token": alice.token(), "channelId": channel, "payload": 2}])).unwrap();
    assert!(heard(&mut listener, &channel, wait));
    let bob = register(&mut db, "bob");
    invite(&mut db, &alice, &channel, &bob).unwrap();
    assert!(heard(&mut listener, &channel, wait));
}

#[test]
fn a_batch_inside_a_larger_transaction_notifies_only_on_commit() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let mut listener = connect();
    listener.batch_execute("LISTEN hatchat").unwrap();
    let wait = Duration::from_millis(400);
    // The announcer may still be announcing the channel's creation.
    while heard(&mut listener, &channel, Duration::from_millis(300)) {}
    let items = json!([
        {"token": alice.token(), "channelId": channel, "payload": "a"},
        {"token": alice.token(), "channelId": channel, "payload": "b"},
    ]);
    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_messages($1)", &[&items]).unwrap();
    assert!(!heard(&mut listener, &channel, wait), "nothing before commit");
    tx.rollback().unwrap();
    assert!(!heard(&mut listener, &channel, wait), "nothing for a rollback");
    assert_eq!(messages(&mut db, &alice, &channel).len(), 1, "the rolled-back batch left nothing");

    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_messages($1)", &[&items]).unwrap();
    tx.commit().unwrap();
    assert!(heard(&mut listener, &channel, Duration::from_millis(2000)));
}
