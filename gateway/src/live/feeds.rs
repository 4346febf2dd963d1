//! One read per wake-up for every live reader of a channel on this gateway: SSE streams, WebSocket
//! subscriptions and long-polls register here with their own cursor; a feed per channel reads the
//! window once (`hatchat.channel_window`, from the smallest cursor among its readers) and hands
//! each reader the part after its own cursor.
//!
//! No lost wake-ups: a feed subscribes to its channel before its first read, and a reader that
//! registers behind what the feed last read (or during a read) kicks the feed, so the next read
//! happens after the registration; a reader at or past it needs none, since whatever commits later
//! wakes the feed. Authorization is not skipped: every delivery comes from a read that returns
//! which of the readers' users are still members, in the snapshot of the messages, and a reader
//! whose user is not (or whose token expired) is closed.
//!
//! Slow consumers: each reader has a buffer bounded in messages and in bytes (its purse, bounds.rs);
//! a feed never waits for a reader. A reader whose buffer is full is closed ("slow consumer") and
//! resumes from its last seq. A reader that has taken everything but is handed a page bigger than
//! its whole buffer is not slow: it leaves the feed and reads on alone, as its client takes the
//! pages, then joins again. Reading alone, it holds one page at a time, and a page no larger than
//! its purse: the messages it is handed are shared with nobody, so they are what it costs.

