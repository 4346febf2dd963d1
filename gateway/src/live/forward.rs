//! Forwarding notifications to `HATCHAT_NOTIFY_URL` (ganomede-chat's notification service): each is
//! POSTed as JSON, at least once, in order per user. Each acknowledgement is recorded in the
//! database (`forwarded_at`) before the user's next POST, so a restart loses nothing and repeats at
//! most the one in flight (its `X-Hatchat-Notification` header names it). One gateway forwards at
//! a time: the others wait on a PostgreSQL advisory lock.
//!
//! No user holds up another. The database hands out a fair batch (a share per user, see
//! `notifications_to_forward`); up to `CONCURRENT_USERS` users are served at once, each by its own
//! task, so a slow receiver answer stalls only its user; a user whose notification fails waits
//! (capped exponential backoff) and is left out of the next batches meanwhile. A notification the
//! receiver refuses (4xx but 408 and 429) is set aside as undeliverable at once, one that keeps
//! failing (5xx, timeouts, unreachable) after the give-up time: then the user's next ones go on.

use super::hub::{Hub, Topic, Wake};
use crate::backoff::Backoff;
use hatchat_wire::api;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

const BATCH: i32 = 100;
/// How long a user whose notification failed waits before the next try: 200 ms, doubling to 30 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
/// Users served at once: a receiver that hangs on some users' notifications holds up only those.
const CONCURRENT_USERS: usize = 8;
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the counts /health shows are refreshed (two index-only counts): every 2 s, or less
/// often when counting takes long (100 ms with 500,000 pending): at most 2% of the time.
const STATUS_EVERY: Duration = Duration::from_secs(2);
const STATUS_COST_SHARE: u32 = 50;
/// How much of a receiver's answer is quoted in an undeliverable notification's reason.
const EXCERPT_BYTES: usize = 200;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    user_id: String,
    id: i64,
    body: Box<RawValue>,
}

/// What /health shows about forwarding; set once this process forwards.
static STATUS: OnceLock<Status> = OnceLock::new();

struct Status {
    /// Whether this process holds the forwarding lock (another gateway may).
    active: AtomicBool,
    /// The last counts read; -1 until the first.
    pending: AtomicI64,
    undeliverable: AtomicI64,
}

/// `{active, pending, undeliverable}` when this process was started to forward, else None.
pub fn health() -> Option<Value> {
    let status = STATUS.get()?;
    let count = |n: &AtomicI64| Some(n.load(Ordering::Relaxed)).filter(|n| *n >= 0);
    Some(json!({
        "active": status.active.load(Ordering::Relaxed),
        "pending": count(&status.pending),
        "undeliverable": count(&status.undeliverable),
    }))
}

/// Where and how patiently to forward.
pub struct Target {
    pub url: String,
    /// How long a notification may keep failing (5xx, unreachable) before it is set aside.
    pub give_up: Duration,
}

