//! Messages through SQL: who may send, payloads kept exactly, windows with exclusive edges and
//! exact cursors, the size limit, and the NOTIFY that wakes listeners only after commit.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn window(
    db: &mut postgres::Client,
    reader: &User,
    channel: &str,
    since: &str,
    until: &str,
    limit: i32,
    after_seq: Option<i64>,
) -> Result<Vec<Value>, postgres::Error> {
    db.query_one(
        "SELECT hatchat.get_messages($1, $2, $3, $4, $5, $6)",
        &[&reader.token(), &channel, &since, &until, &limit, &after_seq],
    )
    .map(|row| row.get::<_, Value>(0).as_array().unwrap().clone())
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

fn last_seq(db: &mut postgres::Client, channel: &str) -> i64 {
    db.query_one("SELECT last_seq FROM hatchat.channels WHERE id = $1", &[&channel]).unwrap().get(0)
}

/// A channel owned by alice with bob as a member and `n` messages from bob after the two joins.
fn channel_with_messages(db: &mut postgres::Client, n: usize) -> (User, User, String) {
    let alice = register(db, "alice");
    let bob = register(db, "bob");
    let id = create_channel(db, &alice, "member");
    invite(db, &alice, &id, &bob).unwrap();
    for i in 0..n {
        send(db, &bob, &id, json!({"n": i})).unwrap();
    }
    (alice, bob, id)
}

#[test]
fn members_send_and_the_answer_names_the_message() {
    let mut db = connect();
    let (_, bob, id) = channel_with_messages(&mut db, 0);
    let sent = send(&mut db, &bob, &id, json!({"text": "hi"})).unwrap();
    assert_eq!(sent["channelId"], json!(id));
    assert_eq!(sent["seq"], json!(3), "after two join messages");
    assert_eq!(sent["fromUserId"], json!(bob.id));
    let created = sent["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2026-11-22T14:42:24.123456Z".len(), "{created}");
    let stored = messages(&mut db, &bob, &id).pop().unwrap();
    assert_eq!(stored["createdAt"], sent["createdAt"]);
    assert_eq!(stored["username"], json!(bob.username));
}

#[test]
fn strangers_and_missing_channels_are_refused_and_nothing_is_stored() {
    let mut db = connect();
    let (_, _, id) = channel_with_messages(&mut db, 1);
    let carol = register(&mut db, "carol");
    let before = last_seq(&mut db, &id);
    assert_eq!(sqlstate(send(&mut db, &carol, &id, json!("let me in"))), "42501");
    assert_eq!(sqlstate(send(&mut db, &carol, "no-such-channel", json!(1))), "P0002");
    let null_payload = db.query_one("SELECT hatchat.send_message($1, $2, NULL)", &[&carol.token(), &id]);
    assert_eq!(sqlstate(null_payload), "22023");
    assert_eq!(last_seq(&mut db, &id), before);
    let reading = window(&mut db, &carol, &id, "-infinity", "infinity", 20, None);
    assert_eq!(sqlstate(reading), "42501");
}

#[test]
fn payloads_come_back_exactly_as_sent() {
    let mut db = connect();
    let (_, bob, id) = channel_with_messages(&mut db, 0);
    let payloads = [
        r#"{"big": 12345678901234567890123, "tiny": 1e-400, "huge": 1e400}"#,
        r#""just a string""#,
        r#"null"#,
        r#"[1, "two", {"three": [3]}]"#,
        r#"{"text": "héllo 👋 \u00e9-escaped \"quoted\""}"#,
    ];
    for payload in payloads {
        db.query_one("SELECT hatchat.send_message($1, $2, $3::text::jsonb)", &[&bob.token(), &id, &payload])
            .unwrap();
    }
    let back: Vec<String> = db
        .query(
            "SELECT jsonb_array_elements(hatchat.get_messages($1, $2, row_limit => 100, after_seq => 2))->>'payload'",
            &[&bob.token(), &id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "null".into()))
        .collect();
    let normalized: Vec<String> =
        payloads.iter().map(|p| db.query_one("SELECT $1::text::jsonb::text", &[p]).unwrap().get(0)).collect();
    let normalized: Vec<String> = normalized
        .into_iter()
        .map(|text| if text.starts_with('"') { serde_json::from_str::<String>(&text).unwrap() } else { text })
        .collect();
    assert_eq!(back, normalized);
}

#[test]
fn payloads_over_the_limit_are_54000() {
    let mut db = connect();
    let (_, bob, id) = channel_with_messages(&mut db, 0);
    db.batch_execute("SET hatchat.max_payload_bytes = 100").unwrap();
    let before = last_seq(&mut db, &id);
    let big = json!({"text": "x".repeat(100)});
    let (message, _) = error_text(send(&mut db, &bob, &id, big.clone()));
    assert!(message.contains("hatchat.max_payload_bytes"), "{message}");
    assert_eq!(sqlstate(send(&mut db, &bob, &id, big)), "54000");
    assert_eq!(last_seq(&mut db, &id), before);
    send(&mut db, &bob, &id, json!({"text": "x".repeat(80)})).unwrap();
}

#[test]
fn windows_have_exclusive_edges_and_ascending_order() {
    let mut db = connect();
    let (alice, _, id) = channel_with_messages(&mut db, 8);
    let all = window(&mut db, &alice, &id, "-infinity", "infinity", 1000, None).unwrap();
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    let at = |seq: usize| all[seq - 1]["createdAt"].as_str().unwrap().to_string();

    let after_3 = window(&mut db, &alice, &id, &at(3), "infinity", 1000, None).unwrap();
    assert_eq!(seqs(&after_3), (4..=10).collect::<Vec<_>>(), "since is exclusive");
    let before_7 = window(&mut db, &alice, &id, "-infinity", &at(7), 1000, None).unwrap();
    assert_eq!(seqs(&before_7), (1..=6).collect::<Vec<_>>(), "until is exclusive");
    let between = window(&mut db, &alice, &id, &at(3), &at(7), 1000, None).unwrap();
    assert_eq!(seqs(&between), vec![4, 5, 6]);
    let empty = window(&mut db, &alice, &id, &at(7), &at(3), 1000, None).unwrap();
    assert!(empty.is_empty());

    let limited = window(&mut db, &alice, &id, &at(3), "infinity", 2, None).unwrap();
    assert_eq!(seqs(&limited), vec![4, 5], "the oldest first, up to the limit");
    let default_limit: Value =
        db.query_one("SELECT hatchat.get_messages($1, $2)", &[&alice.token(), &id]).unwrap().get(0);
    assert_eq!(default_limit.as_array().unwrap().len(), 10);
}

#[test]
fn after_seq_is_an_exact_cursor_that_combines_with_time_bounds() {
    let mut db = connect();
    let (alice, _, id) = channel_with_messages(&mut db, 8);
    let page = window(&mut db, &alice, &id, "-infinity", "infinity", 3, Some(4)).unwrap();
    assert_eq!(seqs(&page), vec![5, 6, 7]);
    let all = window(&mut db, &alice, &id, "-infinity", "infinity", 1000, Some(0)).unwrap();
    let until_9 = all[8]["createdAt"].as_str().unwrap();
    let both = window(&mut db, &alice, &id, "-infinity", until_9, 1000, Some(6)).unwrap();
    assert_eq!(seqs(&both), vec![7, 8]);
    assert!(window(&mut db, &alice, &id, "-infinity", "infinity", 10, Some(10)).unwrap().is_empty());
}

#[test]
fn window_parameters_are_validated() {
    let mut db = connect();
    let (alice, _, id) = channel_with_messages(&mut db, 1);
    let cases: [(&str, &str, i32, Option<i64>); 6] = [
        ("yesterday", "infinity", 20, None),
        ("-infinity", "2026-11-22", 20, None),
        ("-infinity", "2026-11-22T10:00:00", 20, None),
        ("-infinity", "infinity", 0, None),
        ("-infinity", "infinity", 1001, None),
        ("-infinity", "infinity", 20, Some(-1)),
    ];
    for (since, until, limit, after) in cases {
        let result = window(&mut db, &alice, &id, since, until, limit, after);
        assert_eq!(sqlstate(result), "22023", "{since} {until} {limit} {after:?}");
    }
    let offset = window(&mut db, &alice, &id, "2000-01-01T00:00:00+02:00", "infinity", 20, None).unwrap();
    assert_eq!(offset.len(), 3);
    assert_eq!(
        sqlstate(window(&mut db, &alice, "no-such-channel", "-infinity", "infinity", 20, None)),
        "P0002"
    );
}

#[test]
fn sends_notify_listeners_only_when_they_commit() {
    let mut db = connect();
    let (_, bob, id) = channel_with_messages(&mut db, 0);
    let mut listener = connect();
    listener.batch_execute("LISTEN hatchat").unwrap();
    // The announcer may still be announcing the channel's earlier messages.
    while heard(&mut listener, &id, Duration::from_millis(300)) {}

    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&bob.token(), &id]).unwrap();
    assert!(!heard(&mut listener, &id, Duration::from_millis(500)), "no wake-up before commit");
    tx.commit().unwrap();
    assert!(heard(&mut listener, &id, Duration::from_millis(2000)), "a wake-up after commit");

    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '2')", &[&bob.token(), &id]).unwrap();
    tx.rollback().unwrap();
    assert!(!heard(&mut listener, &id, Duration::from_millis(500)), "nothing for a rolled-back send");
}

