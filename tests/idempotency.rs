//! Idempotent sends: a send with a clientId that was already sent by the same sender to the same
//! channel stores nothing and answers what the first send answered — alone, in a batch, within one
//! batch, and when the sends race on several connections — and never leaves a gap in the seqs.

mod common;
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn send_with_id(db: &mut postgres::Client, from: &User, channel: &str, payload: Value, id: &str) -> Value {
    db.query_one("SELECT hatchat.send_message($1, $2, $3, $4)", &[&from.token(), &channel, &payload, &id])
        .expect("send_message with a clientId")
        .get(0)
}

fn batch(db: &mut postgres::Client, items: Value) -> Vec<Value> {
    let answer: Value = db.query_one("SELECT hatchat.send_messages($1)", &[&items]).unwrap().get(0);
    answer.as_array().unwrap().clone()
}

/// Messages stored with this clientId, read as the superuser.
fn stored_with(db: &mut postgres::Client, channel: &str, client_id: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND client_id = $2",
        &[&channel, &client_id],
    )
    .unwrap()
    .get(0)
}

fn last_seq(db: &mut postgres::Client, channel: &str) -> i64 {
    db.query_one("SELECT last_seq FROM hatchat.channels WHERE id = $1", &[&channel]).unwrap().get(0)
}

#[test]
fn a_retry_answers_the_first_send_stores_nothing_and_leaves_no_gap() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");

    let first = send_with_id(&mut db, &alice, &channel, json!({"n": 1}), "m-1");
    assert_eq!(first["seq"], json!(2), "after the join message");
    let again = send_with_id(&mut db, &alice, &channel, json!({"n": "changed"}), "m-1");
    assert_eq!(again, first, "same seq, createdAt, everything");
    let as_text: Value = db
        .query_one(
            "SELECT hatchat.send_message_text($1, $2, $3, client_id => $4)",
            &[&alice.token(), &channel, &"[1]", &"m-1"],
        )
        .unwrap()
        .get(0);
    assert_eq!(as_text, first, "send_message_text shares the ids");
    let in_batch = batch(
        &mut db,
        json!([{"token": alice.token(), "channelId": channel, "payload": 3, "clientId": "m-1"}]),
    );
    assert_eq!(in_batch, vec![first.clone()], "and so does a batch");

    assert_eq!(stored_with(&mut db, &channel, "m-1"), 1);
    let history = messages(&mut db, &alice, &channel);
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["payload"], json!({"n": 1}), "the first payload stays");
    assert_eq!(last_seq(&mut db, &channel), 2, "retries did not move the counter");
    let next = send(&mut db, &alice, &channel, json!("next")).unwrap();
    assert_eq!(next["seq"], json!(3), "no gap after retries");
}

#[test]
fn another_sender_or_channel_with_the_same_client_id_is_another_message() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let channel = create_channel(&mut db, &alice, "owner");
    let other = create_channel(&mut db, &alice, "owner");
    invite(&mut db, &alice, &channel, &bob).unwrap();

    let from_alice = send_with_id(&mut db, &alice, &channel, json!("a"), "same");
    let from_bob = send_with_id(&mut db, &bob, &channel, json!("b"), "same");
    let elsewhere = send_with_id(&mut db, &alice, &other, json!("c"), "same");
    assert_eq!(from_alice["seq"], json!(3));
    assert_eq!(from_bob["seq"], json!(4));
    assert_eq!(from_bob["fromUserId"], json!(bob.id));
    assert_eq!(elsewhere["seq"], json!(2));
    assert_eq!(stored_with(&mut db, &channel, "same"), 2);
    // Without a clientId nothing is deduplicated.
    send(&mut db, &alice, &channel, json!("x")).unwrap();
    send(&mut db, &alice, &channel, json!("x")).unwrap();
    assert_eq!(messages(&mut db, &alice, &channel).len(), 6);
}

#[test]
fn concurrent_retries_store_one_message_and_answer_alike() {
    const SENDERS: usize = 8;
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");

    // Hold the channel's counter row so every send queues on it, then let them all go at once.
    let mut holder = connect();
    let mut hold = holder.transaction().unwrap();
    hold.execute("SELECT 1 FROM hatchat.channels WHERE id = $1 FOR NO KEY UPDATE", &[&channel]).unwrap();
    let start = Arc::new(Barrier::new(SENDERS));
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let (alice, channel, start) = (alice.clone(), channel.clone(), Arc::clone(&start));
            thread::spawn(move || {
                let mut db = connect();
                let payload = json!({"try": i});
                start.wait();
                // Half send alone, half as one-item batches: both paths must agree.
                if i % 2 == 0 {
                    send_with_id(&mut db, &alice, &channel, payload, "race")
                } else {
                    let item = json!([{"token": alice.token(), "channelId": channel, "payload": payload, "clientId": "race"}]);
                    batch(&mut db, item).remove(0)
                }
            })
        })
        .collect();
    wait_for_lock_waiters(&mut db, SENDERS);
    hold.commit().unwrap();

    let answers: Vec<Value> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(answers.iter().all(|a| *a == answers[0]), "identical answers: {answers:?}");
    assert_eq!(answers[0]["seq"], json!(2));
    assert_eq!(stored_with(&mut db, &channel, "race"), 1, "exactly one stored");
    let next = send(&mut db, &alice, &channel, json!("after")).unwrap();
    assert_eq!(next["seq"], json!(3), "the next send gets last + 1: no seq gap");
}

