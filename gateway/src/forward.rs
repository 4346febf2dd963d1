//! Forwarding notifications to `HATCHAT_NOTIFY_URL` (the seed's notification service): each is
//! POSTed as JSON, at least once, in order per user. A user whose notification the receiver
//! refuses waits (capped exponential backoff) before the next try, and their later notifications
//! wait behind it; other users go on. Each acknowledgement is recorded in the database
//! (`forwarded_at`) before the next POST, so a restart loses nothing and repeats at most the one
//! in flight (its `X-Hatchat-Notification` header names it). One gateway forwards at a time: the
//! others wait on a PostgreSQL advisory lock.

use crate::listen::{Hub, Topic, Wake};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::NoTls;

const BATCH: i32 = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    user_id: String,
    id: i64,
    body: Box<RawValue>,
}

pub fn spawn_forwarder(hub: Arc<Hub>, config: tokio_postgres::Config, url: String) {
    tokio::spawn(async move {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        loop {
            if let Err(error) = forward(&hub, &config, &http, &url).await {
                tracing::warn!(%error, "forwarder stopped; restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Per user: when their next try may happen, and the backoff that got them there.
#[derive(Default)]
struct Retry {
    next: HashMap<String, (Instant, Duration)>,
}

impl Retry {
    fn ready(&self, user: &str) -> bool {
        self.next.get(user).is_none_or(|(at, _)| Instant::now() >= *at)
    }

    fn failed(&mut self, user: &str) {
        let backoff =
            self.next.get(user).map_or(Duration::from_millis(200), |(_, b)| (*b * 2).min(MAX_BACKOFF));
        self.next.insert(user.to_string(), (Instant::now() + backoff, backoff));
    }

    fn succeeded(&mut self, user: &str) {
        self.next.remove(user);
    }
}

async fn forward(
    hub: &Arc<Hub>,
    config: &tokio_postgres::Config,
    http: &reqwest::Client,
    url: &str,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    while !client
        .query_one("SELECT pg_try_advisory_lock(hashtext('hatchat.forwarder'))", &[])
        .await?
        .get::<_, bool>(0)
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tracing::info!(url, "forwarding notifications");
    let mut retry = Retry::default();
    let mut wake = hub.subscribe(Topic::AnyUser);
    loop {
        let text: String =
            client.query_one("SELECT hatchat.notifications_to_forward($1)::text", &[&BATCH]).await?.get(0);
        let pending: Vec<Pending> = serde_json::from_str(&text).unwrap_or_default();
        let mut by_user: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for note in pending {
            by_user.entry(note.user_id.clone()).or_default().push(note);
        }
        let mut delivered = 0;
        for (user, notes) in by_user {
            if !retry.ready(&user) {
                continue;
            }
            for note in notes {
                if post(http, url, &note).await {
                    client
                        .execute("SELECT hatchat.mark_forwarded($1::text::uuid, $2)", &[&user, &note.id])
                        .await?;
                    retry.succeeded(&user);
                    delivered += 1;
                } else {
                    retry.failed(&user);
                    break;
                }
            }
        }
        if delivered == 0 {
            // Nothing more to do now: wait for new notifications, or for a retry to come due.
            let nap = retry
                .next
                .values()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(Instant::now() + Duration::from_secs(5));
            if wake.wait(nap.max(Instant::now() + Duration::from_millis(50))).await == Wake::Shutdown {
                return Ok(());
            }
        }
    }
}

/// POSTs one notification; true when the receiver answered 2xx.
async fn post(http: &reqwest::Client, url: &str, note: &Pending) -> bool {
    let sent = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Hatchat-Notification", format!("{}/{}", note.user_id, note.id))
        .body(note.body.get().to_string())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::warn!(status = %response.status(), "the notification receiver refused; will retry");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "the notification receiver is unreachable; will retry");
            false
        }
    }
}
