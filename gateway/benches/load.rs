//! The gateway benchmark: a program that prints a table, not a timed test. Run it with
//! `scripts/bench.sh` (which prepares a durable cluster and the release build).
//!
//! 1. Send throughput through `POST /messages`: senders spread over one channel each, and all
//!    senders on one hot channel, beside `pgbench` inserting the same rows into a plain table.
//!    The same from plain SQL: `pgbench` calling `hatchat.send_message`, beside `pgmq.send` (the
//!    SQL-only pgmq in ../shared/peers, when it is there) and the raw INSERT, in one run.
//! 2. Delivery latency from a send returning to a waiting long-poll answering with it.
//! 3. Queries per second and connections while N long-polls idle.
//! 4. Fan-out: time until all of N waiters on one channel have a message.
//! 5. The crowd (streams.rs): N SSE streams, then N WebSockets, held by one gateway: memory per
//!    stream, the time to open them all at once, fan-out p50/p99, idle transactions, memory back.

#[path = "../../tests/common/issuer.rs"]
#[allow(dead_code)] // the SQL suites use all of it
mod issuer;
mod streams;
#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

struct Settings {
    seconds: u64,
    concurrency: Vec<usize>,
    waiters: usize,
    latency_samples: usize,
    pool_size: usize,
    /// Streams the crowd holds (BENCH_STREAMS).
    streams: usize,
    /// Which parts run (BENCH_PARTS): sql, issuer, gateway, latency, idle, fanout, sse, ws.
    parts: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        Self {
            seconds: var("BENCH_SECONDS", "10").parse().expect("BENCH_SECONDS"),
            concurrency: var("BENCH_CONCURRENCY", "1,4,16,64")
                .split(',')
                .map(|c| c.trim().parse().expect("BENCH_CONCURRENCY"))
                .collect(),
            waiters: var("BENCH_WAITERS", "1000").parse().expect("BENCH_WAITERS"),
            latency_samples: var("BENCH_LATENCY_SAMPLES", "500").parse().expect("BENCH_LATENCY_SAMPLES"),
            pool_size: var("BENCH_POOL_SIZE", "32").parse().expect("BENCH_POOL_SIZE"),
            streams: var("BENCH_STREAMS", "10000").parse().expect("BENCH_STREAMS"),
            parts: var("BENCH_PARTS", "sql,issuer,gateway,latency,idle,fanout,sse,ws")
                .split(',')
                .map(|part| part.trim().to_string())
                .collect(),
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

/// A user with a token valid for the whole run, so the load generator does not spend its CPU on
/// signing (the gateway still verifies every request).
#[derive(Clone)]
struct Sender {
    user: User,
    token: String,
}

async fn sender(api: &Api) -> Sender {
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
    let key = ["alice", "bob", "carol", "dave"][NEXT_KEY.fetch_add(1, Ordering::Relaxed) as usize % 4];
    let user = api.register(key).await;
    let token = format!("Bearer {}", seed_token(&user.key_name, user.id, 3600));
    Sender { user, token }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let settings = Settings::from_env();
    let pool_size = settings.pool_size.to_string();
    // No purge timer: its one query a minute would blur the idle long-poll figure.
    // One reader holds every idle long-poll: the per-user bound must let it.
    let polls = settings.waiters.max(64).to_string();
    let gateway = Gateway::start_with(&[
        ("HATCHAT_POOL_SIZE", &pool_size),
        ("HATCHAT_PURGE_INTERVAL", "0"),
        ("HATCHAT_MAX_POLLS_PER_USER", &polls),
    ])
    .await;
    let api = gateway.api();
    let admin = admin().await;
    println!("# hatchat gateway benchmark");
    println!();
    println!("{}", machine_line(&admin).await);
    println!("gateway pool: {} connections; {} s per throughput run", settings.pool_size, settings.seconds);
    println!();

    let single_client_insert = pgbench_insert(1, settings.seconds, false);
    if settings.runs("sql") {
        sql_throughput(&api, &settings, single_client_insert).await;
    }
    if settings.runs("issuer") {
        issuer_cost(&api, &settings).await;
    }
    if settings.runs("gateway") {
        throughput(&gateway, &settings, single_client_insert).await;
    }
    if settings.runs("latency") {
        latency(&api, settings.latency_samples).await;
    }
    if settings.runs("idle") {
        idle_waiters(&gateway, &api, &admin, settings.waiters).await;
    }
    if settings.runs("fanout") {
        fan_out(&gateway, &api, settings.waiters).await;
    }
    if settings.runs("sse") || settings.runs("ws") {
        let crowd = streams::gather(&api, settings.streams).await;
        // A second gateway on the same database: presence and typing cross from it to the crowd.
        let other = Gateway::start_with(&[("HATCHAT_PURGE_INTERVAL", "0")]).await;
        let few = streams::typing_between_few(&api, &other.api(), 200).await;
        println!("## Typing across two gateways, one reader (no crowd)");
        println!();
        println!("| samples | p50 | p99 | max |");
        println!("|---:|---:|---:|---:|");
        let (p50, p99) = (percentile(&few, 0.5), percentile(&few, 0.99));
        println!("| {} | {} | {} | {} |", few.len(), ms(p50), ms(p99), ms(*few.last().unwrap()));
        println!();
        for (part, via) in [("sse", streams::Transport::Sse), ("ws", streams::Transport::WebSocket)] {
            if settings.runs(part) {
                streams::measure(&gateway, &other.api(), &api, &admin, &crowd, settings.streams, via).await;
            }
        }
    }
}

async fn machine_line(admin: &tokio_postgres::Client) -> String {
    let version: String = admin.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    let sync: String = admin.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
    let fsync: String = admin.query_one("SHOW fsync", &[]).await.unwrap().get(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync}, {cores} cores")
}

fn psql(sql: &str) {
    let status = Command::new("psql")
        .args([&database_url(), "-q", "-o", "/dev/null", "-c", sql])
        .status()
        .expect("psql");
    assert!(status.success(), "psql -c {sql}");
}

/// `pgbench` inserting message-shaped rows into a plain table, one transaction a row: each client
/// on its own channel, or all on one (`hot`). Returns transactions per second.
fn pgbench_insert(clients: usize, seconds: u64, hot: bool) -> f64 {
    psql(
        "CREATE TABLE IF NOT EXISTS bench_raw (channel_id text, seq bigserial, \
         created_at timestamptz NOT NULL DEFAULT clock_timestamp(), from_user_id uuid, \
         payload jsonb, PRIMARY KEY (channel_id, seq))",
    );
    let channel = if hot { "'hot'" } else { "'c' || :client_id" };
    let script = format!(
        "INSERT INTO bench_raw (channel_id, from_user_id, payload) VALUES ({channel}, \
         '6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c', '{{\"text\": \"hello from the benchmark\"}}');"
    );
    pgbench(&script, clients, seconds, &[])
}

/// `pgbench` running `script` (one transaction each) from `clients` clients, prepared statements,
/// with `-D` variables; transactions per second.
fn pgbench(script: &str, clients: usize, seconds: u64, variables: &[(&str, &str)]) -> f64 {
    pgbench_with(script, clients, seconds, variables, "")
}

/// `pgbench`, its sessions started with these settings (PGOPTIONS, e.g. `-c name=value`).
fn pgbench_with(
    script: &str,
    clients: usize,
    seconds: u64,
    variables: &[(&str, &str)],
    options: &str,
) -> f64 {
    let url = database_url();
    let path = std::env::temp_dir().join(format!("hatchat-bench-{}.sql", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let threads = clients.min(2).to_string();
    let mut command = Command::new("pgbench");
    command.env("PGOPTIONS", options);
    command.args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j", &threads]);
    command.args(["-T", &seconds.to_string()]);
    for (name, value) in variables {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output =
        command.arg("-f").arg(&path).arg(&url).output().expect("pgbench (from postgresql-15) on PATH");
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pgbench said: {text}{}", String::from_utf8_lossy(&output.stderr)));
    let _ = std::fs::remove_file(path);
    tps
}

/// CPU seconds used by every `postgres` process, by the gateway, and by this load generator (from
/// /proc: utime + stime), over a window. Only processes alive at both ends count: a backend that
/// exits meanwhile (pgbench's) takes its counters with it.
#[derive(Clone, Copy, Default)]
struct Cpu {
    postgres: f64,
    gateway: f64,
    load: f64,
}

impl Cpu {
    fn add(&mut self, other: &Cpu) {
        self.postgres += other.postgres;
        self.gateway += other.gateway;
        self.load += other.load;
    }
}

/// pid -> (comm, parent pid, CPU seconds so far).
fn cpu_snapshot() -> HashMap<u32, (String, u32, f64)> {
    let mut snapshot = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|(_, c)| c.to_string()).unwrap_or_default();
        let fields: Vec<f64> = tail.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
        if fields.len() > 12 {
            snapshot.insert(pid, (comm, fields[1] as u32, (fields[11] + fields[12]) / 100.0));
        }
    }
    snapshot
}

/// The pid of the benchmark cluster's postmaster: the parent of one of its backends. Only its
/// processes count as PostgreSQL's CPU (another cluster on the machine is not the benchmark's).
async fn postmaster_pid() -> u32 {
    // The client lives until the snapshot is taken: dropped earlier, its backend may be gone.
    let client = admin().await;
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let parent = cpu_snapshot().get(&(backend as u32)).map(|(_, parent, _)| *parent);
    drop(client);
    parent.expect("the backend is alive while its client is")
}

fn cpu_used(
    before: &HashMap<u32, (String, u32, f64)>,
    after: &HashMap<u32, (String, u32, f64)>,
    gateway_pid: u32,
    postmaster: u32,
) -> Cpu {
    let mut cpu = Cpu::default();
    for (pid, (comm, parent, seconds)) in after {
        let Some((_, _, earlier)) = before.get(pid) else { continue };
        let used = seconds - earlier;
        if comm == "postgres" && (*pid == postmaster || *parent == postmaster) {
            cpu.postgres += used;
        } else if *pid == gateway_pid {
            cpu.gateway += used;
        } else if *pid == std::process::id() {
            cpu.load += used;
        }
    }
    cpu
}

/// (send transactions, sends) the gateway has run so far.
async fn send_counts(gateway: &Gateway) -> (u64, u64) {
    let sends = gateway.health().await["sends"].clone();
    (sends["transactions"].as_u64().unwrap_or(0), sends["messages"].as_u64().unwrap_or(0))
}

/// Sends from `senders` (one task each, one request at a time) for `seconds`; messages per second,
/// sends per transaction (the batching achieved), and the CPU microseconds spent per message.
async fn send_rate(gateway: &Gateway, senders: &[(Sender, String)], seconds: u64) -> (f64, f64, Cpu) {
    let api = gateway.api();
    let gateway_pid = gateway.pid();
    let (transactions_before, messages_before) = send_counts(gateway).await;
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = senders
        .iter()
        .cloned()
        .map(|(sender, channel)| {
            let (http, base, sent, failed) =
                (api.http.clone(), api.base.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                // Built once: the load generator shares the machine's cores with what it measures.
                let body = json!({"channelId": channel, "payload": {"text": "hello from the benchmark"}});
                let body = bytes::Bytes::from(body.to_string());
                let url = format!("{base}/messages");
                while Instant::now() < stop {
                    let response = http
                        .post(&url)
                        .header("Authorization", &sender.token)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let before = cpu_snapshot();
    for task in tasks {
        task.await.unwrap();
    }
    let used = cpu_used(&before, &cpu_snapshot(), gateway_pid, postmaster_pid().await);
    let failures = failed.load(Ordering::Relaxed);
    assert_eq!(failures, 0, "{failures} sends failed during the benchmark");
    let messages = sent.load(Ordering::Relaxed) as f64;
    let per_message = |seconds: f64| seconds / messages * 1e6;
    let cpu = Cpu {
        postgres: per_message(used.postgres),
        gateway: per_message(used.gateway),
        load: per_message(used.load),
    };
    let (transactions_after, messages_after) = send_counts(gateway).await;
    let per_transaction =
        (messages_after - messages_before) as f64 / (transactions_after - transactions_before).max(1) as f64;
    (messages / started.elapsed().as_secs_f64(), per_transaction, cpu)
}

/// pgmq's SQL-only install, from the shared peers folder beside the checkout (None when absent).
fn pgmq_install() -> Option<std::path::PathBuf> {
    // The checkout is the gateway's parent; shared/ lies beside the checkout.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = checkout.join("../shared/peers/pgmq-1.5.1/pgmq.sql");
    path.exists().then_some(path)
}

/// Plain SQL clients (pgbench) calling `hatchat.send_message`, spread (a channel each) and hot (one
/// channel), beside `pgmq.send` (a queue each) and the raw INSERT at the same concurrency. This
/// machine is noisy, so each concurrency is measured in BENCH_ROUNDS (3) interleaved rounds (each
/// round every cell one after the other, each cell after a CHECKPOINT: a checkpoint inside a cell
/// can halve it) and the table prints each cell's median, and the ratios of the medians.
/// BENCH_SQL_HOT=0 leaves out the hot-channel cells.
async fn sql_throughput(api: &Api, settings: &Settings, single_client_insert: f64) {
    let rounds: usize =
        std::env::var("BENCH_ROUNDS").unwrap_or_else(|_| "3".into()).parse().expect("BENCH_ROUNDS");
    let with_hot = std::env::var("BENCH_SQL_HOT").map_or(true, |v| v != "0");
    let most = *settings.concurrency.iter().max().unwrap();
    let owner = sender(api).await;
    let token = owner.token.clone();
    // One sender on every channel: the per-call work (token, membership, append) is the same as
    // with a user per client, and pgbench needs one token only.
    let hot = api.create_channel(&owner.user, "owner").await;
    let prefix = format!("sql-{}", short_id());
    for client in 0..most {
        let body = json!({"id": format!("{prefix}-{client}"), "inviteModel": "owner"});
        api.post("/channels", Some(&owner.token), body).await.expect(200);
    }
    let pgmq = pgmq_install();
    if let Some(path) = &pgmq {
        let status = Command::new("psql").args([&database_url(), "-q", "-1", "-f"]).arg(path).status();
        assert!(status.expect("psql").success(), "installing pgmq from {}", path.display());
        for client in 0..most {
            psql(&format!("SELECT pgmq.create('bench_{client}')"));
        }
    }
    let send = "SELECT hatchat.send_message(:token, :prefix || '-' || (:client_id)::text, \
                '{\"text\": \"hello from the benchmark\"}');";
    let send_hot = "SELECT hatchat.send_message(:token, :hot, '{\"text\": \"hello from the benchmark\"}');";
    let queue =
        "SELECT pgmq.send('bench_' || (:client_id)::text, '{\"text\": \"hello from the benchmark\"}');";
    let variables = [("token", token.as_str()), ("prefix", prefix.as_str()), ("hot", hot.as_str())];
    // PostgreSQL's own order (src/commit.rs), for comparison in the same run.
    let held = "-c hatchat.release_locks_before_flush=off";
    let cell = |script: &str, clients: usize, options: &str| {
        psql("CHECKPOINT");
        pgbench_with(script, clients, settings.seconds, &variables, options)
    };
    println!("## Send throughput from plain SQL (pgbench, one send per transaction, messages/s)");
    println!();
    println!("hatchat.announcer_mode(): {}", announcer_mode().await);
    println!();
    println!("Median of {rounds} interleaved rounds; ratios of the medians.");
    println!();
    println!("| clients | spread: send_message | pgmq.send | raw INSERT | ÷ INSERT | ÷ pgmq | hot: send_message | ÷ single-client INSERT | hot, locks held to the flush | ÷ single-client INSERT |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &clients in &settings.concurrency {
        let mut cells: [Vec<f64>; 5] = Default::default();
        for round in 1..=rounds {
            let spread = cell(send, clients, "");
            let queued = pgmq.as_ref().map(|_| cell(queue, clients, ""));
            let raw = cell(insert_script(), clients, "");
            let (on_hot, on_hot_held) = if with_hot {
                (cell(send_hot, clients, ""), cell(send_hot, clients, held))
            } else {
                (f64::NAN, f64::NAN)
            };
            eprintln!(
                "round {round}, {clients} clients: send_message {spread:.0}, pgmq.send {}, INSERT {raw:.0}, hot {on_hot:.0} / held {on_hot_held:.0}",
                queued.map_or("-".into(), |q| format!("{q:.0}"))
            );
            for (values, value) in
                cells.iter_mut().zip([spread, queued.unwrap_or(f64::NAN), raw, on_hot, on_hot_held])
            {
                values.push(value);
            }
        }
        let [spread, queued, raw, on_hot, on_hot_held] = cells.map(median);
        let figure = |value: f64| if value.is_nan() { "-".to_string() } else { format!("{value:.0}") };
        let ratio = |value: f64| if value.is_nan() { "-".to_string() } else { format!("{value:.2}") };
        println!(
            "| {clients} | {spread:.0} | {} | {raw:.0} | {:.2} | {} | {} | {} | {} | {} |",
            figure(queued),
            spread / raw,
            ratio(spread / queued),
            figure(on_hot),
            ratio(on_hot / single_client_insert),
            figure(on_hot_held),
            ratio(on_hot_held / single_client_insert)
        );
    }
    println!();
}

/// The middle value (NaN when there is none).
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `pgbench_insert`'s script, spread: message-shaped rows into a plain table (made by the single-client
/// INSERT run before).
fn insert_script() -> &'static str {
    "INSERT INTO bench_raw (channel_id, from_user_id, payload) VALUES ('c' || :client_id, \
     '6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c', '{\"text\": \"hello from the benchmark\"}');"
}

/// What a trusted issuer's token costs beside a self-signed one (RS512, Hatch@'s web client): plain
/// SQL sends spread over a channel per client, at 1 and 16 clients, each token's channels its own.
async fn issuer_cost(api: &Api, settings: &Settings) {
    use issuer::{unix_now, Issuer, IssuerKey};
    let admin = admin().await;
    let mut tokens = vec![("self-signed RS512".to_string(), sender(api).await.token)];
    for key in [IssuerKey::es256(), IssuerKey::eddsa()] {
        let alg = key.alg();
        let app = Issuer::new(&format!("bench-{}", short_id()), key);
        let add = "SELECT hatchat.add_issuer(NULL, $1, $2::text::jsonb, $3)";
        admin.execute(add, &[&app.iss, &app.jwks().to_string(), &app.audience]).await.unwrap();
        let claims = json!({"sub": "bench", "preferred_username": format!("bench-{}", short_id()), "exp": unix_now() + 3600});
        tokens.push((format!("issuer {alg}"), format!("Bearer {}", app.token_with(json!({}), claims))));
    }
    let send = "SELECT hatchat.send_message(:token, :prefix || '-' || (:client_id)::text, \
                '{\"text\": \"hello from the benchmark\"}');";
    let mut prefixes = Vec::new();
    for (_, token) in &tokens {
        let prefix = format!("iss-{}", short_id());
        for client in 0..16 {
            api.post("/channels", Some(token), json!({"id": format!("{prefix}-{client}")})).await.expect(200);
        }
        prefixes.push(prefix);
    }
    println!(
        "## A trusted issuer's token beside a self-signed one (plain SQL send_message, spread, messages/s)"
    );
    println!();
    let names: Vec<&str> = tokens.iter().map(|(name, _)| name.as_str()).collect();
    println!("| clients | {} | ÷ self-signed |", names.join(" | "));
    println!("|---:|{}---:|", "---:|".repeat(names.len()));
    for clients in [1, 16] {
        let rates: Vec<f64> = tokens
            .iter()
            .zip(&prefixes)
            .map(|((_, token), prefix)| {
                pgbench(
                    send,
                    clients,
                    settings.seconds,
                    &[("token", token.as_str()), ("prefix", prefix.as_str())],
                )
            })
            .collect();
        let ratios: Vec<String> = rates[1..].iter().map(|rate| format!("{:.2}", rate / rates[0])).collect();
        let cells: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
        println!("| {clients} | {} | {} |", cells.join(" | "), ratios.join(" / "));
    }
    println!();
}

async fn announcer_mode() -> String {
    let admin = admin().await;
    match admin.query_one("SELECT hatchat.announcer_mode()", &[]).await {
        Ok(row) => row.get(0),
        Err(_) => "(no announcer)".into(),
    }
}

async fn throughput(gateway: &Gateway, settings: &Settings, single_client_insert: f64) {
    let api = &gateway.api();
    let most = *settings.concurrency.iter().max().unwrap();
    let owner = sender(api).await;
    let hot = api.create_channel(&owner.user, "self").await;
    let mut senders = Vec::new();
    for _ in 0..most {
        let s = sender(api).await;
        let own = api.create_channel(&s.user, "owner").await;
        api.join(&s.user, &hot).await.expect(200);
        senders.push((s, own));
    }
    println!("## Send throughput (POST /messages, messages/s)");
    println!();
    println!("single-client pgbench INSERT: {single_client_insert:.0}/s");
    println!();
    println!("| clients | spread: gateway | pgbench INSERT | ratio | hot channel: gateway | ÷ single-client INSERT |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut costs = Vec::new();
    for &clients in &settings.concurrency {
        let (spread, spread_batch, spread_cpu) =
            send_rate(gateway, &senders[..clients], settings.seconds).await;
        let raw = pgbench_insert(clients, settings.seconds, false);
        let on_hot: Vec<_> = senders[..clients].iter().map(|(s, _)| (s.clone(), hot.clone())).collect();
        let (hot_rate, hot_batch, hot_cpu) = send_rate(gateway, &on_hot, settings.seconds).await;
        println!(
            "| {clients} | {spread:.0} | {raw:.0} | {:.2} | {hot_rate:.0} | {:.2} |",
            spread / raw,
            hot_rate / single_client_insert
        );
        costs.push((clients, spread_cpu, hot_cpu, spread_batch, hot_batch));
    }
    println!();
    println!(
        "Sends per transaction, and CPU per message (µs) by PostgreSQL (the benchmark cluster), the gateway and"
    );
    println!("the load generator; each cell spread / hot");
    println!();
    println!("| clients | sends per transaction | PostgreSQL | gateway | load generator |");
    println!("|---:|---:|---:|---:|---:|");
    for (clients, spread, hot, spread_batch, hot_batch) in costs {
        println!(
            "| {clients} | {spread_batch:.1} / {hot_batch:.1} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
            spread.postgres, hot.postgres, spread.gateway, hot.gateway, spread.load, hot.load
        );
    }
    println!();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// One waiter long-polls in a loop; a sender sends every few milliseconds. For each message: the
/// time from its send returning to the waiter's long-poll answering with it (0 when the long-poll
/// answered first: NOTIFY fires at commit, possibly before the sender has its HTTP answer).
/// Who sends in the latency run: the gateway (POST /messages) or a plain SQL client.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Gateway,
    Sql,
}

/// Sends one message as `owner` to `channel` the `via` way; its seq.
async fn send_one(
    api: &Api,
    sql: &tokio_postgres::Client,
    via: Via,
    owner: &Sender,
    channel: &str,
    i: usize,
) -> i64 {
    match via {
        Via::Gateway => {
            let body = json!({"channelId": channel, "payload": {"i": i}});
            let response =
                api.http.post(format!("{}/messages", api.base)).header("Authorization", &owner.token);
            let reply: Value = response.json(&body).send().await.unwrap().json().await.unwrap();
            reply["seq"].as_i64().unwrap()
        }
        Via::Sql => {
            let row = sql
                .query_one(
                    "SELECT (hatchat.send_message($1, $2, jsonb_build_object('i', $3::int))->>'seq')::bigint",
                    &[&owner.token, &channel, &(i as i32)],
                )
                .await
                .unwrap();
            row.get(0)
        }
    }
}

async fn latency(api: &Api, samples: usize) {
    let sql = admin().await;
    for via in [Via::Gateway, Via::Sql] {
        latency_via(api, &sql, via, samples).await;
    }
}

async fn latency_via(api: &Api, sql: &tokio_postgres::Client, via: Via, samples: usize) {
    let owner = sender(api).await;
    let channel = api.create_channel(&owner.user, "owner").await;
    let (http, base) = (api.http.clone(), api.base.clone());
    let (token, url) = (owner.token.clone(), format!("{base}/messages?channelId={}", encode(&channel)));
    let waiter = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut after = 1;
        while received.len() < samples {
            let page: Value = http
                .get(format!("{url}&afterSeq={after}&limit=1000&wait=10"))
                .header("Authorization", &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let now = Instant::now();
            for message in page.as_array().unwrap() {
                after = message["seq"].as_i64().unwrap();
                received.push((after, now));
            }
        }
        received
    });
    let mut sent = Vec::new();
    for i in 0..samples {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let seq = send_one(api, sql, via, &owner, &channel, i).await;
        sent.push((seq, Instant::now()));
    }
    let received = waiter.await.unwrap();
    let mut lags: Vec<Duration> = sent
        .iter()
        .map(|(seq, at)| {
            let got = received.iter().find(|(s, _)| s == seq).expect("every message delivered").1;
            got.saturating_duration_since(*at)
        })
        .collect();
    lags.sort();
    let who = if via == Via::Gateway { "POST /messages" } else { "plain SQL send_message" };
    println!("## Delivery latency ({who} returned -> waiting long-poll answered), {samples} messages");
    println!();
    println!("| p50 | p99 | max |");
    println!("|---:|---:|---:|");
    println!(
        "| {} | {} | {} |",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().unwrap())
    );
    println!();
}

/// Starts `count` long-polls (wait 30 s) spread over `channels` channels; returns their tasks.
async fn start_waiters(
    gateway: &Gateway,
    api: &Api,
    count: usize,
    channels: &[String],
    reader: &Sender,
) -> Vec<tokio::task::JoinHandle<Instant>> {
    let before = gateway.waiting().await;
    let tasks = (0..count)
        .map(|i| {
            let (http, token) = (api.http.clone(), reader.token.clone());
            let url = format!(
                "{}/messages?channelId={}&afterSeq=1&wait=30",
                api.base,
                encode(&channels[i % channels.len()])
            );
            tokio::spawn(async move {
                let response = http.get(url).header("Authorization", token).send().await.unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await;
                Instant::now()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.waiting().await < before + count as u64 {
        assert!(Instant::now() < deadline, "waiters did not all start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

async fn idle_waiters(gateway: &Gateway, api: &Api, admin: &tokio_postgres::Client, count: usize) {
    // Autovacuum, catching up on the throughput runs, would count as idle traffic: do its work
    // now, on a connection of its own whose statistics are flushed when it closes.
    support::admin().await.batch_execute("VACUUM ANALYZE").await.unwrap();
    let reader = sender(api).await;
    let mut channels = Vec::new();
    for _ in 0..100.min(count) {
        channels.push(api.create_channel(&reader.user, "owner").await);
    }
    let waiters = start_waiters(gateway, api, count, &channels, &reader).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()";
    let connections = "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
                       WHERE application_name = $1 OR application_name LIKE $1 || '-%'";
    let before: i64 = admin.query_one(stats, &[]).await.unwrap().get(0);
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    // pg_stat_database lags by up to half a second (PGSTAT_MIN_INTERVAL): read it after a pause.
    let row = admin.query_one(connections, &[&gateway.name]).await.unwrap();
    let (open, active): (i64, i64) = (row.get(0), row.get(1));
    let after: i64 = admin.query_one(stats, &[]).await.unwrap().get(0);
    // Our own two statistics queries commit too.
    let per_second = (after - before - 2).max(0) as f64 / window.as_secs_f64();
    println!("## {count} idle long-polls");
    println!();
    println!("| waiting (gateway /health) | gateway connections open | of them active | transactions/s while idle |");
    println!("|---:|---:|---:|---:|");
    println!("| {} | {open} (pool, listener) | {active} | {per_second:.1} |", gateway.waiting().await);
    println!();
    // Release them: one message in each channel.
    for channel in &channels {
        api.send(&reader.user, channel, json!("release")).await.expect(200);
    }
    for waiter in waiters {
        waiter.await.unwrap();
    }
}

async fn fan_out(gateway: &Gateway, api: &Api, count: usize) {
    let reader = sender(api).await;
    let channel = api.create_channel(&reader.user, "owner").await;
    let waiters = start_waiters(gateway, api, count, std::slice::from_ref(&channel), &reader).await;
    let started = Instant::now();
    api.send(&reader.user, &channel, json!("to everyone")).await.expect(200);
    let mut last = started;
    for waiter in waiters {
        last = last.max(waiter.await.unwrap());
    }
    println!("## Fan-out: one message to {count} waiters on one channel");
    println!();
    println!("| all {count} answered after |");
    println!("|---:|");
    println!("| {} |", ms(last - started));
    println!();
}
