//! Presence and typing end to end, across two gateway processes on one database: who holds a live
//! stream shows in `GET /channels/{id}/presence` and as `event: presence` joins and leaves on the
//! other members' streams (a reconnect within the linger is neither), a killed gateway's users
//! leave within its lease, hiding one's presence is a leave; typing reaches the other members'
//! SSE streams and WebSocket subscriptions but not the typer, is stored nowhere, is limited to
//! once a second, and is withheld from those who blocked the typer and for a muted typer.

mod support;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::ws::{self, frame, send_frame, Socket};
use support::*;

/// How long anything that should come may take (a slow machine, a busy build).
const WITHIN: Duration = Duration::from_secs(10);
/// The gateway's linger: a user stays present this long after their last stream closed.
const LINGER: Duration = Duration::from_secs(5);
/// The server secret of the admin routes (the other suites set the same one).
const SECRET: &str = "test-server-secret-4b1d9f0e7c";

#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    event: String,
    data: Value,
}

impl Event {
    fn is(&self, event: &str, kind: &str, user: &User) -> bool {
        self.event == event && self.data["kind"] == json!(kind) && self.data["userId"] == json!(user.id)
    }
}

/// An SSE connection to a channel's events, read as the spec says.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(api: &Api, channel: &str, user: &User, last_event_id: Option<&str>) -> Self {
        Self::open_at(api, channel, user, last_event_id, "afterSeq=2&presence=true").await
    }

    async fn open_at(
        api: &Api,
        channel: &str,
        user: &User,
        last_event_id: Option<&str>,
        query: &str,
    ) -> Self {
        let path = format!("{}/channels/{}/events?{query}", api.base, encode(channel));
        let mut request = api.http.get(path).header("Authorization", user.token());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buffer: String::new() }
    }

    /// The next event with data, or None when the deadline passes first.
    async fn next_before(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                match parse(&block) {
                    Some(event) => return Some(event),
                    None => continue,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk()).await.ok()?;
            let chunk = chunk.unwrap().expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The first event that `wanted` takes, and the events before it; panics after `within`.
    async fn until(&mut self, within: Duration, wanted: impl Fn(&Event) -> bool) -> (Event, Vec<Event>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let Some(event) = self.next_before(deadline).await else {
                panic!("no such event within {within:?}; got {before:?}");
            };
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

fn parse(block: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, String::from("message"), None);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" | "retry" => {}
            "id" => id = Some(value.to_string()),
            "event" => event = value.to_string(),
            "data" => data = Some(serde_json::from_str(value).unwrap()),
            other => panic!("unknown SSE field {other:?}"),
        }
    }
    data.map(|data| Event { id, event, data })
}

/// Presence and typing events about `user` among `events`.
fn about<'a>(events: &'a [Event], user: &User) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| (e.event == "presence" || e.event == "typing") && e.data["userId"] == json!(user.id))
        .collect()
}

fn presence_path(channel: &str) -> String {
    format!("/channels/{}/presence", encode(channel))
}

fn typing_path(channel: &str) -> String {
    format!("/channels/{}/typing", encode(channel))
}

/// The user ids `GET /channels/{id}/presence` answers `reader`, in order.
async fn present(api: &Api, reader: &User, channel: &str) -> Vec<String> {
    let list = api.get(&presence_path(channel), Some(&reader.token())).await.expect(200);
    list.as_array().unwrap().iter().map(|p| p["userId"].as_str().unwrap().to_string()).collect()
}

