//! Lose the primary, lose nothing: one gateway on scripts/ha.sh's replicated deployment (a primary
//! and a synchronous standby under pg_auto_failover; scripts/test-failover.sh starts it and runs
//! this). Clients send with client ids, edit and react with client ids, and follow both channels
//! over SSE and a WebSocket (and one with long-polls), while the primary is killed with SIGKILL
//! twice (each time after the old one rejoined as the standby) and switched over once, and a
//! room's posts are forwarded to a notification receiver. Afterwards: every acknowledged send is
//! stored exactly once where its answer said, a retry answers the first answer, no edit or
//! reaction applied twice, every follower saw every seq once and in order with what is stored
//! there, every acknowledged room post was forwarded (at least once, in order), no request
//! answered 500, and none waited past the gateway's request timeout.

mod support;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// The gateway's `--request-timeout-secs`: no request may take much longer.
const REQUEST_TIMEOUT_SECS: u64 = 3;
/// Between sends of one sender.
const PACE: Duration = Duration::from_millis(40);

/// What every request of the run was answered, for the checks at the end.
#[derive(Default)]
struct Log {
    statuses: BTreeMap<String, u64>,
    /// Requests answered 500 or worse, or with a status no retry loop expects.
    bad: Vec<String>,
    slowest: Duration,
    /// (when the attempt began, when it was answered 200) of every acknowledged send.
    acked_at: Vec<(Instant, Instant)>,
    /// When each 503 was answered.
    refused_at: Vec<Instant>,
}

impl Log {
    /// From `began` (a kill, a switchover) to the first send acknowledged after the outage it
    /// caused: the outage starts with the first request refused from `began` on, and a send
    /// acknowledged before that was served by the old primary.
    fn recovery(&self, began: Instant) -> String {
        let Some(&down) = self.refused_at.iter().filter(|at| **at >= began).min() else {
            return "no request refused".into();
        };
        let up = self.acked_at.iter().filter(|(start, _)| *start >= down).map(|(_, at)| *at).min();
        let up = up.expect("a send acknowledged after the outage");
        format!("first acknowledged send {:.1} s after it began", (up - began).as_secs_f64())
    }
}

type Shared<T> = Arc<Mutex<T>>;
/// Each channel's last seq, once the senders stopped: where its followers may stop.
type Ends = HashMap<String, Shared<Option<i64>>>;

