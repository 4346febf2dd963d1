//! One user cannot take the gateway's memory: streams that never read hold a bounded number of
//! bytes each (not a number of messages), the gateway gives them back when they close, and a
//! WebSocket counts against its user's streams as each of its subscriptions does.

mod support;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WITHIN: Duration = Duration::from_secs(20);
const MB: i64 = 1024 * 1024;

/// An SSE request from a client with a tiny receive window that never reads its answer.
async fn non_reading_stream(gateway: &Gateway, path: &str, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = gateway.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A gateway, and Bob in a channel where Alice left a 10 MB backlog: 170 messages of 60 kB.
async fn a_10_mb_backlog() -> (Gateway, User, String) {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let big = "x".repeat(60_000);
    for n in 0..170 {
        api.send(&alice, &channel, json!({"n": n, "big": big})).await.expect(200);
    }
    (gateway, bob, channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_streams_that_never_read_hold_a_bounded_number_of_bytes() {
    let (gateway, bob, channel) = a_10_mb_backlog().await;
    let before = gateway.allocator("resident").await;

    let path = format!("/channels/{}/events?afterSeq=0", encode(&channel));
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(non_reading_stream(&gateway, &path, &bob.token()).await);
    }
    gateway.until_health("streams", |open| open == &json!(16)).await;
    // Each stream reads its backlog until its client's window and its purse are full; then it
    // holds still. Give them time to get there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = gateway.health().await["heldBytes"].as_i64().unwrap();
    let grown = gateway.allocator("resident").await - before;
    eprintln!("16 non-reading streams over a 10 MB backlog: held {held} bytes, resident grew {grown} bytes");
    assert!(
        held <= 16 * (256 * 1024 + 64 * 1024),
        "each stream holds its --stream-buffer-bytes at most: {held}"
    );
    assert!(grown < 32 * MB, "resident grew by {} MB", grown / MB);

    drop(streams);
    gateway.until_health("streams", |open| open == &json!(0)).await;
    gateway.until_health("heldBytes", |held| held == &json!(0)).await;
    // The allocator hands freed pages back to the system within its decay time (10 s).
    let deadline = Instant::now() + WITHIN;
    let mut after = gateway.allocator("resident").await - before;
    while after > grown / 2 + 4 * MB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = gateway.allocator("resident").await - before;
    }
    eprintln!("after closing them: resident {after} bytes above where it started");
    assert!(
        after <= grown / 2 + 4 * MB,
        "closing gave back little: {} MB of {} MB kept",
        after / MB,
        grown / MB
    );
}

/// WebSockets whose clients never read, each subscribed to a 10 MB backlog, hold what their
/// purses bound (the subscription's reader and the socket's queue), not their backlog; closing
/// gives it back.
#[tokio::test(flavor = "multi_thread")]
async fn websockets_that_never_read_hold_a_bounded_number_of_bytes() {
    let (gateway, bob, channel) = a_10_mb_backlog().await;
    let before = gateway.allocator("resident").await;
    let subscribe = json!({"type": "subscribe", "channelId": channel, "afterSeq": 0}).to_string();
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut socket = non_reading_websocket(&gateway, &bob.token()).await;
        futures_util::SinkExt::send(&mut socket, Message::Text(subscribe.clone().into())).await.unwrap();
        sockets.push(socket);
    }
    gateway.until_health("liveReaders", |_| true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = gateway.health().await["heldBytes"].as_i64().unwrap();
    let grown = gateway.allocator("resident").await - before;
    eprintln!(
        "8 non-reading WebSockets over a 10 MB backlog: held {held} bytes, resident grew {grown} bytes"
    );
    assert!(held > 0, "the sockets hold what they could not write");
    assert!(held <= 8 * (2 * 256 * 1024 + 64 * 1024), "a reader's and a socket's purse at most: {held}");
    assert!(grown < 32 * MB, "resident grew by {} MB", grown / MB);

    drop(sockets);
    gateway.until_health("streams", |open| open == &json!(0)).await;
    gateway.until_health("heldBytes", |held| held == &json!(0)).await;
}

/// WebSockets that stop reading, each following two channels with long backlogs, leave the pool
/// to everyone else: a subscription's catch-up read finishes whether or not its socket can be
/// written, so a stalled socket holds pages, never a database connection. (A writer that polled
/// its subscriptions itself stopped polling one mid-read while blocked on its client.)
#[tokio::test(flavor = "multi_thread")]
async fn websockets_that_stop_reading_hold_no_database_connection() {
    let gateway = Gateway::start_with(&[("HATCHAT_POOL_SIZE", "2")]).await;
    let api = gateway.api();
    let (alice, bob, first) = api.alice_and_bob_in_a_channel().await;
    let second = api.create_channel(&bob, "self").await;
    api.join(&alice, &second).await.expect(200);
    let big = "x".repeat(60_000);
    for n in 0..40 {
        for channel in [&first, &second] {
            api.send(&alice, channel, json!({"n": n, "big": big})).await.expect(200);
        }
    }
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut socket = non_reading_websocket(&gateway, &bob.token()).await;
        // Both frames in one write: a socket closed as a slow consumer after its first
        // subscription would refuse a second write.
        for channel in [&first, &second] {
            let subscribe = json!({"type": "subscribe", "channelId": channel, "afterSeq": 0}).to_string();
            futures_util::SinkExt::feed(&mut socket, Message::Text(subscribe.into())).await.unwrap();
        }
        futures_util::SinkExt::flush(&mut socket).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..4 {
        let read =
            tokio::time::timeout(Duration::from_secs(5), api.poll(&alice, &first, "afterSeq=0&limit=1"));
        read.await.expect("a read while sockets are stalled is answered in time").expect(200);
    }
    drop(sockets);
}

/// A WebSocket from a client with a tiny receive window that reads nothing after the handshake.
async fn non_reading_websocket(gateway: &Gateway, token: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = gateway.base.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(address).await.unwrap();
    let url = format!("{}/ws", gateway.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    let protocols = format!("hatchat.v1, hatchat.token.{encoded}");
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    tokio_tungstenite::client_async(request, stream).await.unwrap().0
}

/// A reader of a quiet channel holds no page: once streams have read a 2 MB backlog and caught
/// up, what the gateway has allocated does not grow with them: ten more cost their connections,
/// not ten pages. Measured without jemalloc's thread caches, whose fill is megabytes of noise.
#[tokio::test(flavor = "multi_thread")]
async fn streams_that_caught_up_hold_no_page() {
    let gateway =
        Gateway::start_with(&[("HATCHAT_POOL_SIZE", "1"), ("_RJEM_MALLOC_CONF", "tcache:false")]).await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let big = "x".repeat(50_000);
    for n in 0..40 {
        api.send(&alice, &channel, json!({"n": n, "big": big})).await.expect(200);
    }
    let path = format!("{}/channels/{}/events?afterSeq=0", gateway.base, encode(&channel));
    let mut streams = Vec::new();
    let mut before = 0;
    for n in 0..12 {
        if n == 2 {
            before = settled_allocation(&gateway, &bob, &channel).await;
        }
        let mut response = api.http.get(&path).header("Authorization", bob.token()).send().await.unwrap();
        // Counted over what came, keeping the end of each chunk: a line may be cut in two.
        let (mut messages, mut tail) = (0, String::new());
        while messages < 42 {
            let chunk = tokio::time::timeout(WITHIN, response.chunk()).await.unwrap().unwrap().unwrap();
            let text = tail + &String::from_utf8_lossy(&chunk);
            messages += text.matches("event: message").count();
            // 13 bytes: less than one whole "event: message", so none is counted twice (ASCII).
            tail = text.get(text.len().saturating_sub(13)..).unwrap_or_default().to_string();
        }
        streams.push(response);
    }
    gateway.until_health("liveReaders", |readers| readers == &json!(12)).await;
    let grown = settled_allocation(&gateway, &bob, &channel).await - before;
    eprintln!("ten more caught-up streams over a 2 MB backlog: allocated grew {grown} bytes");
    // A stream holding even one message of its backlog would be 50 kB of the bound's 25.
    assert!(grown < 250 * 1024, "ten streams kept {} kB", grown / 1024);
}

/// What the gateway has allocated once it holds no page, with its pool connection new. A pool
/// connection keeps a read buffer sized by the large answers it read, kept or given back as timing
/// falls: 1-2 MB of noise, with one stream or ten. So the connection is ended, and a small read
/// opens its successor.
async fn settled_allocation(gateway: &Gateway, reader: &User, channel: &str) -> i64 {
    let ended = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1";
    let ended: i64 = admin().await.query_one(ended, &[&gateway.name]).await.unwrap().get(0);
    assert_eq!(ended, 1, "the gateway's one pool connection");
    // The pool gives up a connection the server closed; a request until then may find it closing.
    let api = gateway.api();
    while api.poll(reader, channel, "afterSeq=40").await.status != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.until_health("heldBytes", |held| held == &json!(0)).await;
    gateway.allocator("allocated").await
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_ws(gateway: &Gateway, token: &str) -> Socket {
    let url = format!("{}/ws", gateway.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    let protocols = format!("hatchat.v1, hatchat.token.{encoded}");
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next text frame, or `{"closed": reason}` for a close frame.
async fn frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WITHIN, socket.next()).await.expect("a frame in time");
        match message.expect("the socket stays open until it closes").unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => return json!({"closed": frame.map(|f| f.reason.to_string())}),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_counts_against_its_users_streams_and_so_does_each_subscription() {
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_POLLS_PER_USER", "2")]).await;
    let api = gateway.api();
    let (alice, _bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut first = connect_ws(&gateway, &alice.token()).await;
    assert_eq!(frame(&mut first).await["type"], "ready");
    let mut second = connect_ws(&gateway, &alice.token()).await;
    assert_eq!(frame(&mut second).await["type"], "ready");

    // Two sockets are the user's two streams: a third socket is refused, and so is a subscription.
    let mut third = connect_ws(&gateway, &alice.token()).await;
    let refused = frame(&mut third).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["status"], 429, "{refused}");
    assert_eq!(frame(&mut third).await["closed"], "too many streams");
    let subscribe = json!({"type": "subscribe", "channelId": channel, "afterSeq": 0});
    futures_util::SinkExt::send(&mut first, Message::Text(subscribe.to_string().into())).await.unwrap();
    let answer = frame(&mut first).await;
    assert_eq!((&answer["type"], &answer["status"]), (&json!("error"), &json!(429)), "{answer}");

    // A socket that closes gives its stream back.
    drop(second);
    gateway.until_health("streams", |open| open == &json!(1)).await;
    futures_util::SinkExt::send(&mut first, Message::Text(subscribe.to_string().into())).await.unwrap();
    assert_eq!(frame(&mut first).await["type"], "subscribed");
}
