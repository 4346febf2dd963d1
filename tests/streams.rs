//! The shared read behind live streams: `channel_window` answers messages, members and bounds in
//! one snapshot, only to the gateway's role; `stream_caller` says whose a token is and until when;
//! `open_streams` checks many streams' openings at once, each as its read alone.

mod common;
use common::*;
use serde_json::{json, Value};

fn window(db: &mut postgres::Client, channel: &str, after: i64, users: &[uuid::Uuid]) -> Value {
    db.query_one("SELECT hatchat.channel_window($1, $2, 1000, $3)", &[&channel, &after, &users])
        .unwrap()
        .get(0)
}

#[test]
fn any_role_but_the_gateways_is_refused_the_shared_window() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    send(&mut db, &alice, &channel, json!("secret")).unwrap();
    let mut app = app_connection();
    let result = app.query_one("SELECT hatchat.channel_window($1, 0, 10, $2)", &[&channel, &vec![alice.id]]);
    assert_eq!(sqlstate(result), "42501", "an ordinary role must not read windows for others");

    db.batch_execute("SET ROLE hatchat_gateway").unwrap();
    let answer = window(&mut db, &channel, 0, &[alice.id]);
    db.batch_execute("RESET ROLE").unwrap();
    assert_eq!(answer["members"], json!([alice.id]));
    assert_eq!(answer["messages"][1]["payload"], json!("secret"));
    assert_eq!(answer["messages"], json!(messages(&mut db, &alice, &channel)), "as get_messages answers");
    assert_eq!((answer["oldestSeq"].clone(), answer["lastSeq"].clone()), (json!(1), json!(2)));
}

#[test]
fn a_user_whose_membership_ended_is_no_member_in_the_same_answer() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let bob = register(&mut db, "bob");
    let stranger = register(&mut db, "carol");
    let channel = create_channel(&mut db, &alice, "self");
    invite(&mut db, &bob, &channel, &bob).unwrap();
    let both = [alice.id, bob.id, stranger.id];
    assert_eq!(window(&mut db, &channel, 0, &both)["members"].as_array().unwrap().len(), 2);
    db.execute("SELECT hatchat.leave_channel($1, $2)", &[&bob.token(), &channel]).unwrap();
    let after = window(&mut db, &channel, 0, &both);
    assert_eq!(after["members"], json!([alice.id]));
    db.execute("SELECT hatchat.delete_channel($1, $2)", &[&alice.token(), &channel]).unwrap();
    let gone = window(&mut db, &channel, 0, &both);
    assert_eq!(
        (gone["live"].clone(), gone["members"].clone(), gone["messages"].clone()),
        (json!(false), json!([]), json!([]))
    );
}

