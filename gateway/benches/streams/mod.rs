//! The crowd: N live streams held by one gateway, as N people online would hold them, and what
//! they cost it. Each person's tokens last 60 s, as the web client's do, so streams end with their
//! token and reconnect (resuming with `Last-Event-ID`) all through the run: that churn is part of
//! "idle". The client is plain TCP (SSE) and tokio-tungstenite (WebSocket), a few kB a stream, so
//! its own share of the two cores stays small.
//!
//! Reported per transport: the gateway's memory per open stream (its resident set, and its
//! allocator's), the time for N streams to open at once (a reconnect storm), the time from a send
//! to the last of the N receiving it (p50, p99, max over several rounds), the database's
//! transactions a second while the streams idle, and the gateway's memory once all have closed.
//! Then presence and typing across two gateways: the time from a typing (and from a stream
//! opening, a join) on a second gateway to each of the N streams of the first getting it, and the
//! WAL the database writes a second while idle.

use super::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Streams per person (tabs, devices), and channels they spread over.
const STREAMS_PER_USER: usize = 16;
const CHANNELS: usize = 10;
/// The web client's token lifetime.
const TOKEN_SECONDS: i64 = 60;
/// Fan-out rounds, one message on every channel each.
const ROUNDS: usize = 5;
/// How long the crowd idles while the database's transactions are counted.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq)]
pub enum Transport {
    Sse,
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Sse => "SSE streams",
            Transport::WebSocket => "WebSockets (one subscription each)",
        }
    }
}

/// A person: a user and the token their streams share, renewed when it runs out.
struct Person {
    user: User,
    token: Mutex<(String, Instant)>,
}

impl Person {
    /// A person whose first token runs out `lifetime` seconds from now.
    fn new(user: User, lifetime: i64) -> Self {
        let token = Mutex::new(mint(&user, lifetime));
        Person { user, token }
    }

    /// A token that lives at least a few more seconds; a new 60-second one when not.
    fn token(&self) -> String {
        let mut token = self.token.lock().unwrap();
        if token.1 < Instant::now() + Duration::from_secs(3) {
            *token = mint(&self.user, TOKEN_SECONDS);
        }
        token.0.clone()
    }
}

/// `user`'s token for `lifetime` seconds, and when it runs out.
fn mint(user: &User, lifetime: i64) -> (String, Instant) {
    let token = format!("Bearer {}", seed_token(&user.key_name, user.id, lifetime));
    (token, Instant::now() + Duration::from_secs(lifetime as u64))
}

/// What every stream task reports, by stream index.
struct Board {
    base: Instant,
    /// When the stream last got a message (ns since `base`; 0: not this round).
    received: Vec<AtomicU64>,
    /// When it got a typing, and a join (the same way).
    typed: Vec<AtomicU64>,
    joined: Vec<AtomicU64>,
    last_seq: Vec<AtomicI64>,
    /// Streams whose gateway answered (the SSE head, the WebSocket `subscribed`), ever.
    opened: AtomicUsize,
    reconnects: AtomicU64,
    refusals: AtomicU64,
    /// The first few refusals' reasons, to print.
    reasons: Mutex<Vec<String>>,
}

impl Board {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn note_refusal(&self, reason: &str) {
        let mut reasons = self.reasons.lock().unwrap();
        if reasons.len() < 5 {
            reasons.push(format!("{:.1} s: {}", self.base.elapsed().as_secs_f64(), reason.trim()));
        }
    }

    /// Stream `i` got message `seq` now.
    fn got(&self, i: usize, seq: i64) {
        self.last_seq[i].store(seq, Ordering::Relaxed);
        self.received[i].store(self.now(), Ordering::Relaxed);
    }

    /// Stream `i` got an event of presence or typing now.
    fn got_ephemeral(&self, i: usize, data: &str) {
        let at = if data.contains(r#""kind":"typing""#) {
            &self.typed[i]
        } else if data.contains(r#""kind":"join""#) {
            &self.joined[i]
        } else {
            return;
        };
        at.store(self.now(), Ordering::Relaxed);
    }

