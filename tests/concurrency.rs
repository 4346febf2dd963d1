//! Ordering under real concurrency: several connections send to one channel, some holding their
//! transactions open so commits happen out of start order, while readers page with `since` and
//! with `after_seq`. Every reader must see every message exactly once, in seq order, no gaps.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const WRITERS: usize = 6;
const PER_WRITER: usize = 40;

#[derive(Clone, Copy)]
enum Cursor {
    Since,
    AfterSeq,
}

/// Pages through the channel until `expected` messages were seen (or a deadline passes).
fn read_everything(reader: User, channel: String, cursor: Cursor, expected: usize) -> Vec<Value> {
    let mut db = connect();
    let mut seen = Vec::new();
    let mut since = "-infinity".to_string();
    let mut after_seq: Option<i64> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < expected {
        assert!(Instant::now() < deadline, "reader saw only {} of {expected}", seen.len());
        let page: Value = db
            .query_one(
                "SELECT hatchat.get_messages($1, $2, $3, 'infinity', 7, $4)",
                &[&reader.token(), &channel, &since, &after_seq],
            )
            .unwrap()
            .get(0);
        let page = page.as_array().unwrap();
        if page.is_empty() {
            thread::sleep(Duration::from_millis(2));
        }
        for message in page {
            match cursor {
                Cursor::Since => since = message["createdAt"].as_str().unwrap().to_string(),
                Cursor::AfterSeq => after_seq = message["seq"].as_i64(),
            }
            seen.push(message.clone());
        }
    }
    seen
}

fn write(writer: User, channel: String, index: usize, start: Arc<Barrier>) {
    let mut db = connect();
    start.wait();
    for i in 0..PER_WRITER {
        let payload = json!({"writer": index, "i": i});
        if (index + i).is_multiple_of(3) {
            // Hold the transaction (and the channel's counter row) open for a moment: the other
            // writers queue behind it and commit in an order unrelated to when they started.
            let mut tx = db.transaction().unwrap();
            tx.query_one("SELECT hatchat.send_message($1, $2, $3)", &[&writer.token(), &channel, &payload])
                .unwrap();
            thread::sleep(Duration::from_millis((i % 4) as u64));
            tx.commit().unwrap();
        } else {
            send(&mut db, &writer, &channel, payload).unwrap();
        }
    }
}

#[test]
fn concurrent_writers_and_paging_readers_see_each_message_once_in_order() {
    let mut db = connect();
    let owner = register(&mut db, "alice");
    let channel = create_channel(&mut db, &owner, "owner");
    let writers: Vec<User> = (0..WRITERS)
        .map(|i| {
            let writer = register(&mut db, ["bob", "carol", "dave"][i % 3]);
            invite(&mut db, &owner, &channel, &writer).unwrap();
            writer
        })
        .collect();
    let joins = 1 + WRITERS;
    let expected = joins + WRITERS * PER_WRITER;

    let readers: Vec<_> = [Cursor::Since, Cursor::AfterSeq, Cursor::Since, Cursor::AfterSeq]
        .into_iter()
        .map(|cursor| {
            let (reader, channel) = (owner.clone(), channel.clone());
            thread::spawn(move || read_everything(reader, channel, cursor, expected))
        })
        .collect();
    let start = Arc::new(Barrier::new(WRITERS));
    let writing: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(index, writer)| {
            let (channel, start) = (channel.clone(), Arc::clone(&start));
            thread::spawn(move || write(writer, channel, index, start))
        })
        .collect();
    for w in writing {
        w.join().unwrap();
    }

    for reader in readers {
        let seen = reader.join().unwrap();
        let seqs: Vec<i64> = seen.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=expected as i64).collect::<Vec<_>>(), "once each, in order, no gaps");
        let stamps: Vec<&str> = seen.iter().map(|m| m["createdAt"].as_str().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "createdAt strictly increases");
        let sent: HashSet<(u64, u64)> = seen[joins..]
            .iter()
            .map(|m| (m["payload"]["writer"].as_u64().unwrap(), m["payload"]["i"].as_u64().unwrap()))
            .collect();
        assert_eq!(sent.len(), WRITERS * PER_WRITER, "every sent message, none twice");
    }
}

#[test]
fn an_open_sending_transaction_holds_back_later_senders_not_readers() {
    let mut db = connect();
    let owner = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let channel = create_channel(&mut db, &owner, "owner");
    invite(&mut db, &owner, &channel, &bob).unwrap();

    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let held: Value = tx
        .query_one("SELECT hatchat.send_message($1, $2, '\"first\"')", &[&owner.token(), &channel])
        .unwrap()
        .get(0);
    assert_eq!(held["seq"], json!(3));

    let later = {
        let (bob, channel) = (bob.clone(), channel.clone());
        thread::spawn(move || send(&mut connect(), &bob, &channel, json!("second")).unwrap())
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!later.is_finished(), "the second sender waits for the first to commit");
    let visible = messages(&mut db, &owner, &channel);
    assert_eq!(visible.len(), 2, "readers are not blocked and see no uncommitted message");

    tx.commit().unwrap();
    let second = later.join().unwrap();
    assert_eq!(second["seq"], json!(4));
    let payloads: Vec<Value> =
        messages(&mut db, &owner, &channel)[2..].iter().map(|m| m["payload"].clone()).collect();
    assert_eq!(payloads, vec![json!("first"), json!("second")]);
}

#[test]
fn a_rolled_back_send_leaves_no_gap() {
    let mut db = connect();
    let owner = register(&mut db, "alice");
    let channel = create_channel(&mut db, &owner, "owner");
    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&owner.token(), &channel]).unwrap();
    tx.rollback().unwrap();
    let sent = send(&mut db, &owner, &channel, json!(2)).unwrap();
    assert_eq!(sent["seq"], json!(2));
}

/// A channel deleted while a send to it waits to commit: the delete waits for the send's counter
/// row, and the message the send committed meanwhile goes with the channel. Before, the message
/// delete ran on the statement's old snapshot, the message stayed behind, and whoever created a
/// channel of that id next read it (and its seq collided with theirs).
#[test]
fn a_channel_deleted_during_a_send_leaves_no_message_behind() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let mut sender = connect();
    let mut tx = sender.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '\"in flight\"')", &[&alice.token(), &channel])
        .unwrap();
    let deleter = {
        let (token, channel) = (alice.token(), channel.clone());
        std::thread::spawn(move || {
            connect().execute("SELECT hatchat.delete_channel($1, $2)", &[&token, &channel]).unwrap();
        })
    };
    // Let the delete reach the counter row lock the send holds.
    let mut watcher = connect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if lock_waiters(&mut watcher, "delete_channel") > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the delete never waited for the send");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tx.commit().unwrap();
    deleter.join().unwrap();
    let left = count(&mut db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1", &channel);
    assert_eq!(left, 0, "the committed message went with its channel");
    // A new channel under the same id starts empty, at seq 1.
    db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &channel]).unwrap();
    let history = messages(&mut db, &alice, &channel);
    assert_eq!(history.len(), 1, "only the new join: {history:?}");
    assert_eq!(history[0]["seq"], serde_json::json!(1));
}