/// One client's request, retried as a client should until answered 200: again after a 503 (after
/// its Retry-After), with the same client id. Any other status, or a broken connection to the
/// gateway (which stays up throughout), is a failure of the run: recorded, the request given up.
async fn until_ok(
    api: &Api,
    log: &Shared<Log>,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<Value> {
    loop {
        let mut request = api.http.request(method.clone(), format!("{}{path}", api.base));
        if !token.is_empty() {
            request = request.header("Authorization", token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let began = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after =
                    response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
                Ok((status, retry_after, response.json::<Value>().await.unwrap_or(Value::Null)))
            }
            Err(error) => Err(error),
        };
        let took = began.elapsed();
        let wait = {
            let mut log = log.lock().unwrap();
            log.slowest = log.slowest.max(took);
            match outcome {
                Ok((200, _, answer)) => {
                    *log.statuses.entry("200".into()).or_default() += 1;
                    if path == "/messages" {
                        log.acked_at.push((began, Instant::now()));
                    }
                    return Some(answer);
                }
                Ok((503, retry_after, _)) => {
                    *log.statuses.entry("503".into()).or_default() += 1;
                    log.refused_at.push(Instant::now());
                    Duration::from_secs(retry_after.unwrap_or(0)).max(Duration::from_millis(100))
                }
                Ok((status, _, answer)) => {
                    *log.statuses.entry(status.to_string()).or_default() += 1;
                    log.bad.push(format!("{method} {path}: {status} {answer}"));
                    return None;
                }
                // The gateway stays up throughout: a broken connection to it is a failure.
                Err(error) => {
                    log.bad.push(format!("{method} {path}: {error}"));
                    return None;
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// An acknowledged send: where its answer put it, and the answer.
#[derive(Clone, Debug)]
struct Ack {
    channel: String,
    client_id: String,
    answer: Value,
}

/// Sends to `channel` as `user` until `stop`, each send with a client id of its own; every fifth
/// acknowledged message is edited and reacted to, each with a client id. Returns the sends
/// acknowledged and the (edit or reaction) requests acknowledged, by client id.
async fn sender(
    api: Api,
    log: Shared<Log>,
    user: User,
    channel: String,
    name: String,
    stop: Arc<AtomicBool>,
) -> (Vec<Ack>, Vec<String>) {
    let (mut acks, mut events) = (Vec::new(), Vec::new());
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let client_id = format!("{name}-{n}");
        let body = json!({"channelId": channel, "payload": {"n": n}, "clientId": client_id});
        let Some(answer) = until_ok(&api, &log, Method::POST, "/messages", &user.token(), Some(body)).await
        else {
            continue;
        };
        let seq = answer["seq"].as_i64().unwrap();
        acks.push(Ack { channel: channel.clone(), client_id, answer });
        if n % 5 == 0 {
            let message = format!("/channels/{}/messages/{seq}", encode(&channel));
            let edit = json!({"payload": {"n": n, "edited": true}, "clientId": format!("{name}-edit-{n}")});
            let react = json!({"reaction": "👍", "clientId": format!("{name}-react-{n}")});
            for (path, body) in [(message.clone(), edit), (format!("{message}/reactions"), react)] {
                let method = if path.ends_with("reactions") { Method::POST } else { Method::PATCH };
                let id = body["clientId"].as_str().unwrap().to_string();
                if until_ok(&api, &log, method, &path, &user.token(), Some(body)).await.is_some() {
                    events.push(id);
                }
            }
        }
        tokio::time::sleep(PACE).await;
    }
    (acks, events)
}

/// What a follower saw of one channel: (seq, client id) in the order it came, and how its
/// streams ended.
#[derive(Default, Debug)]
struct Seen {
    messages: Vec<(i64, Option<String>)>,
    closes: BTreeMap<String, u64>,
}

impl Seen {
    fn last(&self) -> i64 {
        self.messages.last().map_or(0, |m| m.0)
    }

    fn record(&mut self, message: &Value) {
        let client_id = message["clientId"].as_str().map(str::to_string);
        self.messages.push((message["seq"].as_i64().unwrap(), client_id));
    }
}

/// Follows `channel` over SSE until `done` says where it ends, resuming with Last-Event-ID after
/// every close, break or refusal, as EventSource does.
async fn follow_sse(api: Api, user: User, channel: String, done: Shared<Option<i64>>) -> Seen {
    let mut seen = Seen::default();
    let path = format!("{}/channels/{}/events", api.base, encode(&channel));
    while done.lock().unwrap().is_none_or(|end| seen.last() < end) {
        let request =
            api.http.get(&path).header("Authorization", user.token()).header("Last-Event-ID", seen.last());
        let mut response = match request.send().await {
            Ok(response) if response.status() == 200 => response,
            Ok(refused) => {
                *seen.closes.entry(format!("open {}", refused.status())).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                *seen.closes.entry("open failed".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut buffer = String::new();
        let ended = loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::trim_start);
                match (field("event:"), field("data:")) {
                    (Some("message"), Some(data)) => seen.record(&serde_json::from_str(data).unwrap()),
                    (Some("closed"), Some(data)) => {
                        let data: Value = serde_json::from_str(data).unwrap();
                        *seen.closes.entry(data["reason"].as_str().unwrap().into()).or_default() += 1;
                    }
                    _ => {}
                }
            }
            if done.lock().unwrap().is_some_and(|end| seen.last() >= end) {
                break "done";
            }
            match tokio::time::timeout(Duration::from_secs(1), response.chunk()).await {
                Ok(Ok(Some(chunk))) => buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None)) => break "ended",
                Ok(Err(_)) => break "broken",
                Err(_) => continue,
            }
        };
        *seen.closes.entry(ended.into()).or_default() += 1;
    }
    seen
}

/// Follows `channel` with long-polls after the last seq seen (`wait=5`), as the seeds' clients
/// poll, until `done` says where it ends; a refused poll is tried again.
async fn follow_long_polls(api: Api, user: User, channel: String, done: Shared<Option<i64>>) -> Seen {
    let mut seen = Seen::default();
    while done.lock().unwrap().is_none_or(|end| seen.last() < end) {
        let path =
            format!("{}/messages?channelId={}&afterSeq={}&wait=5", api.base, encode(&channel), seen.last());
        match api.http.get(&path).header("Authorization", user.token()).send().await {
            Ok(answer) if answer.status() == 200 => {
                let page: Value = answer.json().await.unwrap();
                page.as_array().unwrap().iter().for_each(|m| seen.record(m));
            }
            Ok(refused) => {
                *seen.closes.entry(format!("poll {}", refused.status())).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("a long-poll broke: {error}"),
        }
    }
    seen
}

/// Follows every channel in `channels` over one WebSocket, subscribing after the last seq seen of
/// each, and again on a new socket whenever one closes or breaks.
async fn follow_ws(
    gateway_base: String,
    user: User,
    channels: Vec<String>,
    ends: Ends,
) -> HashMap<String, Seen> {
    let mut seen: HashMap<String, Seen> = channels.iter().map(|c| (c.clone(), Seen::default())).collect();
    let finished = |seen: &HashMap<String, Seen>| {
        channels.iter().all(|c| ends[c].lock().unwrap().is_some_and(|end| seen[c].last() >= end))
    };
    while !finished(&seen) {
        let url = format!("{}/ws", gateway_base.replace("http://", "ws://"));
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let _ = socket
            .send(Message::Text(json!({"type": "auth", "token": user.token()}).to_string().into()))
            .await;
        let ready = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        if !matches!(ready, Ok(Some(Ok(Message::Text(ref t)))) if t.as_str().contains("\"ready\"")) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for channel in &channels {
            let subscribe =
                json!({"type": "subscribe", "channelId": channel, "afterSeq": seen[channel].last()});
            let _ = socket.send(Message::Text(subscribe.to_string().into())).await;
        }
        while !finished(&seen) {
            let frame = match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).unwrap(),
                Ok(Some(Ok(_))) => continue,
                Ok(_) => break,
            };
            let channel = frame["channelId"].as_str().unwrap_or_default();
            match frame["type"].as_str().unwrap() {
                "message" => seen.get_mut(channel).unwrap().record(&frame["message"]),
                "closed" => {
                    let reason = frame["reason"].as_str().unwrap().to_string();
                    *seen.get_mut(channel).unwrap().closes.entry(reason).or_default() += 1;
                    // Resume this channel on a new socket; the others follow.
                    break;
                }
                "error" => {
                    let entry = format!("error {}", frame["status"]);
                    if let Some(seen) = seen.get_mut(channel) {
                        *seen.closes.entry(entry).or_default() += 1;
                    }
                    break;
                }
                _ => {}
            }
        }
        let _ = socket.close(None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// A notification receiver: the `data.message` of every notification POSTed to it, in order.
async fn receiver() -> (String, Shared<Vec<String>>) {
    let received: Shared<Vec<String>> = Arc::default();
    let record = {
        let received = received.clone();
        move |axum::Json(body): axum::Json<Value>| async move {
            received.lock().unwrap().push(body["data"]["message"].as_str().unwrap_or_default().to_string());
            "ok"
        }
    };
    let app = axum::Router::new().route("/notify", axum::routing::post(record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Posts to a room of `by` and `to` (the seeds' chat API, the token in the path) until `stop`,
/// retried after a 503 like any request: a room post has no client id, so a retry after a lost
/// answer may store it twice, which the receiver may then get twice. Returns the texts
/// acknowledged, in order.
async fn room_poster(api: Api, log: Shared<Log>, by: User, to: User, stop: Arc<AtomicBool>) -> Vec<String> {
    let token = encode(&seed_token(&by.key_name, by.id, 3600));
    let body = json!({"type": "forward/v1", "users": [by.username, to.username]});
    let room = api.post(&format!("/chat/v1/auth/{token}/rooms"), None, body).await.expect(200);
    let path = format!("/chat/v1/auth/{token}/rooms/{}/messages", encode(room["id"].as_str().unwrap()));
    let mut acknowledged = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let text = format!("r{n}");
        let body = json!({"timestamp": n, "type": "text", "message": text});
        if until_ok(&api, &log, Method::POST, &path, "", Some(body)).await.is_some() {
            acknowledged.push(text);
        }
        tokio::time::sleep(PACE).await;
    }
    acknowledged
}

/// Runs `scripts/ha.sh ACTION DIR` and answers when the kill (or switchover) began, from the line
/// the script prints as it does it, with the script's own report.
async fn disrupt(action: &'static str) -> (Instant, String) {
    let dir = std::env::var("HATCHAT_HA_DIR").expect("HATCHAT_HA_DIR: run scripts/test-failover.sh");
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ha.sh");
        let mut child = std::process::Command::new("bash")
            .args([script, action, &dir])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut began = None;
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if began.is_none() && (line.contains("SIGKILL") || line.contains("switching over")) {
                began = Some(Instant::now());
            }
            eprintln!("    ha.sh: {line}");
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "scripts/ha.sh {action} failed");
        (began.expect("ha.sh said when it began"), String::from_utf8(output.stdout).unwrap())
    })
    .await
    .unwrap()
}

/// Every message of `channel`, read through the gateway (retried until the cluster answers).
async fn stored(api: &Api, log: &Shared<Log>, user: &User, channel: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["seq"].as_i64().unwrap());
        let path = format!("/messages?channelId={}&afterSeq={after}&limit=1000&wait=0", encode(channel));
        let page = until_ok(api, log, Method::GET, &path, &user.token(), None).await.expect("a page");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs scripts/ha.sh's deployment: scripts/test-failover.sh runs it"]
async fn acknowledged_sends_survive_kills_and_a_switchover() {
    let (notify_url, forwarded) = receiver().await;
    let timeout = REQUEST_TIMEOUT_SECS.to_string();
    let gateway =
        Gateway::start_with(&[("HATCHAT_REQUEST_TIMEOUT", &timeout), ("HATCHAT_NOTIFY_URL", &notify_url)])
            .await;
    let api = gateway.api();
    let log: Shared<Log> = Arc::default();
    let (alice, bob, first) = api.alice_and_bob_in_a_channel().await;
    let second = api.create_channel(&bob, "self").await;
    api.join(&alice, &second).await.expect(200);
    let channels = [first.clone(), second.clone()];

    let ends: Ends = channels.iter().map(|c| (c.clone(), Arc::default())).collect();
    let sse: Vec<_> = channels
        .iter()
        .map(|c| tokio::spawn(follow_sse(api.clone(), alice.clone(), c.clone(), ends[c].clone())))
        .collect();
    let polls =
        tokio::spawn(follow_long_polls(api.clone(), bob.clone(), second.clone(), ends[&second].clone()));
    let ws = tokio::spawn(follow_ws(gateway.base.clone(), bob.clone(), channels.to_vec(), ends.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (user, channel, name) in
        [(&alice, &first, "a1"), (&bob, &first, "b1"), (&alice, &second, "a2"), (&bob, &second, "b2")]
    {
        let task = sender(api.clone(), log.clone(), user.clone(), channel.clone(), name.into(), stop.clone());
        senders.push(tokio::spawn(task));
    }
    let room = tokio::spawn(room_poster(api.clone(), log.clone(), alice.clone(), bob.clone(), stop.clone()));

    let mut report = Vec::new();
    let refused = || log.lock().unwrap().statuses.get("503").copied().unwrap_or(0);
    for action in ["kill-primary", "kill-primary", "switchover"] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let refused_before = refused();
        let (began, said) = disrupt(action).await;
        let recovery = log.lock().unwrap().recovery(began);
        report.push(format!(
            "{action}: {recovery}, {} requests refused (503) meanwhile; ha.sh: {}",
            refused() - refused_before,
            said.lines().filter(|l| l.contains(':')).collect::<Vec<_>>().join("; ")
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acks, mut events) = (Vec::new(), Vec::new());
    for task in senders {
        let (a, e) = task.await.unwrap();
        acks.extend(a);
        events.extend(e);
    }

    let posted = room.await.unwrap();

    // Every acknowledged send is where its answer said, exactly once, and a retry answers it.
    let mut rows: HashMap<String, Vec<Value>> = HashMap::new();
    for channel in &channels {
        let all = stored(&api, &log, &alice, channel).await;
        *ends[channel].lock().unwrap() = Some(all.last().unwrap()["seq"].as_i64().unwrap());
        let seqs: Vec<i64> = all.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{channel}: every seq once, none missing"
        );
        rows.insert(channel.clone(), all);
    }
    let by_client_id: HashMap<(&str, &str), Vec<&Value>> =
        rows.iter().fold(HashMap::new(), |mut map, (channel, all)| {
            for m in all {
                if let Some(id) = m["clientId"].as_str() {
                    map.entry((channel.as_str(), id)).or_default().push(m);
                }
            }
            map
        });
    for ack in &acks {
        let found =
            &by_client_id.get(&(ack.channel.as_str(), ack.client_id.as_str())).cloned().unwrap_or_default();
        assert_eq!(found.len(), 1, "{ack:?} stored once: {found:?}");
        assert_eq!(found[0]["seq"], ack.answer["seq"], "{ack:?} where its answer said");
        assert_eq!(found[0]["createdAt"], ack.answer["createdAt"], "{ack:?}");
    }
    for ack in acks.iter().step_by(7) {
        let sender = if ack.client_id.starts_with('a') { &alice } else { &bob };
        let body = json!({"channelId": ack.channel, "payload": "retried", "clientId": ack.client_id});
        let again = until_ok(&api, &log, Method::POST, "/messages", &sender.token(), Some(body)).await;
        assert_eq!(again.as_ref(), Some(&ack.answer), "a retry answers the first answer");
    }
    for id in &events {
        assert_eq!(
            by_client_id.iter().filter(|((_, k), _)| k == id).map(|(_, v)| v.len()).sum::<usize>(),
            1,
            "{id} applied once"
        );
    }

    // Every stream saw every seq once, in order, and what it saw is what is stored.
    let mut seen: Vec<(String, Seen)> = Vec::new();
    for (task, channel) in sse.into_iter().zip(&channels) {
        seen.push((
            format!("SSE {channel}"),
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("SSE caught up").unwrap(),
        ));
    }
    let ws = tokio::time::timeout(Duration::from_secs(60), ws).await.expect("WebSocket caught up").unwrap();
    seen.extend(ws.into_iter().map(|(channel, s)| (format!("WebSocket {channel}"), s)));
    let polled =
        tokio::time::timeout(Duration::from_secs(60), polls).await.expect("long-polls caught up").unwrap();
    seen.push((format!("long-polls {second}"), polled));
    for (name, s) in &seen {
        let channel = name.split(' ').nth(1).unwrap();
        let expected: Vec<(i64, Option<String>)> = rows[channel]
            .iter()
            .map(|m| (m["seq"].as_i64().unwrap(), m["clientId"].as_str().map(str::to_string)))
            .collect();
        assert_eq!(s.messages.len(), expected.len(), "{name}: every message once");
        assert!(s.messages == expected, "{name}: in order, as stored");
        eprintln!("{name}: {} messages, streams ended: {:?}", s.messages.len(), s.closes);
    }

    // Every acknowledged room post reached the receiver: at least once (the one in flight when the
    // forwarder lost its connection may come twice), and in order.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut firsts: Vec<String> = Vec::new();
    while firsts.iter().filter(|m| posted.contains(m)).count() < posted.len() {
        assert!(Instant::now() < deadline, "forwarded {} of {} room posts", firsts.len(), posted.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = forwarded.lock().unwrap().clone();
        firsts = got.iter().fold(Vec::new(), |mut seen, m| {
            if !seen.contains(m) {
                seen.push(m.clone());
            }
            seen
        });
    }
    let acknowledged_order: Vec<&String> = firsts.iter().filter(|m| posted.contains(m)).collect();
    assert_eq!(acknowledged_order, posted.iter().collect::<Vec<_>>(), "forwarded in order");
    let repeats = forwarded.lock().unwrap().len() - firsts.len();
    eprintln!("{} room posts forwarded, {repeats} twice", posted.len());

    let log = log.lock().unwrap();
    eprintln!("requests: {:?}; slowest {:.1} s", log.statuses, log.slowest.as_secs_f64());
    eprintln!("{} sends acknowledged, {} edits and reactions", acks.len(), events.len());
    for line in &report {
        eprintln!("{line}");
    }
    assert!(log.bad.is_empty(), "requests answered what no retry expects: {:#?}", log.bad);
    assert!(
        log.slowest <= Duration::from_secs(REQUEST_TIMEOUT_SECS + 3),
        "a request waited {:?}, past the request timeout",
        log.slowest
    );
}