use super::bounds::{Budget, Purse};
use super::crowd::{Crowd, Told};
use super::hub::{Hub, Wake};
use crate::db;
use crate::error::ApiError;
use deadpool_postgres::Pool;
use hatchat_wire::api;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Messages one read returns at most (get_messages' own upper bound).
const PAGE: i32 = 1000;
/// A reader's first page alone, in messages, before it knows how large its channel's messages are:
/// at the default payload limit (64 kB), what a default purse holds.
const FIRST_PAGE: i32 = 4;

/// Typing one read hands out at most (oldest first).
const MAX_TYPING_EVENTS: usize = 16;

/// An event as streams send it: with its user's name.
fn named(event: &api::Ephemeron, answer: &api::Ephemera) -> Arc<str> {
    let mut named = event.clone();
    named.username = answer.names.get(&event.user_id).cloned();
    Arc::from(serde_json::to_string(&named).expect("an event serializes"))
}

/// What a reader is handed, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A message, as get_messages returns it.
    Message { seq: i64, json: Arc<str> },
    /// The reader's position is older than what the channel still holds: it continues from
    /// `oldest_seq`, and the messages before were capped or expired.
    Reset { oldest_seq: i64 },
    /// The last delivery: why the reader ends (`not a member`, `token expired`, ...).
    Closed { reason: &'static str },
    /// A member joined or left the channel's presence (`api::Ephemeron`, kind `join` or `leave`).
    Presence { json: Arc<str> },
    /// A member is typing (`api::Ephemeron`, kind `typing`).
    Typing { json: Arc<str> },
}

impl Delivery {
    /// What holding it costs: a message's JSON text (a reset or a close costs nothing to speak of).
    fn bytes(&self) -> usize {
        match self {
            Delivery::Message { json, .. } => json.len(),
            // Presence and typing are offered only into spare room (`Waiter::offer`), never counted.
            Delivery::Reset { .. }
            | Delivery::Closed { .. }
            | Delivery::Presence { .. }
            | Delivery::Typing { .. } => 0,
        }
    }
}

pub const NOT_A_MEMBER: &str = "not a member";
pub const CHANNEL_GONE: &str = "channel deleted";
pub const TOKEN_EXPIRED: &str = "token expired";
pub const SLOW_CONSUMER: &str = "slow consumer";
pub const SHUTTING_DOWN: &str = "gateway shutting down";
pub const UNAVAILABLE: &str = "database unavailable";
/// Not a close: the reader left the feed to catch up alone (a page bigger than its buffer).
const FELL_BEHIND: &str = "fell behind";

/// Who reads, from where: the user id and expiry come from `hatchat.stream_caller`.
#[derive(Clone)]
pub struct Interest {
    pub channel: String,
    pub user: String,
    pub after_seq: i64,
    pub expires: Option<Instant>,
    pub buffer: usize,
    /// Whether it is also handed presence and typing (streams are; long-polls are not).
    pub ephemera: bool,
}

pub struct Feeds {
    pool: Pool,
    hub: Arc<Hub>,
    budget: Arc<Budget>,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    window_queries: AtomicU64,
    next_id: AtomicU64,
    streams: Arc<AtomicUsize>,
}

/// One open live stream (SSE or WebSocket), counted in /health until dropped.
pub struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Feed {
    channel: String,
    waiters: Mutex<Vec<Waiter>>,
    /// Read again: a reader joined behind what the feed last read.
    kick: Notify,
    /// Look at the readers' tokens again, without a read: a reader joined that is caught up.
    rearm: Notify,
    /// The channel's last seq as the last read saw it (-1 before the first), and whether a read is
    /// under way; both change under the waiters lock, where readers join.
    head: AtomicI64,
    reading: AtomicBool,
}

struct Waiter {
    id: u64,
    user: String,
    cursor: i64,
    expires: Option<Instant>,
    ephemera: bool,
    sender: mpsc::Sender<Delivery>,
    purse: Arc<Purse>,
    ended: Arc<OnceLock<&'static str>>,
}

/// One reader's end: deliveries in order, then one `Closed`. It reads its backlog alone, page by
/// page as it is consumed, then joins its channel's feed. Dropping it unregisters the reader.
pub struct Reader {
    feeds: Arc<Feeds>,
    /// Its `after_seq` is the reader's cursor: the seq of the last message handed out.
    interest: Interest,
    /// What it holds of its deliveries, in bytes (pending and in its feed's channel).
    purse: Arc<Purse>,
    /// Messages its next read alone asks for (see `catch_up`).
    page: i32,
    pending: VecDeque<Delivery>,
    live: Option<Joined>,
    closed: bool,
}

/// A reader registered with its channel's feed.
struct Joined {
    receiver: mpsc::Receiver<Delivery>,
    ended: Arc<OnceLock<&'static str>>,
    feed: Arc<Feed>,
    id: u64,
}

/// A read's answer, each message with its seq, as the feed hands it out.
struct Page {
    live: bool,
    messages: Vec<(i64, Arc<str>)>,
    members: HashSet<String>,
    oldest_seq: Option<i64>,
    last_seq: i64,
}

impl Feeds {
    pub fn new(pool: Pool, hub: Arc<Hub>, budget: Arc<Budget>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            hub,
            budget,
            feeds: Mutex::default(),
            window_queries: AtomicU64::default(),
            next_id: AtomicU64::default(),
            streams: Arc::default(),
        })
    }

    /// Counts a live stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(&self.streams))
    }

    /// Live streams open now.
    pub fn streams_open(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Window reads made so far (each serves every reader of its channel).
    pub fn window_queries(&self) -> u64 {
        self.window_queries.load(Ordering::Relaxed)
    }

    /// Readers registered with a feed now, on every channel (catching-up readers are not).
    pub fn readers(&self) -> usize {
        let feeds = self.feeds.lock().expect("feeds lock");
        feeds.values().map(|feed| feed.waiters.lock().expect("feed lock").len()).sum()
    }

    /// A reader that catches up from `after_seq` with reads of its own, then joins the feed.
    pub fn open(self: &Arc<Self>, interest: Interest) -> Reader {
        Reader {
            feeds: Arc::clone(self),
            page: first_page(interest.buffer),
            interest,
            purse: self.budget.purse(),
            pending: VecDeque::new(),
            live: None,
            closed: false,
        }
    }

    /// A reader already caught up at `after_seq` (a long-poll that found nothing): it joins the
    /// feed at once.
    pub fn open_live(self: &Arc<Self>, interest: Interest) -> Reader {
        let mut reader = self.open(interest);
        reader.live = Some(self.join(reader.interest.clone(), Arc::clone(&reader.purse)));
        reader
    }

    /// Registers a reader with its channel's feed, which reads from `after_seq` next.
    fn join(self: &Arc<Self>, interest: Interest, purse: Arc<Purse>) -> Joined {
        let (sender, receiver) = mpsc::channel(interest.buffer.max(1));
        let ended = Arc::new(OnceLock::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waiter = Waiter {
            id,
            user: interest.user,
            cursor: interest.after_seq,
            expires: interest.expires,
            ephemera: interest.ephemera,
            sender,
            purse,
            ended: Arc::clone(&ended),
        };
        let (feed, caught_up) = {
            let mut feeds = self.feeds.lock().expect("feeds lock");
            let feed = feeds.entry(interest.channel.clone()).or_insert_with(|| {
                let feed = Arc::new(Feed::new(interest.channel));
                tokio::spawn(Arc::clone(self).run(Arc::clone(&feed)));
                feed
            });
            // Under the map lock: a feed retires only under it too, so this one is not retiring.
            let mut waiters = feed.waiters.lock().expect("feed lock");
            // A reader at or past what the feed last read (its membership was checked as it
            // opened) needs no read of its own: whatever commits after that read wakes the feed.
            // A reader behind it, or one joining during a read (which was not made for it),
            // gets the next read.
            let caught_up = feed.serves_without_a_read(waiter.cursor);
            waiters.push(waiter);
            drop(waiters);
            (Arc::clone(feed), caught_up)
        };
        if caught_up {
            feed.rearm.notify_one();
        } else {
            feed.kick.notify_one();
        }
        Joined { receiver, ended, feed, id }
    }

    /// A feed's life: subscribe, then read and hand out until no reader is left. Only a wake-up, a
    /// kick (a reader joined or left) or a failed read's retry reads: a token running out ends
    /// its readers without one.
    async fn run(self: Arc<Self>, feed: Arc<Feed>) {
        let mut subscription = self.hub.subscribe_uncounted(self.hub.channel(&feed.channel));
        let mut presence = self.hub.subscribe_uncounted(self.hub.presence(&feed.channel));
        let mut seen = None;
        let mut read = true;
        let mut retry_at = None;
        let mut crowd = Crowd::new(Instant::now());
        loop {
            if read {
                // A failed read is tried again after a moment (the database may be restarting).
                retry_at = match self.serve(&feed).await {
                    Ok(()) => None,
                    Err(error) => {
                        tracing::warn!(
                            message = error.message,
                            channel = feed.channel,
                            "reading a window failed"
                        );
                        Some(Instant::now() + Duration::from_secs(1))
                    }
                };
            }
            feed.end_expired(Instant::now());
            if self.retire(&feed) {
                return;
            }
            if crowd.due().is_some_and(|at| at <= Instant::now()) {
                self.ephemera(&feed, &mut seen, &mut crowd).await;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let deadline =
                [retry_at, feed.next_expiry(), crowd.due()].into_iter().flatten().min().unwrap_or(far);
            read = tokio::select! {
                wake = subscription.wait(deadline) => match wake {
                    Wake::Changed => true,
                    Wake::Timeout => retry_at.is_some_and(|at| at <= Instant::now()),
                    Wake::Shutdown => {
                        feed.close_all(SHUTTING_DOWN);
                        self.retire(&feed);
                        return;
                    }
                },
                _ = feed.kick.notified() => true,
                _ = feed.rearm.notified() => false,
                Wake::Changed = presence.wait(far) => {
                    if crowd.read_now(Instant::now()) {
                        self.ephemera(&feed, &mut seen, &mut crowd).await;
                    }
                    false
                }
            };
        }
    }

    /// Reads and hands out until every reader has all there is (a full page means more).
    async fn serve(&self, feed: &Feed) -> Result<(), ApiError> {
        loop {
            let Some(wanted) = feed.wanted() else { return Ok(()) };
            let page = self.read(&feed.channel, wanted.after_seq, wanted.users, PAGE).await?;
            let full = page.messages.len() >= PAGE as usize;
            feed.hand_out(&page, &wanted.readers, Instant::now());
            if !full {
                return Ok(());
            }
        }
    }

    async fn read(
        &self,
        channel: &str,
        after_seq: i64,
        users: Vec<String>,
        limit: i32,
    ) -> Result<Page, ApiError> {
        self.window_queries.fetch_add(1, Ordering::Relaxed);
        let text =
            db::call_json(&self.pool, api::CHANNEL_WINDOW, &[&channel, &after_seq, &limit, &users]).await?;
        let window: api::ChannelWindow = serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("channel_window answered unexpected JSON: {e}")))?;
        let mut messages = Vec::with_capacity(window.messages.len());
        for message in window.messages {
            let api::Seq { seq } = serde_json::from_str(message.get())
                .map_err(|e| ApiError::internal(format!("a message without a seq: {e}")))?;
            messages.push((seq, Arc::from(message.get())));
        }
        Ok(Page {
            live: window.live,
            messages,
            members: window.members.into_iter().collect(),
            oldest_seq: window.oldest_seq,
            last_seq: window.last_seq.unwrap_or(0),
        })
    }

    /// Serves the channel's ephemera; a failed read is logged, and the next change reads again.
    async fn ephemera(&self, feed: &Feed, seen: &mut Option<HashSet<i64>>, crowd: &mut Crowd) {
        if let Err(error) = self.serve_ephemera(feed, seen, crowd).await {
            tracing::warn!(message = error.message, channel = feed.channel, "reading presence failed");
        }
    }

    /// Hands the channel's joins, leaves and typing that `seen` does not hold to the readers that
    /// take them, joins and leaves as `crowd` decides. A feed's first read hands out only what is
    /// moments old: the rest happened before any of its readers came.
    async fn serve_ephemera(
        &self,
        feed: &Feed,
        seen: &mut Option<HashSet<i64>>,
        crowd: &mut Crowd,
    ) -> Result<(), ApiError> {
        let users = feed.ephemera_users();
        if users.is_empty() {
            *seen = None;
            return Ok(());
        }
        let answer: api::Ephemera =
            db::call_typed(&self.pool, api::CHANNEL_EPHEMERA, &[&feed.channel, &users]).await?;
        let before = seen.replace(answer.events.iter().map(|event| event.id).collect());
        let recent = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3);
        let is_new = |event: &api::Ephemeron| match &before {
            Some(before) => !before.contains(&event.id),
            None => event.at.parse::<jiff::Timestamp>().is_ok_and(|at| at > recent),
        };
        let events: Vec<_> = answer.events.iter().filter(|event| is_new(event)).collect();
        let changes = events.iter().filter(|event| event.kind != "typing").count();
        let told = crowd.tell(changes, Instant::now());
        if !events.is_empty() || told != Told::Each {
            feed.hand_out_ephemera(&events, told, &answer);
        }
        Ok(())
    }

    /// Removes a feed without readers (under the map lock, so no reader is joining it).
    fn retire(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        let mut waiters = feed.waiters.lock().expect("feed lock");
        waiters.retain(|waiter| !waiter.sender.is_closed());
        if !waiters.is_empty() {
            return false;
        }
        if feeds.get(&feed.channel).is_some_and(|current| Arc::ptr_eq(current, feed)) {
            feeds.remove(&feed.channel);
        }
        true
    }
}