#[test]
fn notification_payloads_stay_small_for_the_longest_channel_ids() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let id = format!("{}-{}", "𝄞".repeat(189), short_id());
    let mut listener = connect();
    listener.batch_execute("LISTEN hatchat").unwrap();
    db.query_one("SELECT hatchat.create_channel($1, $2)", &[&alice.token(), &id]).unwrap();
    assert!(heard(&mut listener, &id, Duration::from_millis(2000)));
}

/// Index fetches and sequential reads of `hatchat.messages` so far in this transaction.
fn message_rows_read(tx: &mut postgres::Transaction) -> i64 {
    let sql = "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0)::bigint FROM pg_stat_xact_user_tables \
               WHERE schemaname = 'hatchat' AND relname = 'messages'";
    tx.query_one(sql, &[]).unwrap().get(0)
}

/// A read after a seq costs its page, not the channel: a stream opening at the head of a channel
/// of millions reads nothing. The plan PostgreSQL settles on after a few calls (generic) walked
/// the channel's `(channel_id, created_at)` index and filtered on seq, reading every row; a
/// folded page read the channel again for each of its messages.
#[test]
fn a_read_after_a_seq_reads_its_page_not_the_channel() {
    if skip_on_citus("the table's statistics are the shards' on a worker") {
        return;
    }
    let mut db = connect();
    let (alice, _, id) = channel_with_messages(&mut db, 300);
    let head = last_seq(&mut db, &id);
    db.batch_execute("SET plan_cache_mode = force_generic_plan").unwrap();
    let mut tx = db.transaction().unwrap();
    for (limit, after, fold) in [(1, head, false), (20, 0, false), (1, head, true), (20, 0, true)] {
        let before = message_rows_read(&mut tx);
        let page: Value = tx
            .query_one(
                "SELECT hatchat.get_messages($1, $2, row_limit => $3, after_seq => $4, fold => $5)",
                &[&alice.token(), &id, &limit, &after, &fold],
            )
            .unwrap()
            .get(0);
        let read = message_rows_read(&mut tx) - before;
        let wanted = page.as_array().unwrap().len() as i64;
        // A folded page may still be sorted from the channel's rows, by a generic plan that
        // thinks the channel small; never read again for each message of the page.
        let bound = if fold { head + 2 } else { wanted + 2 };
        assert!(read <= bound, "{read} rows read for a page of {wanted} after {after} (fold {fold})");
    }
}
