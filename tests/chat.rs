//! Chat features through SQL: idempotent sends (alone, racing, in a batch), read positions and
//! unread counts (checked against a brute-force count), and edits, deletes and reactions as
//! ordered events (author rules, erasure in the table itself, folded windows equal to replaying).

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn send_with_id(
    db: &mut postgres::Client,
    from: &User,
    channel: &str,
    payload: Value,
    client_id: &str,
) -> Result<Value, postgres::Error> {
    db.query_one(
        "SELECT hatchat.send_message($1, $2, $3, $4)",
        &[&from.token(), &channel, &payload, &client_id],
    )
    .map(|row| row.get(0))
}

fn call(
    db: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Value, postgres::Error> {
    db.query_one(sql, params).map(|row| row.get(0))
}

fn stored_rows(db: &mut postgres::Client, channel: &str) -> i64 {
    count(db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1", channel)
}

fn channel_state(db: &mut postgres::Client, user: &User, channel: &str) -> Value {
    call(db, "SELECT hatchat.get_channel($1, $2)", &[&user.token(), &channel]).unwrap()
}

/// A channel owned by alice, with `others` members besides her.
fn room_of(db: &mut postgres::Client, others: usize) -> (String, Vec<User>) {
    let alice = register(db, "alice");
    let id = create_channel(db, &alice, "owner");
    let mut users = vec![alice.clone()];
    for key in ["bob", "carol", "alice", "bob", "carol"].iter().take(others) {
        let user = register(db, key);
        invite(db, &alice, &id, &user).unwrap();
        users.push(user);
    }
    (id, users)
}

/// Waits until some other backend waits on a lock (the racing retry has reached the counter lock).
fn until_someone_waits_on_a_lock(db: &mut postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if lock_waiters(db, "") > 0 {
            return;
        }
        std::thread::yield_now();
    }
    panic!("the retry never waited for the first send's lock");
}

#[test]
fn a_retry_racing_the_first_send_waits_for_it_and_gets_its_answer() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 1);
    let bob = users[1].clone();
    let before = stored_rows(&mut db, &id);
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let answer: Value = tx
        .query_one(
            "SELECT hatchat.send_message($1, $2, $3, 'retry-1')",
            &[&bob.token(), &id, &json!({"t": 1})],
        )
        .unwrap()
        .get(0);
    let (channel, retrier) = (id.clone(), bob.clone());
    let retry = std::thread::spawn(move || {
        send_with_id(&mut connect(), &retrier, &channel, json!({"t": 1}), "retry-1").unwrap()
    });
    until_someone_waits_on_a_lock(&mut db);
    tx.commit().unwrap();
    assert_eq!(retry.join().unwrap(), answer, "the retry answers the first send's answer");
    assert_eq!(stored_rows(&mut db, &id), before + 1, "one message stored");
    let later = send_with_id(&mut db, &bob, &id, json!({"other": "payload"}), "retry-1").unwrap();
    assert_eq!(later, answer, "a later retry too, whatever its payload");
    assert_eq!(stored_rows(&mut db, &id), before + 1);
    let listed = messages(&mut db, &bob, &id);
    assert_eq!(listed.last().unwrap()["clientId"], json!("retry-1"));
    assert_eq!(listed.last().unwrap()["payload"], json!({"t": 1}));
}

#[test]
fn concurrent_retries_store_one_message_and_answer_identically() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 1);
    let bob = users[1].clone();
    let before = stored_rows(&mut db, &id);
    let start = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (start, channel, bob) = (Arc::clone(&start), id.clone(), bob.clone());
            std::thread::spawn(move || {
                let mut db = connect();
                start.wait();
                if i % 2 == 0 {
                    send_with_id(&mut db, &bob, &channel, json!({"n": 1}), "same").unwrap()
                } else {
                    let item = json!([{"token": bob.token(), "channelId": channel, "payload": {"n": 1}, "clientId": "same"}]);
                    let answers: Value = db.query_one("SELECT hatchat.send_messages($1)", &[&item]).unwrap().get(0);
                    answers[0].clone()
                }
            })
        })
        .collect();
    let answers: Vec<Value> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert!(answers[0]["seq"].is_i64(), "{}", answers[0]);
    assert_eq!(stored_rows(&mut db, &id), before + 1);
}

