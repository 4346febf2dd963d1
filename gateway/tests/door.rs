//! The front door (gateway/src/door.rs): an event stream asked for on a new connection is answered
//! outside hyper, framed as HTTP/1.1 should be, ends when its client goes, and costs a few
//! kilobytes; every other request, and a head that comes slowly, is hyper's as before.

mod support;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(10);

async fn connect(gateway: &Gateway) -> TcpStream {
    TcpStream::connect(gateway.base.trim_start_matches("http://")).await.unwrap()
}

/// Reads until `needle` has come; everything read so far.
async fn read_until(stream: &mut TcpStream, text: &mut String, needle: &str) {
    let deadline = Instant::now() + WITHIN;
    let mut buffer = [0u8; 4096];
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buffer)).await.expect(needle).unwrap();
        assert!(n > 0, "closed before {needle:?}: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

/// True when the server closes the connection within the deadline (after what it still sends).
async fn closes(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn stream_request(channel: &str, token: &str) -> String {
    format!(
        "GET /channels/{}/events HTTP/1.1\r\nHost: test\r\nAuthorization: {token}\r\n\r\n",
        encode(channel)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_connections_stream_is_chunked_closes_and_ends_when_its_client_goes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (alice, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut stream = connect(&gateway).await;
    stream.write_all(stream_request(&channel, &bob.token()).as_bytes()).await.unwrap();
    let mut text = String::new();
    read_until(&mut stream, &mut text, "\r\n\r\n").await;
    let head = text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{text}");
    for line in
        ["content-type: text/event-stream", "transfer-encoding: chunked", "connection: close", "date: "]
    {
        assert!(head.contains(line), "{line} in {text}");
    }
    api.send(&alice, &channel, json!("hello")).await.expect(200);
    read_until(&mut stream, &mut text, "\"hello\"").await;
    // One chunk per event: its size line, then exactly that many bytes.
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let (size, rest) = body.split_once("\r\n").unwrap();
    let size = usize::from_str_radix(size, 16).unwrap();
    assert!(rest.len() >= size + 2 && &rest[size..size + 2] == "\r\n", "{body:?}");
    gateway.until_health("streams", |open| open == &json!(1)).await;
    // Gone without a word: noticed at once, not at the next heartbeat (20 s).
    drop(stream);
    gateway.until_health("streams", |open| open == &json!(0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_stream_answers_json_with_a_length_and_closes() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (_, _, channel) = api.alice_and_bob_in_a_channel().await;
    let mut stream = connect(&gateway).await;
    stream.write_all(stream_request(&channel, "Bearer nonsense").as_bytes()).await.unwrap();
    let mut text = String::new();
    read_until(&mut stream, &mut text, "\r\n\r\n").await;
    let head = text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401 unauthorized\r\n"), "{text}");
    assert!(head.contains("content-type: application/json") && head.contains("connection: close"), "{text}");
    let length: usize =
        head.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
    read_until(&mut stream, &mut text, "}").await;
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.len(), length, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"], json!("unauthorized"));
    assert!(closes(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_requests_and_slow_heads_are_hyper_s_and_keep_their_connection() {
    let gateway = Gateway::start().await;
    let api = gateway.api();
    let (_, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let mut stream = connect(&gateway).await;
    // A head in two parts, the second late: given to hyper with what was read.
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"\r\n").await.unwrap();
    let mut text = String::new();
    read_until(&mut stream, &mut text, "\"streams\"").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("connection: close"), "{text}");
    // The same connection asks for a stream: hyper answers it, on the kept connection.
    stream.write_all(stream_request(&channel, &bob.token()).as_bytes()).await.unwrap();
    let mut more = String::new();
    read_until(&mut stream, &mut more, "\r\n\r\n").await;
    let head = more.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok") && head.contains("text/event-stream"), "{more}");
    assert!(!head.contains("connection: close"), "{more}");
    gateway.until_health("streams", |open| open == &json!(1)).await;
    // A head that is not HTTP at all is hyper's to refuse.
    let mut junk = connect(&gateway).await;
    junk.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap();
    let mut refused = String::new();
    let _ = tokio::time::timeout(WITHIN, junk.read_to_string(&mut refused)).await;
    assert!(refused.is_empty() || refused.starts_with("HTTP/1.1 400"), "{refused}");
}

/// What an idle stream costs the gateway, as its allocator counts: under 16 kB (hyper's buffers
/// alone were 24 kB).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_stream_costs_under_sixteen_kilobytes() {
    const STREAMS: usize = 200;
    let gateway = Gateway::start_with(&[("HATCHAT_MAX_POLLS_PER_USER", "1000")]).await;
    let api = gateway.api();
    let (_, bob, channel) = api.alice_and_bob_in_a_channel().await;
    let open = |n: usize| {
        let (gateway_base, request) = (gateway.base.clone(), stream_request(&channel, &bob.token()));
        async move {
            let mut streams = Vec::new();
            for _ in 0..n {
                let mut stream =
                    TcpStream::connect(gateway_base.trim_start_matches("http://")).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                streams.push(stream);
            }
            streams
        }
    };
    let warm = open(20).await;
    gateway.until_health("streams", |open| open == &json!(20)).await;
    let before = gateway.allocator("allocated").await;
    let idle = open(STREAMS).await;
    gateway.until_health("streams", |open| open == &json!(20 + STREAMS)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_stream = (gateway.allocator("allocated").await - before) / STREAMS as i64;
    eprintln!("an idle stream: {per_stream} bytes allocated");
    assert!(per_stream < 16 * 1024, "{per_stream} bytes a stream");
    drop((warm, idle));
}