/// Polls the presence list until `check` holds; returns it and how long that took.
async fn present_until(
    api: &Api,
    reader: &User,
    channel: &str,
    within: Duration,
    check: impl Fn(&[String]) -> bool,
) -> (Vec<String>, Duration) {
    let started = Instant::now();
    loop {
        let list = present(api, reader, channel).await;
        if check(&list) {
            return (list, started.elapsed());
        }
        assert!(started.elapsed() < within, "the presence list never changed as expected: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has(list: &[String], user: &User) -> bool {
    list.contains(&user.id.to_string())
}

/// Checks an `event: presence` / `event: typing` body against `api::Ephemeron`.
fn assert_ephemeron(data: &Value, kind: &str, user: &User) {
    assert_eq!(data["kind"], json!(kind), "{data}");
    assert_eq!(data["userId"], json!(user.id), "{data}");
    assert_eq!(data["username"], json!(user.username), "{data}");
    let at: jiff::Timestamp = data["at"].as_str().expect("at").parse().expect("at is a timestamp");
    if kind == "typing" {
        let until: jiff::Timestamp = data["until"].as_str().expect("until").parse().expect("until");
        let lasts = until.duration_since(at).as_secs_f64();
        assert!((5.9..=6.1).contains(&lasts), "typing lasts 6 s: {data}");
    } else {
        assert!(data.get("until").is_none(), "{data}");
    }
    assert!(data.get("id").is_none(), "the event's row id stays inside: {data}");
}

/// Alice, Bob and Carol, members of a fresh channel of Alice's.
async fn three_in_a_channel(api: &Api) -> (User, User, User, String) {
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let carol = api.register("carol").await;
    api.join(&carol, &channel).await.expect(200);
    (alice, bob, carol, channel)
}

async fn connect_ws(gateway: &Gateway, user: &User) -> Socket {
    let mut socket = ws::connect(gateway, Some(&user.token())).await;
    assert_eq!(frame(&mut socket).await, json!({"type": "ready", "userId": user.id}));
    socket
}

/// The first frame that `wanted` takes, and the frames before it.
async fn frame_until(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let got = frame(socket).await;
        if wanted(&got) {
            return (got, before);
        }
        before.push(got);
    }
}

async fn subscribe(socket: &mut Socket, channel: &str) {
    send_frame(socket, json!({"type": "subscribe", "channelId": channel, "afterSeq": 2, "presence": true}))
        .await;
    let (subscribed, _) = frame_until(socket, |f| f["type"] == json!("subscribed")).await;
    assert_eq!(subscribed["channelId"], json!(channel));
}

/// Bob's stream on B, once B has told the database he is here.
async fn bobs_stream(b: &Gateway, bob: &User, channel: &str) -> Sse {
    let sse = Sse::open(&b.api(), channel, bob, None).await;
    present_until(&b.api(), bob, channel, WITHIN, |list| has(list, bob)).await;
    sse
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_on_one_gateway_is_seen_through_another() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    assert_eq!(present(&b.api(), &bob, &channel).await, Vec::<String>::new(), "nobody streams yet");
    let mut bobs = bobs_stream(&b, &bob, &channel).await;

    let opened = Instant::now();
    let _alices = Sse::open(&a.api(), &channel, &alice, None).await;
    let (list, listed_in) =
        present_until(&b.api(), &bob, &channel, Duration::from_secs(3), |list| has(list, &alice)).await;
    println!("alice listed through the other gateway after {listed_in:?}");
    assert_eq!(list, vec![bob.id.to_string(), alice.id.to_string()], "longest present first");
    let answer = b.api().get(&presence_path(&channel), Some(&bob.token())).await.expect(200);
    let entry = &answer[1];
    assert_eq!(entry["userId"], json!(alice.id));
    assert_eq!(entry["username"], json!(alice.username));
    let since: jiff::Timestamp = entry["since"].as_str().unwrap().parse().expect("since is a timestamp");
    let age = jiff::Timestamp::now().duration_since(since).as_secs_f64();
    assert!((-1.0..5.0).contains(&age), "since is when she came: {entry}");
    assert_eq!(entry.as_object().unwrap().len(), 3, "{entry}");

    let (joined, _) = bobs.until(Duration::from_secs(3), |e| e.is("presence", "join", &alice)).await;
    println!("alice's join reached bob's stream on the other gateway after {:?}", opened.elapsed());
    assert_eq!(joined.id, None, "presence events carry no id: resuming goes by messages");
    assert_ephemeron(&joined.data, "join", &alice);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stream_leaves_after_the_linger_and_a_reconnect_within_it_is_no_leave() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, carol, channel) = three_in_a_channel(&a.api()).await;
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let alices = Sse::open(&a.api(), &channel, &alice, None).await;
    bobs.until(WITHIN, |e| e.is("presence", "join", &alice)).await;

    // A reconnect, as EventSource makes one: close, then open again with Last-Event-ID.
    drop(alices);
    let closed = Instant::now();
    // The gateway saw it close (her presence now lingers), before she is back.
    while a.health().await["streams"] != json!(0) {
        assert!(closed.elapsed() < Duration::from_secs(2), "the gateway never saw the stream close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("the gateway saw alice's stream close after {:?}", closed.elapsed());
    let alices = Sse::open(&a.api(), &channel, &alice, Some("2")).await;
    // Past the linger of the first stream, Carol types: had Alice left or joined again, that would
    // have come to Bob's stream before Carol's typing.
    tokio::time::sleep_until((closed + LINGER + Duration::from_millis(1500)).into()).await;
    b.api().post(&typing_path(&channel), Some(&carol.token()), json!({})).await.expect(200);
    let (_, before) = bobs.until(WITHIN, |e| e.is("typing", "typing", &carol)).await;
    assert_eq!(about(&before, &alice), Vec::<&Event>::new(), "no leave and no second join");
    assert!(has(&present(&b.api(), &bob, &channel).await, &alice), "still present");

    // Now closed for good: a leave after the linger.
    drop(alices);
    let closed = Instant::now();
    let (left, before) =
        bobs.until(LINGER + Duration::from_secs(5), |e| e.is("presence", "leave", &alice)).await;
    let took = closed.elapsed();
    println!("alice's leave reached bob's stream {took:?} after her stream closed (linger {LINGER:?})");
    assert!(took >= LINGER - Duration::from_millis(100), "not before the linger: {took:?}");
    assert!(took < LINGER + Duration::from_secs(3), "{took:?}");
    assert_eq!(about(&before, &alice), Vec::<&Event>::new());
    assert_ephemeron(&left.data, "leave", &alice);
    let (list, _) =
        present_until(&b.api(), &bob, &channel, Duration::from_millis(500), |l| !has(l, &alice)).await;
    assert_eq!(list, vec![bob.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gateways_users_leave_within_its_lease() {
    let lease = [("HATCHAT_PRESENCE_LEASE", "3")];
    let (a, b) = (Gateway::start_with(&lease).await, Gateway::start_with(&lease).await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let _alices = Sse::open(&a.api(), &channel, &alice, None).await;
    bobs.until(WITHIN, |e| e.is("presence", "join", &alice)).await;

    drop(a); // SIGKILL: no departure, the lease runs out
    let killed = Instant::now();
    let within = Duration::from_secs(8);
    let api = b.api();
    let (left, (list, listed)) = tokio::join!(
        async {
            let (left, _) = bobs.until(within, |e| e.is("presence", "leave", &alice)).await;
            (left, killed.elapsed())
        },
        present_until(&api, &bob, &channel, within, |list| !has(list, &alice)),
    );
    println!(
        "after SIGKILL of alice's gateway (lease 3 s): leave on bob's stream in {:?}, off the list in {:?}",
        left.1, listed
    );
    assert_ephemeron(&left.0.data, "leave", &alice);
    assert_eq!(list, vec![bob.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_that_stops_lets_its_users_go_at_once_not_a_lease_later() {
    let (mut a, b) = (Gateway::start().await, Gateway::start().await); // the lease is 15 s
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let _alices = Sse::open(&a.api(), &channel, &alice, None).await;
    bobs.until(WITHIN, |e| e.is("presence", "join", &alice)).await;

    a.terminate();
    let stopped = Instant::now();
    let (left, _) = bobs.until(Duration::from_secs(4), |e| e.is("presence", "leave", &alice)).await;
    println!("after SIGTERM of alice's gateway: leave on bob's stream in {:?}", stopped.elapsed());
    assert_ephemeron(&left.data, "leave", &alice);
    assert_eq!(present(&b.api(), &bob, &channel).await, vec![bob.id.to_string()]);
    assert_eq!(a.exit_code(WITHIN).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn hiding_ones_presence_is_a_leave_and_only_for_oneself() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let _alices = Sse::open(&a.api(), &channel, &alice, None).await;
    bobs.until(WITHIN, |e| e.is("presence", "join", &alice)).await;

    let setting = format!("/users/{}/presence", alice.id);
    let hidden = a.api().put(&setting, Some(&alice.token()), json!({"hidden": true})).await.expect(200);
    assert_eq!(hidden, json!({"userId": alice.id, "presenceHidden": true}));
    let (left, _) = bobs.until(Duration::from_secs(3), |e| e.event == "presence").await;
    assert_ephemeron(&left.data, "leave", &alice);
    assert_eq!(present(&b.api(), &bob, &channel).await, vec![bob.id.to_string()], "hidden");

    let refused = a.api().put(&setting, Some(&bob.token()), json!({"hidden": true})).await;
    assert_eq!(refused.expect(403)["error"], json!("forbidden"));
    a.api().put(&setting, Some(&alice.token()), json!({})).await.expect(400);

    // Shown again: a join, and listed.
    a.api().put(&setting, Some(&alice.token()), json!({"hidden": false})).await.expect(200);
    let (joined, _) = bobs.until(Duration::from_secs(3), |e| e.event == "presence").await;
    assert_ephemeron(&joined.data, "join", &alice);
    assert!(has(&present(&b.api(), &bob, &channel).await, &alice));
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_and_typing_are_for_members_only() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, _, channel) = api.alice_and_bob_in_a_channel().await;
    let stranger = api.register("carol").await;
    let _alices = Sse::open(&api, &channel, &alice, None).await;
    let listed = api.get(&presence_path(&channel), Some(&stranger.token())).await;
    assert_eq!(listed.expect(403)["error"], json!("forbidden"));
    let typed = api.post(&typing_path(&channel), Some(&stranger.token()), json!({})).await;
    assert_eq!(typed.expect(403)["error"], json!("forbidden"));
    // Without a token: 401; a channel that does not exist: 404.
    api.get(&presence_path(&channel), None).await.expect(401);
    let missing = api.post(&typing_path("no-such-channel"), Some(&alice.token()), json!({})).await;
    missing.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_reaches_the_other_members_streams_and_is_stored_nowhere() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, channel) = a.api().alice_and_bob_in_a_channel().await;
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let mut socket = connect_ws(&b, &bob).await;
    subscribe(&mut socket, &channel).await;
    let mut alices = Sse::open(&a.api(), &channel, &alice, None).await;
    bobs.until(WITHIN, |e| e.is("presence", "join", &alice)).await;
    let (joined, _) = frame_until(&mut socket, |f| {
        f["type"] == json!("presence") && f["presence"]["userId"] == json!(alice.id)
    })
    .await;
    assert_eq!(joined["channelId"], json!(channel), "{joined}");
    assert_ephemeron(&joined["presence"], "join", &alice);

    let messages = a.api().poll(&bob, &channel, "afterSeq=0").await.expect(200);
    let channel_path = format!("/channels/{}", encode(&channel));
    let seen = a.api().get(&channel_path, Some(&bob.token())).await.expect(200);
    let notifications = a.api().get("/notifications?wait=0", Some(&bob.token())).await.expect(200);
    // A long-poll for messages, held on gateway A: typing must not answer it.
    let waiting = background_poll(&a, &bob, &channel, "afterSeq=2&wait=30").await;

    let sent = Instant::now();
    let typed = a.api().post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
    let answered = sent.elapsed();
    assert_eq!((&typed["channelId"], &typed["userId"]), (&json!(channel), &json!(alice.id)), "{typed}");
    let until: jiff::Timestamp = typed["until"].as_str().unwrap().parse().unwrap();
    let ahead = until.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!((4.0..=6.5).contains(&ahead), "until is 6 s on: {typed}");

    let (event, _) = bobs.until(WITHIN, |e| e.event == "typing").await;
    let on_sse = sent.elapsed();
    assert_eq!(event.id, None, "typing carries no id");
    assert_ephemeron(&event.data, "typing", &alice);
    assert_eq!(event.data["until"], typed["until"], "the same moment as the typer was told");
    let (typing, _) = frame_until(&mut socket, |f| f["type"] == json!("typing")).await;
    let on_ws = sent.elapsed();
    assert_eq!(typing["channelId"], json!(channel));
    assert_ephemeron(&typing["typing"], "typing", &alice);
    println!(
        "typing latency, POST on gateway A to bob on gateway B: answered {answered:?}, SSE {on_sse:?}, WebSocket {on_ws:?}"
    );

    // The typer's own stream: Bob's typing comes, her own did not come before it.
    b.api().post(&typing_path(&channel), Some(&bob.token()), json!({})).await.expect(200);
    let (bobs_typing, before) = alices.until(WITHIN, |e| e.event == "typing").await;
    assert_ephemeron(&bobs_typing.data, "typing", &bob);
    assert!(before.iter().all(|e| e.event != "typing"), "{before:?}");

    // Stored nowhere: no message, no seq, no unread count, no notification.
    assert!(!waiting.is_finished(), "typing answered a long-poll for messages: {:?}", waiting.await);
    waiting.abort();
    assert_eq!(a.api().poll(&bob, &channel, "afterSeq=0").await.expect(200), messages);
    let after = a.api().get(&channel_path, Some(&bob.token())).await.expect(200);
    assert_eq!((&after["lastSeq"], &after["unread"]), (&seen["lastSeq"], &seen["unread"]), "{after}");
    assert_eq!(a.api().get("/notifications?wait=0", Some(&bob.token())).await.expect(200), notifications);
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_more_than_once_a_second_is_429_over_http_and_websocket() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    api.post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
    let (again, headers) =
        api.call_with_headers(Method::POST, &typing_path(&channel), Some(&alice.token()), None).await;
    assert_eq!(again.expect(429)["error"], json!("too_many_requests"));
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    // Per user and channel: Bob is not held back by Alice.
    api.post(&typing_path(&channel), Some(&bob.token()), json!({})).await.expect(200);

    let mut socket = connect_ws(&gateway, &bob).await;
    send_frame(&mut socket, json!({"type": "typing", "channelId": channel})).await;
    let refused = frame(&mut socket).await;
    assert_eq!(
        (&refused["type"], &refused["status"], &refused["channelId"]),
        (&json!("error"), &json!(429), &json!(channel)),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_frame(&mut socket, json!({"type": "typing", "channelId": channel})).await;
    let typed = frame(&mut socket).await;
    assert_eq!(typed["type"], json!("typed"), "{typed}");
    assert_eq!(
        (&typed["typing"]["channelId"], &typed["typing"]["userId"]),
        (&json!(channel), &json!(bob.id))
    );
    assert!(typed["typing"]["until"].is_string(), "{typed}");
    send_frame(&mut socket, json!({"type": "typing", "channelId": channel})).await;
    assert_eq!(frame(&mut socket).await["status"], json!(429));
    // Over HTTP too, after the limit: allowed again.
    api.post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_blocked_someone_gets_neither_their_typing_nor_their_presence() {
    let (a, b) = (Gateway::start().await, Gateway::start().await);
    let (alice, bob, carol, channel) = three_in_a_channel(&a.api()).await;
    let blocks = format!("/users/{}/blocks", bob.id);
    b.api().post(&blocks, Some(&bob.token()), json!({"userId": alice.id})).await.expect(200);
    let mut bobs = bobs_stream(&b, &bob, &channel).await;
    let mut socket = connect_ws(&b, &bob).await;
    subscribe(&mut socket, &channel).await;

    // Alice comes, and only then Carol: Carol's join is written after Alice's.
    let _alices = Sse::open(&a.api(), &channel, &alice, None).await;
    present_until(&a.api(), &carol, &channel, WITHIN, |list| has(list, &alice)).await;
    let _carols = Sse::open(&a.api(), &channel, &carol, None).await;
    let (_, before) = bobs.until(WITHIN, |e| e.is("presence", "join", &carol)).await;
    assert_eq!(about(&before, &alice), Vec::<&Event>::new(), "no join of Alice");
    let list = present(&b.api(), &bob, &channel).await;
    assert!(has(&list, &carol) && !has(&list, &alice), "{list:?}");
    assert!(has(&present(&a.api(), &carol, &channel).await, &alice), "others see her");

    a.api().post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
    a.api().post(&typing_path(&channel), Some(&carol.token()), json!({})).await.expect(200);
    let (typing, before) = bobs.until(WITHIN, |e| e.event == "typing").await;
    assert_ephemeron(&typing.data, "typing", &carol);
    assert_eq!(about(&before, &alice), Vec::<&Event>::new(), "no typing of Alice");
    let (typing, before) = frame_until(&mut socket, |f| f["type"] == json!("typing")).await;
    assert_ephemeron(&typing["typing"], "typing", &carol);
    let alices: Vec<_> = before
        .iter()
        .filter(|f| f["presence"]["userId"] == json!(alice.id) || f["typing"]["userId"] == json!(alice.id))
        .collect();
    assert_eq!(alices, Vec::<&Value>::new(), "nothing of Alice over the WebSocket either");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_muted_members_typing_is_answered_but_reaches_nobody() {
    admin().await.execute("SELECT hatchat.set_api_secret($1)", &[&SECRET]).await.unwrap();
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, carol, channel) = three_in_a_channel(&api).await;
    let muted =
        api.post(&format!("/admin/users/{}/mute", alice.id), Some(SECRET), json!({"muted": true})).await;
    assert_eq!(muted.expect(200)["muted"], json!(true));
    let mut bobs = bobs_stream(&gateway, &bob, &channel).await;

    let typed = api.post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
    assert_eq!((&typed["channelId"], &typed["userId"]), (&json!(channel), &json!(alice.id)), "as anyone's");
    assert!(typed["until"].is_string(), "{typed}");
    // The server secret reads everywhere but types nowhere.
    api.post(&typing_path(&channel), Some(SECRET), json!({})).await.expect(403);
    // Limited as anyone's, so the mute does not show.
    api.post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(429);
    api.post(&typing_path(&channel), Some(&carol.token()), json!({})).await.expect(200);
    let (typing, before) = bobs.until(WITHIN, |e| e.event == "typing").await;
    assert_ephemeron(&typing.data, "typing", &carol);
    assert!(before.iter().all(|e| e.event != "typing"), "the muted typing reached nobody: {before:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_did_not_ask_gets_no_presence_or_typing_yet_makes_its_user_present() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut plain = Sse::open_at(&api, &channel, &bob, None, "afterSeq=2").await;
    present_until(&api, &alice, &channel, WITHIN, |list| has(list, &bob)).await;
    let _alices = Sse::open(&api, &channel, &alice, None).await;
    present_until(&api, &bob, &channel, WITHIN, |list| has(list, &alice)).await;
    api.post(&typing_path(&channel), Some(&alice.token()), json!({})).await.expect(200);
    let sent = api.send(&alice, &channel, json!("after the join and the typing")).await.expect(200);
    let (message, before) = plain.until(WITHIN, |event| event.event == "message").await;
    assert_eq!(message.data["seq"], sent["seq"]);
    assert!(before.is_empty(), "a stream that did not ask for presence got {before:?}");
}

/// A crash restart or a failover empties the unlogged presence tables. As if that happened to this
/// gateway's rows (and only its: other suites' gateways share the database), its next lease
/// renewal finds the lease gone and sends everything it holds.
#[tokio::test(flavor = "multi_thread")]
async fn presence_is_rebuilt_from_the_live_streams_when_the_database_forgets_it() {
    let gateway = Gateway::start_with(&[("HATCHAT_PRESENCE_LEASE", "3")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let _alices = Sse::open(&api, &channel, &alice, None).await;
    present_until(&api, &bob, &channel, WITHIN, |list| has(list, &alice)).await;
    let admin = admin().await;
    let forget = "WITH g AS (SELECT DISTINCT gateway_id FROM hatchat.presence WHERE channel_id = $1), \
                       l AS (DELETE FROM hatchat.gateway_leases WHERE gateway_id IN (SELECT gateway_id FROM g)) \
                  DELETE FROM hatchat.presence WHERE gateway_id IN (SELECT gateway_id FROM g)";
    admin.execute(forget, &[&channel]).await.unwrap();
    assert!(present(&api, &bob, &channel).await.is_empty(), "forgotten");
    let forgotten = Instant::now();
    present_until(&api, &bob, &channel, Duration::from_secs(3), |list| has(list, &alice)).await;
    println!("presence rebuilt {:?} after the database forgot it", forgotten.elapsed());
}