/// What one read serves: where it starts (the smallest cursor), whose membership it checks, and
/// the readers it is for.
struct Wanted {
    after_seq: i64,
    users: Vec<String>,
    readers: HashSet<u64>,
}

impl Feed {
    fn new(channel: String) -> Self {
        Feed {
            channel,
            waiters: Mutex::default(),
            kick: Notify::new(),
            rearm: Notify::new(),
            head: AtomicI64::new(-1),
            reading: AtomicBool::new(false),
        }
    }

    /// Whether a reader joining at `cursor` has all the feed has read (and no read is under way,
    /// which would not be made for it): then whatever commits later wakes the feed, and the
    /// reader needs no read of its own. Called under the waiters lock.
    fn serves_without_a_read(&self, cursor: i64) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        !self.reading.load(Ordering::Relaxed) && head >= 0 && cursor >= head
    }

    /// What the next read serves; from here until its page is handed out, joining readers wait for
    /// the read after it.
    fn wanted(&self) -> Option<Wanted> {
        let mut waiters = self.waiters.lock().expect("feed lock");
        waiters.retain(|waiter| !waiter.sender.is_closed());
        let after_seq = waiters.iter().map(|waiter| waiter.cursor).min()?;
        self.reading.store(true, Ordering::Relaxed);
        let users: HashSet<&str> = waiters.iter().map(|waiter| waiter.user.as_str()).collect();
        let users = users.into_iter().map(str::to_string).collect();
        Some(Wanted { after_seq, users, readers: waiters.iter().map(|waiter| waiter.id).collect() })
    }

    /// Gives each of `readers` its part of `page`. A reader that registered while the page was
    /// read waits for the next read (its registration kicked one): the page neither starts at its
    /// cursor nor says whether its user is a member.
    fn hand_out(&self, page: &Page, readers: &HashSet<u64>, now: Instant) {
        let mut waiters = self.waiters.lock().expect("feed lock");
        waiters.retain_mut(|waiter| !readers.contains(&waiter.id) || waiter.take(page, now));
        self.head.store(if page.live { page.last_seq } else { -1 }, Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
    }

    /// Ends the readers whose token has run out (the next read would refuse them anyway).
    fn end_expired(&self, now: Instant) {
        let mut waiters = self.waiters.lock().expect("feed lock");
        waiters.retain(|waiter| {
            let expired = waiter.expires.is_some_and(|expires| expires <= now);
            if expired {
                waiter.end(TOKEN_EXPIRED);
            }
            !expired
        });
    }

    /// The users of the readers that take presence and typing.
    fn ephemera_users(&self) -> Vec<String> {
        let waiters = self.waiters.lock().expect("feed lock");
        let users: HashSet<&str> =
            waiters.iter().filter(|waiter| waiter.ephemera).map(|waiter| waiter.user.as_str()).collect();
        users.into_iter().map(str::to_string).collect()
    }

    /// Offers each event to the readers that take it: members, who did not block its user, and
    /// (typing) who are not that user. Joins and leaves go as `told` says (crowd.rs): one by one,
    /// as one `resync`, or not yet.
    fn hand_out_ephemera(&self, events: &[&api::Ephemeron], told: Told, answer: &api::Ephemera) {
        let members: HashSet<&str> = answer.members.iter().map(String::as_str).collect();
        let (typing, presence): (Vec<&api::Ephemeron>, Vec<&api::Ephemeron>) =
            events.iter().partition(|event| event.kind == "typing");
        let mut deliveries: Vec<(Option<&api::Ephemeron>, Delivery)> = Vec::new();
        match told {
            Told::Resync(count) => {
                let json = serde_json::json!({"kind": "resync", "count": count}).to_string();
                deliveries.push((None, Delivery::Presence { json: Arc::from(json) }));
            }
            Told::Each => deliveries.extend(
                presence
                    .iter()
                    .map(|event| (Some(*event), Delivery::Presence { json: named(event, answer) })),
            ),
            Told::Held => {}
        }
        let typing = typing.iter().take(MAX_TYPING_EVENTS);
        deliveries
            .extend(typing.map(|event| (Some(*event), Delivery::Typing { json: named(event, answer) })));
        let waiters = self.waiters.lock().expect("feed lock");
        for waiter in
            waiters.iter().filter(|waiter| waiter.ephemera && members.contains(waiter.user.as_str()))
        {
            for (event, delivery) in &deliveries {
                let withheld = event.is_some_and(|event| {
                    let blocked =
                        answer.blocked_by.get(&event.user_id).is_some_and(|by| by.contains(&waiter.user));
                    blocked || (event.kind == "typing" && event.user_id == waiter.user)
                });
                if !withheld {
                    waiter.offer(delivery.clone());
                }
            }
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.waiters.lock().expect("feed lock").iter().filter_map(|waiter| waiter.expires).min()
    }

    fn close_all(&self, reason: &'static str) {
        let mut waiters = self.waiters.lock().expect("feed lock");
        waiters.drain(..).for_each(|waiter| waiter.end(reason));
    }
}

/// One reader's part of a page: what to hand it, its cursor after, and why it ends (if it does).
struct Part {
    deliveries: Vec<Delivery>,
    cursor: i64,
    end: Option<&'static str>,
}

/// What a reader of `user` at `cursor` gets from `page` (read from at most `cursor`).
fn part_of(page: &Page, user: &str, mut cursor: i64, expires: Option<Instant>, now: Instant) -> Part {
    let refusal = if !page.live {
        Some(CHANNEL_GONE)
    } else if !page.members.contains(user) {
        Some(NOT_A_MEMBER)
    } else if expires.is_some_and(|expires| expires <= now) {
        Some(TOKEN_EXPIRED)
    } else {
        None
    };
    if refusal.is_some() {
        return Part { deliveries: Vec::new(), cursor, end: refusal };
    }
    let mut deliveries = Vec::new();
    if cursor < page.last_seq {
        // Nothing held at all means everything up to lastSeq is gone.
        let oldest_seq = page.oldest_seq.unwrap_or(page.last_seq + 1);
        if oldest_seq > cursor + 1 {
            deliveries.push(Delivery::Reset { oldest_seq });
            cursor = oldest_seq - 1;
        }
    }
    let from = cursor;
    for (seq, json) in page.messages.iter().filter(|(seq, _)| *seq > from) {
        deliveries.push(Delivery::Message { seq: *seq, json: Arc::clone(json) });
        cursor = *seq;
    }
    Part { deliveries, cursor, end: None }
}

impl Waiter {
    /// Takes this reader's part of `page`; false when the reader ends here.
    fn take(&mut self, page: &Page, now: Instant) -> bool {
        let part = part_of(page, &self.user, self.cursor, self.expires, now);
        if let Some(reason) = part.end {
            self.end(reason);
            return false;
        }
        // Holding nothing yet, a reader handed more than its whole buffer is not slow: it reads on
        // alone (as its client takes the pages) and joins again.
        let room = self.sender.capacity();
        let idle = room == self.sender.max_capacity() && self.purse.is_empty();
        let bytes: usize = part.deliveries.iter().map(Delivery::bytes).sum();
        if idle && (part.deliveries.len() > room || bytes > self.purse.bound()) {
            self.end(FELL_BEHIND);
            return false;
        }
        for delivery in part.deliveries {
            if !self.give(delivery) {
                return false;
            }
        }
        self.cursor = part.cursor;
        true
    }

    /// Hands over without waiting: a full buffer, in messages or in bytes (the reader's own or the
    /// gateway's), ends the reader (slow consumer).
    fn give(&mut self, delivery: Delivery) -> bool {
        let bytes = delivery.bytes();
        if !self.purse.take(bytes) {
            self.end(SLOW_CONSUMER);
            return false;
        }
        let Err(error) = self.sender.try_send(delivery) else { return true };
        self.purse.give_back(bytes);
        if let mpsc::error::TrySendError::Full(_) = error {
            self.end(SLOW_CONSUMER);
        }
        false
    }

    /// Hands over presence or typing only into the spare half of the reader's buffer, and drops it
    /// otherwise: it must never crowd out messages or end a reader as slow. A client that missed
    /// some asks `GET /channels/{id}/presence` again.
    fn offer(&self, delivery: Delivery) {
        if self.sender.capacity() * 2 > self.sender.max_capacity() {
            let _ = self.sender.try_send(delivery);
        }
    }

    /// Records why the reader ends; dropping the sender then ends its stream after the buffer.
    fn end(&self, reason: &'static str) {
        self.ended.get_or_init(|| reason);
    }
}

impl Reader {
    /// The next delivery; after the last one (`Closed`), None.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                self.purse.give_back(delivery.bytes());
                return Some(delivery);
            }
            if self.closed {
                return None;
            }
            if self.live.is_none() {
                // Boxed: a catch-up's database call is a large future, and a reader's `next` lives
                // as long as its stream; held inline, every idle stream would carry its room.
                Box::pin(self.catch_up()).await;
                continue;
            }
            let live = self.live.as_mut().expect("live reader");
            let Some(delivery) = live.receiver.recv().await else {
                let reason = live.ended.get().copied().unwrap_or(SHUTTING_DOWN);
                if reason == FELL_BEHIND {
                    // Everything handed over is taken: read on alone from here.
                    self.live = None;
                    continue;
                }
                self.closed = true;
                return Some(Delivery::Closed { reason });
            };
            self.purse.give_back(delivery.bytes());
            match &delivery {
                Delivery::Message { seq, .. } => self.interest.after_seq = *seq,
                Delivery::Reset { oldest_seq } => self.interest.after_seq = oldest_seq - 1,
                Delivery::Closed { .. } | Delivery::Presence { .. } | Delivery::Typing { .. } => {}
            }
            return Some(delivery);
        }
    }

    /// A delivery already waiting, without waiting for one (None also when the reader ended).
    pub fn try_next(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.pending.pop_front() {
            self.purse.give_back(delivery.bytes());
            return Some(delivery);
        }
        let delivery = self.live.as_mut()?.receiver.try_recv().ok()?;
        self.purse.give_back(delivery.bytes());
        if let Delivery::Message { seq, .. } = &delivery {
            self.interest.after_seq = *seq;
        }
        Some(delivery)
    }

    /// The seq of the last message handed out (or the starting position).
    pub fn cursor(&self) -> i64 {
        self.interest.after_seq
    }

    /// Reads one page of backlog for this reader alone; once a page is not full, the reader is
    /// caught up and joins its channel's feed from its cursor (the registration kicks the feed, so
    /// what committed since this read is in the feed's next read). It keeps what fits in its purse
    /// (one message at least) and reads the rest again later; the next page asks for as many
    /// messages as fit, at the size this one's had.
    async fn catch_up(&mut self) {
        let page_size = self.page;
        let Interest { channel, user, after_seq, expires, buffer, .. } = &self.interest;
        let page = match self.feeds.read(channel, *after_seq, vec![user.clone()], page_size).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(message = error.message, "catching a stream up failed");
                self.pending.push_back(Delivery::Closed { reason: UNAVAILABLE });
                self.closed = true;
                return;
            }
        };
        let mut part = part_of(&page, user, *after_seq, *expires, Instant::now());
        let kept = self.keep_what_fits(&mut part);
        self.page = next_page_size(&page, self.purse.bound(), *buffer);
        // The deliveries are handed out before anything else: the cursor can move past them now.
        self.interest.after_seq = part.cursor;
        self.pending.extend(part.deliveries);
        if let Some(reason) = part.end {
            self.pending.push_back(Delivery::Closed { reason });
            self.closed = true;
        } else if kept && page.messages.len() < page_size as usize {
            self.live = Some(self.feeds.join(self.interest.clone(), Arc::clone(&self.purse)));
        }
    }

    /// Takes into the purse the deliveries of `part` that fit (one message at least), and drops
    /// the rest, moving the part's cursor back to the last one kept; whether all were kept.
    fn keep_what_fits(&self, part: &mut Part) -> bool {
        let mut kept = 0;
        for delivery in &part.deliveries {
            if !self.purse.take(delivery.bytes()) {
                break;
            }
            kept += 1;
            if let Delivery::Message { seq, .. } = delivery {
                part.cursor = *seq;
            }
        }
        let all = kept == part.deliveries.len();
        part.deliveries.truncate(kept);
        all
    }
}

