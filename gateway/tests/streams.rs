//! Live streams end to end: SSE resumes exactly after a disconnect in the middle of a burst, says
//! `reset` when history was capped and `closed` when the reader may read no more; one read per
//! wake-up serves every reader of a channel; a reader that does not read is closed without
//! delaying the others; a storm of resumptions sees every message once; one WebSocket subscribes
//! to several channels and sends.

mod support;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::ws::{connect as connect_ws, frame, send_frame};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An SSE connection read as the spec says: blocks separated by a blank line.
struct Sse {
    response: reqwest::Response,
    buffer: String,
    retry: Option<String>,
    comments: Vec<String>,
}

impl Sse {
    async fn open(api: &Api, path: &str, token: Option<&str>, last_event_id: Option<&str>) -> Self {
        let mut request = api.http.get(format!("{}{path}", api.base));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(content_type, "text/event-stream");
        Sse { response, buffer: String::new(), retry: None, comments: Vec::new() }
    }

    /// The next event (comments and `retry:` are recorded, not returned).
    async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(WITHIN, self.response.chunk()).await.expect("an event in time");
            let chunk = chunk.unwrap().expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    fn parse(&mut self, block: &str) -> Option<Event> {
        let (mut id, mut event, mut data) = (None, String::from("message"), None);
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => self.comments.push(value.to_string()),
                "retry" => self.retry = Some(value.to_string()),
                "id" => id = Some(value.to_string()),
                "event" => event = value.to_string(),
                "data" => data = Some(serde_json::from_str(value).unwrap()),
                other => panic!("unknown SSE field {other:?}"),
            }
        }
        data.map(|data| Event { id, event, data })
    }

    /// True when the server ends the stream (after its last event) within the deadline.
    async fn ends(&mut self) -> bool {
        matches!(tokio::time::timeout(WITHIN, self.response.chunk()).await, Ok(Ok(None)))
    }
}

fn events_path(channel: &str, query: &str) -> String {
    format!("/channels/{}/events?{query}", encode(channel))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_resumed_with_last_event_id_mid_burst_sees_every_message_once_in_order() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut sse = Sse::open(&api, &events_path(&channel, "afterSeq=2"), Some(&alice.token()), None).await;
    let burst = {
        let (api, channel) = (api.clone(), channel.clone());
        tokio::spawn(async move {
            for n in 0..60 {
                api.send(&bob, &channel, json!({"n": n})).await.expect(200);
            }
        })
    };
    let mut seen: Vec<Event> = Vec::new();
    while seen.len() < 20 {
        seen.push(sse.next().await);
    }
    assert_eq!(sse.retry.as_deref(), Some("2000"), "retry: is set");
    drop(sse);
    // EventSource sends the last id it saw; the query's afterSeq must not win over it.
    let last = seen.last().unwrap().id.clone().unwrap();
    let path = events_path(&channel, "afterSeq=0");
    let mut sse = Sse::open(&api, &path, Some(&alice.token()), Some(&last)).await;
    while seen.len() < 60 {
        seen.push(sse.next().await);
    }
    burst.await.unwrap();
    for (n, event) in seen.iter().enumerate() {
        let seq = n as i64 + 3;
        assert_eq!(event.event, "message");
        assert_eq!(event.id, Some(seq.to_string()));
        assert_eq!(event.data["seq"], json!(seq));
        assert_eq!(event.data["payload"], json!({"n": n}), "each message exactly once, in order");
    }
}

