//! Presence and typing through SQL (src/presence.rs): who may type and how often, what a muted
//! member's typing becomes, that typing is no message; gateways' presence batches and leases, the
//! joins and leaves they write, hidden users, and the feed a gateway reads (`channel_ephemera`).
//!
//! The presence tables are shared by every test of this suite at once, and any gateway's sync
//! sweeps every lapsed lease: each test uses its own channels and gateway ids, and where a test
//! needs a lease to lapse at a chosen moment it backdates it inside the transaction of the sync
//! that sweeps it, so no other test's sync can sweep it first.

mod common;
use common::*;
use postgres::{Client, GenericClient};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "presence-suite-secret-8e27c41f0b";

/// The gateway's connection: the superuser the suites connect as, under hatchat_gateway's role.
fn gateway() -> Client {
    let mut db = connect();
    db.batch_execute("SET ROLE hatchat_gateway").unwrap();
    db
}

fn unzip(pairs: &[(&str, Uuid)]) -> (Vec<String>, Vec<Uuid>) {
    pairs.iter().map(|(channel, user)| (channel.to_string(), *user)).unzip()
}

fn sync_call(
    db: &mut impl GenericClient,
    gateway_id: Uuid,
    joins: &[(&str, Uuid)],
    leaves: &[(&str, Uuid)],
    whole: bool,
    lease: i32,
) -> Result<Value, postgres::Error> {
    let ((join_channels, join_users), (leave_channels, leave_users)) = (unzip(joins), unzip(leaves));
    db.query_one(
        "SELECT hatchat.presence_sync($1, $2, $3, $4, $5, $6, $7)",
        &[&gateway_id, &join_channels, &join_users, &leave_channels, &leave_users, &whole, &lease],
    )
    .map(|row| row.get(0))
}

/// A sync with a 60 s lease; its answer's `held`.
fn sync(
    db: &mut impl GenericClient,
    gateway_id: Uuid,
    joins: &[(&str, Uuid)],
    leaves: &[(&str, Uuid)],
) -> bool {
    let answer = sync_call(db, gateway_id, joins, leaves, false, 60).expect("presence_sync");
    answer["held"].as_bool().expect("held is a boolean")
}

fn ephemera(db: &mut Client, channel: &str, readers: &[Uuid]) -> Value {
    db.query_one("SELECT hatchat.channel_ephemera($1, $2)", &[&channel, &readers]).unwrap().get(0)
}

/// The channel's feed as (kind, user), oldest first.
fn events(db: &mut Client, channel: &str) -> Vec<(String, Uuid)> {
    let feed = ephemera(db, channel, &[]);
    feed["events"]
        .as_array()
        .expect("an events array")
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["userId"].as_str().unwrap().parse().unwrap()))
        .collect()
}

/// The events written since the last call (`seen`: the last id it saw), sorted: what one step
/// wrote, whatever order one statement wrote it in. By id, as a gateway's feed reads: an event
/// shown once may be held back later (its user hid meanwhile).
fn new_events(db: &mut Client, channel: &str, seen: &mut i64) -> Vec<(String, Uuid)> {
    let feed = ephemera(db, channel, &[]);
    let mut new = Vec::new();
    for event in feed["events"].as_array().expect("an events array") {
        let id = event["id"].as_i64().unwrap();
        if id > *seen {
            new.push((
                event["kind"].as_str().unwrap().to_string(),
                event["userId"].as_str().unwrap().parse().unwrap(),
            ));
            *seen = id;
        }
    }
    new.sort();
    new
}

/// Events as `new_events` answers them: sorted.
fn sorted<const N: usize>(events: [(String, Uuid); N]) -> Vec<(String, Uuid)> {
    let mut events = events.to_vec();
    events.sort();
    events
}

fn ev(kind: &str, user: &User) -> (String, Uuid) {
    (kind.to_string(), user.id)
}

fn typing(db: &mut Client, token: &str, channel: &str) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.typing($1, $2)", &[&token, &channel]).map(|row| row.get(0))
}

