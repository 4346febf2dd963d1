//! Announcing the gateway's own sends. The pool's connections run with `hatchat.notify = off`, so a
//! send's transaction never takes PostgreSQL's database-wide NOTIFY lock (held from commit until
//! the commit is flushed, it would serialize every send). Instead, once a send has committed and
//! returned, this gateway's waiters are woken directly, and a notifier task tells every other
//! gateway with one NOTIFY naming all channels that received messages since its last one, on its
//! own connection with `synchronous_commit = off` (the messages are already durable; the
//! announcement need not wait for a flush, so the lock is held only briefly).
//!
//! A notification therefore never arrives before its message is visible. If the notifier's
//! connection fails, the channels not yet announced are kept and announced after reconnecting.

use crate::listen::{Hub, Topic, NOTIFY_CHANNEL};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

/// Far below PostgreSQL's 8000-byte payload limit.
const MAX_PAYLOAD_BYTES: usize = 7000;

#[derive(Clone)]
pub struct Notifier {
    hub: Arc<Hub>,
    queue: mpsc::UnboundedSender<String>,
}

impl Notifier {
    /// Messages were committed in `channel`.
    pub fn sent(&self, channel: &str) {
        self.hub.notify(&Topic::Channel(channel.to_string()));
        let _ = self.queue.send(channel.to_string());
    }
}

/// Starts the notifier task; it ends once every `Notifier` is dropped and its queue is announced.
pub fn spawn_notifier(
    hub: Arc<Hub>,
    config: tokio_postgres::Config,
) -> (Notifier, tokio::task::JoinHandle<()>) {
    let (queue, pending) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(pending, config, hub.instance().to_string()));
    (Notifier { hub, queue }, task)
}

async fn run(mut queue: mpsc::UnboundedReceiver<String>, config: tokio_postgres::Config, instance: String) {
    let mut pending = BTreeSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let client = match config.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                backoff = Duration::from_millis(100);
                client
            }
            Err(error) => {
                tracing::warn!(%error, ?backoff, "notifier cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            if pending.is_empty() {
                match queue.recv().await {
                    Some(channel) => pending.insert(channel),
                    None => return,
                };
            }
            // Everything queued while the last NOTIFY was in flight goes out together.
            while let Ok(channel) = queue.try_recv() {
                pending.insert(channel);
            }
            let payloads = payloads(&pending, &instance);
            match client
                .execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                    &[&NOTIFY_CHANNEL, &payloads],
                )
                .await
            {
                Ok(_) => pending.clear(),
                Err(error) => {
                    tracing::warn!(%error, channels = pending.len(), "notifier connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// `{"channels": [...], "gateway": instance}` payloads, each under the size limit.
fn payloads(channels: &BTreeSet<String>, instance: &str) -> Vec<String> {
    let payload = |batch: &[&str]| serde_json::json!({"channels": batch, "gateway": instance}).to_string();
    let mut payloads = Vec::new();
    let mut batch: Vec<&str> = Vec::new();
    let mut size = 0;
    for channel in channels {
        let quoted = serde_json::to_string(channel).expect("a string serializes").len() + 1;
        if size + quoted > MAX_PAYLOAD_BYTES && !batch.is_empty() {
            payloads.push(payload(&batch));
            batch.clear();
            size = 0;
        }
        batch.push(channel);
        size += quoted;
    }
    if !batch.is_empty() {
        payloads.push(payload(&batch));
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_name_every_channel() {
        let channels: BTreeSet<String> = (0..200).map(|i| format!("{i:03}-{}", "é".repeat(90))).collect();
        let payloads = payloads(&channels, "gw");
        assert!(payloads.len() > 1);
        let mut named = BTreeSet::new();
        for payload in &payloads {
            assert!(payload.len() < 8000, "{}", payload.len());
            let value: serde_json::Value = serde_json::from_str(payload).unwrap();
            assert_eq!(value["gateway"], "gw");
            for channel in value["channels"].as_array().unwrap() {
                named.insert(channel.as_str().unwrap().to_string());
            }
        }
        assert_eq!(named, channels);
    }
}