/// Waits (with a deadline) until `n` backends wait on a lock: the racing sends are all queued.
fn wait_for_lock_waiters(db: &mut postgres::Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                   AND query LIKE '%send_message%' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting as usize >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {waiting} of {n} sends queued on the lock");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn repeats_within_one_batch_store_one_message_and_answer_alike() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let channel = create_channel(&mut db, &alice, "owner");
    invite(&mut db, &alice, &channel, &bob).unwrap();
    let item = |who: &User, payload: Value, id: &str| json!({"token": who.token(), "channelId": channel, "payload": payload, "clientId": id});
    let items = json!([
        item(&alice, json!(1), "x"),
        item(&alice, json!(2), "x"),
        item(&bob, json!(3), "x"),
        {"token": alice.token(), "channelId": channel, "payload": 4},
        item(&alice, json!(5), "y"),
        item(&bob, json!(6), "x"),
    ]);
    let answers = batch(&mut db, items.clone());
    let seqs: Vec<&Value> = answers.iter().map(|a| &a["seq"]).collect();
    assert_eq!(seqs, [&json!(3), &json!(3), &json!(4), &json!(5), &json!(6), &json!(4)]);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[2], answers[5]);
    let payloads: Vec<Value> =
        messages(&mut db, &alice, &channel).iter().skip(2).map(|m| m["payload"].clone()).collect();
    assert_eq!(payloads, [json!(1), json!(3), json!(4), json!(5)], "the first of each is stored");

    // The whole batch again: the clientIds answer as before; the item without one is new.
    let again = batch(&mut db, items);
    for index in [0, 1, 2, 4, 5] {
        assert_eq!(again[index], answers[index], "item {index}");
    }
    assert_eq!(again[3]["seq"], json!(7), "no gap: the retried ids took no seqs");
    assert_eq!(last_seq(&mut db, &channel), 7);
}

#[test]
fn client_ids_are_checked_and_a_bad_one_stores_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let long = "x".repeat(65);
    for bad in ["", long.as_str(), "line\nbreak", "nul\u{1}"] {
        let result = db.query_one(
            "SELECT hatchat.send_message($1, $2, $3, $4)",
            &[&alice.token(), &channel, &json!("p"), &bad],
        );
        let (message, _) = error_text(db.query_one(
            "SELECT hatchat.send_message($1, $2, $3, $4)",
            &[&alice.token(), &channel, &json!("p"), &bad],
        ));
        assert_eq!(sqlstate(result), "22023", "{bad:?}");
        assert!(message.starts_with("clientId must"), "{message}");
    }
    let answers = batch(
        &mut db,
        json!([
            {"token": alice.token(), "channelId": channel, "payload": 1, "clientId": 5},
            {"token": alice.token(), "channelId": channel, "payload": 1, "clientId": ""},
        ]),
    );
    assert_eq!(answers[0]["error"]["sqlstate"], json!("22023"));
    assert_eq!(answers[0]["error"]["message"], json!("clientId must be a string"));
    assert_eq!(answers[1]["error"]["sqlstate"], json!("22023"));
    assert_eq!(last_seq(&mut db, &channel), 1, "nothing stored: only the join message");
    let max = "é".repeat(64);
    assert_eq!(send_with_id(&mut db, &alice, &channel, json!("ok"), &max)["seq"], json!(2), "64 characters");
}

#[test]
fn a_muted_senders_retry_answers_as_before_with_no_seq() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    db.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&alice.id]).unwrap();
    let first = send_with_id(&mut db, &alice, &channel, json!("hush"), "m");
    let again = send_with_id(&mut db, &alice, &channel, json!("hush"), "m");
    assert_eq!(first, json!({"channelId": channel, "seq": null, "createdAt": null, "fromUserId": alice.id}));
    assert_eq!(again, first);
    assert_eq!(stored_with(&mut db, &channel, "m"), 0);
    assert_eq!(last_seq(&mut db, &channel), 1);
}