/// Messages a reader's first read alone asks for, within its buffer.
fn first_page(buffer: usize) -> i32 {
    FIRST_PAGE.min(i32::try_from(buffer.clamp(1, PAGE as usize)).unwrap_or(PAGE))
}

/// Messages the next read alone asks for: as many as `bound` bytes hold at the size `page`'s
/// messages had (a page without messages says nothing: the first page's size again), within the
/// reader's buffer and a read's limit.
fn next_page_size(page: &Page, bound: usize, buffer: usize) -> i32 {
    let count = page.messages.len();
    let limit = buffer.clamp(1, PAGE as usize);
    if count == 0 {
        return first_page(buffer);
    }
    let average = (page.messages.iter().map(|(_, json)| json.len()).sum::<usize>() / count).max(1);
    i32::try_from((bound / average).clamp(1, limit)).unwrap_or(PAGE)
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut waiters = self.feed.waiters.lock().expect("feed lock");
        waiters.retain(|waiter| waiter.id != self.id);
        let empty = waiters.is_empty();
        drop(waiters);
        if empty {
            // Lets the feed retire now rather than at its next wake-up.
            self.feed.kick.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: &[i64], members: &[&str], oldest_seq: Option<i64>, last_seq: i64) -> Page {
        Page {
            live: true,
            messages: seqs.iter().map(|seq| (*seq, Arc::from(format!(r#"{{"seq":{seq}}}"#)))).collect(),
            members: members.iter().map(|m| m.to_string()).collect(),
            oldest_seq,
            last_seq,
        }
    }

    fn seqs(part: &Part) -> Vec<String> {
        part.deliveries
            .iter()
            .map(|delivery| match delivery {
                Delivery::Message { seq, .. } => seq.to_string(),
                Delivery::Reset { oldest_seq } => format!("reset {oldest_seq}"),
                Delivery::Closed { reason } => reason.to_string(),
                Delivery::Presence { json } | Delivery::Typing { json } => json.to_string(),
            })
            .collect()
    }

    #[test]
    fn each_reader_takes_only_what_follows_its_own_cursor() {
        let page = page(&[3, 4, 5], &["u"], Some(1), 5);
        let now = Instant::now();
        let part = part_of(&page, "u", 4, None, now);
        assert_eq!((seqs(&part), part.cursor, part.end), (vec!["5".to_string()], 5, None));
        let part = part_of(&page, "u", 5, None, now);
        assert_eq!((seqs(&part), part.cursor), (Vec::<String>::new(), 5));
    }

    #[test]
    fn a_cursor_older_than_what_is_held_gets_a_reset_first() {
        let page = page(&[5, 6, 7], &["u"], Some(5), 7);
        let part = part_of(&page, "u", 1, None, Instant::now());
        assert_eq!(seqs(&part), ["reset 5", "5", "6", "7"]);
        // Nothing held at all: everything up to lastSeq is gone.
        let part = part_of(&page_of_nothing(), "u", 1, None, Instant::now());
        assert_eq!((seqs(&part), part.cursor), (vec!["reset 8".to_string()], 7));
    }

    /// A registered reader of `user` at `cursor`, with its receiving end and its end reason.
    fn waiter(
        id: u64,
        user: &str,
        cursor: i64,
        buffer: usize,
    ) -> (Waiter, mpsc::Receiver<Delivery>, Arc<OnceLock<&'static str>>) {
        waiter_holding(id, user, cursor, buffer, Budget::new(1 << 20, 1 << 30).purse())
    }

    fn waiter_holding(
        id: u64,
        user: &str,
        cursor: i64,
        buffer: usize,
        purse: Arc<Purse>,
    ) -> (Waiter, mpsc::Receiver<Delivery>, Arc<OnceLock<&'static str>>) {
        let (sender, receiver) = mpsc::channel(buffer);
        let ended = Arc::new(OnceLock::new());
        let waiter = Waiter {
            id,
            user: user.into(),
            cursor,
            expires: None,
            ephemera: false,
            sender,
            purse,
            ended: Arc::clone(&ended),
        };
        (waiter, receiver, ended)
    }

    #[test]
    fn a_buffer_is_bounded_in_bytes_too() {
        // Each message of `page` is 9 bytes of JSON ({"seq":3}, ...): a purse of 25 bytes takes
        // two. Empty, a reader handed 27 bytes reads alone; holding something, it is slow.
        let budget = Budget::new(25, 1 << 30);
        let (empty, mut first, first_ended) = waiter_holding(1, "u", 2, 100, budget.purse());
        let holding = budget.purse();
        assert!(holding.take(20));
        let (lagging, _second, second_ended) = waiter_holding(2, "u", 2, 100, holding);
        let feed = feed_of(vec![empty, lagging]);
        feed.hand_out(&page(&[3, 4, 5], &["u"], Some(1), 5), &HashSet::from([1, 2]), Instant::now());
        assert_eq!(first_ended.get(), Some(&FELL_BEHIND));
        assert!(first.try_recv().is_err(), "nothing of the page: the reader reads it alone");
        assert_eq!(second_ended.get(), Some(&SLOW_CONSUMER));
        assert_eq!(budget.held(), 0, "the readers that left gave back what they held");
    }

    #[test]
    fn the_next_page_alone_asks_for_what_fits() {
        let small = page(&[3, 4], &["u"], Some(1), 4); // 9 bytes each
        assert_eq!(next_page_size(&small, 900, 1000), 100);
        assert_eq!(next_page_size(&small, 1000, 20), 20, "within the reader's buffer");
        assert_eq!(next_page_size(&small, 5, 1000), 1, "one at least");
        assert_eq!(next_page_size(&page_of_nothing(), 1000, 1000), FIRST_PAGE);
    }

    fn ephemera(events: &[(&str, &str)], blocked_by: &[(&str, &str)], members: &[&str]) -> api::Ephemera {
        let events = events.iter().enumerate().map(|(id, (kind, user))| api::Ephemeron {
            id: id as i64,
            kind: kind.to_string(),
            user_id: user.to_string(),
            username: None,
            at: "2026-12-06T00:00:00.000000Z".into(),
            until: None,
        });
        api::Ephemera {
            events: events.collect(),
            names: [("a".to_string(), "alice".to_string())].into(),
            blocked_by: blocked_by.iter().map(|(who, by)| (who.to_string(), vec![by.to_string()])).collect(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn kinds(receiver: &mut mpsc::Receiver<Delivery>) -> Vec<String> {
        let mut kinds = Vec::new();
        while let Ok(delivery) = receiver.try_recv() {
            let (Delivery::Presence { json } | Delivery::Typing { json }) = delivery else { continue };
            let event: serde_json::Value = serde_json::from_str(&json).unwrap();
            kinds.push(format!(
                "{} {}",
                event["kind"].as_str().unwrap(),
                event["userId"].as_str().unwrap_or("")
            ));
        }
        kinds
    }

    #[test]
    fn presence_and_typing_reach_members_who_did_not_block_their_user() {
        let readers = ["a", "b", "c", "stranger"].map(|user| {
            let (mut reader, receiver, _) = waiter(0, user, 0, 100);
            reader.ephemera = true;
            (reader, receiver)
        });
        let (readers, mut receivers): (Vec<Waiter>, Vec<_>) = readers.into_iter().unzip();
        let feed = feed_of(readers);
        let answer = ephemera(&[("join", "a"), ("typing", "a")], &[("a", "c")], &["a", "b", "c"]);
        let events: Vec<&api::Ephemeron> = answer.events.iter().collect();
        feed.hand_out_ephemera(&events, Told::Each, &answer);
        assert_eq!(kinds(&mut receivers[0]), ["join a"], "not one's own typing");
        assert_eq!(kinds(&mut receivers[1]), ["join a", "typing a"]);
        assert!(kinds(&mut receivers[2]).is_empty(), "c blocked a");
        assert!(kinds(&mut receivers[3]).is_empty(), "no member");
    }

    #[test]
    fn a_resync_replaces_the_joins_and_typing_still_goes() {
        let (mut reader, mut receiver, _) = waiter(0, "b", 0, 100);
        reader.ephemera = true;
        let feed = feed_of(vec![reader]);
        let answer = ephemera(&[("join", "a"), ("join", "a"), ("typing", "a")], &[], &["b"]);
        let events: Vec<&api::Ephemeron> = answer.events.iter().collect();
        feed.hand_out_ephemera(&events, Told::Resync(2), &answer);
        assert_eq!(kinds(&mut receiver), ["resync ", "typing a"]);
        feed.hand_out_ephemera(&events, Told::Held, &answer);
        assert_eq!(kinds(&mut receiver), ["typing a"], "joins held for the window's end");
    }

    fn feed_of(waiters: Vec<Waiter>) -> Feed {
        let feed = Feed::new("c".into());
        *feed.waiters.lock().unwrap() = waiters;
        feed
    }

    #[test]
    fn only_a_reader_at_or_past_what_the_feed_read_joins_without_a_read() {
        let feed = feed_of(Vec::new());
        assert!(!feed.serves_without_a_read(5), "before the first read, every reader needs one");
        feed.hand_out(&page(&[10, 11], &["u"], Some(1), 11), &HashSet::new(), Instant::now());
        assert!(!feed.serves_without_a_read(10), "behind the head: 11 was read without it");
        assert!(feed.serves_without_a_read(11) && feed.serves_without_a_read(12));
        let (reader, _receiver, _) = waiter(1, "u", 11, 8);
        feed.waiters.lock().unwrap().push(reader);
        assert!(feed.wanted().is_some() && !feed.serves_without_a_read(11), "a read is under way");
    }

    #[test]
    fn a_reader_who_joined_during_a_read_waits_for_the_next_one() {
        // The read was made for alice alone: it says nothing of bob's membership. Bob, handed
        // this page, was closed as "not a member" (seen in the streams suite under load).
        let (alice, mut alices, _) = waiter(1, "alice", 2, 8);
        let (bob, mut bobs, bob_ended) = waiter(2, "bob", 2, 8);
        let feed = feed_of(vec![alice, bob]);
        feed.hand_out(&page(&[3], &["alice"], Some(1), 3), &HashSet::from([1]), Instant::now());
        assert!(matches!(alices.try_recv(), Ok(Delivery::Message { seq: 3, .. })));
        assert!(bobs.try_recv().is_err() && bob_ended.get().is_none());
        assert_eq!(feed.waiters.lock().unwrap().len(), 2, "bob stays for the next read");
    }

    #[test]
    fn a_page_bigger_than_an_empty_buffer_sends_the_reader_to_read_alone_a_lagging_one_is_slow() {
        let (keeping_up, mut first, first_ended) = waiter(1, "u", 2, 2);
        let (lagging, _second, second_ended) = waiter(2, "u", 2, 2);
        lagging.sender.try_send(Delivery::Reset { oldest_seq: 1 }).unwrap();
        let feed = feed_of(vec![keeping_up, lagging]);
        feed.hand_out(&page(&[3, 4, 5], &["u"], Some(1), 5), &HashSet::from([1, 2]), Instant::now());
        assert_eq!(first_ended.get(), Some(&FELL_BEHIND));
        assert!(first.try_recv().is_err(), "nothing of the page: the reader reads it alone");
        assert_eq!(second_ended.get(), Some(&SLOW_CONSUMER));
        assert!(feed.waiters.lock().unwrap().is_empty());
    }

    fn page_of_nothing() -> Page {
        page(&[], &["u"], None, 7)
    }

    #[test]
    fn a_reader_who_may_read_no_more_gets_nothing_of_the_page() {
        let now = Instant::now();
        let page = page(&[3], &["other"], Some(1), 3);
        let part = part_of(&page, "u", 2, None, now);
        assert_eq!((seqs(&part), part.end), (Vec::<String>::new(), Some(NOT_A_MEMBER)));
        let page = self::page(&[3], &["u"], Some(1), 3);
        let part = part_of(&page, "u", 2, Some(now), now);
        assert_eq!((seqs(&part), part.end), (Vec::<String>::new(), Some(TOKEN_EXPIRED)));
        let gone = Page { live: false, ..self::page(&[3], &["u"], Some(1), 3) };
        assert_eq!(part_of(&gone, "u", 2, None, now).end, Some(CHANNEL_GONE));
    }
}