#[test]
fn a_batch_answers_repeats_with_the_first_answer() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 2);
    let (bob, carol) = (&users[1], &users[2]);
    let alone = send_with_id(&mut db, bob, &id, json!("first"), "a").unwrap();
    let items = json!([
        {"token": bob.token(), "channelId": id, "payload": "again", "clientId": "a"},
        {"token": bob.token(), "channelId": id, "payload": "b1", "clientId": "b"},
        {"token": carol.token(), "channelId": id, "payload": "carol's b", "clientId": "b"},
        {"token": bob.token(), "channelId": id, "payload": "b2", "clientId": "b"},
        {"token": bob.token(), "channelId": id, "payload": "no id"},
        {"token": bob.token(), "channelId": id, "payload": "bad id", "clientId": ""},
        {"token": bob.token(), "channelId": id, "payload": "bad id", "clientId": 7},
    ]);
    let before = stored_rows(&mut db, &id);
    let answers: Value = db.query_one("SELECT hatchat.send_messages($1)", &[&items]).unwrap().get(0);
    assert_eq!(answers[0], alone, "sent before, alone");
    assert_eq!(answers[3], answers[1], "a repeat within the batch");
    assert_ne!(answers[2]["seq"], answers[1]["seq"], "client ids are per sender");
    assert_eq!(answers[4]["seq"].as_i64().unwrap(), answers[2]["seq"].as_i64().unwrap() + 1);
    assert_eq!(answers[5]["error"]["sqlstate"], json!("22023"));
    assert_eq!(answers[6]["error"]["sqlstate"], json!("22023"));
    assert_eq!(stored_rows(&mut db, &id), before + 3);
    let too_long = "x".repeat(65);
    assert_eq!(sqlstate(send_with_id(&mut db, bob, &id, json!(1), &too_long)), "22023");
    assert_eq!(sqlstate(send_with_id(&mut db, bob, &id, json!(1), "a\nb")), "22023");
    assert_eq!(stored_rows(&mut db, &id), before + 3);
}

fn mark_read(
    db: &mut postgres::Client,
    user: &User,
    channel: &str,
    seq: i64,
) -> Result<Value, postgres::Error> {
    call(db, "SELECT hatchat.mark_read($1, $2, $3)", &[&user.token(), &channel, &seq])
}

/// Unread by definition, from the table: messages after the read position, not the user's own,
/// not system messages, not events, not deleted.
fn brute_unread(db: &mut postgres::Client, user: &User, channel: &str, read_seq: i64) -> i64 {
    db.query_one(
        "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND seq > $2 AND kind IS NULL \
           AND from_user_id NOT IN ($3, '00000000-0000-0000-0000-000000000000') AND NOT deleted",
        &[&channel, &read_seq, &user.id],
    )
    .unwrap()
    .get(0)
}

/// A small deterministic generator (no dependency): the same run every time.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[test]
fn unread_counts_match_a_brute_force_count_after_random_sends_reads_and_deletes() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 3);
    let mut rng = Lcg(17);
    let mut mine: Vec<(usize, i64)> = Vec::new();
    for step in 0..120 {
        let who = rng.below(users.len());
        let user = &users[who];
        match rng.below(10) {
            0..=4 => {
                let sent = send(&mut db, user, &id, json!({"step": step})).unwrap();
                mine.push((who, sent["seq"].as_i64().unwrap()));
            }
            5..=6 => {
                let last = channel_state(&mut db, user, &id)["lastSeq"].as_i64().unwrap();
                mark_read(&mut db, user, &id, rng.below(last as usize + 1) as i64).unwrap();
            }
            7 if !mine.is_empty() => {
                let (author, seq) = mine.remove(rng.below(mine.len()));
                let deleter = if rng.below(2) == 0 { author } else { 0 };
                call(
                    &mut db,
                    "SELECT hatchat.delete_message($1, $2, $3)",
                    &[&users[deleter].token(), &id, &seq],
                )
                .unwrap();
            }
            8 if !mine.is_empty() => {
                let (_, seq) = mine[rng.below(mine.len())];
                let _ = call(&mut db, "SELECT hatchat.react($1, $2, $3, '+1')", &[&user.token(), &id, &seq]);
            }
            _ => {
                let state = channel_state(&mut db, user, &id);
                mark_read(&mut db, user, &id, state["lastSeq"].as_i64().unwrap()).unwrap();
            }
        }
        let listed: Value =
            call(&mut db, "SELECT hatchat.list_channels($1)", &[&users[(who + 1) % users.len()].token()])
                .unwrap();
        let in_list = listed.as_array().unwrap().iter().find(|c| c["id"] == json!(id)).unwrap().clone();
        for (i, member) in users.iter().enumerate() {
            let state = channel_state(&mut db, member, &id);
            let read_seq = state["readSeq"].as_i64().unwrap();
            let expected = brute_unread(&mut db, member, &id, read_seq);
            assert_eq!(state["unread"], json!(expected), "step {step}, member {i}: {state}");
            if i == (who + 1) % users.len() {
                assert_eq!(in_list["unread"], json!(expected), "list_channels agrees");
            }
        }
    }
}

