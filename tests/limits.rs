//! Limits on the JSON the functions take, and per-item conversion: a payload nested past
//! `hatchat.max_json_depth` is refused (22023, naming the limit) wherever it comes in, and a
//! payload given as text that jsonb cannot hold fails only its own item of a batch, with the
//! SQLSTATE and message it gets when sent alone. Nothing refused is stored.

mod common;
use common::*;
use serde_json::{json, Value};

fn deep(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

fn stored_count(db: &mut postgres::Client, channel: &str) -> i64 {
    count(db, "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1", channel)
}

fn assert_names_the_limit(message: &str, limit: usize) {
    assert!(message.contains(&limit.to_string()) && message.contains("hatchat.max_json_depth"), "{message}");
}

#[test]
fn payloads_nested_past_the_limit_are_refused_and_not_stored() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let before = stored_count(&mut db, &channel);

    let too_deep: Value = serde_json::from_str(&deep(65)).unwrap();
    let result = send(&mut db, &alice, &channel, too_deep.clone());
    assert_eq!(sqlstate(send(&mut db, &alice, &channel, too_deep)), "22023");
    assert_names_the_limit(&error_text(result).0, 64);
    let as_text =
        db.query_one("SELECT hatchat.send_message_text($1, $2, $3)", &[&alice.token(), &channel, &deep(65)]);
    assert_eq!(sqlstate(as_text), "22023");
    // 20,000 levels as text: refused by the scan, never reaching PostgreSQL's recursive parser.
    let as_text = db.query_one(
        "SELECT hatchat.send_message_text($1, $2, $3)",
        &[&alice.token(), &channel, &deep(20_000)],
    );
    assert_names_the_limit(&error_text(as_text).0, 64);
    assert_eq!(stored_count(&mut db, &channel), before, "nothing stored");

    // At the limit is fine; the limit is the setting.
    send(&mut db, &alice, &channel, serde_json::from_str(&deep(64)).unwrap()).unwrap();
    db.batch_execute("SET hatchat.max_json_depth = 3").unwrap();
    let result = send(&mut db, &alice, &channel, json!({"a": [[[1]]]}));
    assert_names_the_limit(&error_text(result).0, 3);
    send(&mut db, &alice, &channel, json!({"a": [[1]]})).unwrap();
    db.batch_execute("RESET hatchat.max_json_depth").unwrap();
    assert_eq!(stored_count(&mut db, &channel), before + 2);
}

#[test]
fn channel_options_nested_past_the_limit_are_refused() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let id = channel_id("deep");
    let options: Value = serde_json::from_str(&format!(r#"{{"maxMessages": {}}}"#, deep(64))).unwrap();
    let result =
        db.query_one("SELECT hatchat.create_channel($1, $2, 'owner', $3)", &[&alice.token(), &id, &options]);
    let (message, _) = error_text(result);
    assert_names_the_limit(&message, 64);
    assert_eq!(count(&mut db, "SELECT count(*) FROM hatchat.channels WHERE id = $1", &id), 0);
}

/// What `send_message_text` answers alone: its result, or `{"error": {sqlstate, message, detail?}}`.
fn alone_as_text(db: &mut postgres::Client, token: &str, channel: &str, text: &str) -> Value {
    as_batch_answer(db.query_one("SELECT hatchat.send_message_text($1, $2, $3)", &[&token, &channel, &text]))
}

#[test]
fn a_payload_text_jsonb_cannot_hold_fails_only_its_own_item_as_it_would_alone() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let before = stored_count(&mut db, &channel);
    let bad = [
        (r#""\u0000""#.to_string(), "22P05"),
        (r#""\udc00""#.to_string(), "22P02"),
        ("[1, ".to_string(), "22P02"),
        ("1e1000000".to_string(), "22003"),
        (deep(20_000), "22023"),
    ];
    let mut items = vec![json!({"token": alice.token(), "channelId": channel, "payloadText": r#"{"n": 1}"#})];
    for (text, _) in &bad {
        items.push(json!({"token": alice.token(), "channelId": channel, "payloadText": text}));
        items.push(
            json!({"token": alice.token(), "channelId": channel, "payloadText": "12345678901234567890123"}),
        );
    }
    // A bad payload fails before the token is looked at, as a cast of the text would.
    items.push(json!({"token": "Bearer not.a.token", "channelId": channel, "payloadText": r#""\u0000""#}));
    items.push(json!({"token": alice.token(), "channelId": channel, "payloadText": 5}));
    items.push(json!({"token": alice.token(), "channelId": channel, "payload": 1, "payloadText": "1"}));
    let answers: Value = db.query_one("SELECT hatchat.send_messages($1)", &[&json!(items)]).unwrap().get(0);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), items.len());

    let codes: Vec<&str> = answers.iter().map(|a| a["error"]["sqlstate"].as_str().unwrap_or("ok")).collect();
    let mut expected = vec!["ok"];
    for (_, code) in &bad {
        expected.extend([*code, "ok"]);
    }
    expected.extend(["22P05", "22023", "22023"]);
    assert_eq!(codes, expected);
    for (index, (text, _)) in bad.iter().enumerate() {
        let answer = &answers[1 + 2 * index];
        assert_eq!(answer, &alone_as_text(&mut db, &alice.token(), &channel, text), "item {text:.20}");
    }
    assert_eq!(
        answers[answers.len() - 3],
        alone_as_text(&mut db, "Bearer not.a.token", &channel, r#""\u0000""#)
    );
    assert_names_the_limit(answers[2 * bad.len() - 1]["error"]["message"].as_str().unwrap(), 64);

    // The good items took consecutive seqs and were stored exactly (wide numbers too).
    let good_seqs: Vec<i64> = answers.iter().filter_map(|a| a["seq"].as_i64()).collect();
    let first = good_seqs[0];
    assert_eq!(good_seqs, (first..first + 1 + bad.len() as i64).collect::<Vec<_>>());
    assert_eq!(stored_count(&mut db, &channel), before + 1 + bad.len() as i64);
    let text: String = db
        .query_one(
            "SELECT payload::text FROM hatchat.messages WHERE channel_id = $1 AND seq = $2",
            &[&channel, &(first + 1)],
        )
        .unwrap()
        .get(0);
    assert_eq!(text, "12345678901234567890123");
}

#[test]
fn a_refused_conversion_leaves_the_transaction_usable() {
    let mut db = connect();
    let alice = register(&mut db, "alice");
    let channel = create_channel(&mut db, &alice, "owner");
    let before = stored_count(&mut db, &channel);
    let mut tx = db.transaction().unwrap();
    let items = json!([
        {"token": alice.token(), "channelId": channel, "payloadText": r#""\u0000""#},
        {"token": alice.token(), "channelId": channel, "payloadText": r#""kept""#},
    ]);
    let answers: Value = tx.query_one("SELECT hatchat.send_messages($1)", &[&items]).unwrap().get(0);
    assert_eq!(answers[0]["error"]["sqlstate"], json!("22P05"));
    let again =
        tx.query_one("SELECT hatchat.send_message_text($1, $2, '\"after\"')", &[&alice.token(), &channel]);
    assert!(again.is_ok(), "{again:?}");
    tx.rollback().unwrap();
    assert_eq!(stored_count(&mut db, &channel), before, "the rollback undid both sends");
    send(&mut db, &alice, &channel, json!("after the rollback")).unwrap();
    assert_eq!(stored_count(&mut db, &channel), before + 1);
}