/// A reconnect storm: a hundred streams resume at once, from positions all over the channel's
/// history, while messages keep coming. Those with nothing to catch up on join the channel's feed
/// at once and share its reads; each sees every message after its position once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_resumptions_gets_every_message_once_in_order() {
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_POLLS_PER_USER", "200")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    for n in 0..20 {
        api.send(&bob, &channel, json!({"n": n})).await.expect(200);
    }
    // Seqs 3..=22 are sent; 20 more come while the streams open.
    let burst = {
        let (api, bob, channel) = (api.clone(), bob.clone(), channel.clone());
        tokio::spawn(async move {
            for n in 20..40 {
                api.send(&bob, &channel, json!({"n": n})).await.expect(200);
            }
        })
    };
    let token = alice.token();
    let resumed = (0..100).map(|i| {
        let (api, path, token) = (api.clone(), events_path(&channel, ""), token.clone());
        async move {
            let from = 2 + i % 21;
            let mut sse = Sse::open(&api, &path, Some(&token), Some(&from.to_string())).await;
            let mut seqs = Vec::new();
            while seqs.last() != Some(&42) {
                let event = sse.next().await;
                assert_eq!(event.event, "message", "{event:?}");
                seqs.push(event.data["seq"].as_i64().unwrap());
            }
            (from, seqs)
        }
    });
    for (from, seqs) in futures_util::future::join_all(resumed).await {
        assert_eq!(seqs, (from + 1..=42).collect::<Vec<_>>(), "resumed after {from}");
    }
    burst.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_older_than_the_capped_history_starts_with_a_reset() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let channel = format!("capped-{}", short_id());
    let body = json!({"id": channel, "inviteModel": "owner", "options": {"maxMessages": 3}});
    api.post("/channels", Some(&alice.token()), body).await.expect(200);
    for n in 0..6 {
        api.send(&alice, &channel, json!(n)).await.expect(200);
    }
    let mut sse = Sse::open(&api, &events_path(&channel, "afterSeq=1"), Some(&alice.token()), None).await;
    let reset = sse.next().await;
    assert_eq!((reset.event.as_str(), reset.id.as_deref()), ("reset", Some("4")));
    assert_eq!(reset.data, json!({"oldestSeq": 5}));
    for (seq, payload) in [(5, 3), (6, 4), (7, 5)] {
        let event = sse.next().await;
        assert_eq!((event.event.as_str(), event.data["seq"].clone()), ("message", json!(seq)));
        assert_eq!(event.data["payload"], json!(payload));
    }
    // A position still held gets no reset.
    let mut sse = Sse::open(&api, &events_path(&channel, "afterSeq=5"), Some(&alice.token()), None).await;
    assert_eq!(sse.next().await.data["seq"], json!(6));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_who_leaves_or_whose_channel_goes_gets_closed_and_nothing_after() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut bobs = Sse::open(&api, &events_path(&channel, "afterSeq=2"), Some(&bob.token()), None).await;
    let mut alices = Sse::open(&api, &events_path(&channel, "afterSeq=2"), Some(&alice.token()), None).await;
    api.send(&alice, &channel, json!("before")).await.expect(200);
    assert_eq!(bobs.next().await.data["payload"], json!("before"));
    api.post(&format!("/channels/{}/leave", encode(&channel)), Some(&bob.token()), json!({}))
        .await
        .expect(200);
    api.send(&alice, &channel, json!("after")).await.expect(200);
    let closed = bobs.next().await;
    assert_eq!(
        (closed.event.as_str(), closed.data.clone()),
        ("closed", json!({"reason": "not a member", "lastSeq": 3}))
    );
    assert!(bobs.ends().await, "the stream ends after closed");
    // Alice still reads: the leave notice, then "after".
    assert_eq!(alices.next().await.data["seq"], json!(3));
    assert_eq!(alices.next().await.data["payload"]["event"], json!("leave"));
    assert_eq!(alices.next().await.data["payload"], json!("after"));
    // Coming back is refused as a read would be.
    let refused = api.get(&events_path(&channel, "afterSeq=0"), Some(&bob.token())).await;
    assert_eq!(refused.expect(403)["error"], json!("forbidden"));

    let deleted = api
        .call(reqwest::Method::DELETE, &format!("/channels/{}", encode(&channel)), Some(&alice.token()), None)
        .await;
    deleted.expect(200);
    let closed = alices.next().await;
    assert_eq!((closed.event.as_str(), closed.data["reason"].clone()), ("closed", json!("channel deleted")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ends_when_its_token_expires_and_heartbeats_while_idle() {
    let gateway = Gateway::start_with(&[("HATCHAT_STREAM_HEARTBEAT", "0.2")]).await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let short = format!("Bearer {}", seed_token("alice", alice.id, 2));
    // The token in the query, as EventSource must send it.
    let path = events_path(&channel, &format!("afterSeq=2&token={}", encode(&short)));
    let started = Instant::now();
    let mut sse = Sse::open(&api, &path, None, None).await;
    let closed = sse.next().await;
    assert_eq!(closed.data, json!({"reason": "token expired", "lastSeq": 2}));
    assert!(started.elapsed() < Duration::from_secs(4), "closed at expiry: {:?}", started.elapsed());
    assert!(sse.comments.iter().filter(|c| *c == "heartbeat").count() >= 3, "{:?}", sse.comments);
    // No token at all: 401 before any stream.
    let refused = api.get(&events_path(&channel, "afterSeq=0"), None).await;
    assert_eq!(refused.expect(401)["error"], json!("unauthorized"));
    let bad = api.get(&events_path(&channel, "afterSeq=-1"), Some(&alice.token())).await;
    bad.expect(400);
}

/// The count: 50 readers on one channel cost one window read per wake-up, not 50.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_readers_of_one_channel_cost_one_window_query_per_wake_up() {
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_POLLS_PER_USER", "100")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut readers = Vec::new();
    for _ in 0..50 {
        readers.push(Sse::open(&api, &events_path(&channel, "afterSeq=2"), Some(&alice.token()), None).await);
    }
    let deadline = Instant::now() + WITHIN;
    while gateway.health().await["liveReaders"] != json!(50) {
        assert!(Instant::now() < deadline, "readers never joined the feed: {}", gateway.health().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.send(&bob, &channel, json!("warm")).await.expect(200);
    receive_all(&mut readers, 3).await;
    let before = gateway.health().await["windowQueries"].as_u64().unwrap();
    for seq in 4..9 {
        api.send(&bob, &channel, json!(seq)).await.expect(200);
        receive_all(&mut readers, seq).await;
    }
    let queries = gateway.health().await["windowQueries"].as_u64().unwrap() - before;
    // Five wake-ups; the warm-up's wake-up may land after the read that already served it.
    assert!((5..=6).contains(&queries), "{queries} window queries for 5 wake-ups of 50 readers");
}

async fn receive_all(readers: &mut [Sse], expected: i64) {
    for reader in readers.iter_mut() {
        assert_eq!(reader.next().await.data["seq"], json!(expected));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_does_not_read_is_closed_without_delaying_the_others() {
    // A buffer big enough for a reader that keeps up (a burst bigger than it makes a reader that has
    // taken everything read alone, not close), small beside what the slow client leaves unread.
    let gateway = Gateway::start_with(&[("HATCHAT_STREAM_BUFFER", "32")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    // A client with a tiny receive window that never reads after the request.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = gateway.base.trim_start_matches("http://").parse().unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: test\r\nAuthorization: {}\r\n\r\n",
        events_path(&channel, "afterSeq=2"),
        bob.token()
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    let mut fast = Sse::open(&api, &events_path(&channel, "afterSeq=2"), Some(&alice.token()), None).await;
    let deadline = Instant::now() + WITHIN;
    while gateway.health().await["liveReaders"] != json!(2) {
        assert!(Instant::now() < deadline, "readers never joined the feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 200 messages of 60 kB: far more than the kernel's buffers hold for the slow client.
    let big = "x".repeat(60_000);
    let started = Instant::now();
    let mut sender = {
        let (api, channel, big) = (api.clone(), channel.clone(), big.clone());
        tokio::spawn(async move {
            for n in 0..200 {
                api.send(&alice, &channel, json!({"n": n, "big": big})).await.expect(200);
            }
        })
    };
    for n in 0..200 {
        let event = fast.next().await;
        assert_eq!(event.data["payload"]["n"], json!(n), "the fast reader gets every message in order");
    }
    (&mut sender).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());

    // The slow client, reading at last: a prefix of the messages in order, then closed.
    let mut text = Vec::new();
    let read = tokio::time::timeout(WITHIN, async {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = slow.read(&mut chunk).await.unwrap();
            text.extend_from_slice(&chunk[..n]);
            let tail = &text[text.len().saturating_sub(4096)..];
            if n == 0 || tail.windows(13).any(|w| w == b"event: closed") && tail.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the slow stream ended");
    let text = String::from_utf8_lossy(&text);
    let closed = text.lines().skip_while(|line| *line != "event: closed").nth(1).expect("event: closed");
    let closed: Value = serde_json::from_str(closed.trim_start_matches("data: ")).unwrap();
    assert_eq!(closed["reason"], json!("slow consumer"));
    let ids: Vec<i64> =
        text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|id| id.parse().unwrap()).collect();
    assert!(!ids.is_empty() && ids.len() < 200, "{} messages before closing", ids.len());
    assert_eq!(ids, (3..3 + ids.len() as i64).collect::<Vec<_>>(), "a prefix, in order");
    assert_eq!(closed["lastSeq"], json!(ids.last().unwrap()), "resume from here");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_websocket_subscribes_to_several_channels_and_sends() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, first) = api.alice_and_bob_in_a_channel().await;
    let second = api.create_channel(&bob, "self").await;
    api.join(&alice, &second).await.expect(200);
    api.send(&bob, &second, json!("old")).await.expect(200);
    let mut socket = connect_ws(&gateway, Some(&alice.token())).await;
    assert_eq!(frame(&mut socket).await, json!({"type": "ready", "userId": alice.id}));

    send_frame(&mut socket, json!({"type": "subscribe", "channelId": first, "afterSeq": 2})).await;
    assert_eq!(frame(&mut socket).await["type"], json!("subscribed"));
    send_frame(&mut socket, json!({"type": "subscribe", "channelId": second, "afterSeq": 2})).await;
    assert_eq!(frame(&mut socket).await["type"], json!("subscribed"));
    let backlog = frame(&mut socket).await;
    assert_eq!(
        (backlog["channelId"].clone(), backlog["message"]["payload"].clone()),
        (json!(second), json!("old"))
    );

    send_frame(
        &mut socket,
        json!({"type": "send", "ref": "r1", "channelId": first, "payload": {"big": 12345678901234567890u64}}),
    )
    .await;
    let mut sent = None;
    let mut echoed = None;
    while sent.is_none() || echoed.is_none() {
        let got = frame(&mut socket).await;
        match got["type"].as_str().unwrap() {
            "sent" => sent = Some(got),
            "message" => echoed = Some(got),
            other => panic!("{other}: {got}"),
        }
    }
    let (sent, echoed) = (sent.unwrap(), echoed.unwrap());
    assert_eq!((sent["ref"].clone(), sent["message"]["seq"].clone()), (json!("r1"), json!(3)));
    assert_eq!(echoed["message"]["seq"], json!(3));
    assert_eq!(echoed["message"]["payload"], json!({"big": 12345678901234567890u64}), "no rounding");

    api.send(&bob, &second, json!("live")).await.expect(200);
    let live = frame(&mut socket).await;
    assert_eq!(
        (live["channelId"].clone(), live["message"]["payload"].clone()),
        (json!(second), json!("live"))
    );

    // Refusals come back as error frames with the status a request would get.
    let stranger = api.create_channel(&bob, "owner").await;
    send_frame(&mut socket, json!({"type": "subscribe", "channelId": stranger})).await;
    let refused = frame(&mut socket).await;
    assert_eq!(
        (refused["type"].clone(), refused["status"].clone(), refused["channelId"].clone()),
        (json!("error"), json!(403), json!(stranger))
    );
    send_frame(&mut socket, json!({"type": "send", "ref": 2, "channelId": stranger, "payload": 1})).await;
    assert_eq!(frame(&mut socket).await["status"], json!(403));
    send_frame(&mut socket, json!({"type": "dance"})).await;
    assert_eq!(frame(&mut socket).await["status"], json!(400));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_authenticates_with_a_first_frame_or_its_header_or_is_refused() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let mut socket = connect_ws(&gateway, None).await;
    send_frame(&mut socket, json!({"type": "auth", "token": alice.token()})).await;
    assert_eq!(frame(&mut socket).await["type"], json!("ready"));

    // A client that can set headers (not a browser) sends the token as on every other route.
    let url = format!("{}/ws", gateway.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "hatchat.v1".parse().unwrap());
    request.headers_mut().insert("Authorization", alice.token().parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(frame(&mut socket).await, json!({"type": "ready", "userId": alice.id}));

    let mut socket = connect_ws(&gateway, None).await;
    send_frame(&mut socket, json!({"type": "auth", "token": "Bearer nonsense"})).await;
    let refused = frame(&mut socket).await;
    assert_eq!((refused["type"].clone(), refused["status"].clone()), (json!("error"), json!(401)));
    let closing = tokio::time::timeout(WITHIN, socket.next()).await.unwrap();
    assert!(matches!(closing, Some(Ok(Message::Close(_))) | None), "{closing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notification_stream_sends_each_notification_with_its_id() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let channel = format!("notify-{}", short_id());
    let body = json!({"id": channel, "inviteModel": "self", "options": {"notifyMembers": true}});
    api.post("/channels", Some(&alice.token()), body).await.expect(200);
    api.join(&bob, &channel).await.expect(200);
    let mut sse = Sse::open(&api, "/notifications/events", Some(&bob.token()), None).await;
    api.send(&alice, &channel, json!("ping")).await.expect(200);
    let mut event = sse.next().await;
    while event.data["data"]["message"] != json!("ping") {
        event = sse.next().await;
    }
    assert_eq!(event.event, "notification");
    assert_eq!(event.id, Some(event.data["id"].to_string()));
}