#[test]
fn read_positions_move_forward_only_and_are_receipts_unless_turned_off() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 1);
    let (alice, bob) = (&users[0], &users[1]);
    for i in 0..3 {
        send(&mut db, alice, &id, json!(i)).unwrap();
    }
    let state = channel_state(&mut db, bob, &id);
    assert_eq!(
        (state["lastSeq"].clone(), state["readSeq"].clone(), state["unread"].clone()),
        (json!(5), json!(0), json!(3))
    );
    let marked = mark_read(&mut db, bob, &id, 4).unwrap();
    assert_eq!(marked, json!({"channelId": id, "lastSeq": 5, "readSeq": 4, "unread": 1}));
    let back = mark_read(&mut db, bob, &id, 2).unwrap();
    assert_eq!(back["readSeq"], json!(4), "never backwards");
    assert_eq!(sqlstate(mark_read(&mut db, bob, &id, 6)), "22023");
    assert_eq!(sqlstate(mark_read(&mut db, bob, &id, -1)), "22023");
    let stranger = register(&mut db, "carol");
    assert_eq!(sqlstate(mark_read(&mut db, &stranger, &id, 1)), "42501");
    send(&mut db, bob, &id, json!("mine")).unwrap();
    assert_eq!(channel_state(&mut db, bob, &id)["readSeq"], json!(6), "posting marks read");

    let receipts = |db: &mut postgres::Client, viewer: &User| -> Value {
        let state = channel_state(db, viewer, &id);
        let receipts = state["readReceipts"].as_array().unwrap();
        receipts.iter().find(|m| m["userId"] == json!(bob.id)).map_or(Value::Null, |m| m["readSeq"].clone())
    };
    assert_eq!(receipts(&mut db, alice), json!(6));
    let off = call(&mut db, "SELECT hatchat.set_read_receipts($1, false)", &[&bob.token()]).unwrap();
    assert_eq!(off, json!({"userId": bob.id, "readReceipts": false}));
    assert_eq!(receipts(&mut db, alice), Value::Null, "hidden from others");
    assert_eq!(receipts(&mut db, bob), json!(6), "still shown to themselves");
    let other = call(&mut db, "SELECT hatchat.set_read_receipts($1, true, $2)", &[&bob.token(), &alice.id]);
    assert_eq!(sqlstate(other), "42501");
}

fn edit(
    db: &mut postgres::Client,
    user: &User,
    channel: &str,
    seq: i64,
    payload: Value,
) -> Result<Value, postgres::Error> {
    call(db, "SELECT hatchat.edit_message($1, $2, $3, $4)", &[&user.token(), &channel, &seq, &payload])
}

fn delete(db: &mut postgres::Client, user: &User, channel: &str, seq: i64) -> Result<Value, postgres::Error> {
    call(db, "SELECT hatchat.delete_message($1, $2, $3)", &[&user.token(), &channel, &seq])
}

fn react(
    db: &mut postgres::Client,
    user: &User,
    channel: &str,
    seq: i64,
    reaction: &str,
    add: bool,
) -> Result<Value, postgres::Error> {
    let sql =
        if add { "SELECT hatchat.react($1, $2, $3, $4)" } else { "SELECT hatchat.unreact($1, $2, $3, $4)" };
    call(db, sql, &[&user.token(), &channel, &seq, &reaction])
}

