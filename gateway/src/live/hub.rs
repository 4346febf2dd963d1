//! The one LISTEN connection of a gateway process, and the wake-ups it hands to waiting requests.
//! The extension announces every change, after it commits, as a NOTIFY naming the keys of the
//! channels and users it touched (`hatchat_wire::wake`); the hub wakes the requests waiting on
//! those keys. A waiting long-poll holds a `watch` receiver, no database connection, and causes no
//! queries until something happens to what it waits on.
//!
//! No lost wake-ups: a request subscribes *before* it queries (see live/mod.rs). When the LISTEN
//! connection drops, announcements made meanwhile are lost, so after every (re)connect everyone is
//! woken to re-query. A wake-up only says "look again"; the query decides what is new.

use crate::backoff::Backoff;
use futures_util::StreamExt;
use hatchat_wire::wake::{Kind, Secret, WakeUp, NOTIFY_CHANNEL};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

/// What a request can wait on, by key (`hatchat_wire::wake::Secret::key`): two ids that share a key only
/// cost a query that finds nothing new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// New messages in a channel (or the channel changed, e.g. was deleted).
    Channel(u64),
    /// New notifications for a user.
    User(u64),
    /// New notifications for anyone (the forwarder waits on this).
    AnyUser,
}

impl Topic {
    /// Keyed with the database's wake-up secret, as the extension keys what it announces.
    pub fn channel(secret: &Secret, id: &str) -> Self {
        Topic::Channel(secret.key(Kind::Channel, id))
    }

    /// `id` as the database writes a uuid (lowercase, hyphenated), as the extension keys it.
    pub fn user(secret: &Secret, id: &str) -> Self {
        Topic::User(secret.key(Kind::User, id))
    }
}

/// Whom one announcement wakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Everyone looks again (the announcer lost track of what changed).
    Everyone,
    /// The requests waiting on these topics.
    Topics(Vec<Topic>),
}

/// The gateway's reading of a NOTIFY payload. Notifications for any user also wake `AnyUser`. A
/// payload that names nothing is not one the extension sends (it may come from a version that
/// spells the shape differently): everyone looks again rather than nobody.
pub fn decode(payload: &str) -> Result<Audience, serde_json::Error> {
    let wake_up = WakeUp::decode(payload)?;
    if wake_up.all || (wake_up.channels.is_empty() && wake_up.users.is_empty()) {
        return Ok(Audience::Everyone);
    }
    let any_user = (!wake_up.users.is_empty()).then_some(Topic::AnyUser);
    let channels = wake_up.channels.into_iter().map(Topic::Channel);
    let users = wake_up.users.into_iter().map(Topic::User);
    Ok(Audience::Topics(channels.chain(users).chain(any_user).collect()))
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
    /// The database's wake-up secret (read at start, `hatchat.wake_secret()`): topics are keyed
    /// with it.
    secret: Secret,
    topics: Mutex<HashMap<Topic, watch::Sender<u64>>>,
    /// Bumped after every (re)connect of the listener, and at shutdown.
    everyone: watch::Sender<u64>,
    connected: AtomicBool,
    /// The listeners on a Citus cluster's other nodes (nodes.rs), by node: whether each listens.
    nodes: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Whether the cluster's node list was read once (so `nodes` is known, empty on one node).
    nodes_read: AtomicBool,
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
    /// Counted in `waiting` (a request), or not (a channel's feed, whose readers count instead).
    _waiting: Option<Waiting>,
}

impl Hub {
    pub fn new(secret: Secret) -> Arc<Self> {
        Arc::new(Self {
            secret,
            topics: Mutex::default(),
            everyone: watch::Sender::default(),
            connected: AtomicBool::default(),
            nodes: Mutex::default(),
            nodes_read: AtomicBool::default(),
            shutting_down: AtomicBool::default(),
            waiting: AtomicUsize::default(),
        })
    }

    /// What waiters on channel `id` wait on.
    pub fn channel(&self, id: &str) -> Topic {
        Topic::channel(&self.secret, id)
    }

    /// A channel's presence and typing: a key apart from its messages.
    pub fn presence(&self, channel: &str) -> Topic {
        Topic::Channel(self.secret.presence_key(channel))
    }

    /// What waiters on user `id`'s notifications wait on.
    pub fn user(&self, id: &str) -> Topic {
        Topic::user(&self.secret, id)
    }

    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> Subscription {
        self.subscribe_as(topic, Some(self.hold()))
    }

    /// A subscription that is not a waiting request: a channel's feed (feeds.rs).
    pub fn subscribe_uncounted(self: &Arc<Self>, topic: Topic) -> Subscription {
        self.subscribe_as(topic, None)
    }

    fn subscribe_as(self: &Arc<Self>, topic: Topic, waiting: Option<Waiting>) -> Subscription {
        let receiver = {
            let mut topics = self.topics.lock().expect("hub lock");
            topics.entry(topic).or_insert_with(|| watch::channel(0).0).subscribe()
        };
        Subscription {
            hub: Arc::clone(self),
            topic,
            receiver: Some(receiver),
            everyone: self.everyone.subscribe(),
            _waiting: waiting,
        }
    }

