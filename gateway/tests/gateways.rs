//! Several gateway processes against one database (one node, or a Citus cluster's coordinator):
//! a long-poll held by gateway A is answered by a send through gateway B, and a live stream (SSE)
//! on A gets B's message. Nothing is shared between gateways but the database's announcements.

mod support;
use serde_json::json;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_on_one_gateway_is_answered_by_a_send_through_another() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let waiting = background_poll(&a, &alice, &channel, "afterSeq=2&wait=20").await;

    let sent = b.api().send(&bob, &channel, json!({"via": "b"})).await.expect(200);
    let (reply, _) = tokio::time::timeout(WITHIN, waiting).await.expect("answered in time").unwrap();
    let page = reply.expect(200);
    assert_eq!(seqs(&page), vec![sent["seq"].as_i64().unwrap()], "{page}");
    assert_eq!(page[0]["payload"], json!({"via": "b"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_on_one_gateway_gets_a_message_sent_through_another() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let api = a.api();
    let mut stream = api
        .http
        .get(format!("{}/channels/{}/events?afterSeq=2", api.base, encode(&channel)))
        .header("Authorization", alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let sent = b.api().send(&bob, &channel, json!({"via": "b, streamed"})).await.expect(200);
    let seq = sent["seq"].as_i64().unwrap();
    // Blocks up to the first that carries data (a `retry:` or a comment carries none).
    let mut received = String::new();
    let (event, data) = loop {
        if let Some(end) = received.find("\n\n") {
            let block: String = received.drain(..end + 2).collect();
            let data = block.lines().find_map(|line| line.strip_prefix("data: ")).map(str::to_string);
            match data {
                Some(data) => break (block, data),
                None => continue,
            }
        }
        let chunk = tokio::time::timeout(WITHIN, stream.chunk()).await.expect("an event in time");
        received.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream goes on")).unwrap());
    };
    let message: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (message["seq"].as_i64(), &message["payload"]),
        (Some(seq), &json!({"via": "b, streamed"})),
        "{event}"
    );
    assert!(event.lines().any(|line| line == format!("id: {seq}")), "{event}");
}