fn row_state(db: &mut postgres::Client, channel: &str) -> Vec<(i64, String)> {
    db.query(
        "SELECT seq, payload::text FROM hatchat.messages WHERE channel_id = $1 ORDER BY seq",
        &[&channel],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn edits_are_for_authors_and_arrive_as_ordered_events() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 2);
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let seq = send(&mut db, bob, &id, json!({"text": "helo"})).unwrap()["seq"].as_i64().unwrap();
    let before = row_state(&mut db, &id);
    assert_eq!(sqlstate(edit(&mut db, carol, &id, seq, json!("mine now"))), "42501", "not the author");
    assert_eq!(sqlstate(edit(&mut db, alice, &id, seq, json!("owner"))), "42501", "not even the owner");
    assert_eq!(sqlstate(edit(&mut db, bob, &id, 1, json!("join"))), "22023", "a system message");
    assert_eq!(sqlstate(edit(&mut db, bob, &id, 999, json!("x"))), "P0002");
    assert_eq!(sqlstate(edit(&mut db, bob, &id, 0, json!("x"))), "22023");
    assert_eq!(row_state(&mut db, &id), before, "nothing changed");

    let edited = edit(&mut db, bob, &id, seq, json!({"text": "hello"})).unwrap();
    assert_eq!(edited["seq"], json!(seq + 1));
    assert_eq!(sqlstate(edit(&mut db, bob, &id, seq + 1, json!("x"))), "22023", "an event");
    let reacted = react(&mut db, carol, &id, seq, "👍", true).unwrap();
    let events: Vec<Value> =
        messages(&mut db, alice, &id).into_iter().filter(|m| m["seq"].as_i64() > Some(seq)).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0]["event"].clone(), events[0]["target"].clone(), events[0]["payload"].clone()),
        (json!("edit"), json!(seq), json!({"text": "hello"}))
    );
    assert_eq!(events[1]["seq"], reacted["seq"]);
    assert_eq!(
        (events[1]["event"].clone(), events[1]["payload"].clone()),
        (json!("reaction"), json!({"reaction": "👍", "action": "add"}))
    );

    // A payload that looks like an event is a plain message.
    let fake =
        send(&mut db, carol, &id, json!({"event": "edit", "target": seq, "payload": "pwned"})).unwrap();
    let stored = messages(&mut db, alice, &id).into_iter().find(|m| m["seq"] == fake["seq"]).unwrap();
    assert!(stored.get("event").is_none() && stored.get("target").is_none(), "{stored}");
    let folded: Value = call(
        &mut db,
        "SELECT hatchat.get_messages($1, $2, row_limit => 100, fold => true)",
        &[&alice.token(), &id],
    )
    .unwrap();
    let original = folded.as_array().unwrap().iter().find(|m| m["seq"] == json!(seq)).unwrap().clone();
    assert_eq!(original["payload"], json!({"text": "hello"}), "only the real edit applies");
}

#[test]
fn reactions_are_one_of_each_per_user_and_bounded() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 1);
    let (alice, bob) = (&users[0], &users[1]);
    let seq = send(&mut db, bob, &id, json!("hi")).unwrap()["seq"].as_i64().unwrap();
    react(&mut db, alice, &id, seq, "❤", true).unwrap();
    let last = channel_state(&mut db, alice, &id)["lastSeq"].clone();
    assert_eq!(sqlstate(react(&mut db, alice, &id, seq, "❤", true)), "23505");
    assert_eq!(sqlstate(react(&mut db, alice, &id, seq, "👍", false)), "P0002");
    assert_eq!(sqlstate(react(&mut db, alice, &id, seq, &"x".repeat(65), true)), "22023");
    assert_eq!(sqlstate(react(&mut db, alice, &id, seq, "", true)), "22023");
    assert_eq!(sqlstate(react(&mut db, alice, &id, seq, "a\u{7}", true)), "22023");
    let stranger = register(&mut db, "carol");
    assert_eq!(sqlstate(react(&mut db, &stranger, &id, seq, "👍", true)), "42501");
    assert_eq!(channel_state(&mut db, alice, &id)["lastSeq"], last, "no event for a refused reaction");
    react(&mut db, alice, &id, seq, "❤", false).unwrap();
    react(&mut db, alice, &id, seq, "❤", true).unwrap();
}