fn presence_call(db: &mut Client, viewer: &User, channel: &str) -> Result<Value, postgres::Error> {
    db.query_one("SELECT hatchat.channel_presence($1, $2)", &[&viewer.token(), &channel])
        .map(|row| row.get(0))
}

/// Who `viewer` sees present, in the order listed.
fn present(db: &mut Client, viewer: &User, channel: &str) -> Vec<Uuid> {
    let list = presence_call(db, viewer, channel).expect("channel_presence");
    list.as_array().unwrap().iter().map(|p| p["userId"].as_str().unwrap().parse().unwrap()).collect()
}

fn hide(db: &mut Client, user: &User, hidden: bool) -> Value {
    db.query_one("SELECT hatchat.set_presence_hidden($1, $2)", &[&user.token(), &hidden]).unwrap().get(0)
}

fn time(value: &Value) -> jiff::Timestamp {
    value.as_str().unwrap_or_else(|| panic!("a timestamp, not {value}")).parse().unwrap()
}

/// A channel of `owner` (invite model 'member') with these members besides.
fn channel_of(db: &mut Client, owner: &User, members: &[&User]) -> String {
    let id = create_channel(db, owner, "member");
    for member in members {
        invite(db, owner, &id, member).unwrap();
    }
    id
}

/// A connection, and Alice and Bob in a fresh channel of Alice's.
fn alice_and_bob() -> (Client, User, User, String) {
    let mut db = connect();
    let [alice, bob] = ["alice", "bob"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob]);
    (db, alice, bob, channel)
}

#[test]
fn typing_answers_members_and_refuses_everyone_else() {
    let mut db = connect();
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let [alice, bob, stranger, banned, quiet] =
        ["alice", "bob", "carol", "dave", "bob"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob, &banned, &quiet]);

    let answer = typing(&mut db, &bob.token(), &channel).unwrap();
    assert_eq!((answer["channelId"].clone(), answer["userId"].clone()), (json!(channel), json!(bob.id)));
    let left = time(&answer["until"]).duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!((4.0..=6.5).contains(&left), "typing lasts 6 s, {left} s left");
    assert_eq!(answer.as_object().unwrap().len(), 3, "{answer}");

    db.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&banned.id]).unwrap();
    db.execute("SELECT hatchat.set_chat_disabled($1, true)", &[&quiet.token()]).unwrap();
    assert_eq!(sqlstate(typing(&mut db, &stranger.token(), &channel)), "42501", "a stranger");
    assert_eq!(sqlstate(typing(&mut db, &banned.token(), &channel)), "42501", "a banned member");
    assert_eq!(sqlstate(typing(&mut db, &quiet.token(), &channel)), "42501", "chat disabled");
    assert_eq!(sqlstate(typing(&mut db, SECRET, &channel)), "42501", "the server secret is nobody");
    assert_eq!(sqlstate(typing(&mut db, &alice.token(), &channel_id("missing"))), "P0002");
    let forged = format!("{}x", alice.token());
    assert_eq!(sqlstate(typing(&mut db, &forged, &channel)), "28000");
    assert_eq!(events(&mut gateway(), &channel), [ev("typing", &bob)], "only the member's typing");
}

#[test]
fn typing_is_limited_to_once_a_second_per_user_and_channel() {
    let mut db = connect();
    let [alice, bob] = ["alice", "bob"].map(|k| register(&mut db, k));
    let first = channel_of(&mut db, &alice, &[&bob]);
    let second = channel_of(&mut db, &alice, &[]);
    typing(&mut db, &alice.token(), &first).unwrap();
    let again = typing(&mut db, &alice.token(), &first);
    assert_eq!(sqlstate(again), "53400", "the same user on the same channel within a second");
    typing(&mut db, &alice.token(), &second).expect("another channel is not limited");
    typing(&mut db, &bob.token(), &first).expect("another user is not limited");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    typing(&mut db, &alice.token(), &first).expect("a second later, again");
    let written = events(&mut gateway(), &first);
    assert_eq!(written, [ev("typing", &alice), ev("typing", &bob), ev("typing", &alice)]);
}

