//! Long-polls: woken by a send from another client, timing out with `[]`, surviving a listener
//! restart without losing a message, cancelled by a client that goes away, answered at shutdown,
//! across several gateways, exact under concurrent senders, and sharing their channel's feed
//! whichever position they follow.

mod support;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_send_from_another_client_releases_the_long_poll_within_100ms() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=2&wait=10").await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let sent = api.send(&bob, &channel, json!({"text": "wake up"})).await.expect(200);
    let send_returned = Instant::now();
    let (reply, answered) = waiting.await.unwrap();
    let page = reply.expect(200);
    assert_eq!(seqs(&page), vec![sent["seq"].as_i64().unwrap()]);
    assert_eq!(page[0]["payload"], json!({"text": "wake up"}));
    let lag = answered.saturating_duration_since(send_returned);
    assert!(lag < Duration::from_millis(100), "released {lag:?} after the send returned");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_long_poll_times_out_with_an_empty_array() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let started = Instant::now();
    let page = api.poll(&alice, &channel, "afterSeq=2&wait=0.5").await.expect(200);
    let took = started.elapsed();
    assert_eq!(page, json!([]));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_window_answers_at_once() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let started = Instant::now();
    let page = api.poll(&alice, &channel, "afterSeq=2&until=2000-01-01T00:00:00Z&wait=10").await.expect(200);
    assert_eq!(page, json!([]));
    assert!(started.elapsed() < Duration::from_secs(2), "no waiting when until is past");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_while_the_listener_is_down_is_still_delivered() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=2&wait=20").await;

    // Kill this gateway's LISTEN backend, and send (through SQL, so the gateway plays no part)
    // before it can reconnect.
    let admin = admin().await;
    let listener = format!("{}-listener", gateway.name);
    let killed: bool = admin
        .query_one(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&listener],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed, "found and killed the listener backend");
    admin
        .query_one(
            "SELECT hatchat.send_message($1, $2, '\"while you were away\"')",
            &[&bob.token(), &channel],
        )
        .await
        .unwrap();

    let (reply, _) =
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("delivered").unwrap();
    let page = reply.expect(200);
    assert_eq!(page[0]["payload"], json!("while you were away"));
    gateway.wait_healthy(Duration::from_secs(10)).await;

    // And the new listener connection works.
    let next = background_poll(&gateway, &alice, &channel, "afterSeq=3&wait=10").await;
    api.send(&bob, &channel, json!("after the restart")).await.expect(200);
    let (reply, _) = next.await.unwrap();
    assert_eq!(reply.expect(200)[0]["payload"], json!("after the restart"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cancels_its_wait() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let url = format!("{}/messages?channelId={}&afterSeq=2&wait=30", api.base, encode(&channel));
    let result = impatient.get(url).header("Authorization", alice.token()).send().await;
    assert!(result.is_err(), "the client gave up");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.waiting().await > 0 {
        assert!(Instant::now() < deadline, "the gateway still holds the abandoned long-poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_waiters_and_exits_cleanly() {
    let mut gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let waiting = background_poll(&gateway, &alice, &channel, "afterSeq=2&wait=30").await;
    let asked = Instant::now();
    gateway.terminate();
    let (reply, answered) = waiting.await.unwrap();
    assert_eq!(reply.expect(200), json!([]));
    assert!(answered - asked < Duration::from_secs(3), "answered at shutdown, not at the deadline");
    assert_eq!(gateway.exit_code(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn several_gateways_on_one_database_all_wake() {
    let first = Gateway::start().await;
    let second = Gateway::start().await;
    let (alice, bob, channel) = first.api().alice_and_bob_in_a_channel().await;
    let waiting = background_poll(&second, &alice, &channel, "afterSeq=2&wait=10").await;
    first.api().send(&bob, &channel, json!("across gateways")).await.expect(200);
    let (reply, _) = waiting.await.unwrap();
    assert_eq!(reply.expect(200)[0]["payload"], json!("across gateways"));
}

#[derive(Clone, Copy)]
enum Cursor {
    Since,
    AfterSeq,
}

/// Long-polls until `expected` messages were seen, moving its cursor after every page.
async fn read_all(api: Api, reader: User, channel: String, cursor: Cursor, expected: usize) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected {
        assert!(Instant::now() < deadline, "saw only {} of {expected}", seen.len());
        let query = match (cursor, seen.last()) {
            (_, None) => "limit=50&wait=5".to_string(),
            (Cursor::Since, Some(last)) => {
                format!("since={}&limit=50&wait=5", encode(last["createdAt"].as_str().unwrap()))
            }
            (Cursor::AfterSeq, Some(last)) => format!("afterSeq={}&limit=50&wait=5", last["seq"]),
        };
        let page = api.poll(&reader, &channel, &query).await.expect(200);
        seen.extend(page.as_array().unwrap().iter().cloned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_senders_and_long_polling_readers_see_each_message_once_in_order() {
    const SENDERS: usize = 8;
    const EACH: usize = 25;
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let sender = api.register("carol").await;
        api.join(&sender, &channel).await.expect(200);
        senders.push(sender);
    }
    let expected = 2 + SENDERS + SENDERS * EACH;
    let readers: Vec<_> = [Cursor::Since, Cursor::AfterSeq]
        .into_iter()
        .map(|cursor| tokio::spawn(read_all(api.clone(), alice.clone(), channel.clone(), cursor, expected)))
        .collect();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, sender)| {
            let (api, channel) = (api.clone(), channel.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..EACH {
                    let reply = api.send(&sender, &channel, json!({"sender": n, "i": i})).await.expect(200);
                    answers.push(reply["seq"].as_i64().unwrap());
                }
                answers
            })
        })
        .collect();
    let mut answered = HashSet::new();
    for sender in sending {
        for seq in sender.await.unwrap() {
            assert!(answered.insert(seq), "seq {seq} answered twice");
        }
    }
    for reader in readers {
        let seen = reader.await.unwrap();
        let seen_seqs: Vec<i64> = seen.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seen_seqs, (1..=expected as i64).collect::<Vec<_>>(), "each once, in order");
        for seq in &answered {
            let message = &seen[*seq as usize - 1];
            assert!(message["payload"]["sender"].is_number(), "the answer's seq names the stored message");
        }
    }
}

/// Long-polls that follow a time (`since`, the form the seeds' clients use) wait through their
/// channel's feed as those that follow a seq do: one window read per wake-up for all of them, and
/// each still answers only what is newer than its own time.
#[tokio::test(flavor = "multi_thread")]
async fn long_polls_that_follow_a_time_share_their_channels_feed() {
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_POLLS_PER_USER", "100")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let last = api.send(&bob, &channel, json!("before")).await.expect(200);
    let since = encode(last["createdAt"].as_str().unwrap());
    let mut polls = Vec::new();
    for _ in 0..20 {
        polls.push(background_poll(&gateway, &alice, &channel, &format!("since={since}&wait=10")).await);
    }
    // A time after anything sent here: it waits on the same feed and is handed nothing.
    let later = background_poll(&gateway, &alice, &channel, "since=2999-01-01T00:00:00Z&wait=2").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.health().await["liveReaders"] != json!(21) {
        assert!(Instant::now() < deadline, "the polls never joined the feed: {}", gateway.health().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = gateway.health().await["windowQueries"].as_u64().unwrap();
    let sent = api.send(&bob, &channel, json!("after")).await.expect(200);
    for poll in polls {
        let page = poll.await.unwrap().0.expect(200);
        assert_eq!(seqs(&page), vec![sent["seq"].as_i64().unwrap()]);
    }
    let queries = gateway.health().await["windowQueries"].as_u64().unwrap() - before;
    assert!(queries <= 2, "{queries} window queries for one wake-up of 21 long-polls");
    assert_eq!(later.await.unwrap().0.expect(200), json!([]), "nothing is newer than 2999");
}