#[test]
fn a_delete_erases_the_payload_and_its_edits_from_the_table() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 2);
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let seq = send(&mut db, bob, &id, json!({"text": "secret one"})).unwrap()["seq"].as_i64().unwrap();
    edit(&mut db, bob, &id, seq, json!({"text": "secret two"})).unwrap();
    react(&mut db, carol, &id, seq, "👀", true).unwrap();
    let before = row_state(&mut db, &id);
    // Even through a connection whose role is an admin (the suites' superuser): the token decides.
    assert_eq!(sqlstate(delete(&mut db, carol, &id, seq)), "42501", "a member who is not the author");
    assert_eq!(row_state(&mut db, &id), before);
    let secrets = |db: &mut postgres::Client| {
        count(
            db,
            "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND payload::text LIKE '%secret%'",
            &id,
        )
    };
    assert_eq!(secrets(&mut db), 2);
    let deleted = delete(&mut db, bob, &id, seq).unwrap();
    assert_eq!(secrets(&mut db), 0, "erased from storage, edits too");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.reactions WHERE channel_id = $1", &id), 0);
    assert_eq!(sqlstate(delete(&mut db, bob, &id, seq)), "P0002", "already deleted");
    assert_eq!(sqlstate(edit(&mut db, bob, &id, seq, json!("back"))), "P0002");
    assert_eq!(
        sqlstate(delete(&mut db, alice, &id, deleted["seq"].as_i64().unwrap())),
        "22023",
        "a delete event"
    );
    let event = messages(&mut db, alice, &id).pop().unwrap();
    assert_eq!(
        (event["event"].clone(), event["target"].clone(), event["payload"].clone()),
        (json!("delete"), json!(seq), Value::Null)
    );
    // The owner may delete anyone's message.
    let other = send(&mut db, carol, &id, json!("rude")).unwrap()["seq"].as_i64().unwrap();
    delete(&mut db, alice, &id, other).unwrap();
}

#[test]
fn retried_edits_reactions_and_deletes_with_a_client_id_apply_once() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 1);
    let (alice, bob) = (&users[0], &users[1]);
    let seq = send(&mut db, bob, &id, json!("helo")).unwrap()["seq"].as_i64().unwrap();
    let retried = |db: &mut postgres::Client, sql: &str, user: &User, extra: &str, client_id: &str| {
        let payload = json!(extra);
        let args: Vec<&(dyn postgres::types::ToSql + Sync)> = if sql.contains("edit_message") {
            vec![&payload]
        } else if sql.contains("react") {
            vec![&extra]
        } else {
            vec![]
        };
        let token = user.token();
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&token, &id, &seq];
        params.extend(args);
        params.push(&client_id);
        call(db, sql, &params)
    };
    const EDIT: &str = "SELECT hatchat.edit_message($1, $2, $3, $4, client_id => $5)";
    const REACT: &str = "SELECT hatchat.react($1, $2, $3, $4, $5)";
    const UNREACT: &str = "SELECT hatchat.unreact($1, $2, $3, $4, $5)";
    const DELETE: &str = "SELECT hatchat.delete_message($1, $2, $3, $4)";

    for (sql, user, extra, client_id) in
        [(EDIT, bob, "hello", "e1"), (REACT, alice, "👍", "r1"), (UNREACT, alice, "👍", "u1")]
    {
        let first = retried(&mut db, sql, user, extra, client_id).unwrap();
        let rows = stored_rows(&mut db, &id);
        let again = retried(&mut db, sql, user, extra, client_id).unwrap();
        assert_eq!(again, first, "{sql}: the retry answers the first answer");
        assert_eq!(stored_rows(&mut db, &id), rows, "{sql}: and appends nothing");
        let stored = messages(&mut db, bob, &id).into_iter().find(|m| m["seq"] == first["seq"]).unwrap();
        assert_eq!(stored["clientId"], json!(client_id), "{sql}: the event row keeps the id");
    }
    let edits =
        count(&mut db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND kind = 'edit'", &id);
    assert_eq!(edits, 1, "one edit, applied once");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.reactions WHERE channel_id = $1", &id), 0);
    // The id names one request: used for another kind or target, or by a send, it is 409.
    assert_eq!(sqlstate(retried(&mut db, REACT, bob, "👍", "e1")), "23505", "the id of an edit");
    send_with_id(&mut db, bob, &id, json!("x"), "s1").unwrap();
    assert_eq!(sqlstate(retried(&mut db, EDIT, bob, "again", "s1")), "23505", "the id of a send");
    assert_eq!(sqlstate(retried(&mut db, EDIT, bob, "hi", "")), "22023", "an empty client id");
    // Ids are per user: alice's "e1" is her own.
    retried(&mut db, REACT, alice, "❤", "e1").unwrap();

    let deleted = retried(&mut db, DELETE, bob, "", "d1").unwrap();
    let again = retried(&mut db, DELETE, bob, "", "d1").unwrap();
    assert_eq!(again, deleted, "a retried delete answers the first answer, not 404");
    assert_eq!(sqlstate(delete(&mut db, bob, &id, seq)), "P0002", "without the id it is deleted");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND kind = 'delete'",
            &id
        ),
        1
    );
}