    /// Wakes the requests waiting on `topic`.
    pub fn wake(&self, topic: &Topic) {
        if let Some(sender) = self.topics.lock().expect("hub lock").get(topic) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
            crate::metrics::wake_up_dispatched("topic");
        }
    }

    /// Everyone re-queries: after a reconnect (notifications may have been missed) and at shutdown.
    pub fn wake_everyone(&self) {
        crate::metrics::wake_up_dispatched("everyone");
        self.everyone.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes whom one announcement of the extension names.
    pub fn dispatch(&self, payload: &str) {
        crate::metrics::wake_up_received();
        match decode(payload) {
            Ok(Audience::Topics(topics)) => topics.iter().for_each(|topic| self.wake(topic)),
            Ok(Audience::Everyone) => self.wake_everyone(),
            Err(error) => {
                tracing::warn!(%error, payload, "unreadable announcement; waking everyone to be safe");
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

    /// Whether every listener listens: this database's, and one on each other node of a cluster.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
            && self.nodes_read.load(Ordering::SeqCst)
            && self.nodes.lock().expect("hub lock").values().all(|up| up.load(Ordering::SeqCst))
    }

    /// A listener for another node: its "listening" flag, counted in `is_connected` until
    /// `forget_node`.
    pub fn add_node(&self, node: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.nodes.lock().expect("hub lock").insert(node.to_string(), Arc::clone(&flag));
        flag
    }

    /// The node list was read (or could not be): until then the gateway does not report itself
    /// up, so no request waits before every listener is there (each wakes everyone as it starts).
    pub fn nodes_known(&self) {
        self.nodes_read.store(true, Ordering::SeqCst);
    }

    pub fn forget_node(&self, node: &str) {
        self.nodes.lock().expect("hub lock").remove(node);
    }

    /// Resolves once the gateway is shutting down.
    pub async fn until_shutdown(&self) {
        let mut everyone = self.everyone.subscribe();
        while !self.is_shutting_down() {
            if everyone.changed().await.is_err() {
                return;
            }
        }
    }

    /// Counts a request as waiting (in `waiting`) until the guard is dropped: a subscription of
    /// its own (`subscribe`), or a long-poll that waits through a channel's feed.
    pub fn hold(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(self))
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

/// One waiting request, counted until dropped (see `Hub::hold`).
pub struct Waiting(Arc<Hub>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.hub.topics.lock().expect("hub lock");
        drop(self.receiver.take());
        // Subscribing happens under the same lock, so nobody can be joining this topic right now.
        if topics.get(&self.topic).is_some_and(|sender| sender.receiver_count() == 0) {
            topics.remove(&self.topic);
        }
    }
}

/// Keeps one LISTEN connection up for the life of the process: reconnects with capped exponential
/// backoff, and wakes everyone once listening again.
pub fn spawn_listener(hub: Arc<Hub>, config: tokio_postgres::Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { keep_listening(&hub, &config, &hub.connected).await })
}

/// The listener's loop, for this database (`connected` is the hub's own flag) or for another node
/// of a cluster (its flag from `Hub::add_node`).
pub async fn keep_listening(hub: &Arc<Hub>, config: &tokio_postgres::Config, connected: &AtomicBool) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !hub.is_shutting_down() {
        let ended = listen(hub, config, connected).await;
        // A connection that got as far as listening starts the backoff over.
        if connected.swap(false, Ordering::SeqCst) {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        let hosts = config.get_hosts();
        match ended {
            Ok(()) => tracing::warn!(?hosts, "listener connection closed; reconnecting"),
            Err(error) => tracing::warn!(%error, ?hosts, ?wait, "listener connection failed; reconnecting"),
        }
        tokio::time::sleep(wait).await;
    }
}

/// One connection's life: LISTEN, wake everyone, then dispatch until the connection ends.
async fn listen(
    hub: &Arc<Hub>,
    config: &tokio_postgres::Config,
    connected: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
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
    connected.store(true, Ordering::SeqCst);
    tracing::info!(hosts = ?config.get_hosts(), "listening for announcements");
    hub.wake_everyone();
    // The client lives until the connection ends: dropping it would close the connection.
    dispatcher.await.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_wakes_its_keys_and_all_wakes_everyone() {
        let (general, alice) = ("general", "6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c");
        let secret = Secret::from_bytes(&[9; 16]).unwrap();
        let keys = (secret.key(Kind::Channel, general), secret.key(Kind::User, alice));
        let payload = &WakeUp::encode(&[keys.0], &[keys.1], false)[0];
        let expected = vec![Topic::channel(&secret, general), Topic::user(&secret, alice), Topic::AnyUser];
        assert_eq!(decode(payload).unwrap(), Audience::Topics(expected));
        assert_eq!(decode(r#"{"channels": [], "all": true}"#).unwrap(), Audience::Everyone);
        assert_eq!(
            decode(r#"{"channel": "general", "seq": 1}"#).unwrap(),
            Audience::Everyone,
            "names nothing"
        );
        assert!(decode("not json").is_err());
    }
}