pub fn spawn_forwarder(hub: Arc<Hub>, config: tokio_postgres::Config, target: Target) {
    let status = STATUS.get_or_init(|| Status {
        active: AtomicBool::new(false),
        pending: AtomicI64::new(-1),
        undeliverable: AtomicI64::new(-1),
    });
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(POST_TIMEOUT).build().expect("an HTTP client");
        loop {
            if let Err(error) = forward(&hub, &config, &http, &target).await {
                tracing::warn!(%error, "forwarder stopped; restarting");
            }
            status.active.store(false, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// A user whose notification `id` failed: when they may be tried again, their backoff, and since
/// when that notification has been failing.
struct Failing {
    next: Instant,
    backoff: Backoff,
    id: i64,
    since: Instant,
}

#[derive(Default)]
struct Retry {
    users: HashMap<String, Failing>,
}

impl Retry {
    /// Users not to be tried yet.
    fn waiting(&self, now: Instant) -> impl Iterator<Item = &String> {
        self.users.iter().filter(move |(_, f)| f.next > now).map(|(user, _)| user)
    }

    /// Records a failure of `user`'s notification `id`; how long that one has been failing.
    fn failed(&mut self, user: &str, id: i64, now: Instant) -> Duration {
        let (mut backoff, since) = match self.users.get(user) {
            Some(f) if f.id == id => (f.backoff, f.since),
            _ => (BACKOFF, now),
        };
        let failing = Failing { next: now + backoff.next_wait(), backoff, id, since };
        let failing_for = now - since;
        self.users.insert(user.to_string(), failing);
        failing_for
    }

    fn clear(&mut self, user: &str) {
        self.users.remove(user);
    }

    fn next_due(&self, now: Instant) -> Option<Instant> {
        self.users.values().map(|f| f.next).filter(|at| *at > now).min()
    }
}

/// How a user's turn ended.
enum Outcome {
    /// Every notification handed over was forwarded or set aside.
    Done,
    /// Notification `id` failed (to be retried, or set aside after the give-up time).
    Failed { id: i64, error: String },
}

type Turn = Result<(String, Outcome), tokio_postgres::Error>;

/// The forwarding lock's holder: serves users until the connection fails or the gateway stops.
async fn forward(
    hub: &Arc<Hub>,
    config: &tokio_postgres::Config,
    http: &reqwest::Client,
    target: &Target,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    let client = Arc::new(client);
    while !client
        .query_one("SELECT pg_try_advisory_lock(hashtext('hatchat.forwarder'))", &[])
        .await?
        .get::<_, bool>(0)
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tracing::info!(url = target.url, "forwarding notifications");
    let status = STATUS.get().expect("set by spawn_forwarder");
    status.active.store(true, Ordering::Relaxed);
    let mut retry = Retry::default();
    let mut busy: HashSet<String> = HashSet::new();
    let mut running: JoinSet<Turn> = JoinSet::new();
    let mut wake = hub.subscribe(Topic::AnyUser);
    let mut status_due = Instant::now();
    loop {
        if running.len() < CONCURRENT_USERS {
            let skip: Vec<String> = busy.iter().chain(retry.waiting(Instant::now())).cloned().collect();
            for (user, notes) in fetch(&client, &skip).await? {
                if running.len() >= CONCURRENT_USERS {
                    break;
                }
                busy.insert(user.clone());
                running.spawn(take_turn(Arc::clone(&client), http.clone(), target.url.clone(), user, notes));
            }
        }
        if Instant::now() >= status_due {
            let started = Instant::now();
            refresh_status(&client, status).await?;
            status_due = Instant::now() + STATUS_EVERY.max(started.elapsed() * STATUS_COST_SHARE);
        }
        // Until a user's turn ends, new notifications arrive, a retry comes due, or the counts do.
        let due = retry.next_due(Instant::now()).map_or(status_due, |at| at.min(status_due));
        tokio::select! {
            Some(ended) = running.join_next() => {
                let (user, outcome) = ended??;
                busy.remove(&user);
                settle(&client, &mut retry, target.give_up, &user, outcome).await?;
            }
            woke = wake.wait(due.max(Instant::now() + Duration::from_millis(20))) => {
                if woke == Wake::Shutdown {
                    return Ok(());
                }
            }
        }
    }
}

/// A fair batch without the users in `skip`, grouped by user in the database's order.
async fn fetch(
    client: &Client,
    skip: &[String],
) -> Result<Vec<(String, Vec<Pending>)>, tokio_postgres::Error> {
    let text: String = client.query_one(api::NOTIFICATIONS_TO_FORWARD, &[&BATCH, &skip]).await?.get(0);
    let pending: Vec<Pending> = serde_json::from_str(&text).unwrap_or_default();
    let mut by_user: Vec<(String, Vec<Pending>)> = Vec::new();
    for note in pending {
        match by_user.last_mut() {
            Some((user, notes)) if *user == note.user_id => notes.push(note),
            _ => by_user.push((note.user_id.clone(), vec![note])),
        }
    }
    Ok(by_user)
}

/// POSTs `user`'s notifications in order, recording each answer, until one fails.
async fn take_turn(
    client: Arc<Client>,
    http: reqwest::Client,
    url: String,
    user: String,
    notes: Vec<Pending>,
) -> Turn {
    for note in notes {
        match post(&http, &url, &note).await {
            Answer::Accepted => {
                client.execute(api::MARK_FORWARDED, &[&user, &note.id]).await?;
            }
            Answer::Refused(reason) => {
                tracing::warn!(user, id = note.id, reason, "the receiver refused a notification; set aside");
                set_aside(&client, &user, note.id, &reason).await?;
            }
            Answer::Failed(error) => return Ok((user, Outcome::Failed { id: note.id, error })),
        }
    }
    Ok((user, Outcome::Done))
}

/// After a user's turn: clear their backoff, or extend it, or give their failing notification up.
async fn settle(
    client: &Client,
    retry: &mut Retry,
    give_up: Duration,
    user: &str,
    outcome: Outcome,
) -> Result<(), tokio_postgres::Error> {
    let Outcome::Failed { id, error } = outcome else {
        retry.clear(user);
        return Ok(());
    };
    let failing_for = retry.failed(user, id, Instant::now());
    if failing_for < give_up {
        tracing::warn!(user, id, error, "forwarding failed; will retry");
        return Ok(());
    }
    let reason = format!("failed for {} s; last: {error}", failing_for.as_secs());
    tracing::warn!(user, id, reason, "gave up forwarding a notification; set aside");
    set_aside(client, user, id, &reason).await?;
    retry.clear(user);
    Ok(())
}

async fn set_aside(client: &Client, user: &str, id: i64, reason: &str) -> Result<(), tokio_postgres::Error> {
    client.execute(api::MARK_UNDELIVERABLE, &[&user, &id, &reason]).await?;
    Ok(())
}

async fn refresh_status(client: &Client, status: &Status) -> Result<(), tokio_postgres::Error> {
    let text: String = client.query_one(api::FORWARDING_STATUS, &[]).await?.get(0);
    let counts: Value = serde_json::from_str(&text).unwrap_or_default();
    let read = |name: &str| counts[name].as_i64().unwrap_or(-1);
    status.pending.store(read("pending"), Ordering::Relaxed);
    status.undeliverable.store(read("undeliverable"), Ordering::Relaxed);
    Ok(())
}

/// The receiver's answer to one POST.
enum Answer {
    Accepted,
    /// It will never take this one (with why).
    Refused(String),
    /// It may later (with why).
    Failed(String),
}

/// A 4xx says the request itself is wrong, so repeating it cannot help; but 408 (timeout) and 429
/// (too many requests) ask for a retry.
fn is_refusal(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

async fn post(http: &reqwest::Client, url: &str, note: &Pending) -> Answer {
    let sent = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Hatchat-Notification", format!("{}/{}", note.user_id, note.id))
        .body(note.body.get().to_string())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Answer::Accepted,
        Ok(response) => {
            let status = response.status();
            let reason = format!("the receiver answered {status}: {}", excerpt(response).await);
            if is_refusal(status) {
                Answer::Refused(reason)
            } else {
                Answer::Failed(reason)
            }
        }
        Err(error) => Answer::Failed(format!("the receiver is unreachable: {error}")),
    }
}

/// The start of the answer's body, as one line of text (what the receiver said went wrong).
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_final_4xx_sets_a_notification_aside_at_once() {
        for refused in [400, 401, 403, 404, 410, 413, 422] {
            assert!(is_refusal(StatusCode::from_u16(refused).unwrap()), "{refused}");
        }
        for retried in [408, 429, 500, 502, 503, 504, 301, 304] {
            assert!(!is_refusal(StatusCode::from_u16(retried).unwrap()), "{retried}");
        }
    }

    #[test]
    fn failing_time_counts_from_the_first_failure_of_the_same_notification() {
        let start = Instant::now();
        let mut retry = Retry::default();
        assert_eq!(retry.failed("u", 1, start), Duration::ZERO);
        assert_eq!(retry.waiting(start).count(), 1, "backing off");
        assert_eq!(retry.next_due(start), Some(start + Duration::from_millis(200)));
        let later = start + Duration::from_secs(3);
        assert_eq!(retry.waiting(later).count(), 0, "due again");
        assert_eq!(retry.failed("u", 1, later), Duration::from_secs(3));
        assert_eq!(retry.next_due(later), Some(later + Duration::from_millis(400)), "backing off longer");
        // Another notification (the first was set aside or deleted) starts the clock again.
        assert_eq!(retry.failed("u", 2, later), Duration::ZERO);
        retry.clear("u");
        assert_eq!(retry.waiting(later).count(), 0);
        assert_eq!(retry.next_due(later), None);
    }
}
