//! Sends committed together: concurrent sends that batch answer each as if sent alone; many clients
//! over one and many channels stay exact; a plain-SQL send wakes long-polls only when its
//! transaction commits; a channel locked by an outside transaction holds up only its own sends.

mod support;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

/// Sends `items` all at once (so that they batch) and returns each (status, body).
async fn send_all(api: &Api, items: Vec<(Option<String>, String, Value)>) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = items
        .into_iter()
        .map(|(token, channel, payload)| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut request = api.http.post(format!("{}/messages", api.base));
                if let Some(token) = token {
                    request = request.header("Authorization", token);
                }
                let response =
                    request.json(&json!({"channelId": channel, "payload": payload})).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_sends_answer_each_as_if_sent_alone() {
    // One slot: everything that arrives while a send is in flight is committed together.
    let gateway = Gateway::start_with(&[("HATCHAT_SEND_SLOTS", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let stranger = api.register("carol").await;
    let channel = api.create_channel(&alice, "owner").await;
    let other = api.create_channel(&alice, "owner").await;
    let expired = format!("Bearer {}", seed_token("alice", alice.id, -5));
    let big = json!("x".repeat(70_000));

    for round in 0..5 {
        let items = vec![
            (Some(alice.token()), channel.clone(), json!({"round": round, "n": 1})),
            (Some("Bearer bad.token.here".to_string()), channel.clone(), json!("bad token")),
            (Some(expired.clone()), channel.clone(), json!("expired")),
            (Some(stranger.token()), channel.clone(), json!("not a member")),
            (Some(alice.token()), "no-such-channel".to_string(), json!("missing")),
            (Some(alice.token()), channel.clone(), big.clone()),
            (None, channel.clone(), json!("no token")),
            (Some(alice.token()), other.clone(), json!({"round": round, "n": 2})),
            (Some(alice.token()), channel.clone(), json!({"round": round, "n": 3})),
        ];
        let answers = send_all(&api, items).await;
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [200, 401, 401, 403, 404, 413, 401, 200, 200], "round {round}: {answers:?}");
        for (status, body) in &answers {
            if *status != 200 {
                assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
            }
        }
        let alone = api.send(&stranger, &channel, json!("again, alone")).await;
        assert_eq!((alone.status, &alone.body["message"]), (403, &answers[3].1["message"]));
    }
    let sends = &gateway.health().await["sends"];
    let (transactions, messages) =
        (sends["transactions"].as_u64().unwrap(), sends["messages"].as_u64().unwrap());
    assert_eq!(messages, 5 * 10);
    assert!(transactions <= 35, "the sends were committed together: {transactions} transactions for 50");
    let stored = api.poll(&alice, &channel, "limit=1000&wait=0").await.expect(200);
    let payloads: Vec<&Value> = stored.as_array().unwrap()[1..].iter().map(|m| &m["payload"]).collect();
    assert_eq!(payloads.len(), 10, "only the good sends were stored: {payloads:?}");
    assert!(payloads.iter().all(|p| p["round"].is_number()));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_clients_over_many_channels_get_the_seqs_that_were_stored() {
    const CLIENTS: usize = 24;
    const EACH: usize = 15;
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let owner = api.register("alice").await;
    let channels: Vec<String> = {
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(api.create_channel(&owner, "self").await);
        }
        channels
    };
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let user = api.register(["bob", "carol", "dave"][n % 3]).await;
        for channel in &channels {
            api.join(&user, channel).await.expect(200);
        }
        clients.push(user);
    }
    let started = Instant::now();
    let sending: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, user)| {
            let (api, channels) = (api.clone(), channels.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..EACH {
                    let channel = &channels[(n + i) % channels.len()];
                    let reply = api.send(&user, channel, json!({"client": n, "i": i})).await.expect(200);
                    sent.push((
                        channel.clone(),
                        reply["seq"].as_i64().unwrap(),
                        json!({"client": n, "i": i}),
                    ));
                }
                sent
            })
        })
        .collect();
    let mut answered: HashMap<(String, i64), Value> = HashMap::new();
    for task in sending {
        for (channel, seq, payload) in task.await.unwrap() {
            assert!(answered.insert((channel, seq), payload).is_none(), "a seq answered twice");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    for channel in &channels {
        let stored = api.poll(&owner, channel, "limit=1000&wait=0").await.expect(200);
        let stored = stored.as_array().unwrap();
        let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "gap-free");
        let mut timestamps: Vec<&str> = stored.iter().map(|m| m["createdAt"].as_str().unwrap()).collect();
        let sorted = timestamps.clone();
        timestamps.dedup();
        assert_eq!(timestamps, sorted, "createdAt strictly increasing");
        for message in stored.iter().filter(|m| m["payload"]["client"].is_number()) {
            let key = (channel.clone(), message["seq"].as_i64().unwrap());
            assert_eq!(answered.get(&key), Some(&message["payload"]), "the answer names the stored message");
        }
    }
    assert_eq!(answered.len(), CLIENTS * EACH);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_held_by_an_outside_transaction_holds_up_only_its_own_sends() {
    // One slot (the default): the held channel's send stalls in it; others must still go.
    let gateway = Gateway::start_with(&[("HATCHAT_SEND_SLOTS", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let held = api.create_channel(&alice, "owner").await;
    let free = api.create_channel(&alice, "owner").await;
    let mut db = admin().await;
    let tx = db.transaction().await.unwrap();
    tx.execute("SELECT hatchat.send_message($1, $2, '\"outside\"')", &[&alice.token(), &held]).await.unwrap();

    let send_in_background = |payload: &'static str| {
        let (api, alice, held) = (api.clone(), alice.clone(), held.clone());
        tokio::spawn(async move { api.send(&alice, &held, json!(payload)).await })
    };
    let first = send_in_background("first behind");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = send_in_background("second behind");
    for n in 0..3 {
        let reply = tokio::time::timeout(Duration::from_secs(10), api.send(&alice, &free, json!(n)))
            .await
            .expect("a send to another channel is not held up by the held one");
        assert_eq!(reply.expect(200)["seq"], n + 2);
    }
    assert!(!first.is_finished() && !second.is_finished(), "the held channel's sends wait for its lock");

    tx.commit().await.unwrap();
    assert_eq!(first.await.unwrap().expect(200)["seq"], 3);
    assert_eq!(second.await.unwrap().expect(200)["seq"], 4);
    let stored = api.poll(&alice, &held, "afterSeq=1&wait=0").await.expect(200);
    let payloads: Vec<&Value> = stored.as_array().unwrap().iter().map(|m| &m["payload"]).collect();
    assert_eq!(payloads, [&json!("outside"), &json!("first behind"), &json!("second behind")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_sql_send_wakes_long_polls_only_when_its_transaction_commits() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "owner").await;
    let mut db = admin().await;

    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=1&wait=5").await;
    let tx = db.transaction().await.unwrap();
    tx.execute("SELECT hatchat.send_message($1, $2, '\"rolled back\"')", &[&alice.token(), &channel])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "not woken before commit");
    tx.rollback().await.unwrap();
    let (reply, _) = waiting.await.unwrap();
    assert_eq!(reply.expect(200), json!([]), "a rollback wakes nobody with a message");

    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=1&wait=5").await;
    let tx = db.transaction().await.unwrap();
    tx.execute("SELECT hatchat.send_message($1, $2, '\"first\"')", &[&alice.token(), &channel])
        .await
        .unwrap();
    tx.execute("SELECT hatchat.send_message($1, $2, '\"second\"')", &[&alice.token(), &channel])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "not woken before commit");
    let committed = Instant::now();
    tx.commit().await.unwrap();
    let page = waiting.await.unwrap().0.expect(200);
    assert!(committed.elapsed() < Duration::from_secs(1));
    let payloads: Vec<&Value> = page.as_array().unwrap().iter().map(|m| &m["payload"]).collect();
    assert_eq!(payloads, [&json!("first"), &json!("second")]);
}