#[test]
fn a_muted_members_typing_is_answered_and_limited_but_shown_to_nobody() {
    let (mut db, alice, bob, channel) = alice_and_bob();
    db.execute("SELECT hatchat.mute_user(NULL, $1, true)", &[&bob.id]).unwrap();
    let answer = typing(&mut db, &bob.token(), &channel).unwrap();
    assert_eq!((answer["channelId"].clone(), answer["userId"].clone()), (json!(channel), json!(bob.id)));
    assert!(answer["until"].is_string(), "answered as anyone's typing: {answer}");
    assert_eq!(sqlstate(typing(&mut db, &bob.token(), &channel)), "53400", "limited the same");
    let stored: Vec<String> = db
        .query("SELECT kind FROM hatchat.ephemera WHERE channel_id = $1", &[&channel])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["withheld"]);
    let feed = ephemera(&mut gateway(), &channel, &[alice.id, bob.id]);
    assert_eq!(feed["events"], json!([]), "nobody is shown it, the typist included");
    assert_eq!(feed["names"], json!({}));
}

#[test]
fn typing_is_no_message_no_unread_count_and_no_notification() {
    let mut db = connect();
    let [alice, bob] = ["alice", "bob"].map(|k| register(&mut db, k));
    let channel = channel_id("typing");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'member', '{\"notifyMembers\": true}')",
        &[&alice.token(), &channel],
    )
    .unwrap();
    invite(&mut db, &alice, &channel, &bob).unwrap();
    send(&mut db, &alice, &channel, json!("hello")).unwrap();
    let state = |db: &mut Client| -> Vec<Value> {
        let mut seen: Vec<Value> = ["get_channel($1, $2)", "list_channels($1)", "get_notifications($1)"]
            .iter()
            .map(|call| {
                let sql = format!("SELECT hatchat.{call}");
                let row = if call.contains("$2") {
                    db.query_one(&sql, &[&bob.token(), &channel])
                } else {
                    db.query_one(&sql, &[&bob.token()])
                };
                row.unwrap().get(0)
            })
            .collect();
        seen.push(json!(messages(db, &bob, &channel)));
        seen
    };
    let before = state(&mut db);
    assert_eq!(before[0]["unread"], json!(1), "bob has alice's message unread: {}", before[0]);
    assert!(before[2].as_array().is_some_and(|notes| !notes.is_empty()), "bob was notified: {}", before[2]);
    typing(&mut db, &alice.token(), &channel).unwrap();
    assert_eq!(state(&mut db), before, "get_channel, list_channels, get_notifications, get_messages");
    assert_eq!(events(&mut gateway(), &channel), [ev("typing", &alice)]);
}

#[test]
fn only_the_gateways_role_syncs_presence_and_reads_the_feed() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = channel_of(&mut db, &alice, &[]);
    let id = Uuid::new_v4();
    let mut app = app_connection();
    assert_eq!(sqlstate(sync_call(&mut app, id, &[(&channel, alice.id)], &[], false, 60)), "42501");
    let feed = app.query_one("SELECT hatchat.channel_ephemera($1, $2)", &[&channel, &vec![alice.id]]);
    assert_eq!(sqlstate(feed), "42501");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.presence WHERE channel_id = $1", &channel), 0);

    let mut gw = gateway();
    assert!(!sync(&mut gw, id, &[(&channel, alice.id)], &[]), "a new gateway held no lease");
    assert!(sync(&mut gw, id, &[], &[]), "then it does");
    assert_eq!(events(&mut gw, &channel), [ev("join", &alice)]);
}

