//! Read positions and unread counts: `mark_read` never moves backwards, `unread` always equals a
//! count over the messages themselves (after random sends, batches, reads, capping, leaves and
//! joins by several users), strangers learn nothing, and read receipts follow each user's choice.

mod common;
use common::*;
use serde_json::{json, Value};

fn channel(db: &mut postgres::Client, reader: &User, id: &str) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.get_channel($1, $2)", &[&reader.token(), &id]).map(|r| r.get(0))
}

fn mark_read(db: &mut postgres::Client, reader: &User, id: &str, seq: i64) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.mark_read($1, $2, $3)", &[&reader.token(), &id, &seq]).map(|r| r.get(0))
}

fn listed(db: &mut postgres::Client, reader: &User, id: &str) -> Value {
    let all: Value = db.query_one("SELECT hatchat.list_channels($1)", &[&reader.token()]).unwrap().get(0);
    all.as_array().unwrap().iter().find(|c| c["id"] == json!(id)).cloned().expect("listed")
}

/// The definition of unread, counted over the messages (as the superuser).
fn brute_force_unread(db: &mut postgres::Client, id: &str, reader: &User, read_seq: i64) -> i64 {
    db.query_one(
        "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND seq > $2 \
            AND from_user_id <> $3 AND from_user_id <> '00000000-0000-0000-0000-000000000000'",
        &[&id, &read_seq, &reader.id],
    )
    .unwrap()
    .get(0)
}

fn is_member(db: &mut postgres::Client, id: &str, user: &User) -> bool {
    db.query_one(
        "SELECT EXISTS (SELECT 1 FROM hatchat.members WHERE channel_id = $1 AND user_id = $2)",
        &[&id, &user.id],
    )
    .unwrap()
    .get(0)
}

/// A small deterministic generator: the same seed, the same run.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn check_counts(db: &mut postgres::Client, id: &str, users: &[User], step: usize) {
    for user in users {
        if !is_member(db, id, user) {
            continue;
        }
        let seen = channel(db, user, id).unwrap();
        let read_seq = seen["readSeq"].as_i64().unwrap();
        let expected = brute_force_unread(db, id, user, read_seq);
        assert_eq!(seen["unread"], json!(expected), "step {step}, {} in {id}: {seen}", user.username);
        let row = listed(db, user, id);
        assert_eq!((&row["readSeq"], &row["unread"]), (&seen["readSeq"], &seen["unread"]), "list agrees");
        assert_eq!(row["lastSeq"], seen["lastSeq"]);
    }
}

#[test]
fn unread_counts_equal_a_count_of_the_messages_after_random_activity() {
    let mut db = connect();
    let owner = register(&mut db, "alice");
    let users: Vec<User> = std::iter::once(owner.clone())
        .chain(["bob", "carol", "dave"].iter().map(|k| register(&mut db, k)))
        .collect();
    // One channel keeps everything, one keeps the newest 6 (capping deletes unread messages).
    let plain = create_channel(&mut db, &owner, "self");
    let capped = channel_id("capped");
    db.execute(
        "SELECT hatchat.create_channel($1, $2, 'self', '{\"maxMessages\": 6}')",
        &[&owner.token(), &capped],
    )
    .unwrap();
    for user in &users[1..] {
        for id in [&plain, &capped] {
            invite(&mut db, user, id, user).unwrap();
        }
    }
    let mut rng = Lcg(17);
    for step in 0..300 {
        let id = if rng.below(2) == 0 { &plain } else { &capped };
        let user = &users[rng.below(users.len() as u64) as usize];
        let member = is_member(&mut db, id, user);
        match rng.below(10) {
            0..=3 if member => {
                send(&mut db, user, id, json!({"step": step})).unwrap();
            }
            4 if member => {
                // A batch from several members at once (one counter move, several senders).
                let items: Vec<Value> = users
                    .iter()
                    .filter(|u| is_member(&mut db, id, u))
                    .map(|u| json!({"token": u.token(), "channelId": id, "payload": step}))
                    .collect();
                db.execute("SELECT hatchat.send_messages($1)", &[&Value::from(items)]).unwrap();
            }
            5..=7 if member => {
                let last = channel(&mut db, user, id).unwrap()["lastSeq"].as_i64().unwrap();
                let to = rng.below(last as u64 + 3) as i64;
                mark_read(&mut db, user, id, to).unwrap();
            }
            8 if member && user.id != owner.id => {
                db.execute("SELECT hatchat.leave_channel($1, $2)", &[&user.token(), id]).unwrap();
            }
            _ if !member => {
                invite(&mut db, user, id, user).unwrap();
            }
            _ => {}
        }
        if step % 5 == 0 {
            check_counts(&mut db, &plain, &users, step);
            check_counts(&mut db, &capped, &users, step);
        }
    }
    check_counts(&mut db, &plain, &users, 300);
    check_counts(&mut db, &capped, &users, 300);
}

