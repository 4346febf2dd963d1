//! Wake-ups from plain SQL: a change is announced once its transaction commits, never before and
//! never for a rollback, whoever commits it, in both ways the extension announces (its announcer,
//! when preloaded; the changing transaction, otherwise). No wake-up is lost when a sender dies in
//! its transaction or the announcer dies under load.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(3);

fn listening() -> postgres::Client {
    let mut listener = connect();
    listener.batch_execute("LISTEN hatchat").unwrap();
    listener
}

fn announcer_mode(db: &mut postgres::Client) -> String {
    db.query_one("SELECT hatchat.announcer_mode()", &[]).unwrap().get(0)
}

/// scripts/test.sh says which mode each of its clusters must be in: a preload that silently failed
/// would otherwise pass every other test here in the other mode.
#[test]
fn the_cluster_announces_the_way_it_was_set_up_to() {
    let mut db = connect();
    let mode = announcer_mode(&mut db);
    assert!(["worker", "in-transaction"].contains(&mode.as_str()), "{mode}");
    if let Ok(expected) = std::env::var("HATCHAT_TEST_ANNOUNCER") {
        assert_eq!(mode, expected);
    }
}

#[test]
fn an_autocommit_send_wakes_after_it_commits() {
    let mut db = connect();
    let mut listener = listening();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    assert!(heard(&mut listener, &channel, WAIT), "the join announces the channel");
    send(&mut db, &alice, &channel, json!("hello")).unwrap();
    assert!(heard(&mut listener, &channel, WAIT));
}

#[test]
fn a_send_inside_a_larger_transaction_wakes_only_when_that_commits() {
    let mut db = connect();
    let mut listener = listening();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let other = create_channel(&mut db, &alice, "owner");
    while heard(&mut listener, &channel, Duration::from_millis(300)) {}

    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&alice.token(), &channel]).unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '2')", &[&alice.token(), &other]).unwrap();
    tx.batch_execute("SELECT pg_sleep(0.3)").unwrap();
    assert!(!heard(&mut listener, &channel, Duration::from_millis(500)), "nothing before commit");
    tx.commit().unwrap();
    assert!(heard(&mut listener, &channel, WAIT));
    // And what it wakes for is there to read.
    assert_eq!(messages(&mut db, &alice, &channel).last().unwrap()["payload"], json!(1));
}

#[test]
fn a_rolled_back_send_wakes_nobody() {
    let mut db = connect();
    let mut listener = listening();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    while heard(&mut listener, &channel, Duration::from_millis(300)) {}
    let mut tx = db.transaction().unwrap();
    tx.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&alice.token(), &channel]).unwrap();
    tx.rollback().unwrap();
    assert!(!heard(&mut listener, &channel, Duration::from_millis(800)));
    // The next send in the same session is announced as usual.
    send(&mut db, &alice, &channel, json!(2)).unwrap();
    assert!(heard(&mut listener, &channel, WAIT));
}

#[test]
fn a_sender_killed_in_its_transaction_wakes_nobody_and_blocks_nothing() {
    let mut db = connect();
    let mut listener = listening();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    while heard(&mut listener, &channel, Duration::from_millis(300)) {}
    let mut doomed = connect();
    let pid: i32 = doomed.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    doomed.batch_execute("BEGIN").unwrap();
    doomed.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&alice.token(), &channel]).unwrap();
    db.execute("SELECT pg_terminate_backend($1::integer)", &[&pid]).unwrap();
    assert!(!heard(&mut listener, &channel, Duration::from_millis(800)), "nothing committed");
    // The killed sender held the channel's counter row and (with the announcer) a place among its
    // senders: both are released, and the next send is stored and announced.
    send(&mut db, &alice, &channel, json!(2)).unwrap();
    assert!(heard(&mut listener, &channel, WAIT));
    assert_eq!(messages(&mut db, &alice, &channel).len(), 2, "the join and the second send");
}

/// The announcer is killed again and again while senders commit: every send is still followed by
/// a wake-up naming its channel (or everyone), because keys it held become "everyone look again"
/// and the next send starts a new announcer.
#[test]
fn killing_the_announcer_under_load_loses_no_wake_up() {
    let mut db = connect();
    if announcer_mode(&mut db) != "worker" {
        // In-transaction mode has no announcer to kill; the_cluster_announces_the_way_it_was_set_up_to
        // makes sure this runs where it should.
        return;
    }
    let alice = register(&mut db, "alice");
    let channels: Vec<String> = (0..4).map(|_| create_channel(&mut db, &alice, "owner")).collect();
    let mut listener = listening();
    let mut killer = connect();
    for round in 0..20 {
        let channel = &channels[round % channels.len()];
        if round % 3 == 0 {
            killer
                .batch_execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                      WHERE backend_type = 'hatchat announcer' AND datname = current_database()",
                )
                .unwrap();
        }
        while heard(&mut listener, channel, Duration::from_millis(50)) {}
        send(&mut db, &alice, channel, json!(round)).unwrap();
        assert!(heard(&mut listener, channel, WAIT), "round {round}: no wake-up for {channel}");
    }
}

/// A prepared transaction becomes visible later, in another session, where nothing could announce
/// it: preparing one that sent is refused (0A000, as PostgreSQL refuses a prepared NOTIFY), stores
/// nothing, and leaves nothing behind for the session's next transaction.
#[test]
fn preparing_a_transaction_that_sent_is_refused_and_leaves_nothing_behind() {
    let mut db = connect();
    let mut listener = listening();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    while heard(&mut listener, &channel, Duration::from_millis(300)) {}
    let mut session = connect();
    session.batch_execute("BEGIN").unwrap();
    session.query_one("SELECT hatchat.send_message($1, $2, '1')", &[&alice.token(), &channel]).unwrap();
    let refused = sqlstate(session.batch_execute("PREPARE TRANSACTION 'hatchat-test'"));
    if announcer_mode(&mut db) == "worker" {
        assert_eq!(refused, "0A000", "refused by hatchat, before PostgreSQL looks at anything else");
    } else {
        // PostgreSQL's own rules: 0A000 for a prepared NOTIFY, or 55000 where prepared
        // transactions are off (the default) and it says so first.
        assert!(["0A000", "55000"].contains(&refused.as_str()), "{refused}");
    }
    session.batch_execute("ROLLBACK").unwrap();
    assert_eq!(messages(&mut db, &alice, &channel).len(), 1, "only the join");
    assert!(!heard(&mut listener, &channel, Duration::from_millis(500)));
    session.query_one("SELECT hatchat.send_message($1, $2, '2')", &[&alice.token(), &channel]).unwrap();
    assert!(heard(&mut listener, &channel, WAIT), "the session's next send is announced as usual");
}
