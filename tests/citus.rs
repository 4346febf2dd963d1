//! `hatchat.distribute()` and `hatchat.drop_shards()` (docs/scale-out.md): for superusers only;
//! on a single node they explain themselves and change nothing; on a Citus coordinator
//! (scripts/test-citus.sh, which distributes before the suites run) a second distribute() only
//! says it was done, and the tables lie where docs/scale-out.md says.
mod common;

use common::*;

/// Each hatchat table with its Citus distribution: `n` reference, `h` hash by the column given.
fn distribution(db: &mut postgres::Client) -> Vec<(String, String, Option<String>, i32)> {
    db.query(
        "SELECT p.logicalrelid::regclass::text, p.partmethod::text, \
                column_to_column_name(p.logicalrelid, p.partkey), p.colocationid \
           FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid \
          WHERE c.relnamespace = 'hatchat'::regnamespace ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
    .collect()
}

#[test]
fn distribute_is_for_superusers_and_checks_its_shard_count() {
    let mut app = app_connection();
    for call in ["SELECT hatchat.distribute()", "SELECT hatchat.drop_shards()"] {
        assert_eq!(sqlstate(app.batch_execute(call)), "42501", "{call}");
    }
    let mut db = connect();
    for bad in [0, -1, 64001] {
        let mut call = || db.query_one("SELECT hatchat.distribute($1)", &[&bad]);
        assert_eq!(sqlstate(call()), "22023");
        let (message, _) = error_text(call());
        assert!(message.contains("shard_count must be 1..64000"), "{message}");
    }
}

#[test]
fn on_one_node_distribute_explains_and_changes_nothing() {
    let mut db = connect();
    if on_citus(&mut db) {
        return; // the cluster's answer is the next test's
    }
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.distribute(4)", &[])), "55000");
    let (message, _) = error_text(db.query_one("SELECT hatchat.distribute(4)", &[]));
    assert!(message.contains("CREATE EXTENSION citus"), "{message}");
    db.batch_execute("SELECT hatchat.drop_shards()").unwrap();
    let login: bool =
        db.query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'hatchat_owner'", &[]).unwrap().get(0);
    assert!(!login, "hatchat_owner stays NOLOGIN on a single node");
    // No place to tell: the gateway then batches without it.
    let nodes: Option<Vec<Option<i32>>> =
        db.query_one("SELECT hatchat.channel_nodes(ARRAY['general'])", &[]).unwrap().get(0);
    assert_eq!(nodes, None);
}

#[test]
fn on_a_cluster_tables_lie_by_channel_and_by_user_and_distribute_is_done_once() {
    let mut db = connect();
    if !on_citus(&mut db) {
        return;
    }
    let before = distribution(&mut db);
    let by = |table: &str| {
        before.iter().find(|(t, ..)| t == table).unwrap_or_else(|| panic!("{table} is not distributed"))
    };
    for table in ["hatchat.users", "hatchat.api_secret"] {
        assert_eq!(by(table).1, "n", "{table} is a reference table");
    }
    let channels = by("hatchat.channels").3;
    for (table, column) in [
        ("hatchat.channels", "id"),
        ("hatchat.members", "channel_id"),
        ("hatchat.messages", "channel_id"),
        ("hatchat.reactions", "channel_id"),
    ] {
        assert_eq!(
            (by(table).1.as_str(), by(table).2.as_deref(), by(table).3),
            ("h", Some(column), channels),
            "{table}"
        );
    }
    let inboxes = by("hatchat.inboxes").3;
    assert_ne!(inboxes, channels);
    for table in ["hatchat.inboxes", "hatchat.notifications", "hatchat.blocks"] {
        assert_eq!(
            (by(table).1.as_str(), by(table).2.as_deref(), by(table).3),
            ("h", Some("user_id"), inboxes),
            "{table}"
        );
    }
    db.batch_execute("SELECT hatchat.distribute(4)").unwrap();
    assert_eq!(distribution(&mut db), before, "a second call changes nothing");
}

/// A plain-SQL send on a cluster commits in one phase: its statements name the channel, and Citus
/// runs them over one connection to the channel's worker. (The single statement of modifying CTEs
/// the one-node path runs went over two connections there, and every send committed in two
/// phases.)
#[test]
fn on_a_cluster_a_plain_send_commits_in_one_phase() {
    let mut db = connect();
    if !on_citus(&mut db) {
        return;
    }
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // Citus names a two-phase commit citus_<group>_<coordinator backend pid>_<transaction>_<n>.
    let mine = format!("citus\\_%\\_{pid}\\_%");
    let two_phase = |db: &mut postgres::Client| -> i64 {
        db.query_one("SELECT count(*) FROM pg_dist_transaction WHERE gid LIKE $1", &[&mine]).unwrap().get(0)
    };
    let before = two_phase(&mut db);
    for n in 0..5 {
        let sent = send(&mut db, &alice, &channel, serde_json::json!(n)).unwrap();
        assert!(sent["seq"].as_i64().is_some(), "{sent}");
    }
    assert_eq!(two_phase(&mut db), before, "no send committed in two phases");
    let seqs: Vec<i64> =
        messages(&mut db, &alice, &channel).iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs.len(), 6, "the join and five sends: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap-free: {seqs:?}");
}
