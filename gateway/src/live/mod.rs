//! The one place where the gateway waits. Everything that waits for something new (long-polls,
//! SSE streams, WebSocket subscriptions, notification streams, the forwarder) waits here, in one
//! way: subscribe to a key of the hub (hub.rs) *before* reading, read, and wait for that key's
//! next wake-up before reading again. So nothing that commits between a read and a wait is
//! missed, a waiter holds no database connection, and an idle waiter causes no queries.
//!
//! - hub.rs: the LISTEN connection, keys (`Topic`) and wake-ups; nodes.rs: a cluster's other
//!   nodes' listeners.
//! - feeds.rs: one window read per wake-up for every reader of a channel (`Feeds`, `Reader`);
//!   crowd.rs: how a feed tells its readers of many joins and leaves at once.
//! - here: who a stream's token speaks for, checked once when it opens (`Live::caller`); opener.rs:
//!   streams' opening checks, batched in a storm.
//! - long_poll.rs, notifications.rs: the long-polls, and the notification streams.
//! - bounds.rs: what each user may hold waiting, and in bytes.
//! - presence.rs: who holds a stream on which channel, told to the database with the lease.
//! - forward.rs: the forwarder, which waits for anyone's notifications.
//!
//! Routes call `Live`; none subscribes, waits or reads a window itself.

pub mod bounds;
mod crowd;
pub mod feeds;
pub mod forward;
pub mod hub;
mod long_poll;
pub mod nodes;
mod notifications;
pub mod opener;
pub mod presence;

pub use feeds::{Delivery, Feeds, OpenStream};
pub use hub::{Hub, Topic, Wake};
pub use long_poll::{still_open, Follow, LongPoll};
pub use notifications::{Notice, NotificationStream};

use crate::config::StreamSettings;
use crate::error::ApiError;
use bounds::{Budget, Place, Quota};
use feeds::{Interest, Reader};
use hatchat_wire::api;
use opener::Opener;
use presence::{Here, Presence};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the routes wait through: the hub, the channels' feeds, and the bounds on what each user
/// holds waiting. Cheap to clone (every part is shared).
#[derive(Clone)]
pub struct Live {
    pub pool: deadpool_postgres::Pool,
    pub hub: Arc<Hub>,
    pub feeds: Arc<Feeds>,
    /// Waiting long-polls, streams, WebSockets and subscriptions, per user.
    pub quota: Arc<Quota>,
    /// What live streams hold for their clients, in bytes (each, and all together).
    pub budget: Arc<Budget>,
    /// Who holds a stream on which channel through this gateway.
    pub presence: Arc<Presence>,
    /// Streams' opening checks, batched.
    pub opener: Arc<Opener>,
    pub streams: StreamSettings,
    /// The longest a long-poll waits.
    pub max_wait: Duration,
}

impl Live {
    /// Counts a long-poll, a stream, a WebSocket or one of its subscriptions against `user` (an id
    /// the database verified) until the place is dropped; 429 when the user already holds the
    /// most a gateway allows.
    pub fn take_place(&self, user: &str) -> Result<Place, ApiError> {
        self.quota.take(user).ok_or_else(|| {
            ApiError::too_many_requests(
                format!(
                    "a user may hold at most {} waiting long-polls, streams, WebSockets and \
                     WebSocket subscriptions at once on this gateway; try again when one has ended",
                    self.quota.per_user()
                ),
                1,
            )
        })
    }

    /// `user` is present on `channel` until the guard is dropped (the server secret never is).
    pub fn here(&self, channel: &str, user: &str) -> Option<Here> {
        (user != NIL_USER).then(|| self.presence.enter(channel, user))
    }
}

/// The user a verified token speaks for, and when it expires (never, for the server secret).
pub struct Caller {
    pub user: String,
    pub expires: Option<Instant>,
}

/// The server secret's user, which reads everywhere and is present nowhere.
const NIL_USER: &str = "00000000-0000-0000-0000-000000000000";

/// A channel's reader, counted against its user's share of waiting reads, and present on the
/// channel, until dropped.
pub struct ChannelStream {
    pub reader: Reader,
    pub place: Place,
    pub here: Option<Here>,
}

impl Live {
    /// Asks the database whose `token` is (401 for a bad token), in one call shared with the
    /// openings around it (opener.rs).
    pub async fn caller(&self, token: &Option<String>) -> Result<Caller, ApiError> {
        Ok(self.opener.caller(token).await?.into())
    }

    /// Checks that `token` may read `channel` after `after_seq` (as one `get_messages` call
    /// would) and learns whose it is, in one call shared with the openings around it (opener.rs),
    /// then opens a reader from there. Each stream counts against the user's long-polls
    /// (`--max-polls-per-user`): a stream costs what a waiting long-poll costs, and without a
    /// bound one client could open any number. Every
    /// stream makes its user present; only those that ask (`presence`) are told of presence and
    /// typing, so a client written before them gets the stream it always got.
    pub async fn open_channel(
        &self,
        token: &Option<String>,
        channel: &str,
        after_seq: i64,
        presence: bool,
    ) -> Result<ChannelStream, ApiError> {
        let opened = self.opener.open(token, channel, after_seq).await?;
        let caller = Caller::from(opened.caller);
        let place = self.take_place(&caller.user)?;
        let here = self.here(channel, &caller.user);
        let interest = self.interest(channel, caller, after_seq, presence);
        // A reader with nothing to catch up on joins its channel's feed at once: the feed's next
        // read serves every reader that joined meanwhile, so a storm of streams resuming on one
        // channel reads it once rather than once per stream.
        let reader = if opened.backlog { self.feeds.open(interest) } else { self.feeds.open_live(interest) };
        Ok(ChannelStream { reader, place, here })
    }

    /// Who reads `channel`, from where, how much a reader may hold, and whether it also takes
    /// presence and typing.
    pub(super) fn interest(&self, channel: &str, caller: Caller, after_seq: i64, ephemera: bool) -> Interest {
        Interest {
            channel: channel.to_string(),
            user: caller.user,
            after_seq,
            expires: caller.expires,
            buffer: self.streams.buffer,
            ephemera,
        }
    }
}

impl From<api::StreamCaller> for Caller {
    fn from(answer: api::StreamCaller) -> Self {
        Caller { user: answer.user_id, expires: answer.expires_at.as_deref().map(instant_of) }
    }
}

/// The monotonic instant of a wall-clock time the database wrote (already passed: now).
fn instant_of(iso: &str) -> Instant {
    let left = iso
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|at| Duration::try_from(at.duration_since(jiff::Timestamp::now())).ok())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Startup check: live streams and long-polls read through `hatchat.channel_window`, which only
/// `hatchat_gateway` may call. A login that is neither a superuser nor an admin runs requests as
/// itself, and then needs that role granted; say so now rather than refuse every stream later.
pub async fn check_window_access(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| format!("cannot connect to the database: {e}"))?;
    let row = client.query_one(api::MAY_READ_WINDOWS, &[]).await.map_err(|e| e.to_string())?;
    let (allowed, role): (bool, String) = (row.get(0), row.get(1));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "role {role} may not call hatchat.channel_window, which live streams and long-polls read \
         through: GRANT hatchat_gateway TO {role}"
    ))
}