    /// Counts a stream's first answer (not its reconnections).
    fn count_open(&self, opened: &mut bool) {
        if !*opened {
            *opened = true;
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Crowd {
    people: Vec<Arc<Person>>,
    channels: Vec<String>,
    /// Members of every channel without streams of the crowd: who types, and who joins (one a round).
    typist: User,
    joiners: Vec<User>,
}

/// Registers N/16 people, each a member of every channel.
pub async fn gather(api: &Api, streams: usize) -> Crowd {
    let owner = api.register("alice").await;
    let mut channels = Vec::new();
    for _ in 0..CHANNELS {
        channels.push(api.create_channel(&owner, "self").await);
    }
    let count = streams.div_ceil(STREAMS_PER_USER);
    let people: Vec<Arc<Person>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (api, channels) = (api.clone(), channels.clone());
            async move {
                let user = api.register(["alice", "bob", "carol", "dave"][i % 4]).await;
                for channel in &channels {
                    api.join(&user, channel).await.expect(200);
                }
                // Tokens made at different times, as people's are: the first ones run out 20 to
                // 80 s from now, so none does while the crowd opens and the churn is steady after.
                Arc::new(Person::new(user, 20 + (TOKEN_SECONDS as usize * i / count) as i64))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let typist = owner;
    let mut joiners = Vec::new();
    for _ in 0..ROUNDS {
        let joiner = api.register("bob").await;
        for channel in &channels {
            api.join(&joiner, channel).await.expect(200);
        }
        joiners.push(joiner);
    }
    Crowd { people, channels, typist, joiners }
}

/// Each stream's channel: a person's streams spread over the channels.
fn channel_of(stream: usize) -> usize {
    stream % CHANNELS
}

pub async fn measure(
    gateway: &Gateway,
    other: &Api,
    api: &Api,
    admin: &tokio_postgres::Client,
    crowd: &Crowd,
    n: usize,
    via: Transport,
) {
    let mut heads = Vec::new();
    for channel in &crowd.channels {
        let sent = api.send(&crowd.people[0].user, channel, json!("head")).await.expect(200);
        heads.push(sent["seq"].as_i64().unwrap());
    }
    let board = Arc::new(Board {
        base: Instant::now(),
        received: (0..n).map(|_| AtomicU64::new(0)).collect(),
        typed: (0..n).map(|_| AtomicU64::new(0)).collect(),
        joined: (0..n).map(|_| AtomicU64::new(0)).collect(),
        last_seq: (0..n).map(|i| AtomicI64::new(heads[channel_of(i)])).collect(),
        opened: AtomicUsize::new(0),
        reconnects: AtomicU64::new(0),
        refusals: AtomicU64::new(0),
        reasons: Mutex::default(),
    });
    settle().await;
    let before = memory(gateway).await;
    let postmaster = super::postmaster_pid().await;
    let cpu_before = super::cpu_snapshot();
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let person = Arc::clone(&crowd.people[i / STREAMS_PER_USER]);
            let channel = crowd.channels[channel_of(i)].clone();
            let (board, base) = (Arc::clone(&board), api.base.clone());
            tokio::spawn(follow(base, person, channel, i, board, via))
        })
        .collect();
    while board.opened.load(Ordering::Relaxed) < n {
        assert!(started.elapsed() < Duration::from_secs(300), "streams did not all open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answered = started.elapsed();
    while gateway.health().await["liveReaders"].as_u64().unwrap() < n as u64 {
        assert!(started.elapsed() < Duration::from_secs(300), "streams did not all follow their feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let following = started.elapsed();
    let cpu = super::cpu_used(&cpu_before, &super::cpu_snapshot(), gateway.pid(), postmaster);
    settle().await;
    let open = memory(gateway).await;
    // Idle, with the churn of tokens that run out (the first ones do 20 s after they were made).
    tokio::time::sleep(Duration::from_secs(22).saturating_sub(started.elapsed())).await;
    let (transactions, reconnects, wal) = idle(admin, &board).await;
    let (lags, fan_out_cpu) = fan_out(api, crowd, &board, gateway.pid(), postmaster).await;
    let typing = typing(other, crowd, &board).await;
    let joins = joins(other, crowd, &board).await;
    tasks.iter().for_each(|task| task.abort());
    let closed_at = Instant::now();
    while gateway.health().await["streams"].as_u64().unwrap() > 0 {
        assert!(closed_at.elapsed() < Duration::from_secs(60), "streams did not all close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    let after = memory(gateway).await;
    let per = |bytes: i64| bytes as f64 / n as f64 / 1024.0;
    println!("## {n} {} on one gateway", via.name());
    println!();
    println!(
        "| kB per stream (resident / allocator) | all answered | all following | fan-out p50 | p99 | max | \
         transactions/s idle | reconnects/s idle | after all closed, over start (resident / allocator) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.1} / {:.1} | {:.2} s | {:.2} s | {} | {} | {} | {transactions:.1} | {reconnects:.0} | {:.1} MB / {:.1} MB |",
        per(open.resident - before.resident),
        per(open.allocated - before.allocated),
        answered.as_secs_f64(),
        following.as_secs_f64(),
        super::ms(super::percentile(&lags, 0.5)),
        super::ms(super::percentile(&lags, 0.99)),
        super::ms(*lags.last().unwrap()),
        (after.resident - before.resident) as f64 / 1048576.0,
        (after.allocated - before.allocated) as f64 / 1048576.0,
    );
    println!();
    println!(
        "(gateway before: {:.1} MB resident; {} refusals while reconnecting; {} reconnects in all)",
        before.resident as f64 / 1048576.0,
        board.refusals.load(Ordering::Relaxed),
        board.reconnects.load(Ordering::Relaxed),
    );
    println!(
        "(opening them all, CPU seconds: PostgreSQL {:.1}, gateway {:.1}, this client {:.1})",
        cpu.postgres, cpu.gateway, cpu.load
    );
    let delivered = (ROUNDS * n) as f64 / 1e6;
    println!(
        "(fan-out, CPU microseconds per delivery: gateway {:.1}, this client {:.1})",
        fan_out_cpu.gateway / delivered,
        fan_out_cpu.load / delivered
    );
    for reason in board.reasons.lock().unwrap().iter() {
        println!("- refused at {reason}");
    }
    println!();
    println!("Presence and typing from a second gateway to these {n} streams, and the idle database:");
    println!();
    println!("| | p50 | p99 | max | missed (reconnecting) |");
    println!("|---|---:|---:|---:|---:|");
    let rows = [("typing (POST on B to the event on A)", &typing), ("join (stream opened on B)", &joins)];
    for (what, (lags, missed)) in rows {
        let (p50, p99) = (super::percentile(lags, 0.5), super::percentile(lags, 0.99));
        let max = super::ms(*lags.last().unwrap());
        let all = lags.len() + missed;
        println!("| {what} | {} | {} | {max} | {missed} of {all} |", super::ms(p50), super::ms(p99));
    }
    println!();
    println!(
        "(idle: {transactions:.1} transactions/s and {wal:.0} bytes of WAL/s with {reconnects:.0} reconnects/s; \
         two gateways each renew their presence lease every 5 s)"
    );
    println!();
}

/// `ROUNDS` times the typist types on every channel through gateway B: each stream's time from
/// its channel's POST to the typing reaching it, sorted. Rounds are a second and more apart (the
/// rate limit).
async fn typing(other: &Api, crowd: &Crowd, board: &Board) -> (Vec<Duration>, usize) {
    let token = crowd.typist.token();
    let (mut lags, mut missed) = (Vec::new(), 0);
    for _ in 0..ROUNDS {
        let sent_at = round(board, &board.typed, crowd, async |channel: &String| {
            let path = format!("/channels/{}/typing", encode(channel));
            other.call(reqwest::Method::POST, &path, Some(&token), None).await.expect(200);
        })
        .await;
        collect(&board.typed, &sent_at, &mut lags, &mut missed);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    lags.sort();
    (lags, missed)
}

/// `ROUNDS` times a new member opens a stream on every channel through gateway B: each stream's
/// time from the opening to the join reaching it, sorted.
async fn joins(other: &Api, crowd: &Crowd, board: &Board) -> (Vec<Duration>, usize) {
    let (mut lags, mut missed) = (Vec::new(), 0);
    for joiner in &crowd.joiners {
        let token = joiner.token();
        let mut held = Vec::new();
        let sent_at = round(board, &board.joined, crowd, async |channel: &String| {
            let url = format!("{}/channels/{}/events?presence=true", other.base, encode(channel));
            let response = other.http.get(url).header("Authorization", &token).send().await.unwrap();
            assert_eq!(response.status(), 200);
            held.push(response);
        })
        .await;
        collect(&board.joined, &sent_at, &mut lags, &mut missed);
        drop(held);
    }
    lags.sort();
    (lags, missed)
}

/// Does `act` on every channel, noting when, and waits until every stream's `slot` is set.
async fn round(
    board: &Board,
    slots: &[AtomicU64],
    crowd: &Crowd,
    mut act: impl AsyncFnMut(&String),
) -> Vec<u64> {
    slots.iter().for_each(|at| at.store(0, Ordering::Relaxed));
    let mut sent_at = Vec::new();
    for channel in &crowd.channels {
        sent_at.push(board.now());
        act(channel).await;
    }
    // Presence and typing are not resumed: a stream reconnecting (its token ran out) or catching
    // up at that moment misses the event. Those are counted apart, not waited for.
    let deadline = Instant::now() + Duration::from_secs(5);
    while slots.iter().any(|at| at.load(Ordering::Relaxed) == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent_at
}

/// Adds the round's lags of the streams that got the event; counts those that did not.
fn collect(slots: &[AtomicU64], sent_at: &[u64], lags: &mut Vec<Duration>, missed: &mut usize) {
    for (i, at) in slots.iter().enumerate() {
        match at.load(Ordering::Relaxed) {
            0 => *missed += 1,
            at => lags.push(Duration::from_nanos(at.saturating_sub(sent_at[channel_of(i)]))),
        }
    }
}

/// The database's transactions a second, the crowd's reconnects a second, and the WAL written a
/// second (bytes), over `IDLE`.
async fn idle(admin: &tokio_postgres::Client, board: &Board) -> (f64, f64, f64) {
    let stats = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()";
    let lsn = "SELECT (pg_current_wal_lsn() - '0/0')::float8";
    let wal_before: f64 = admin.query_one(lsn, &[]).await.unwrap().get(0);
    let before: i64 = admin.query_one(stats, &[]).await.unwrap().get(0);
    let reconnects = board.reconnects.load(Ordering::Relaxed);
    tokio::time::sleep(IDLE).await;
    let reconnects = board.reconnects.load(Ordering::Relaxed) - reconnects;
    // pg_stat_database lags by up to half a second (PGSTAT_MIN_INTERVAL).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after: i64 = admin.query_one(stats, &[]).await.unwrap().get(0);
    let wal_after: f64 = admin.query_one(lsn, &[]).await.unwrap().get(0);
    let seconds = IDLE.as_secs_f64();
    let transactions = (after - before - 1).max(0) as f64 / seconds;
    (transactions, reconnects as f64 / seconds, (wal_after - wal_before) / seconds)
}

/// `ROUNDS` times one message on every channel: each stream's time from its channel's send to
/// the message reaching it, sorted.
async fn fan_out(
    api: &Api,
    crowd: &Crowd,
    board: &Board,
    gateway: u32,
    postmaster: u32,
) -> (Vec<Duration>, super::Cpu) {
    let mut lags = Vec::new();
    let mut cpu = super::Cpu::default();
    let sender = &crowd.people[0].user;
    for _ in 0..ROUNDS {
        board.received.iter().for_each(|at| at.store(0, Ordering::Relaxed));
        let cpu_before = super::cpu_snapshot();
        let mut sent_at = Vec::new();
        for channel in &crowd.channels {
            sent_at.push(board.now());
            api.send(sender, channel, json!("to everyone")).await.expect(200);
        }
        // Generous: a stream may be reconnecting when the message is sent, on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while board.received.iter().any(|at| at.load(Ordering::Relaxed) == 0) {
            if Instant::now() > deadline {
                let missing: Vec<_> = (0..board.received.len())
                    .filter(|i| board.received[*i].load(Ordering::Relaxed) == 0)
                    .map(|i| (i, channel_of(i), board.last_seq[i].load(Ordering::Relaxed)))
                    .collect();
                panic!(
                    "{} streams never got their message: {:?}",
                    missing.len(),
                    &missing[..missing.len().min(20)]
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cpu.add(&super::cpu_used(&cpu_before, &super::cpu_snapshot(), gateway, postmaster));
        for (i, at) in board.received.iter().enumerate() {
            let lag = at.load(Ordering::Relaxed).saturating_sub(sent_at[channel_of(i)]);
            lags.push(Duration::from_nanos(lag));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    lags.sort();
    (lags, cpu)
}

/// The gateway's memory: its resident set, and what its allocator says it holds.
struct Memory {
    resident: i64,
    allocated: i64,
}

async fn memory(gateway: &Gateway) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.pid())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
    let resident = line.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 1024;
    let metrics = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
    let allocated = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hatchat_allocator_resident_bytes "))
        .map_or(0, |value| value.trim().parse::<f64>().unwrap() as i64);
    Memory { resident, allocated }
}

/// Lets freed memory go back before a reading: the allocator returns freed pages after 10 s.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(12)).await;
}

/// One stream for ever: open it, read it, and open it again from the last seq when it ends.
async fn follow(
    base: String,
    person: Arc<Person>,
    channel: String,
    i: usize,
    board: Arc<Board>,
    via: Transport,
) {
    // Many loopback addresses, so that repeated storms do not run out of ports (TIME_WAIT).
    let local = std::net::Ipv4Addr::new(127, 0, 1 + (i / 20_000) as u8, 2 + (i % 200) as u8);
    let mut opened = false;
    loop {
        if opened {
            board.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let result = match via {
            Transport::Sse => sse(&base, local, &person, &channel, i, &board, &mut opened).await,
            Transport::WebSocket => websocket(&base, &person, &channel, i, &board, &mut opened).await,
        };
        if let Err(reason) = result {
            board.refusals.fetch_add(1, Ordering::Relaxed);
            board.note_refusal(&reason);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

type Outcome = Result<(), String>;

/// Whether the crowd's streams ask for presence and typing, as the web client's do
/// (BENCH_PRESENCE, default true; false measures the streams without them).
fn crowd_asks_presence() -> bool {
    std::env::var("BENCH_PRESENCE").map_or(true, |v| v != "false")
}

async fn sse(
    base: &str,
    local: std::net::Ipv4Addr,
    person: &Person,
    channel: &str,
    i: usize,
    board: &Board,
    opened: &mut bool,
) -> Outcome {
    let address: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind((local, 0).into()).map_err(|e| e.to_string())?;
    let mut stream = socket.connect(address).await.map_err(|e| e.to_string())?;
    let request = format!(
        "GET /channels/{}/events?presence={} HTTP/1.1\r\nHost: bench\r\nAuthorization: {}\r\nLast-Event-ID: {}\r\n\r\n",
        encode(channel),
        crowd_asks_presence(),
        person.token(),
        board.last_seq[i].load(Ordering::Relaxed)
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut lines = BufReader::with_capacity(1024, stream);
    let mut line = String::new();
    lines.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(line);
    }
    board.count_open(opened);
    let (mut id, mut event) = (0i64, String::new());
    loop {
        line.clear();
        if lines.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        let text = line.trim_end();
        // Chunked encoding's size lines are not SSE fields; SSE lines have a colon.
        if let Some(value) = text.strip_prefix("id: ") {
            id = value.parse().unwrap_or(id);
        } else if let Some(value) = text.strip_prefix("event: ") {
            event = value.to_string();
        } else if text.starts_with("data:") {
            match event.as_str() {
                "message" => board.got(i, id),
                "presence" | "typing" => board.got_ephemeral(i, text),
                "closed" => return Ok(()),
                _ => {}
            }
        }
    }
}

async fn websocket(
    base: &str,
    person: &Person,
    channel: &str,
    i: usize,
    board: &Board,
    opened: &mut bool,
) -> Outcome {
    let url = format!("{}/ws", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Authorization", person.token().parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| e.to_string())?;
    let after = board.last_seq[i].load(Ordering::Relaxed);
    let subscribe =
        json!({"type": "subscribe", "channelId": channel, "afterSeq": after, "presence": crowd_asks_presence()})
            .to_string();
    socket.send(Message::Text(subscribe.into())).await.map_err(|e| e.to_string())?;
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame.map_err(|e| e.to_string())? else { continue };
        let frame: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        match frame["type"].as_str() {
            Some("subscribed") => board.count_open(opened),
            Some("message") => board.got(i, frame["message"]["seq"].as_i64().unwrap_or(after)),
            Some("presence" | "typing") => board.got_ephemeral(i, text.as_str()),
            Some("closed") | Some("error") => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// Typing between the members of a small channel across two gateways, without a crowd: a reader's
/// stream on A, typists posting through B one after another; each sample is one POST to the
/// reader's event. Typists take turns, so none is limited (once a second each).
pub async fn typing_between_few(api: &Api, other: &Api, samples: usize) -> Vec<Duration> {
    const TYPISTS: usize = 20;
    let reader = api.register("alice").await;
    let channel = api.create_channel(&reader, "self").await;
    let mut typists = Vec::new();
    for _ in 0..TYPISTS {
        let typist = api.register("bob").await;
        api.join(&typist, &channel).await.expect(200);
        typists.push(typist);
    }
    let url = format!("{}/channels/{}/events?presence=true", api.base, encode(&channel));
    let mut stream = api.http.get(url).header("Authorization", reader.token()).send().await.unwrap();
    let (heard, mut hear) = tokio::sync::mpsc::unbounded_channel::<String>();
    let listener = tokio::spawn(async move {
        let (mut text, mut event) = (String::new(), String::new());
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                if let Some(name) = line.trim_end().strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(data) = line.trim_end().strip_prefix("data: ") {
                    if event == "typing" {
                        let _ = heard.send(data.to_string());
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lags = Vec::new();
    for i in 0..samples {
        let typist = &typists[i % TYPISTS];
        if i > 0 && i % TYPISTS == 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let path = format!("/channels/{}/typing", encode(&channel));
        let started = Instant::now();
        other.call(reqwest::Method::POST, &path, Some(&typist.token()), None).await.expect(200);
        let wanted = typist.id.to_string();
        loop {
            let data = tokio::time::timeout(Duration::from_secs(10), hear.recv()).await.unwrap().unwrap();
            if data.contains(&wanted) {
                break;
            }
        }
        lags.push(started.elapsed());
    }
    listener.abort();
    lags.sort();
    lags
}
