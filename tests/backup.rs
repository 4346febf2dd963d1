//! Backups that restore (docs/operations.md, "Backups and restore"): `pg_dump` of a live hatchat
//! database holds every row, and a database restored from it answers every read as the original
//! did, verifies the same tokens and the same server secret, deduplicates the same client ids,
//! carries its counters on without a gap or a collision, and wakes its listeners.
//!
//! Each test makes databases of its own on the test server (as the superuser the test URL names)
//! and drops them at the end; `pg_dump`, `pg_restore` and `psql` are those on PATH (scripts/test.sh
//! puts the tests' PostgreSQL installation first). The restore into a new cluster, after
//! `pg_dumpall --globals-only`, is scripts/test-upgrade.sh's last step.
mod common;

use common::*;
use postgres::{Client, NoTls};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const SECRET: &str = "backup-test-secret-5c2e8a91f3";

/// A database of this test's own on the test server, dropped when the test ends.
struct Database {
    name: String,
}

impl Database {
    fn new(prefix: &str, with_extension: bool) -> Database {
        let name = format!("hatchat_{prefix}_{}", short_id().to_lowercase().replace('-', "_"));
        connect().batch_execute(&format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        let database = Database { name };
        if with_extension {
            database.connect().batch_execute("CREATE EXTENSION hatchat").expect("CREATE EXTENSION hatchat");
        }
        database
    }

    fn url(&self) -> String {
        let url = database_url();
        let (server, _) = url.rsplit_once('/').expect("the test URL names a database");
        format!("{server}/{}", self.name)
    }

    fn connect(&self) -> Client {
        Client::connect(&self.url(), NoTls).expect("connect to a backup test database")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = connect().batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs a PostgreSQL program to completion; its standard output, or a panic with its errors.
fn run(program: &str, args: &[&str], input: Option<Vec<u8>>) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (is PostgreSQL's bin directory on PATH?)"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).unwrap());
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// What the source database holds once the writes are done, and who wrote it.
struct Written {
    alice: User,
    bob: User,
    carol: User,
    dave: User,
    channel: String,
    room: String,
    /// The answer to Alice's send with client id "c2", and its payload.
    retried: Value,
}

fn call(db: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Value {
    db.query_one(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Everything the issue names, written through the API: users, the secret, a notifying channel
/// with client ids, edits, a delete, reactions, read positions and receipts, notifications (one
/// forwarded, one undeliverable), a room, a block, a ban and a mute.
fn write_everything(db: &mut Client) -> Written {
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let (alice, bob, carol, dave) =
        (register(db, "alice"), register(db, "bob"), register(db, "carol"), register(db, "dave"));
    let channel = channel_id("backup");
    call(
        db,
        "SELECT hatchat.create_channel($1, $2, 'member', '{\"notifyMembers\": true, \"maxMessages\": 100, \
         \"ttlSeconds\": 86400}')",
        &[&alice.token(), &channel],
    );
    for user in [&bob, &carol, &dave] {
        invite(db, &alice, &channel, user).unwrap();
    }
    call(
        db,
        "SELECT hatchat.send_message($1, $2, $3, 'c1')",
        &[&alice.token(), &channel, &json!({"text": "one"})],
    );
    let retried =
        call(db, "SELECT hatchat.send_message($1, $2, $3, 'c2')", &[&alice.token(), &channel, &json!("two")]);
    let bobs = send(db, &bob, &channel, json!({"text": "from bob"})).unwrap();
    let first = retried["seq"].as_i64().unwrap() - 1;
    call(
        db,
        "SELECT hatchat.edit_message($1, $2, $3, $4)",
        &[&alice.token(), &channel, &first, &json!("one!")],
    );
    let bobs_seq = bobs["seq"].as_i64().unwrap();
    call(db, "SELECT hatchat.delete_message($1, $2, $3)", &[&bob.token(), &channel, &bobs_seq]);
    call(db, "SELECT hatchat.react($1, $2, $3, '👍')", &[&bob.token(), &channel, &first]);
    call(db, "SELECT hatchat.react($1, $2, $3, '🎉')", &[&carol.token(), &channel, &first]);
    call(db, "SELECT hatchat.mark_read($1, $2, $3)", &[&carol.token(), &channel, &first]);
    call(db, "SELECT hatchat.set_read_receipts($1, false)", &[&carol.token()]);
    send(db, &carol, &channel, json!({"text": "from carol"})).unwrap();

    // Bob's first notification forwarded, Carol's first undeliverable (as the gateway marks them).
    db.execute("SELECT hatchat.mark_forwarded($1, 1)", &[&bob.id]).unwrap();
    db.execute("SELECT hatchat.mark_undeliverable($1, 1, 'receiver said 410')", &[&carol.id]).unwrap();

    let users = vec![alice.username.clone(), bob.username.clone()];
    let room = call(db, "SELECT hatchat.create_room($1, 'backup/v1', $2)", &[&alice.token(), &users]);
    let room = room["id"].as_str().unwrap().to_string();
    let post = json!({"timestamp": 1429084002258_i64, "type": "text", "message": "hi bob"});
    call(db, "SELECT hatchat.post_room_message($1, $2, $3)", &[&alice.token(), &room, &post]);

    call(db, "SELECT hatchat.block_user($1, $2)", &[&carol.token(), &dave.id]);
    call(db, "SELECT hatchat.ban_user($1, $2, now() + interval '1 day')", &[&SECRET, &dave.id]);
    call(db, "SELECT hatchat.mute_user($1, $2, true)", &[&SECRET, &carol.id]);
    Written { alice, bob, carol, dave, channel, room, retried }
}

/// Every read of the API, by name, as each user sees it.
fn reads(db: &mut Client, w: &Written) -> Value {
    let mut all = json!({
        "room": call(db, "SELECT hatchat.get_room($1, $2)", &[&w.bob.token(), &w.room]),
        "messages": call(
            db,
            "SELECT hatchat.get_messages($1, $2, row_limit => 1000)",
            &[&w.bob.token(), &w.channel],
        ),
        "folded": call(
            db,
            "SELECT hatchat.get_messages($1, $2, row_limit => 1000, fold => true)",
            &[&w.carol.token(), &w.channel],
        ),
        "carolBlocks": call(db, "SELECT hatchat.list_blocked($1)", &[&w.carol.token()]),
        "undeliverable": call(db, "SELECT hatchat.undeliverable_notifications()", &[]),
        "toForward": call(db, "SELECT hatchat.notifications_to_forward()", &[]),
        "forwarding": call(db, "SELECT hatchat.forwarding_status()", &[]),
    });
    for user in [&w.alice, &w.bob, &w.carol, &w.dave] {
        all[format!("user {}", user.username)] = json!({
            "user": call(db, "SELECT hatchat.get_user($1)", &[&user.id]),
            "channel": call(db, "SELECT hatchat.get_channel($1, $2)", &[&user.token(), &w.channel]),
            "channels": call(db, "SELECT hatchat.list_channels($1)", &[&user.token()]),
            "notifications": call(db, "SELECT hatchat.get_notifications($1)", &[&user.token()]),
        });
    }
    all
}

/// Every row of every table of schema hatchat, read as the superuser, in a fixed order. The system
/// user is made by CREATE EXTENSION in each database, at its own time, and is left out; so is the
/// wake-up secret, which each install makes anew (docs/operations.md), and the unlogged tables of
/// presence and typing, which hold only what live streams say now. Tables are found in the
/// catalog, so a table added later is compared too.
fn rows(db: &mut Client) -> Value {
    let tables: Vec<String> = db
        .query(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'hatchat'::regnamespace AND relkind = 'r' \
               AND relpersistence = 'p' AND relname <> 'wake_secret' ORDER BY relname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut all = json!({});
    for table in tables {
        let sql = format!(
            "SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]') FROM (SELECT to_jsonb(t) AS r FROM hatchat.{table} t) s \
             WHERE r->>'id' IS DISTINCT FROM '{SYSTEM}' OR '{table}' <> 'users'"
        );
        all[&table] = call(db, &sql, &[]);
    }
    all
}

/// A restored database serves as the original did: what it held reads back field for field, and
/// it goes on from there.
fn assert_serves(restored: &Database, w: &Written, before_reads: &Value, before_rows: &Value, how: &str) {
    let mut db = restored.connect();
    let now_rows = rows(&mut db);
    for (table, expected) in before_rows.as_object().unwrap() {
        assert_eq!(&now_rows[table], expected, "{how}: table {table} restored differently");
    }
    assert_eq!(&reads(&mut db, w), before_reads, "{how}: the API reads differently after the restore");

    // Functions and tables are owned by hatchat_owner, as CREATE EXTENSION made them.
    let misowned: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = 'hatchat'::regnamespace AND prosecdef \
                       AND proowner <> 'hatchat_owner'::regrole) \
                  + (SELECT count(*) FROM pg_class WHERE relnamespace = 'hatchat'::regnamespace \
                       AND relkind = 'r' AND relowner <> 'hatchat_owner'::regrole)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(misowned, 0, "{how}: objects of hatchat owned by another role than hatchat_owner");

    // The secret verifies, and only it.
    let system: uuid::Uuid = db.query_one("SELECT hatchat.authenticate($1)", &[&SECRET]).unwrap().get(0);
    assert!(system.is_nil(), "{how}: the server secret no longer verifies");
    assert_eq!(
        sqlstate(db.query_one("SELECT hatchat.authenticate('backup-test-secret-5c2e8a91f4')", &[])),
        "28000"
    );

    // A retried client id gets its first answer, and nothing is stored twice.
    let last_seq =
        before_reads["user ".to_string() + &w.alice.username]["channel"]["lastSeq"].as_i64().unwrap();
    let again = call(
        &mut db,
        "SELECT hatchat.send_message($1, $2, $3, 'c2')",
        &[&w.alice.token(), &w.channel, &json!("two")],
    );
    assert_eq!(again, w.retried, "{how}: a retried client id is not deduplicated after the restore");

    // The listener hears the next send, whose seq follows the last one; the notifications it
    // makes follow each member's last one.
    let mut listener = restored.connect();
    listener.batch_execute(&format!("LISTEN {}", hatchat_wire::wake::NOTIFY_CHANNEL)).unwrap();
    let next = send(&mut db, &w.alice, &w.channel, json!({"text": "after the restore"})).unwrap();
    assert_eq!(next["seq"], last_seq + 1, "{how}: {next}");
    assert!(heard(&mut listener, &w.channel, std::time::Duration::from_secs(10)), "{how}: no wake-up");
    let notified =
        call(&mut db, "SELECT hatchat.get_notifications($1, row_limit => 1000)", &[&w.bob.token()]);
    let ids: Vec<i64> = notified.as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect();
    let before_ids =
        before_reads["user ".to_string() + &w.bob.username]["notifications"].as_array().unwrap().len();
    assert_eq!(
        ids,
        (1..=before_ids as i64 + 1).collect::<Vec<_>>(),
        "{how}: notification ids go on without a gap"
    );

    // Moderation holds: the ban refuses, the mute swallows.
    assert_eq!(sqlstate(send(&mut db, &w.dave, &w.channel, json!("banned"))), "42501", "{how}");
    send(&mut db, &w.carol, &w.channel, json!("muted")).unwrap();
    let latest = call(&mut db, "SELECT hatchat.get_channel($1, $2)", &[&w.alice.token(), &w.channel]);
    assert_eq!(latest["lastSeq"], last_seq + 1, "{how}: a muted user's post was stored");
}

fn source_database() -> (Database, Written, Value, Value) {
    let source = Database::new("backup_src", true);
    let mut db = source.connect();
    let written = write_everything(&mut db);
    let (answered, held) = (reads(&mut db, &written), rows(&mut db));
    assert_eq!(held["messages"].as_array().unwrap().len(), 13, "the writes above: {}", held["messages"]);
    assert!(!held["notifications"].as_array().unwrap().is_empty());
    (source, written, answered, held)
}

/// Not for a Citus cluster: these tests make single-node databases of their own on the server,
/// which a cluster's coordinator refuses (hatchat_owner may log in there), and a cluster's backups
/// are per node (docs/operations.md).
const NOT_ON_A_CLUSTER: &str =
    "it makes single-node databases, which a cluster's server refuses; a cluster's backups are per node";

#[test]
fn a_custom_format_dump_restores_into_a_new_database_and_serves() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let (source, written, answered, held) = source_database();
    let dump = run("pg_dump", &["-Fc", "-d", &source.url()], None);
    let restored = Database::new("backup_fc", false);
    run("pg_restore", &["--exit-on-error", "-d", &restored.url()], Some(dump));
    assert_serves(&restored, &written, &answered, &held, "pg_dump -Fc | pg_restore");
}

#[test]
fn a_plain_dump_restores_through_psql_and_serves() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let (source, written, answered, held) = source_database();
    let dump = run("pg_dump", &["-d", &source.url()], None);
    let restored = Database::new("backup_plain", false);
    run("psql", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &restored.url()], Some(dump));
    assert_serves(&restored, &written, &answered, &held, "pg_dump | psql");
}

#[test]
fn a_data_only_dump_fills_a_database_that_has_the_extension() {
    if skip_on_citus(NOT_ON_A_CLUSTER) {
        return;
    }
    let (source, written, answered, held) = source_database();
    let dump = run("pg_dump", &["-Fc", "--data-only", "-d", &source.url()], None);
    let restored = Database::new("backup_data", true);
    run("pg_restore", &["--exit-on-error", "--data-only", "-d", &restored.url()], Some(dump));
    assert_serves(&restored, &written, &answered, &held, "pg_dump --data-only | pg_restore --data-only");
}