#[test]
fn the_window_reports_the_oldest_message_still_held_after_capping() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = channel_id("capped");
    db.query_one(
        "SELECT hatchat.create_channel($1, $2, 'owner', '{\"maxMessages\": 3}')",
        &[&alice.token(), &channel],
    )
    .unwrap();
    for n in 0..6 {
        send(&mut db, &alice, &channel, json!(n)).unwrap();
    }
    let answer = window(&mut db, &channel, 0, &[alice.id]);
    assert_eq!(answer["oldestSeq"], json!(5));
    assert_eq!(answer["lastSeq"], json!(7));
    assert_eq!(answer["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn stream_caller_verifies_the_token_and_tells_its_expiry() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let answer: Value = db.query_one("SELECT hatchat.stream_caller($1)", &[&alice.token()]).unwrap().get(0);
    assert_eq!(answer["userId"], json!(alice.id));
    let expires: jiff::Timestamp = answer["expiresAt"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((50..=61).contains(&left), "{left}");
    let forged = format!("{}x", alice.token());
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.stream_caller($1)", &[&forged])), "28000");
}

/// Alice's channel with one message of hers, and Bob, who is no member.
fn owner_stranger_and_a_message(db: &mut postgres::Client) -> (User, User, String) {
    let alice = register(db, "alice");
    let stranger = register(db, "bob");
    let channel = create_channel(db, &alice, "owner");
    send(db, &alice, &channel, json!("hi")).unwrap();
    (alice, stranger, channel)
}

/// A stream's opening is refused exactly as its read alone, and answered with whether a message
/// follows and whose the token is; only the gateway's role may ask.
#[test]
fn open_stream_refuses_as_the_read_alone_and_says_whose_and_whether_behind() {
    let mut db = connect();
    let (alice, stranger, channel) = owner_stranger_and_a_message(&mut db);
    let forged = format!("{}x", alice.token());
    let cases = [
        (forged, channel.clone(), 0i64, "28000"),
        (stranger.token(), channel.clone(), 0, "42501"),
        (alice.token(), "no-such-channel".into(), 0, "P0002"),
        (alice.token(), channel.clone(), -1, "22023"),
        (stranger.token(), "bad id!".into(), -1, "22023"),
    ];
    let open = "SELECT hatchat.open_stream($1, $2, $3)";
    let mut app = app_connection();
    assert_eq!(
        sqlstate(app.query_one(open, &[&alice.token(), &channel, &0i64])),
        "42501",
        "the gateway's only"
    );
    for (token, channel, after, expected) in &cases {
        let alone =
            db.query_one("SELECT hatchat.get_messages($1, $2, NULL, NULL, 1, $3)", &[token, channel, after]);
        assert_eq!(sqlstate(alone), *expected, "the read alone");
        db.batch_execute("SET ROLE hatchat_gateway").unwrap();
        let opened = db.query_one(open, &[token, channel, after]);
        db.batch_execute("RESET ROLE").unwrap();
        assert_eq!(sqlstate(opened), *expected, "{token} {channel} {after}");
    }
    db.batch_execute("SET ROLE hatchat_gateway").unwrap();
    let behind: Value = db.query_one(open, &[&alice.token(), &channel, &0i64]).unwrap().get(0);
    let caught_up: Value = db.query_one(open, &[&alice.token(), &channel, &2i64]).unwrap().get(0);
    db.batch_execute("RESET ROLE").unwrap();
    assert_eq!((behind["backlog"].clone(), caught_up["backlog"].clone()), (json!(true), json!(false)));
    assert_eq!(behind["caller"]["userId"], json!(alice.id));
    assert!(behind["caller"]["expiresAt"].is_string());
}

/// A batch of openings answers each item as `open_stream` answers that opening alone: its errors
/// in `get_messages`' order, one item's refusal never another's; only the gateway's role may ask.
#[test]
fn open_streams_answers_each_opening_as_alone() {
    let mut db = connect();
    let (alice, stranger, channel) = owner_stranger_and_a_message(&mut db);
    let forged = format!("{}x", alice.token());
    let cases = [
        (alice.token(), channel.clone(), 0i64),
        (alice.token(), channel.clone(), 2),
        (forged, channel.clone(), 0),
        (stranger.token(), channel.clone(), 0),
        (alice.token(), "no-such-channel".into(), 0),
        (alice.token(), channel.clone(), -1),
        (stranger.token(), "bad id!".into(), -1),
    ];
    let items: Vec<Value> =
        cases.iter().map(|(t, c, a)| json!({"token": t, "channelId": c, "afterSeq": a})).collect();
    let items = Value::Array(items).to_string();
    let mut app = app_connection();
    let refused = app.query_one("SELECT hatchat.open_streams($1)", &[&items]);
    assert_eq!(sqlstate(refused), "42501", "an ordinary role must not open streams for others");

    db.batch_execute("SET ROLE hatchat_gateway").unwrap();
    let answers: Value = db.query_one("SELECT hatchat.open_streams($1)", &[&items]).unwrap().get(0);
    for ((token, channel, after), answer) in cases.iter().zip(answers.as_array().unwrap()) {
        let alone = db.query_one("SELECT hatchat.open_stream($1, $2, $3)", &[token, channel, after]);
        match alone {
            Ok(row) => {
                let alone: Value = row.get(0);
                assert_eq!(alone["backlog"], answer["backlog"], "{answer}");
                assert_eq!(alone["caller"]["userId"], answer["caller"]["userId"], "{answer}");
            }
            Err(error) => {
                assert_eq!(answer["error"]["sqlstate"], json!(error.code().unwrap().code()), "{answer}")
            }
        }
    }
    assert_eq!((answers[0]["backlog"].clone(), answers[1]["backlog"].clone()), (json!(true), json!(false)));
    assert_eq!(answers[0]["caller"]["userId"], json!(alice.id));
    assert_eq!(answers[3]["error"]["sqlstate"], json!("42501"), "the stranger, and only the stranger");

    // Items without a channel ask whom their token speaks for, as stream_caller answers alone.
    let tokens = [Some(stranger.token()), Some(format!("{}x", stranger.token())), None];
    let items: Vec<Value> = tokens.iter().map(|token| json!({"token": token})).collect();
    let items = Value::Array(items).to_string();
    let answers: Value = db.query_one("SELECT hatchat.open_streams($1)", &[&items]).unwrap().get(0);
    for (token, answer) in tokens.iter().zip(answers.as_array().unwrap()) {
        match db.query_one("SELECT hatchat.stream_caller($1)", &[token]) {
            Ok(row) => assert_eq!(answer, &json!({"caller": row.get::<_, Value>(0)})),
            Err(error) => {
                assert_eq!(answer["error"]["sqlstate"], json!(error.code().unwrap().code()), "{answer}")
            }
        }
    }
    assert_eq!(answers[0]["caller"]["userId"], json!(stranger.id));
    assert_eq!(answers[1]["error"]["sqlstate"], json!("28000"), "a forged token");
    let too_many = Value::Array(vec![json!({"channelId": "x"}); 1001]).to_string();
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.open_streams($1)", &[&too_many])), "22023");
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.open_streams($1)", &[&"{}"])), "22023");
    assert_eq!(sqlstate(db.query_one("SELECT hatchat.open_streams($1)", &[&None::<String>])), "22023");
    db.batch_execute("RESET ROLE").unwrap();
}
