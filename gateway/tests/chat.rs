//! The chat routes through a real gateway: idempotent POST /messages (alone and racing through
//! group commit), read positions and unread counts, edits, deletes and reactions, folded windows.
//! Each route's success and error statuses, with the body, and that refused calls change nothing.

mod support;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

async fn send_with_id(api: &Api, from: &User, channel: &str, payload: Value, client_id: &str) -> Reply {
    let body = json!({"channelId": channel, "payload": payload, "clientId": client_id});
    api.post("/messages", Some(&from.token()), body).await
}

async fn all_messages(api: &Api, reader: &User, channel: &str) -> Value {
    api.poll(reader, channel, "limit=1000").await.expect(200)
}

/// A channel owned by alice with bob as a member.
async fn pair(api: &Api) -> (User, User, String) {
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let id = api.create_channel(&alice, "self").await;
    api.join(&bob, &id).await.expect(200);
    (alice, bob, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_sends_answer_the_first_answer_alone_and_through_group_commit() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, id) = pair(&api).await;
    let first = send_with_id(&api, &bob, &id, json!("hi"), "k-1").await.expect(200);
    let again = send_with_id(&api, &bob, &id, json!("hi"), "k-1").await.expect(200);
    assert_eq!(again, first);
    let bad = send_with_id(&api, &bob, &id, json!("hi"), &"x".repeat(65)).await.expect(400);
    assert!(bad["message"].as_str().unwrap().contains("clientId"), "{bad}");
    let before = all_messages(&api, &alice, &id).await.as_array().unwrap().len();

    // Many retries of one send at once, mixed with other sends so that they batch.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (api, bob, id) = (api.clone(), bob.clone(), id.clone());
            tokio::spawn(async move {
                let client_id = if i % 2 == 0 { "k-2".to_string() } else { format!("other-{i}") };
                send_with_id(&api, &bob, &id, json!({"i": i}), &client_id).await.expect(200)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let retries: Vec<&Value> = answers.iter().step_by(2).collect();
    assert!(retries.iter().all(|a| *a == retries[0]), "identical answers: {retries:?}");
    let after = all_messages(&api, &alice, &id).await;
    assert_eq!(after.as_array().unwrap().len(), before + 21, "one message for the 20 retries, 20 others");
    let with_id: Vec<&Value> =
        after.as_array().unwrap().iter().filter(|m| m["clientId"] == json!("k-2")).collect();
    assert_eq!(with_id.len(), 1);
    assert_eq!(with_id[0]["seq"], retries[0]["seq"]);
    let sends = &gateway.health().await["sends"];
    assert!(sends["transactions"].as_u64() < sends["messages"].as_u64(), "some sends were batched: {sends}");
}

/// The retries a client makes after a lost answer (a failover): each with the first request's
/// client id, each answered the first answer, none applied twice.
#[tokio::test(flavor = "multi_thread")]
async fn retried_edits_reactions_and_deletes_answer_the_first_answer() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, id) = pair(&api).await;
    let seq = api.send(&bob, &id, json!("helo")).await.expect(200)["seq"].as_i64().unwrap();
    let message = format!("/channels/{}/messages/{seq}", encode(&id));
    let reactions = format!("{message}/reactions");
    let unreact = format!("{reactions}/{}?clientId=u-1", encode("👍"));
    let requests = [
        (Method::PATCH, message.clone(), &bob, Some(json!({"payload": "hello", "clientId": "e-1"}))),
        (Method::POST, reactions.clone(), &alice, Some(json!({"reaction": "👍", "clientId": "r-1"}))),
        (Method::DELETE, unreact, &alice, None),
        (Method::DELETE, format!("{message}?clientId=d-1"), &bob, None),
    ];
    for (method, path, user, body) in requests {
        let first = api.call(method.clone(), &path, Some(&user.token()), body.clone()).await.expect(200);
        let count = all_messages(&api, &alice, &id).await.as_array().unwrap().len();
        let again = api.call(method.clone(), &path, Some(&user.token()), body).await.expect(200);
        assert_eq!(again, first, "{method} {path}");
        assert_eq!(all_messages(&api, &alice, &id).await.as_array().unwrap().len(), count, "{method} {path}");
    }
    let events = all_messages(&api, &alice, &id).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().filter_map(|m| m["event"].as_str()).collect();
    assert_eq!(kinds, ["edit", "reaction", "reaction", "delete"], "each applied once");
    let other = api.send(&bob, &id, json!("another")).await.expect(200)["seq"].as_i64().unwrap();
    let elsewhere = format!("/channels/{}/messages/{other}/reactions", encode(&id));
    let reused = json!({"reaction": "👍", "clientId": "r-1"});
    let conflict = api.post(&elsewhere, Some(&alice.token()), reused).await.expect(409);
    assert!(conflict["message"].as_str().unwrap().contains("clientId"), "{conflict}");
    api.call(Method::DELETE, &format!("{message}?clientId="), Some(&bob.token()), None).await.expect(400);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_positions_and_unread_counts() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, id) = pair(&api).await;
    for i in 0..3 {
        api.send(&alice, &id, json!(i)).await.expect(200);
    }
    let path = format!("/channels/{}/read", encode(&id));
    let seen = api.get(&format!("/channels/{}", encode(&id)), Some(&bob.token())).await.expect(200);
    assert_eq!(
        (seen["lastSeq"].clone(), seen["readSeq"].clone(), seen["unread"].clone()),
        (json!(5), json!(0), json!(3))
    );
    let marked = api.post(&path, Some(&bob.token()), json!({"seq": 4})).await.expect(200);
    assert_eq!(marked, json!({"channelId": id, "lastSeq": 5, "readSeq": 4, "unread": 1}));
    let listed = api.get("/channels", Some(&bob.token())).await.expect(200);
    assert_eq!(listed[0]["unread"], json!(1));
    api.post(&path, Some(&bob.token()), json!({"seq": 99})).await.expect(400);
    api.post(&path, Some(&bob.token()), json!({"seq": "four"})).await.expect(400);
    api.post(&path, None, json!({"seq": 1})).await.expect(401);
    let carol = api.register("carol").await;
    api.post(&path, Some(&carol.token()), json!({"seq": 1})).await.expect(403);
    api.post("/channels/no-such-channel/read", Some(&bob.token()), json!({"seq": 1})).await.expect(404);
    let unchanged = api.get(&format!("/channels/{}", encode(&id)), Some(&bob.token())).await.expect(200);
    assert_eq!(unchanged["readSeq"], json!(4));

    let receipts = format!("/users/{}/read-receipts", bob.id);
    let off = api.call(Method::PUT, &receipts, Some(&bob.token()), Some(json!({"enabled": false}))).await;
    assert_eq!(off.expect(200), json!({"userId": bob.id, "readReceipts": false}));
    let by_alice =
        api.call(Method::PUT, &receipts, Some(&alice.token()), Some(json!({"enabled": true}))).await;
    by_alice.expect(403);
    let seen = api.get(&format!("/channels/{}", encode(&id)), Some(&alice.token())).await.expect(200);
    let ids: Vec<&Value> = seen["readReceipts"].as_array().unwrap().iter().map(|r| &r["userId"]).collect();
    assert_eq!(ids, vec![&json!(alice.id)], "bob's position is hidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_deletes_and_reactions() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, id) = pair(&api).await;
    let seq = api.send(&bob, &id, json!({"text": "helo"})).await.expect(200)["seq"].as_i64().unwrap();
    let message = format!("/channels/{}/messages/{seq}", encode(&id));
    let edit = |token: Option<String>, payload: Value| {
        let (api, message) = (api.clone(), message.clone());
        async move { api.call(Method::PATCH, &message, token.as_deref(), Some(json!({"payload": payload}))).await }
    };
    let before = all_messages(&api, &alice, &id).await;
    edit(Some(alice.token()), json!("not yours")).await.expect(403);
    edit(None, json!("who")).await.expect(401);
    api.call(
        Method::PATCH,
        &format!("/channels/{}/messages/999", encode(&id)),
        Some(&bob.token()),
        Some(json!({"payload": 1})),
    )
    .await
    .expect(404);
    api.call(
        Method::PATCH,
        &format!("/channels/{}/messages/abc", encode(&id)),
        Some(&bob.token()),
        Some(json!({"payload": 1})),
    )
    .await
    .expect(400);
    api.call(Method::PATCH, &message, Some(&bob.token()), Some(json!({}))).await.expect(400);
    assert_eq!(all_messages(&api, &alice, &id).await, before, "nothing changed");
    let edited = edit(Some(bob.token()), json!({"text": "hello"})).await.expect(200);
    assert_eq!(edited["seq"], json!(seq + 1));

    let reactions = format!("{message}/reactions");
    api.post(&reactions, Some(&alice.token()), json!({"reaction": "👍"})).await.expect(200);
    api.post(&reactions, Some(&alice.token()), json!({"reaction": "👍"})).await.expect(409);
    api.post(&reactions, Some(&alice.token()), json!({"reaction": ""})).await.expect(400);
    api.post(&reactions, Some(&bob.token()), json!({"reaction": "🎉"})).await.expect(200);
    let unreact = format!("{reactions}/{}", encode("🎉"));
    api.call(Method::DELETE, &unreact, Some(&bob.token()), None).await.expect(200);
    api.call(Method::DELETE, &unreact, Some(&bob.token()), None).await.expect(404);

    let folded = api.poll(&alice, &id, "limit=100&fold=true").await.expect(200);
    let original = folded.as_array().unwrap().iter().find(|m| m["seq"] == json!(seq)).unwrap().clone();
    assert_eq!(original["payload"], json!({"text": "hello"}));
    assert_eq!((original["edited"].clone(), original["reactions"].clone()), (json!(true), json!({"👍": 1})));
    assert!(folded.as_array().unwrap().iter().all(|m| m.get("event").is_none()), "no event rows: {folded}");
    let events = all_messages(&api, &alice, &id).await;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().filter_map(|m| m["event"].as_str()).collect();
    assert_eq!(kinds, ["edit", "reaction", "reaction", "reaction"], "in order, to every reader");

    let carol = api.register("carol").await;
    api.call(Method::DELETE, &message, Some(&carol.token()), None).await.expect(403);
    let deleted = api.call(Method::DELETE, &message, Some(&bob.token()), None).await.expect(200);
    assert_eq!(deleted["seq"].as_i64(), Some(seq + 5));
    api.call(Method::DELETE, &message, Some(&bob.token()), None).await.expect(404);
    let folded = api.poll(&alice, &id, "limit=100&fold=true").await.expect(200);
    let gone = folded.as_array().unwrap().iter().find(|m| m["seq"] == json!(seq)).unwrap().clone();
    assert_eq!((gone["deleted"].clone(), gone["payload"].clone()), (json!(true), Value::Null));
    let mut admin = admin().await;
    let rows: i64 = admin
        .query_one(
            "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND payload::text LIKE '%hel%'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the text is erased from the table");
    let _ = &mut admin;
}