#[test]
fn a_read_position_never_moves_backwards_and_stops_at_the_last_seq() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = create_channel(&mut db, &alice, "owner");
    invite(&mut db, &alice, &id, &bob).unwrap();
    for n in 0..4 {
        send(&mut db, &alice, &id, json!(n)).unwrap();
    }
    send(&mut db, &bob, &id, json!("own")).unwrap();
    // seqs: 1 alice joined, 2 bob joined, 3..6 alice, 7 bob. Bob joined at seq 1.
    let seen = channel(&mut db, &bob, &id).unwrap();
    assert_eq!(
        (seen["lastSeq"].clone(), seen["readSeq"].clone(), seen["unread"].clone()),
        (json!(7), json!(1), json!(4))
    );

    assert_eq!(
        mark_read(&mut db, &bob, &id, 4).unwrap(),
        json!({"channelId": id, "lastSeq": 7, "readSeq": 4, "unread": 2})
    );
    let back = mark_read(&mut db, &bob, &id, 2).unwrap();
    assert_eq!(back["readSeq"], json!(4), "never backwards");
    assert_eq!(back["unread"], json!(2));
    let past = mark_read(&mut db, &bob, &id, 1_000).unwrap();
    assert_eq!(
        past,
        json!({"channelId": id, "lastSeq": 7, "readSeq": 7, "unread": 0}),
        "clamped to the last seq"
    );
    let alice_view = channel(&mut db, &alice, &id).unwrap();
    assert_eq!(alice_view["unread"], json!(1), "bob's message, not her own nor the joins");
    assert_eq!(alice_view["readSeq"], json!(0), "the creator joined an empty channel");
}

#[test]
fn strangers_and_bad_input_change_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let stranger = register(&mut db, "carol");
    let id = create_channel(&mut db, &alice, "owner");
    send(&mut db, &alice, &id, json!("hi")).unwrap();
    assert_eq!(sqlstate(mark_read(&mut db, &stranger, &id, 2)), "42501");
    assert_eq!(sqlstate(channel(&mut db, &stranger, &id)), "42501", "as get_channel");
    assert_eq!(sqlstate(mark_read(&mut db, &stranger, "no-such-channel", 2)), "P0002");
    assert_eq!(sqlstate(mark_read(&mut db, &alice, &id, -1)), "22023");
    let null_seq = db.query_one("SELECT hatchat.mark_read($1, $2, NULL)", &[&alice.token(), &id]);
    assert_eq!(sqlstate(null_seq), "22023");
    assert_eq!(sqlstate(mark_read(&mut db, &alice, "", 1)), "22023");
    let before: i64 = db
        .query_one(
            "SELECT read_seq FROM hatchat.members WHERE channel_id = $1 AND user_id = $2",
            &[&id, &alice.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(before, 0, "nothing moved");
    assert!(!listed_ids(&mut db, &stranger).contains(&id));
}

fn listed_ids(db: &mut postgres::Client, reader: &User) -> Vec<String> {
    let all: Value = db.query_one("SELECT hatchat.list_channels($1)", &[&reader.token()]).unwrap().get(0);
    all.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn members_see_each_others_read_positions_unless_turned_off() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let id = create_channel(&mut db, &alice, "owner");
    invite(&mut db, &alice, &id, &bob).unwrap();
    send(&mut db, &alice, &id, json!("hi")).unwrap();
    mark_read(&mut db, &bob, &id, 3).unwrap();
    let members =
        |db: &mut postgres::Client, reader: &User| channel(db, reader, &id).unwrap()["members"].clone();
    let expected = json!([
        {"id": alice.id, "username": alice.username, "readSeq": 0},
        {"id": bob.id, "username": bob.username, "readSeq": 3},
    ]);
    assert_eq!(members(&mut db, &alice), expected);

    let off: Value =
        db.query_one("SELECT hatchat.set_read_receipts($1, false)", &[&bob.token()]).unwrap().get(0);
    assert_eq!(off, json!({"userId": bob.id, "readReceipts": false}));
    assert_eq!(members(&mut db, &alice)[1]["readSeq"], Value::Null, "hidden from others");
    assert_eq!(members(&mut db, &bob)[1]["readSeq"], json!(3), "but not from bob himself");
    assert_eq!(channel(&mut db, &bob, &id).unwrap()["readSeq"], json!(3));

    db.execute("SELECT hatchat.set_read_receipts($1, true)", &[&bob.token()]).unwrap();
    assert_eq!(members(&mut db, &alice), expected);
    let no_flag = db.query_one("SELECT hatchat.set_read_receipts($1, NULL)", &[&bob.token()]);
    assert_eq!(sqlstate(no_flag), "22023");
}

#[test]
fn unread_counts_stay_exact_while_members_send_read_join_and_leave_at_once() {
    use std::sync::{Arc, Barrier};
    use std::thread;
    let mut db = connect();
    let owner = register(&mut db, "alice");
    let users: Vec<User> = std::iter::once(owner.clone())
        .chain(["bob", "carol", "dave"].iter().map(|k| register(&mut db, k)))
        .collect();
    let id = channel_id("busy");
    db.execute(
        "SELECT hatchat.create_channel($1, $2, 'self', '{\"maxMessages\": 10}')",
        &[&owner.token(), &id],
    )
    .unwrap();
    for user in &users[1..] {
        invite(&mut db, user, &id, user).unwrap();
    }
    let start = Arc::new(Barrier::new(users.len()));
    let workers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(index, user)| {
            let (user, id, start, owner) = (user.clone(), id.clone(), Arc::clone(&start), owner.id);
            thread::spawn(move || {
                let mut db = connect();
                let mut rng = Lcg(index as u64 + 1);
                start.wait();
                for step in 0..60 {
                    let member = is_member(&mut db, &id, &user);
                    match rng.below(6) {
                        _ if !member => drop(invite(&mut db, &user, &id, &user).unwrap()),
                        0..=2 => drop(send(&mut db, &user, &id, json!(step)).unwrap()),
                        3 | 4 => {
                            let to = rng.below(200) as i64;
                            mark_read(&mut db, &user, &id, to).unwrap();
                        }
                        _ if user.id != owner => {
                            db.execute("SELECT hatchat.leave_channel($1, $2)", &[&user.token(), &id])
                                .unwrap();
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    check_counts(&mut db, &id, &users, 60);
}