#[test]
fn a_join_and_a_leave_are_written_only_when_presence_changes() {
    let (mut db, alice, bob, channel) = alice_and_bob();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    let mut seen = 0;
    sync(&mut gw, a, &[(&channel, alice.id), (&channel, bob.id)], &[]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), sorted([ev("join", &alice), ev("join", &bob)]));
    sync(&mut gw, a, &[(&channel, alice.id)], &[]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), [], "joined again on the same gateway");
    sync(&mut gw, b, &[(&channel, alice.id)], &[]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), [], "present already, through another gateway");
    sync(&mut gw, a, &[], &[(&channel, alice.id)]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), [], "still present through the other gateway");
    assert_eq!(present(&mut db, &bob, &channel), [bob.id, alice.id], "alice's row on b is newer");
    sync(&mut gw, b, &[], &[(&channel, alice.id)]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), sorted([ev("leave", &alice)]), "her last row went");
    sync(&mut gw, b, &[], &[(&channel, alice.id)]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), [], "leaving twice is one leave");
    assert_eq!(present(&mut db, &bob, &channel), [bob.id]);
}

#[test]
fn a_whole_sync_is_all_the_gateway_holds() {
    let mut db = connect();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob, &carol]);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    let mut seen = 0;
    sync(&mut gw, a, &[(&channel, alice.id), (&channel, bob.id)], &[]);
    sync(&mut gw, b, &[(&channel, bob.id)], &[]);
    new_events(&mut gw, &channel, &mut seen);
    let whole = [(channel.as_str(), bob.id), (channel.as_str(), carol.id)];
    assert_eq!(sync_call(&mut gw, a, &whole, &[], true, 60).unwrap(), json!({"held": true}));
    assert_eq!(new_events(&mut gw, &channel, &mut seen), sorted([ev("join", &carol), ev("leave", &alice)]));
    let rows =
        |db: &mut Client| count(db, "SELECT count(*) FROM hatchat.presence WHERE channel_id = $1", &channel);
    assert_eq!(rows(&mut db), 3, "a: bob and carol; b: bob");
    sync_call(&mut gw, a, &[], &[], true, 60).unwrap();
    assert_eq!(
        new_events(&mut gw, &channel, &mut seen),
        sorted([ev("leave", &carol)]),
        "bob stays through b"
    );
    assert_eq!(rows(&mut db), 1);
    assert_eq!(present(&mut db, &alice, &channel), [bob.id]);
}

#[test]
fn a_lapsed_lease_is_swept_by_the_next_sync_of_any_gateway() {
    let (mut db, alice, bob, channel) = alice_and_bob();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    let mut seen = 0;
    sync_call(&mut gw, a, &[(&channel, alice.id)], &[], false, 1).unwrap();
    sync(&mut gw, b, &[(&channel, bob.id)], &[]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), sorted([ev("join", &alice), ev("join", &bob)]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(present(&mut db, &bob, &channel), [bob.id], "a lapsed lease shows nobody, swept or not");
    sync(&mut gw, b, &[], &[]);
    assert_eq!(new_events(&mut gw, &channel, &mut seen), sorted([ev("leave", &alice)]));
    let a_rows = db.query_one("SELECT count(*) FROM hatchat.presence WHERE gateway_id = $1", &[&a]).unwrap();
    assert_eq!(a_rows.get::<_, i64>(0), 0, "the lapsed gateway's rows went");
    assert!(!sync(&mut gw, a, &[], &[]), "the lapsed gateway learns it held no lease");
}

#[test]
fn a_user_moving_from_a_lapsed_gateway_to_another_stays_present() {
    let (mut db, alice, bob, channel) = alice_and_bob();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    let mut seen = 0;
    sync(&mut gw, a, &[(&channel, alice.id)], &[]);
    new_events(&mut gw, &channel, &mut seen);
    // The lease lapses inside the transaction that sweeps it: no other test's sync sweeps it first.
    let mut tx = db.transaction().unwrap();
    tx.execute(
        "UPDATE hatchat.gateway_leases SET expires_at = now() - interval '1 second' WHERE gateway_id = $1",
        &[&a],
    )
    .unwrap();
    sync(&mut tx, b, &[(&channel, alice.id)], &[]);
    tx.commit().unwrap();
    assert_eq!(new_events(&mut gw, &channel, &mut seen), [], "neither a leave nor a join");
    assert_eq!(present(&mut db, &bob, &channel), [alice.id]);
}

#[test]
fn hidden_users_neither_join_nor_leave_nor_show() {
    let mut db = connect();
    let [alice, carol] = ["alice", "carol"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&carol]);
    assert_eq!(hide(&mut db, &carol, true), json!({"userId": carol.id, "presenceHidden": true}));
    let a = Uuid::new_v4();
    let mut gw = gateway();
    sync(&mut gw, a, &[(&channel, carol.id), (&channel, alice.id)], &[]);
    assert_eq!(events(&mut gw, &channel), [ev("join", &alice)]);
    assert_eq!(present(&mut db, &alice, &channel), [alice.id]);
    assert_eq!(present(&mut db, &carol, &channel), [alice.id], "not even to herself");
    sync(&mut gw, a, &[], &[(&channel, carol.id)]);
    assert_eq!(events(&mut gw, &channel), [ev("join", &alice)]);
}

