//! One caller never harms another, and no answer reveals internals: a payload PostgreSQL cannot
//! store fails only its own send, however sends are batched; JSON nested past
//! `hatchat.max_json_depth` is refused on every route before any SQL; one user's long-polls are
//! bounded per gateway without touching anyone else's; a 500 says only "internal" and a request id.

mod support;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::task::JoinSet;

/// Bodies PostgreSQL cannot store as jsonb, each as raw JSON text: `\u0000` (22P05), a lone
/// surrogate (22P02), and an array nested 20,000 deep (54001 from PostgreSQL's parser).
fn poison_payloads() -> Vec<String> {
    vec![
        r#""\u0000""#.to_string(),
        r#""\udc00""#.to_string(),
        format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
    ]
}

fn send_body(channel: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"channelId": {}, "payload": {payload}}}"#, json!(channel)).into_bytes()
}

fn names_the_depth_limit(body: &Value) -> bool {
    body["message"].as_str().is_some_and(|m| m.contains("64") && m.contains("hatchat.max_json_depth"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_postgres_cannot_store_fails_only_its_own_send() {
    const SENDERS: usize = 12;
    const ROUNDS: usize = 12;
    let gateway = Gateway::start_with(&[("HATCHAT_SEND_SLOTS", "1")]).await;
    let api = gateway.api();
    let owner = api.register("alice").await;
    let hot: Vec<String> = {
        let mut hot = Vec::new();
        for _ in 0..2 {
            hot.push(api.create_channel(&owner, "self").await);
        }
        hot
    };
    let mallory = api.register("dave").await;
    for channel in &hot {
        api.join(&mallory, channel).await.expect(200);
    }
    let mut senders = Vec::new();
    let mut readers: Vec<(String, User)> = hot.iter().map(|c| (c.clone(), owner.clone())).collect();
    for n in 0..SENDERS {
        let user = api.register(["bob", "carol", "dave"][n % 3]).await;
        for channel in &hot {
            api.join(&user, channel).await.expect(200);
        }
        let own = api.create_channel(&user, "owner").await;
        readers.push((own.clone(), user.clone()));
        senders.push((user, own));
    }

    // Bad sends, with a member's token and without any, until every good send is answered.
    let done = Arc::new(AtomicBool::new(false));
    let mut poisoners = JoinSet::new();
    for (index, payload) in poison_payloads().into_iter().enumerate() {
        for token in [Some(mallory.token()), None] {
            let (api, done, payload, channel) =
                (api.clone(), Arc::clone(&done), payload.clone(), hot[index % 2].clone());
            poisoners.spawn(async move {
                let mut answers = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let body = send_body(&channel, &payload);
                    let reply =
                        api.post_raw("/messages", token.as_deref(), Some("application/json"), body).await;
                    answers.push((index, reply));
                }
                answers
            });
        }
    }
    let mut good = JoinSet::new();
    for (n, (user, own)) in senders.into_iter().enumerate() {
        let (api, hot) = (api.clone(), hot.clone());
        good.spawn(async move {
            let mut sent = Vec::new();
            for round in 0..ROUNDS {
                let channel = if round % 2 == 0 { own.clone() } else { hot[(n + round) % 2].clone() };
                let payload = json!({"sender": n, "round": round});
                let reply = api.send(&user, &channel, payload.clone()).await;
                sent.push((channel, payload, reply));
            }
            sent
        });
    }
    let mut answered: HashMap<(String, i64), Value> = HashMap::new();
    while let Some(sent) = good.join_next().await {
        for (channel, payload, reply) in sent.unwrap() {
            assert_eq!(reply.status, 200, "a good send beside bad ones: {}", reply.body);
            let seq = reply.body["seq"].as_i64().expect("a seq");
            assert!(answered.insert((channel.clone(), seq), payload).is_none(), "a seq answered twice");
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut bad_sends = 0;
    while let Some(answers) = poisoners.join_next().await {
        for (index, reply) in answers.unwrap() {
            bad_sends += 1;
            assert_eq!(reply.status, 400, "bad payload {index}: {}", reply.body);
            assert!(reply.body["error"].is_string() && reply.body["message"].is_string(), "{}", reply.body);
            if index == 2 {
                assert!(names_the_depth_limit(&reply.body), "{}", reply.body);
            }
        }
    }
    assert!(bad_sends >= 6, "the bad sends ran: {bad_sends}");

    let sends = &gateway.health().await["sends"];
    let (transactions, messages) =
        (sends["transactions"].as_u64().unwrap(), sends["messages"].as_u64().unwrap());
    assert!(transactions < messages, "sends were batched: {transactions} transactions for {messages}");

    // Every good send stored once, where its answer said, and nothing else but the join messages.
    for (channel, reader) in readers {
        let stored = api.poll(&reader, &channel, "limit=1000&wait=0").await.expect(200);
        let stored: HashMap<(String, i64), Value> = stored
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["payload"]["event"].is_string())
            .map(|m| ((channel.clone(), m["seq"].as_i64().unwrap()), m["payload"].clone()))
            .collect();
        let expected: HashMap<(String, i64), Value> = answered
            .iter()
            .filter(|((c, _), _)| *c == channel)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(stored, expected, "channel {channel}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_nested_past_the_limit_is_refused_on_every_route() {
    set_secret().await;
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let channel = api.create_channel(&alice, "owner").await;
    let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));

    // The body's object is one level: options nested 64 more is 65.
    let id = format!("deep-{}", short_id());
    let body = format!(r#"{{"id": "{id}", "options": {}}}"#, deep(64)).into_bytes();
    let reply = api.post_raw("/channels", Some(&alice.token()), Some("application/json"), body).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(names_the_depth_limit(&reply.body), "{}", reply.body);
    api.get(&format!("/channels/{id}"), Some(&alice.token())).await.expect(404);

    let reply = api.post_raw("/messages", Some(&alice.token()), None, send_body(&channel, &deep(64))).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(names_the_depth_limit(&reply.body), "{}", reply.body);
    // 64 levels in all is within the limit, and stored exactly.
    let reply = api.post_raw("/messages", Some(&alice.token()), None, send_body(&channel, &deep(63))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored = api.poll(&alice, &channel, "wait=0").await.expect(200);
    assert_eq!(seqs(&stored), vec![1, 2], "the join message and the one accepted send");

    let created = api
        .post(
            &format!("/chat/v1/auth/{}/rooms", encode(&seed_token("alice", alice.id, 60))),
            None,
            json!({"type": "triominos/v1", "users": [alice.username, bob.username]}),
        )
        .await
        .expect(200);
    let room = created["id"].as_str().unwrap();
    let path = format!(
        "/chat/v1/auth/{}/rooms/{}/messages",
        encode(&seed_token("alice", alice.id, 60)),
        encode(room)
    );
    let body = format!(r#"{{"timestamp": 1, "type": "text", "message": "hi", "extra": {}}}"#, deep(64));
    let reply = api.post_raw(&path, None, Some("application/json"), body.into_bytes()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(names_the_depth_limit(&reply.body), "{}", reply.body);
}

const SECRET: &str = "test-server-secret-4b1d9f0e7c";

async fn set_secret() {
    admin().await.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
}

/// A long-poll of `user` on `channel` that waits (nothing after `after_seq`) for `wait` seconds.
fn spawn_poll(
    api: &Api,
    user: &User,
    channel: &str,
    after_seq: i64,
    wait: u32,
) -> tokio::task::JoinHandle<Reply> {
    let (api, user, channel) = (api.clone(), user.clone(), channel.to_string());
    tokio::spawn(async move { api.poll(&user, &channel, &format!("afterSeq={after_seq}&wait={wait}")).await })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_user_holds_at_most_sixteen_long_polls_and_others_are_unaffected() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let mut channels = Vec::new();
    for _ in 0..17 {
        channels.push(api.create_channel(&alice, "owner").await);
    }
    // Seventeen at once: sixteen wait, one is refused at once.
    let mut polls: HashMap<usize, tokio::task::JoinHandle<Reply>> =
        channels.iter().enumerate().map(|(n, c)| (n, spawn_poll(&api, &alice, c, 1, 20))).collect();
    let refused = loop {
        let finished: Vec<usize> = polls.iter().filter(|(_, p)| p.is_finished()).map(|(n, _)| *n).collect();
        if let Some(n) = finished.first() {
            assert_eq!(finished.len(), 1, "only one of the seventeen answers at once");
            break *n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let response = api
        .http
        .get(format!("{}/messages?channelId={}&afterSeq=1&wait=20", api.base, encode(&channels[refused])))
        .header("Authorization", alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after =
        response.headers().get("retry-after").expect("Retry-After").to_str().unwrap().to_string();
    assert!(retry_after.parse::<u32>().is_ok_and(|s| s >= 1), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], json!("too_many_requests"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("16"), "{body}");
    let first = polls.remove(&refused).unwrap().await.unwrap();
    assert_eq!(first.status, 429, "{}", first.body);

    // Another user is not affected: bob's long-poll waits out its time and answers [].
    let bobs = api.create_channel(&bob, "owner").await;
    let reply = spawn_poll(&api, &bob, &bobs, 1, 1).await.unwrap();
    assert_eq!((reply.status, reply.body.clone()), (200, json!([])));

    // When one of alice's ends, she may start another.
    let (&ended, _) = polls.iter().next().unwrap();
    let sent = api.send(&alice, &channels[ended], json!("wake")).await.expect(200);
    let reply = polls.remove(&ended).unwrap().await.unwrap();
    assert_eq!(reply.expect(200)[0]["seq"], sent["seq"]);
    let reply = spawn_poll(&api, &alice, &channels[ended], 2, 1).await.unwrap();
    assert_eq!((reply.status, reply.body.clone()), (200, json!([])), "accepted, and waited");
    for poll in polls.into_values() {
        poll.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_says_internal_and_a_request_id_and_nothing_else() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let db = admin().await;
    // On a Citus cluster (scripts/test-citus.sh) users is a reference table, where Citus accepts a
    // trigger only when told to (it then creates it on every node's copy).
    db.batch_execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN \
             SET citus.enable_unsafe_triggers = on; END IF; END $$",
    )
    .await
    .unwrap();
    // One statement per call: Citus passes a DDL statement's text on to the other nodes, which
    // refuse several commands in one.
    for statement in [
        "CREATE OR REPLACE FUNCTION public.isolation_trap() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'the secret is swordfish' USING ERRCODE = 'XX001', \
               DETAIL = 'swordfish detail', HINT = 'swordfish hint'; END $$",
        "DROP TRIGGER IF EXISTS isolation_trap ON hatchat.users",
        "CREATE TRIGGER isolation_trap BEFORE INSERT ON hatchat.users FOR EACH ROW \
         WHEN (NEW.username LIKE 'trapped-%') EXECUTE FUNCTION public.isolation_trap()",
    ] {
        db.batch_execute(statement).await.unwrap();
    }
    let username = format!("trapped-{}", short_id());
    let id = uuid::Uuid::new_v4();
    let reply = api
        .post("/users", None, json!({"id": id, "publicKey": fixture("alice.pub.pem"), "username": username}))
        .await;
    db.batch_execute("DROP TRIGGER isolation_trap ON hatchat.users").await.unwrap();
    db.batch_execute("DROP FUNCTION public.isolation_trap()").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.body);
    let object = reply.body.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["error", "requestId"], "{}", reply.body);
    assert_eq!(reply.body["error"], json!("internal"));
    assert!(reply.body["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}", reply.body);
    assert!(!reply.body.to_string().contains("swordfish"), "{}", reply.body);
    // Nothing was stored, and other registrations work.
    api.get(&format!("/users/{id}"), None).await.expect(404);
    api.register("alice").await;
}
