//! No send through the gateway, alone or batched, is answered before its COMMIT has returned:
//! the extension makes a send visible (and lets the next sender of its channel go) before its
//! commit is durable (src/commit.rs), so an answer given any earlier could tell of a message that a
//! crash then takes back.
//!
//! "Waiting on the disk" is made to last: the cluster is told to wait for a synchronous standby
//! that does not exist, so every commit waits (in `SyncRep`) until the test lifts the setting. The
//! setting is the cluster's: the tests of this file take turns (test binaries run one at a time).
//!
//! A commit that outlasts the gateway's request timeout (a standby gone in a failover) answers 503,
//! and the send's retry with its client id gets the first answer.

mod support;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// The standby setting is the cluster's: one test at a time holds it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn set_standbys(value: &str) {
    let admin = admin().await;
    admin.batch_execute(&format!("ALTER SYSTEM SET synchronous_standby_names = {value}")).await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
}

/// Commits wait for a standby that never comes, until this is dropped (also when the test fails).
struct NoStandby;

impl NoStandby {
    /// Sets the missing standby and returns once commits wait for it: the checkpointer takes the
    /// setting up some time after the reload, so probe commits go on until one waits (it is then
    /// canceled: its commit stands, only its wait ends).
    async fn start(admin: &tokio_postgres::Client) -> NoStandby {
        let probe = support::admin().await;
        let pid: i32 = probe.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        set_standbys("'hatchat_test_nobody'").await;
        let standby = NoStandby;
        let stop = Arc::new(AtomicBool::new(false));
        let probing = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // A transaction id makes a commit record, which waits like any write's.
                    let _ = probe.batch_execute("SELECT pg_current_xact_id()").await;
                }
            })
        };
        wait_for_commits(admin, 1, "a probe commit").await;
        stop.store(true, Ordering::Relaxed);
        admin.execute("SELECT pg_cancel_backend($1)", &[&pid]).await.unwrap();
        probing.await.unwrap();
        standby
    }
}

impl Drop for NoStandby {
    fn drop(&mut self) {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(set_standbys("''")));
    }
}

/// Waits until `sessions` sessions wait for their commit to be durable; fails naming `what`, with
/// what every session was doing, if they do not within `WAIT`.
async fn wait_for_commits(admin: &tokio_postgres::Client, sessions: i64, what: &str) {
    let started = Instant::now();
    loop {
        let waiting: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", &[])
            .await
            .unwrap()
            .get(0);
        if waiting >= sessions {
            return;
        }
        if started.elapsed() > WAIT {
            let rows = admin
                .query(
                    "SELECT concat_ws(' ', wait_event_type || ':' || wait_event, state, left(query, 70)) \
                       FROM pg_stat_activity WHERE datname = current_database()",
                    &[],
                )
                .await
                .unwrap();
            let rows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            panic!("{what} never waited for the standby: {rows:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POST /messages `{"n": n}` in a task of its own.
fn send_in_background(api: &Api, from: &User, channel: &str, n: i32) -> JoinHandle<Reply> {
    let (api, from, channel) = (api.clone(), from.clone(), channel.to_string());
    tokio::spawn(async move { api.send(&from, &channel, json!({"n": n})).await })
}

/// A value of the gateway's /metrics (0 when absent).
async fn metric(gateway: &Gateway, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(name));
    line.and_then(|line| line.split_whitespace().nth(1)).map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_send_is_answered_before_its_commit_returns() {
    // Not for a cluster, by design: this test holds commits by a synchronous standby missing on
    // the node it talks to, but a cluster's sends commit on the workers, which never wait for it.
    if skip_on_citus("a cluster's sends commit on the workers, which never wait for this standby").await {
        return;
    }
    let _turn = TURN.lock().await;
    let gateway = Gateway::start_with(&[("HATCHAT_SEND_SLOTS", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "owner").await;
    // The lone send's channel is another: a channel is in one batch at a time.
    let other = api.create_channel(&alice, "owner").await;
    let admin = admin().await;
    let transactions = metric(&gateway, "hatchat_sends_per_transaction_count").await;

    let standby = NoStandby::start(&admin).await;
    let first = send_in_background(&api, &alice, &other, 0);
    wait_for_commits(&admin, 1, "the first send's commit").await;
    // Five more while its slot is held: they go together in a slot of their own (the first one's
    // stalled), whose statement runs and whose COMMIT then waits too.
    let rest: Vec<_> = (1..=5).map(|n| send_in_background(&api, &alice, &channel, n)).collect();
    wait_for_commits(&admin, 2, "the batch's commit").await;
    // Their statements have run; their commits are not durable, so nobody may be told they are.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!first.is_finished(), "the lone send was answered before its commit returned");
    assert!(rest.iter().all(|send| !send.is_finished()), "a batched send was answered before its commit");

    drop(standby);
    assert_eq!(first.await.unwrap().expect(200)["seq"], json!(2), "after the join message");
    let mut seqs = Vec::new();
    for send in rest {
        seqs.push(send.await.unwrap().expect(200)["seq"].as_i64().unwrap());
    }
    seqs.sort_unstable();
    let stored: Value = api.poll(&alice, &channel, "limit=100").await.expect(200);
    let sent: Vec<i64> = stored
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["payload"].get("n").is_some())
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(sent, seqs, "each send stored once, as answered");
    assert_eq!(seqs, [2, 3, 4, 5, 6], "consecutive, after the join message");
    let carried = metric(&gateway, "hatchat_sends_per_transaction_count").await - transactions;
    // The five arrive a moment apart: the first of them may start a slot of its own, alone.
    assert!(carried < 6.0, "some of the five went together ({carried} transactions for 6 sends)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_past_the_request_timeout_answers_503_and_the_retry_its_first_answer() {
    if skip_on_citus("a cluster's sends commit on the workers, which never wait for this standby").await {
        return;
    }
    let _turn = TURN.lock().await;
    let gateway = Gateway::start_with(&[("HATCHAT_REQUEST_TIMEOUT", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "owner").await;
    let admin = admin().await;
    let send = json!({"channelId": channel, "payload": {"n": 1}, "clientId": "once-only"});
    let token = alice.token();
    let post =
        |body: Value| api.call_with_headers(reqwest::Method::POST, "/messages", Some(&token), Some(body));

    let standby = NoStandby::start(&admin).await;
    let started = Instant::now();
    let (refused, headers) = post(send.clone()).await;
    let waited = started.elapsed();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error"], json!("unavailable"));
    assert_eq!(headers["retry-after"], "1");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}, past the 1 s timeout");

    drop(standby);
    let (retried, _) = post(send).await;
    let stored: Value = api.poll(&alice, &channel, "limit=100").await.expect(200);
    let sent: Vec<&Value> =
        stored.as_array().unwrap().iter().filter(|m| m["payload"].get("n").is_some()).collect();
    assert_eq!(sent.len(), 1, "stored once: {stored}");
    assert_eq!(retried.expect(200)["seq"], sent[0]["seq"], "the retry answers the first send's answer");
}