#[test]
fn hiding_leaves_every_channel_and_showing_again_joins_them() {
    let mut db = connect();
    let [alice, bob] = ["alice", "bob"].map(|k| register(&mut db, k));
    let one = channel_of(&mut db, &alice, &[&bob]);
    let two = channel_of(&mut db, &alice, &[]);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    sync(&mut gw, a, &[(&one, alice.id), (&two, alice.id), (&one, bob.id)], &[]);
    sync(&mut gw, b, &[(&one, alice.id)], &[]);
    let (mut seen_one, mut seen_two) = (0, 0);
    new_events(&mut gw, &one, &mut seen_one);
    new_events(&mut gw, &two, &mut seen_two);

    hide(&mut db, &alice, true);
    assert_eq!(
        new_events(&mut gw, &one, &mut seen_one),
        sorted([ev("leave", &alice)]),
        "once, for two gateways"
    );
    assert_eq!(new_events(&mut gw, &two, &mut seen_two), sorted([ev("leave", &alice)]));
    assert_eq!(present(&mut db, &bob, &one), [bob.id]);
    assert_eq!(hide(&mut db, &alice, true)["presenceHidden"], json!(true));
    assert_eq!(new_events(&mut gw, &one, &mut seen_one), [], "hidden already: nothing new");

    assert_eq!(hide(&mut db, &alice, false), json!({"userId": alice.id, "presenceHidden": false}));
    assert_eq!(new_events(&mut gw, &one, &mut seen_one), sorted([ev("join", &alice)]));
    assert_eq!(new_events(&mut gw, &two, &mut seen_two), sorted([ev("join", &alice)]));
    let mut shown = present(&mut db, &bob, &one);
    shown.sort();
    let mut both = [alice.id, bob.id];
    both.sort();
    assert_eq!(shown, both);
}

#[test]
fn set_presence_hidden_is_the_users_own_setting() {
    let mut db = connect();
    db.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).unwrap();
    let [alice, bob] = ["alice", "bob"].map(|k| register(&mut db, k));
    let set = |db: &mut Client, token: &str, hidden: Option<bool>, id: Option<Uuid>| {
        db.query_one("SELECT hatchat.set_presence_hidden($1, $2, $3)", &[&token, &hidden, &id])
            .map(|row| row.get::<_, Value>(0))
    };
    assert_eq!(sqlstate(set(&mut db, &alice.token(), Some(true), Some(bob.id))), "42501");
    assert_eq!(sqlstate(set(&mut db, &alice.token(), None, None)), "22023");
    assert_eq!(sqlstate(set(&mut db, SECRET, Some(true), None)), "42501", "the secret has no presence");
    let hidden = |db: &mut Client, user: &User| -> bool {
        db.query_one("SELECT presence_hidden FROM hatchat.users WHERE id = $1", &[&user.id]).unwrap().get(0)
    };
    assert!(!hidden(&mut db, &alice) && !hidden(&mut db, &bob), "nothing changed");
    let answer = set(&mut db, &alice.token(), Some(true), Some(alice.id)).unwrap();
    assert_eq!(answer, json!({"userId": alice.id, "presenceHidden": true}));
    assert!(hidden(&mut db, &alice) && !hidden(&mut db, &bob));
    db.execute("SELECT hatchat.ban_user(NULL, $1, now() + interval '1 hour')", &[&alice.id]).unwrap();
    assert_eq!(sqlstate(set(&mut db, &alice.token(), Some(false), None)), "42501", "not while banned");
}

