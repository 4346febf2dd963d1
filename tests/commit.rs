//! Commits of sends (src/commit.rs): a sending transaction lets the next sender of its channel go
//! before its commit is durable, its COMMIT returns only once it is, and no read shows a message
//! before it is durable.
//!
//! "Not yet durable" is made to last: the cluster is told, for the length of a test, to wait for a
//! synchronous standby that does not exist, so a session with `synchronous_commit = on` waits
//! forever (in `SyncRep`) for its commit to be durable, until the test lifts the setting.
//! PostgreSQL would hold such a transaction's locks and hide its changes for all that time.

mod common;
use common::*;
use postgres::Client;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The standby setting is the cluster's: one test at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(10);

/// Commits wait for a standby that never comes, until this is dropped (also when a test fails).
struct NoStandby;

impl NoStandby {
    fn start(db: &mut Client) -> NoStandby {
        set_standbys(db, "'hatchat_test_nobody'");
        // The checkpointer takes the setting up shortly after the reload: a probe commit that
        // waits for the standby shows it has.
        let mut probe = connect();
        let pid = pid(&mut probe);
        let handle = thread::spawn(move || {
            probe
                .batch_execute(
                    "SET synchronous_commit = on; \
                     CREATE TEMP TABLE probe (x int); INSERT INTO probe VALUES (1)",
                )
                .ok();
        });
        let waited = wait_for(|| wait_event(db, pid).as_deref() == Some("SyncRep"));
        db.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
        handle.join().unwrap();
        assert!(waited, "commits never started waiting for the missing standby");
        NoStandby
    }
}

impl Drop for NoStandby {
    fn drop(&mut self) {
        set_standbys(&mut connect(), "''");
    }
}

fn set_standbys(db: &mut Client, value: &str) {
    db.batch_execute(&format!("ALTER SYSTEM SET synchronous_standby_names = {value}")).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
}

fn pid(db: &mut Client) -> i32 {
    db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

fn wait_event(db: &mut Client, pid: i32) -> Option<String> {
    db.query_opt("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .and_then(|row| row.get(0))
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A session that sends in a transaction and commits when told, on a thread of its own.
struct Sender {
    pid: i32,
    seq: i64,
    commit: mpsc::Sender<()>,
    committed: mpsc::Receiver<Result<(), String>>,
}

fn send_then_commit_when_told(from: &User, channel: &str, setup: &'static str, payload: Value) -> Sender {
    let mut db = connect();
    let pid = pid(&mut db);
    db.batch_execute(setup).unwrap();
    db.batch_execute("BEGIN").unwrap();
    let sent: Value = db
        .query_one("SELECT hatchat.send_message($1, $2, $3)", &[&from.token(), &channel, &payload])
        .unwrap()
        .get(0);
    let (commit, told) = mpsc::channel();
    let (done, committed) = mpsc::channel();
    thread::spawn(move || {
        told.recv().unwrap();
        done.send(db.batch_execute("COMMIT").map_err(|e| e.to_string())).ok();
    });
    Sender { pid, seq: sent["seq"].as_i64().unwrap(), commit, committed }
}

/// Two members of a fresh channel.
fn pair(db: &mut Client) -> (User, User, String) {
    let alice = register(db, "alice");
    let bob = register(db, "bob");
    let channel = create_channel(db, &alice, "owner");
    invite(db, &alice, &channel, &bob).unwrap();
    (alice, bob, channel)
}

fn assert_preloaded(db: &mut Client) {
    let mode: String = db.query_one("SELECT hatchat.announcer_mode()", &[]).unwrap().get(0);
    assert_eq!(mode, "worker", "commits of sends need hatchat preloaded (scripts/test.sh's cluster)");
}

/// Not for a Citus cluster, by design (`Placement::commits_early`): there sends commit in
/// PostgreSQL's order, and the workers' transactions, which hold the channels' rows, commit before
/// the coordinator's.
const NOT_ON_A_CLUSTER: &str = "a cluster's sends do not release their locks before their flush";

#[test]
fn the_next_sender_of_a_channel_goes_on_while_a_commit_waits_to_be_durable() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = connect();
    assert_preloaded(&mut db);
    let (alice, bob, channel) = pair(&mut db);
    let standby = NoStandby::start(&mut db);

    let first = send_then_commit_when_told(&alice, &channel, "SET synchronous_commit = on", json!("first"));
    first.commit.send(()).unwrap();
    assert!(
        wait_for(|| wait_event(&mut db, first.pid).as_deref() == Some("SyncRep")),
        "the first commit waits for its durability"
    );
    // Bob's send needs the channel's counter row that Alice's transaction held.
    let mut bob_db = connect();
    bob_db.batch_execute("SET synchronous_commit = off").unwrap();
    let (bob2, channel2) = (bob.clone(), channel.clone());
    let second = thread::spawn(move || send(&mut bob_db, &bob2, &channel2, json!("second")).unwrap());
    assert!(wait_for(|| second.is_finished()), "Bob's send still waits for Alice's commit to be durable");
    let second = second.join().unwrap();
    assert_eq!(second["seq"], first.seq + 1, "{second}");
    assert!(first.committed.try_recv().is_err(), "Alice's COMMIT has not returned: it is not durable yet");

    drop(standby);
    assert_eq!(first.committed.recv_timeout(WAIT).unwrap(), Ok(()));
    let seqs: Vec<Value> = messages(&mut db, &alice, &channel).iter().map(|m| m["seq"].clone()).collect();
    assert!(seqs.ends_with(&[json!(first.seq), json!(first.seq + 1)]), "{seqs:?}");
}

#[test]
fn with_early_release_off_the_next_sender_waits_as_postgresql_makes_it() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = connect();
    let (alice, bob, channel) = pair(&mut db);
    let standby = NoStandby::start(&mut db);

    let setup = "SET synchronous_commit = on; SET hatchat.release_locks_before_flush = off";
    let first = send_then_commit_when_told(&alice, &channel, setup, json!("first"));
    first.commit.send(()).unwrap();
    assert!(wait_for(|| wait_event(&mut db, first.pid).as_deref() == Some("SyncRep")));
    let mut bob_db = connect();
    let bob_pid = pid(&mut bob_db);
    let (channel2, bob2) = (channel.clone(), bob.clone());
    let second = thread::spawn(move || send(&mut bob_db, &bob2, &channel2, json!("second")).unwrap());
    assert!(
        wait_for(|| wait_event(&mut db, bob_pid).as_deref() == Some("transactionid")),
        "Bob waits for Alice's transaction to end"
    );

    drop(standby);
    assert_eq!(first.committed.recv_timeout(WAIT).unwrap(), Ok(()));
    assert_eq!(second.join().unwrap()["seq"], first.seq + 1);
}

#[test]
fn no_read_shows_a_message_before_it_is_durable() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = connect();
    assert_preloaded(&mut db);
    let (alice, bob, channel) = pair(&mut db);
    let before = messages(&mut db, &bob, &channel).len();
    let standby = NoStandby::start(&mut db);

    let first = send_then_commit_when_told(&alice, &channel, "SET synchronous_commit = on", json!("first"));
    first.commit.send(()).unwrap();
    assert!(wait_for(|| wait_event(&mut db, first.pid).as_deref() == Some("SyncRep")));
    // Bob reads with the cluster's standby setting in force: his read may wait, or answer without
    // Alice's message, but never show it while it is not durable.
    let mut reader = connect();
    reader.batch_execute("SET synchronous_commit = on").unwrap();
    let reader_pid = pid(&mut reader);
    let (bob2, channel2) = (bob.clone(), channel.clone());
    let read = thread::spawn(move || messages(&mut reader, &bob2, &channel2));
    let waited =
        wait_for(|| read.is_finished() || wait_event(&mut db, reader_pid).as_deref() == Some("SyncRep"));
    assert!(waited);
    if read.is_finished() {
        let seen = read.join().unwrap();
        assert_eq!(seen.len(), before, "a message shown before it was durable: {seen:?}");
        drop(standby);
    } else {
        drop(standby);
        assert_eq!(read.join().unwrap().len(), before + 1, "once durable, it is read");
    }
    assert_eq!(first.committed.recv_timeout(WAIT).unwrap(), Ok(()));
}

