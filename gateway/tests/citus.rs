//! What only a Citus cluster has (scripts/test-citus.sh runs these with `--ignored`; on one node
//! they are skipped): a send made directly on a worker wakes a long-poll held by a gateway that
//! connects to the coordinator; group commit batches by node, so no batch commits in two phases.

mod support;
use serde_json::json;
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::*;
use tokio_postgres::NoTls;

/// A superuser connection to the worker that holds `channel`'s shard, and its `host:port`.
async fn worker_of(channel: &str) -> (tokio_postgres::Client, String) {
    let admin = admin().await;
    let row = admin
        .query_one(
            "SELECT p.nodename, p.nodeport FROM pg_catalog.pg_dist_shard_placement p \
              WHERE p.shardid = get_shard_id_for_distribution_column('hatchat.channels', $1::text)",
            &[&channel],
        )
        .await
        .expect("the channel's placement");
    let (host, port): (String, i32) = (row.get(0), row.get(1));
    let base = tokio_postgres::Config::from_str(&database_url()).unwrap();
    let config = hatchat_gateway::live::nodes::config_for(&base, &host, u16::try_from(port).unwrap());
    let (client, connection) = config.connect(NoTls).await.expect("connect to the worker");
    tokio::spawn(connection);
    let coordinator: i32 = admin
        .query_one("SELECT nodeport FROM pg_catalog.pg_dist_node WHERE groupid = 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(port, coordinator, "the channel's shard is on a worker");
    (client, format!("{host}:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Citus cluster: scripts/test-citus.sh runs it"]
async fn a_plain_sql_send_on_a_worker_wakes_a_long_poll_on_the_coordinators_gateway() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let (worker, node) = worker_of(&channel).await;
    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=2&wait=20").await;

    let sent = Instant::now();
    let answer: serde_json::Value = worker
        .query_one(
            "SELECT hatchat.send_message($1, $2, $3)",
            &[&bob.token(), &channel, &json!("from the worker")],
        )
        .await
        .unwrap_or_else(|e| panic!("send_message on worker {node}: {e}"))
        .get(0);
    assert_eq!(answer["seq"], 3, "{answer}");

    let (reply, answered) = waiting.await.unwrap();
    let page = reply.expect(200);
    assert_eq!(seqs(&page), vec![3], "woken by the worker's announcement, not timed out: {page}");
    assert_eq!(page[0]["payload"], json!("from the worker"));
    let lag = answered.saturating_duration_since(sent);
    assert!(lag < Duration::from_secs(5), "answered {lag:?} after the send on {node}");
}

/// The gids of the two-phase commits the coordinator has on record.
async fn two_phase_commits(admin: &tokio_postgres::Client) -> Vec<String> {
    let rows = admin.query("SELECT gid FROM pg_catalog.pg_dist_transaction", &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// The Citus group (node) that holds `channel`.
async fn node_of(admin: &tokio_postgres::Client, channel: &str) -> i32 {
    let row =
        admin.query_one("SELECT (hatchat.channel_nodes(ARRAY[$1::text]))[1]", &[&channel]).await.unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Citus cluster: scripts/test-citus.sh runs it"]
async fn group_commit_batches_by_node_so_no_send_commits_in_two_phases() {
    // No purge: deleting expired channels asks every shard, a two-phase commit of its own.
    let gateway = Gateway::start_with(&[("HATCHAT_PURGE_INTERVAL", "0")]).await;
    let api = gateway.api();
    let admin = admin().await;
    let alice = api.register("alice").await;
    let first = api.create_channel(&alice, "self").await;
    let mut second = api.create_channel(&alice, "self").await;
    while node_of(&admin, &second).await == node_of(&admin, &first).await {
        second = api.create_channel(&alice, "self").await;
    }
    let before = two_phase_commits(&admin).await;
    let (transactions_before, messages_before) = sends(&gateway).await;

    // Many sends at once, alternating between the two nodes' channels: they queue behind the one
    // send slot and go in batches.
    let sends_made: Vec<_> = (0..80)
        .map(|n| {
            let (api, alice) = (gateway.api(), alice.clone());
            let channel = if n % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move { api.send(&alice, &channel, json!({"n": n})).await.expect(200) })
        })
        .collect();
    for send in sends_made {
        send.await.unwrap();
    }

    let (transactions, messages) = sends(&gateway).await;
    let (transactions, messages) = (transactions - transactions_before, messages - messages_before);
    assert_eq!(messages, 80);
    assert!(transactions < messages, "sends were batched ({transactions} transactions for {messages})");
    // Two-phase commits are named citus_<group>_<pid>_<transaction>_<connection>: those of this
    // gateway's connections (other tests register users meanwhile, which writes on every node).
    let rows = admin
        .query(
            "SELECT pid::text FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
            &[&gateway.name],
        )
        .await
        .unwrap();
    let pids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert!(!pids.is_empty(), "the gateway's connections are found by name");
    let of_gateway = |gid: &String| gid.split('_').nth(2).is_some_and(|pid| pids.iter().any(|p| p == pid));
    let new: Vec<String> = two_phase_commits(&admin)
        .await
        .into_iter()
        .filter(|gid| !before.contains(gid) && of_gateway(gid))
        .collect();
    assert!(new.is_empty(), "batches committed in two phases: {new:?}");
}

/// (send transactions, sends) the gateway made so far.
async fn sends(gateway: &Gateway) -> (u64, u64) {
    let health = gateway.health().await;
    (health["sends"]["transactions"].as_u64().unwrap(), health["sends"]["messages"].as_u64().unwrap())
}