#[test]
fn channel_presence_lists_live_members_but_not_whom_the_caller_blocked() {
    let mut db = connect();
    let [alice, bob, carol, dave, erin] =
        ["alice", "bob", "carol", "dave", "alice"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob, &carol, &dave]);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut gw = gateway();
    sync(&mut gw, a, &[(&channel, alice.id)], &[]);
    sync(&mut gw, b, &[(&channel, carol.id)], &[]);
    sync(&mut gw, a, &[(&channel, bob.id), (&channel, erin.id)], &[]);
    sync(&mut gw, a, &[(&channel, carol.id)], &[]);
    let list = presence_call(&mut db, &dave, &channel).unwrap();
    let list = list.as_array().unwrap();
    let ids: Vec<Value> = list.iter().map(|p| p["userId"].clone()).collect();
    assert_eq!(ids, [json!(alice.id), json!(carol.id), json!(bob.id)], "longest present first, members only");
    assert_eq!(list[1]["username"], json!(carol.username));
    assert_eq!(list[1].as_object().unwrap().len(), 3, "{}", list[1]);
    assert!(time(&list[0]["since"]) < time(&list[1]["since"]));

    db.query_one("SELECT hatchat.block_user($1, $2)", &[&alice.token(), &bob.id]).unwrap();
    assert_eq!(present(&mut db, &alice, &channel), [alice.id, carol.id], "alice blocked bob");
    assert_eq!(present(&mut db, &bob, &channel), [alice.id, carol.id, bob.id], "bob sees alice");
    db.execute("SELECT hatchat.leave_channel($1, $2)", &[&carol.token(), &channel]).unwrap();
    assert_eq!(present(&mut db, &dave, &channel), [alice.id, bob.id], "carol is no member now");
    assert_eq!(sqlstate(presence_call(&mut db, &erin, &channel)), "42501", "a stranger");
    assert_eq!(sqlstate(presence_call(&mut db, &dave, &channel_id("missing"))), "P0002");
}

#[test]
fn the_feed_shows_typing_until_when_names_blocks_and_member_readers() {
    let mut db = connect();
    let [alice, bob, carol, erin] = ["alice", "bob", "carol", "alice"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob, &carol]);
    db.query_one("SELECT hatchat.block_user($1, $2)", &[&carol.token(), &alice.id]).unwrap();
    let mut gw = gateway();
    sync(&mut gw, Uuid::new_v4(), &[(&channel, bob.id)], &[]);
    let typed = typing(&mut db, &alice.token(), &channel).unwrap();
    let nil = Uuid::nil();
    let feed = ephemera(&mut gw, &channel, &[bob.id, carol.id, erin.id, nil]);
    let list = feed["events"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{feed}");
    let (join, typed_event) = (&list[0], &list[1]);
    assert!(join["id"].as_i64().unwrap() < typed_event["id"].as_i64().unwrap());
    assert_eq!((join["kind"].clone(), join["userId"].clone()), (json!("join"), json!(bob.id)));
    let mut keys: Vec<&String> = join.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["at", "id", "kind", "userId"], "a join has no until");
    let typed_kind = (typed_event["kind"].clone(), typed_event["userId"].clone());
    assert_eq!(typed_kind, (json!("typing"), json!(alice.id)));
    let lasts = time(&typed_event["until"]).duration_since(time(&typed_event["at"]));
    assert_eq!(lasts.as_secs_f64(), 6.0, "typing shows for 6 s");
    assert_eq!(typed_event["until"], typed["until"], "as the typist was told");
    assert_eq!(
        feed["names"],
        json!({alice.id.to_string(): alice.username, bob.id.to_string(): bob.username})
    );
    assert_eq!(feed["blockedBy"], json!({alice.id.to_string(): [carol.id]}));
    assert_eq!(feed["members"], json!([bob.id, carol.id, nil]), "erin is no member; the nil uuid always is");
    let empty = ephemera(&mut gw, &channel_id("quiet"), &[bob.id]);
    assert_eq!(empty, json!({"events": [], "names": {}, "blockedBy": {}, "members": []}));
}