#[test]
fn a_session_keeps_its_own_synchronous_commit() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = connect();
    let (alice, _bob, channel) = pair(&mut db);
    for setting in ["on", "remote_apply", "local", "off"] {
        db.batch_execute(&format!("SET synchronous_commit = {setting}")).unwrap();
        send(&mut db, &alice, &channel, json!(setting)).unwrap();
        let mut tx = db.transaction().unwrap();
        tx.query_one("SELECT hatchat.send_message($1, $2, '\"rolled back\"')", &[&alice.token(), &channel])
            .unwrap();
        tx.rollback().unwrap();
        let shown: String = db.query_one("SHOW synchronous_commit", &[]).unwrap().get(0);
        assert_eq!(shown, setting);
    }
    let payloads: Vec<Value> =
        messages(&mut db, &alice, &channel).iter().map(|m| m["payload"].clone()).collect();
    assert!(
        payloads.ends_with(&[json!("on"), json!("remote_apply"), json!("local"), json!("off")]),
        "{payloads:?}"
    );
}

/// A read waiting for the standbys that is canceled fails (57014, retryable) rather than answer
/// with what the standbys may not have; PostgreSQL lets a canceled commit wait end quietly.
#[test]
fn a_read_canceled_while_it_waits_fails_instead_of_showing_the_message() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut db = connect();
    assert_preloaded(&mut db);
    let (alice, bob, channel) = pair(&mut db);
    let standby = NoStandby::start(&mut db);

    let first = send_then_commit_when_told(&alice, &channel, "SET synchronous_commit = on", json!("first"));
    first.commit.send(()).unwrap();
    assert!(wait_for(|| wait_event(&mut db, first.pid).as_deref() == Some("SyncRep")));
    let mut reader = connect();
    reader.batch_execute("SET synchronous_commit = on").unwrap();
    let reader_pid = pid(&mut reader);
    let (bob2, channel2) = (bob.clone(), channel.clone());
    let read = thread::spawn(move || {
        reader
            .query_one("SELECT hatchat.get_messages($1, $2, row_limit => 1000)", &[&bob2.token(), &channel2])
    });
    assert!(wait_for(|| wait_event(&mut db, reader_pid).as_deref() == Some("SyncRep")), "the read waits");
    db.execute("SELECT pg_cancel_backend($1)", &[&reader_pid]).unwrap();
    assert_eq!(sqlstate(read.join().unwrap()), "57014");

    drop(standby);
    assert_eq!(first.committed.recv_timeout(WAIT).unwrap(), Ok(()));
}