/// What a client following the channel builds by replaying every row in order.
fn replay(all: &[Value]) -> Vec<Value> {
    let mut state: BTreeMap<i64, Value> = BTreeMap::new();
    for m in all {
        let target = m["target"].as_i64().unwrap_or(0);
        match m["event"].as_str() {
            None => {
                let mut folded = m.clone();
                folded["edited"] = json!(false);
                folded["deleted"] = json!(false);
                folded["reactions"] = json!({});
                state.insert(m["seq"].as_i64().unwrap(), folded);
            }
            Some(kind) => {
                let Some(t) = state.get_mut(&target) else { continue };
                match kind {
                    "edit" => {
                        t["payload"] = m["payload"].clone();
                        t["edited"] = json!(true);
                    }
                    "delete" => {
                        t["payload"] = Value::Null;
                        t["deleted"] = json!(true);
                        t["reactions"] = json!({});
                    }
                    _ => {
                        let reaction = m["payload"]["reaction"].as_str().unwrap().to_string();
                        let n = t["reactions"][&reaction].as_i64().unwrap_or(0);
                        let n = if m["payload"]["action"] == json!("add") { n + 1 } else { n - 1 };
                        let reactions = t["reactions"].as_object_mut().unwrap();
                        if n == 0 {
                            reactions.remove(&reaction);
                        } else {
                            reactions.insert(reaction, json!(n));
                        }
                    }
                }
            }
        }
    }
    state.into_values().collect()
}

#[test]
fn folded_windows_equal_replaying_the_events() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 3);
    let mut rng = Lcg(5);
    let mut seqs: Vec<(usize, i64)> = Vec::new();
    for step in 0..80 {
        let who = rng.below(users.len());
        match rng.below(8) {
            0..=2 => {
                let seq =
                    send(&mut db, &users[who], &id, json!({"step": step})).unwrap()["seq"].as_i64().unwrap();
                seqs.push((who, seq));
            }
            3 if !seqs.is_empty() => {
                let (author, seq) = seqs[rng.below(seqs.len())];
                let _ = edit(&mut db, &users[author], &id, seq, json!({"edited": step}));
            }
            4 if !seqs.is_empty() => {
                let (author, seq) = seqs.remove(rng.below(seqs.len()));
                delete(&mut db, &users[author], &id, seq).unwrap();
            }
            _ if !seqs.is_empty() => {
                let (_, seq) = seqs[rng.below(seqs.len())];
                let reaction = ["👍", "❤", "😂"][rng.below(3)];
                let add = rng.below(3) > 0;
                let _ = react(&mut db, &users[who], &id, seq, reaction, add);
            }
            _ => {}
        }
    }
    let reader = &users[1];
    let all = messages(&mut db, reader, &id);
    let folded: Value = call(
        &mut db,
        "SELECT hatchat.get_messages($1, $2, row_limit => 1000, fold => true)",
        &[&reader.token(), &id],
    )
    .unwrap();
    assert_eq!(folded.as_array().unwrap(), &replay(&all));
    // Paged by seq, the same.
    let page: Value = call(
        &mut db,
        "SELECT hatchat.get_messages($1, $2, row_limit => 5, after_seq => 10, fold => true)",
        &[&reader.token(), &id],
    )
    .unwrap();
    let expected: Vec<Value> =
        replay(&all).into_iter().filter(|m| m["seq"].as_i64() > Some(10)).take(5).collect();
    assert_eq!(page.as_array().unwrap(), &expected);
}

#[test]
fn a_channel_made_again_under_a_deleted_ones_id_inherits_no_reactions() {
    let mut db = connect();
    let (id, users) = room_of(&mut db, 0);
    let alice = &users[0];
    let seq = send(&mut db, alice, &id, json!("old")).unwrap()["seq"].as_i64().unwrap();
    react(&mut db, alice, &id, seq, "🔥", true).unwrap();
    db.query_one("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &id]).unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.reactions WHERE channel_id = $1", &id), 0);
    db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &id]).unwrap();
    assert_eq!(send(&mut db, alice, &id, json!("new")).unwrap()["seq"], json!(seq));
    let folded: Value =
        call(&mut db, "SELECT hatchat.get_messages($1, $2, fold => true)", &[&alice.token(), &id]).unwrap();
    assert_eq!(folded[1]["reactions"], json!({}), "{folded}");
}