#[test]
fn a_sync_purges_ephemera_older_than_fifteen_seconds() {
    let (mut db, alice, bob, channel) = alice_and_bob();
    let mut gw = gateway();
    typing(&mut db, &alice.token(), &channel).unwrap();
    let mut tx = db.transaction().unwrap();
    tx.execute(
        "UPDATE hatchat.ephemera SET at = at - interval '16 seconds' WHERE channel_id = $1",
        &[&channel],
    )
    .unwrap();
    sync(&mut tx, Uuid::new_v4(), &[(&channel, bob.id)], &[]);
    tx.commit().unwrap();
    assert_eq!(events(&mut gw, &channel), [ev("join", &bob)], "the old typing went, the new join stays");
    // One a little younger than the limit stays.
    typing(&mut db, &alice.token(), &channel).unwrap();
    let mut tx = db.transaction().unwrap();
    tx.execute(
        "UPDATE hatchat.ephemera SET at = at - interval '14 seconds' WHERE channel_id = $1 AND kind = 'typing'",
        &[&channel],
    )
    .unwrap();
    sync(&mut tx, Uuid::new_v4(), &[], &[]);
    tx.commit().unwrap();
    assert_eq!(events(&mut gw, &channel), [ev("join", &bob), ev("typing", &alice)]);
}

#[test]
fn a_sync_with_unpaired_arrays_or_a_bad_lease_is_refused_and_changes_nothing() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = channel_of(&mut db, &alice, &[]);
    let id = Uuid::new_v4();
    let mut gw = gateway();
    let c = channel.as_str();
    let call =
        |gw: &mut Client, jc: Vec<&str>, ju: Vec<Uuid>, lc: Vec<&str>, lu: Vec<Uuid>, lease: Option<i32>| {
            gw.query_one(
                "SELECT hatchat.presence_sync($1, $2, $3, $4, $5, false, $6)",
                &[&id, &jc, &ju, &lc, &lu, &lease],
            )
        };
    assert_eq!(sqlstate(call(&mut gw, vec![c, c], vec![alice.id], vec![], vec![], Some(60))), "22023");
    assert_eq!(sqlstate(call(&mut gw, vec![], vec![], vec![c], vec![], Some(60))), "22023");
    for lease in [Some(0), Some(3601), Some(-5), None] {
        let refused = call(&mut gw, vec![c], vec![alice.id], vec![], vec![], lease);
        assert_eq!(sqlstate(refused), "22023", "lease {lease:?}");
    }
    let no_id = gw.query_one("SELECT hatchat.presence_sync(NULL, '{}', '{}', '{}', '{}', false, 60)", &[]);
    assert_eq!(sqlstate(no_id), "22023");
    let lease =
        db.query_one("SELECT count(*) FROM hatchat.gateway_leases WHERE gateway_id = $1", &[&id]).unwrap();
    assert_eq!(lease.get::<_, i64>(0), 0, "no lease taken");
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.presence WHERE channel_id = $1", &channel), 0);
    for lease in [1, 3600] {
        sync_call(&mut gw, Uuid::new_v4(), &[], &[], false, lease).expect("the bounds are allowed");
    }
    assert_eq!(events(&mut gw, &channel), []);
}

