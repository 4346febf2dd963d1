//! Over HTTP: a retried `POST /messages` with a clientId is answered with the first send's seq,
//! also when many retries race through group commit; `POST /channels/{id}/read` moves the read
//! position that the channel views report.

mod support;
use serde_json::{json, Value};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_through_group_commit_store_one_message() {
    // One slot: the first send goes alone, the ones arriving meanwhile go together in a batch.
    let gateway = Gateway::start_with(&[("HATCHAT_SEND_SLOTS", "1")]).await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = api.create_channel(&alice, "owner").await;

    for round in 0..3 {
        let client_id = format!("retry-{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (api, token, channel, client_id) =
                    (api.clone(), alice.token(), channel.clone(), client_id.clone());
                tokio::spawn(async move {
                    let body = json!({"channelId": channel, "payload": {"try": i}, "clientId": client_id});
                    api.post("/messages", Some(&token), body).await.expect(200)
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert!(answers.iter().all(|a| *a == answers[0]), "identical answers: {answers:?}");
        assert_eq!(answers[0]["seq"], json!(2 + round), "one message per clientId, no gaps");
    }
    let stored = api.poll(&alice, &channel, "afterSeq=0&limit=100").await.expect(200);
    assert_eq!(seqs(&stored), vec![1, 2, 3, 4], "the join and one message per clientId");
    let next = api.send(&alice, &channel, json!("next")).await.expect(200);
    assert_eq!(next["seq"], json!(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_post_answers_the_same_and_bad_client_ids_are_400() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let channel = api.create_channel(&alice, "self").await;
    api.join(&bob, &channel).await.expect(200);
    let post = |who: &User, id: Value| {
        let body = json!({"channelId": channel, "payload": "hi", "clientId": id});
        let (api, token) = (api.clone(), who.token());
        async move { api.post("/messages", Some(&token), body).await }
    };
    let first = post(&alice, json!("m1")).await.expect(200);
    assert_eq!(post(&alice, json!("m1")).await.expect(200), first);
    let bobs = post(&bob, json!("m1")).await.expect(200);
    assert_eq!(
        bobs["seq"],
        json!(first["seq"].as_i64().unwrap() + 1),
        "another sender's m1 is another message"
    );

    for bad in [json!(""), json!("x".repeat(65)), json!("a\nb"), json!(5)] {
        post(&alice, bad).await.expect(400);
    }
    let stored = api.poll(&alice, &channel, "afterSeq=0&limit=100").await.expect(200);
    assert_eq!(seqs(&stored), vec![1, 2, 3, 4], "joins, m1 from each: the bad ones stored nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn marking_read_moves_the_position_the_channel_views_report() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let stranger = api.register("carol").await;
    let channel = api.create_channel(&alice, "self").await;
    api.join(&bob, &channel).await.expect(200);
    for n in 0..3 {
        api.send(&alice, &channel, json!(n)).await.expect(200);
    }
    let path = format!("/channels/{}/read", encode(&channel));
    let view = api.get(&format!("/channels/{}", encode(&channel)), Some(&bob.token())).await.expect(200);
    assert_eq!((&view["lastSeq"], &view["readSeq"], &view["unread"]), (&json!(5), &json!(1), &json!(3)));

    let read = api.post(&path, Some(&bob.token()), json!({"seq": 3})).await.expect(200);
    assert_eq!(read, json!({"channelId": channel, "lastSeq": 5, "readSeq": 3, "unread": 2}));
    let back = api.post(&path, Some(&bob.token()), json!({"seq": 1})).await.expect(200);
    assert_eq!(back["readSeq"], json!(3), "never backwards");
    let listed = api.get("/channels", Some(&bob.token())).await.expect(200);
    let row = listed.as_array().unwrap().iter().find(|c| c["id"] == json!(channel)).unwrap().clone();
    assert_eq!((&row["lastSeq"], &row["readSeq"], &row["unread"]), (&json!(5), &json!(3), &json!(2)));
    let members = api.get(&format!("/channels/{}", encode(&channel)), Some(&alice.token())).await.expect(200);
    assert_eq!(members["members"][1], json!({"id": bob.id, "username": bob.username, "readSeq": 3}));

    api.post(&path, Some(&stranger.token()), json!({"seq": 5})).await.expect(403);
    api.post("/channels/no-such-channel/read", Some(&bob.token()), json!({"seq": 5})).await.expect(404);
    api.post(&path, Some(&bob.token()), json!({"seq": -1})).await.expect(400);
    api.post(&path, Some(&bob.token()), json!({})).await.expect(400);
    api.post(&path, Some(&bob.token()), json!({"seq": "3"})).await.expect(400);
    api.post(&path, None, json!({"seq": 5})).await.expect(401);
    let unchanged = api.post(&path, Some(&bob.token()), json!({"seq": 0})).await.expect(200);
    assert_eq!(unchanged["readSeq"], json!(3), "the refused calls changed nothing");
}
