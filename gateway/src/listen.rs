//! The one LISTEN connection of a gateway process and the fan-out of its notifications to waiting
//! requests. A waiting long-poll holds a `watch` receiver, no database connection, and causes no
//! queries until something happens to what it waits on.
//!
//! No lost wake-ups: a request subscribes *before* it queries, so a message that commits between
//! its query and its wait has already marked its receiver. When the LISTEN connection drops,
//! notifications sent meanwhile are lost, so after every (re)connect everyone is woken to
//! re-query. Notifications only say "look again"; the query decides what is new.

use crate::backoff::Backoff;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

/// The NOTIFY channel the extension announces on.
pub const NOTIFY_CHANNEL: &str = "hatchat";

/// What a request can wait on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// New messages in a channel (or the channel changed, e.g. was deleted).
    Channel(String),
    /// New notifications for a user.
    User(String),
    /// New notifications for anyone (the forwarder waits on this).
    AnyUser,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something may have changed: query again.
    Changed,
    /// The deadline passed.
    Timeout,
    /// The gateway is shutting down: answer now.
    Shutdown,
}

pub struct Hub {
    /// Names this process in the NOTIFYs it sends, so it can skip hearing its own.
    instance: String,
    topics: Mutex<HashMap<Topic, watch::Sender<u64>>>,
    /// Bumped after every (re)connect of the listener, and at shutdown.
    everyone: watch::Sender<u64>,
    connected: AtomicBool,
    shutting_down: AtomicBool,
    waiting: AtomicUsize,
}

/// A request's interest in a topic; dropping it (the request ended or the client went away)
/// unregisters it.
pub struct Subscription {
    hub: Arc<Hub>,
    topic: Topic,
    receiver: Option<watch::Receiver<u64>>,
    everyone: watch::Receiver<u64>,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Arc::new(Self {
            instance: format!("{}-{:x}", std::process::id(), nanos.as_nanos()),
            topics: Mutex::default(),
            everyone: watch::Sender::default(),
            connected: AtomicBool::default(),
            shutting_down: AtomicBool::default(),
            waiting: AtomicUsize::default(),
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> Subscription {
        let receiver = {
            let mut topics = self.topics.lock().expect("hub lock");
            topics.entry(topic.clone()).or_insert_with(|| watch::channel(0).0).subscribe()
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Subscription {
            hub: Arc::clone(self),
            topic,
            receiver: Some(receiver),
            everyone: self.everyone.subscribe(),
        }
    }

    pub fn notify(&self, topic: &Topic) {
        if let Some(sender) = self.topics.lock().expect("hub lock").get(topic) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Everyone re-queries: after a reconnect (notifications may have been missed) and at shutdown.
    pub fn wake_everyone(&self) {
        self.everyone.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies one notification payload from the extension (or a gateway's coalesced NOTIFY).
    pub fn dispatch(&self, payload: &str) {
        match serde_json::from_str::<Payload>(payload) {
            // Our own announcement: our waiters were woken when the send returned.
            Ok(payload) if payload.gateway.as_deref() == Some(self.instance.as_str()) => {}
            Ok(payload) => payload.topics().for_each(|topic| self.notify(&topic)),
            Err(error) => {
                tracing::warn!(%error, payload, "unreadable notification; waking everyone to be safe");
                self.wake_everyone();
            }
        }
    }

    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.wake_everyone();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Requests currently subscribed (waiting, or querying between waits).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Subscription {
    pub async fn wait(&mut self, deadline: Instant) -> Wake {
        if self.hub.is_shutting_down() {
            return Wake::Shutdown;
        }
        let receiver = self.receiver.as_mut().expect("receiver lives until drop");
        let woken = tokio::select! {
            _ = receiver.changed() => true,
            _ = self.everyone.changed() => true,
            _ = tokio::time::sleep_until(deadline) => false,
        };
        match (woken, self.hub.is_shutting_down()) {
            (_, true) => Wake::Shutdown,
            (true, false) => Wake::Changed,
            (false, false) => Wake::Timeout,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut topics = self.hub.topics.lock().expect("hub lock");
        drop(self.receiver.take());
        // Subscribing happens under the same lock, so nobody can be joining this topic right now.
        if topics.get(&self.topic).is_some_and(|sender| sender.receiver_count() == 0) {
            topics.remove(&self.topic);
        }
    }
}

/// `{"channel": c, "seq": n}` from a send, `{"channels": [..], "gateway": g}` coalesced by a
/// gateway, `{"user": u}` / `{"users": [..]}` for notification streams.
#[derive(Deserialize)]
struct Payload {
    gateway: Option<String>,
    channel: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    user: Option<String>,
    #[serde(default)]
    users: Vec<String>,
}

impl Payload {
    fn topics(self) -> impl Iterator<Item = Topic> {
        let channels = self.channel.into_iter().chain(self.channels).map(Topic::Channel);
        let users: Vec<Topic> = self.user.into_iter().chain(self.users).map(Topic::User).collect();
        let any_user = (!users.is_empty()).then_some(Topic::AnyUser);
        channels.chain(users).chain(any_user)
    }
}

/// Keeps one LISTEN connection up for the life of the process: reconnects with capped exponential
/// backoff, and wakes everyone once listening again.
pub fn spawn_listener(hub: Arc<Hub>, config: tokio_postgres::Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !hub.is_shutting_down() {
            let ended = listen(&hub, &config).await;
            // A connection that got as far as listening starts the backoff over.
            if hub.connected.swap(false, Ordering::SeqCst) {
                backoff.reset();
            }
            let wait = backoff.next_wait();
            match ended {
                Ok(()) => tracing::warn!("listener connection closed; reconnecting"),
                Err(error) => tracing::warn!(%error, ?wait, "listener connection failed; reconnecting"),
            }
            tokio::time::sleep(wait).await;
        }
    })
}

/// One connection's life: LISTEN, wake everyone, then dispatch until the connection ends.
async fn listen(hub: &Arc<Hub>, config: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let dispatcher = {
        let hub = Arc::clone(hub);
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => hub.dispatch(n.payload()),
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })
    };
    client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await?;
    hub.connected.store(true, Ordering::SeqCst);
    tracing::info!("listening for notifications");
    hub.wake_everyone();
    let ended = dispatcher.await.unwrap_or(Ok(()));
    drop(client);
    ended
}