#[test]
fn nulls_in_a_syncs_arrays_do_not_pair_a_channel_with_another_pairs_user() {
    let (mut db, alice, _bob, channel) = alice_and_bob();
    let mut gw = gateway();
    // Pairs (NULL, alice) and (channel, NULL): neither is a pair of a channel and a user.
    let channels: Vec<Option<String>> = vec![None, Some(channel.clone())];
    let users: Vec<Option<Uuid>> = vec![Some(alice.id), None];
    let result = gw.query_one(
        "SELECT hatchat.presence_sync($1, $2, $3, '{}', '{}', false, 60)",
        &[&Uuid::new_v4(), &channels, &users],
    );
    let rows = count(&mut db, "SELECT count(*) FROM hatchat.presence WHERE channel_id = $1", &channel);
    assert_eq!(rows, 0, "alice was made present on the channel from two halves of different pairs");
    assert_eq!(sqlstate(result), "22023");
}

#[test]
fn hiding_while_a_join_commits_still_ends_with_the_user_not_shown() {
    let (mut db, alice, _bob, channel) = alice_and_bob();
    let mut gw = gateway();
    // A gateway's join of alice is in flight (written, not committed) when she hides.
    let mut in_flight = gateway();
    let mut tx = in_flight.transaction().unwrap();
    sync(&mut tx, Uuid::new_v4(), &[(&channel, alice.id)], &[]);
    let token = alice.token();
    let hider = std::thread::spawn(move || {
        connect().query_one("SELECT hatchat.set_presence_hidden($1, true)", &[&token]).unwrap();
    });
    // The hide either finishes or waits for the sync's transaction; then the sync commits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !hider.is_finished() && lock_waiters(&mut db, "set_presence_hidden") == 0 {
        assert!(std::time::Instant::now() < deadline, "the hide neither finished nor waited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tx.commit().unwrap();
    hider.join().unwrap();
    let last = events(&mut gw, &channel).into_iter().rev().find(|(_, user)| *user == alice.id);
    assert_ne!(last, Some(ev("join", &alice)), "streams were last told alice joined, yet she is hidden");
}

#[test]
fn a_channel_made_again_under_an_id_tells_nothing_of_the_old_ones_presence() {
    let mut db = connect();
    let [alice, bob, mallory] = ["alice", "bob", "carol"].map(|k| register(&mut db, k));
    let channel = channel_of(&mut db, &alice, &[&bob]);
    let mut gw = gateway();
    let gateway_id = Uuid::new_v4();
    sync(&mut gw, gateway_id, &[(&channel, bob.id)], &[]);
    typing(&mut db, &bob.token(), &channel).unwrap();
    db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &channel]).unwrap();
    db.query_one("SELECT hatchat.create_channel($1, $2)", &[&mallory.token(), &channel]).unwrap();
    assert!(events(&mut gw, &channel).is_empty(), "the old channel's joins and typing went with it");
    // Bob's stream on the old channel closes; his gateway's leave finds nothing to leave.
    sync(&mut gw, gateway_id, &[], &[(&channel, bob.id)]);
    assert!(events(&mut gw, &channel).is_empty());
    assert!(present(&mut db, &mallory, &channel).is_empty());
    // And a row the tables still held (a gateway's whole sync after a restart) tells nobody.
    sync_call(&mut gw, gateway_id, &[(&channel, bob.id)], &[], true, 60).unwrap();
    assert!(events(&mut gw, &channel).is_empty(), "bob is no member of the new channel");
    assert!(present(&mut db, &mallory, &channel).is_empty());
}

#[test]
fn two_typings_at_once_do_not_both_pass_the_limit() {
    let (mut db, alice, _bob, channel) = alice_and_bob();
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    tx.query_one("SELECT hatchat.typing($1, $2)", &[&alice.token(), &channel]).unwrap();
    let (token, second_channel) = (alice.token(), channel.clone());
    let second = std::thread::spawn(move || {
        sqlstate(connect().query_one("SELECT hatchat.typing($1, $2)", &[&token, &second_channel]))
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The wait is for an advisory lock on this node (also the coordinator of a cluster).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                     AND query LIKE '%hatchat.typing%' AND datname = current_database()";
    while !second.is_finished() && db.query_one(waiting, &[]).unwrap().get::<_, i64>(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "the second typing neither finished nor waited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tx.commit().unwrap();
    assert_eq!(second.join().unwrap(), "53400", "the second typing waited for the first, then was refused");
}
