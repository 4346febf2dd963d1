//! The long-polls of GET /messages and GET /notifications: subscribe, then read, then wait for a
//! wake-up and read again, until something is there or the deadline passes.
//!
//! A long-poll that only follows a position (a seq, or a time) waits through its channel's feed
//! (feeds.rs), which reads once per wake-up for every reader of the channel; any other (`until`,
//! `fold`) waits on its own subscription and reads alone.

use super::feeds::Delivery;
use super::hub::{Topic, Wake};
use super::{Caller, Live};
use crate::db::{self, JsonText};
use crate::error::ApiError;
use hatchat_wire::api;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// The position a long-poll of one channel follows.
#[derive(Clone, Copy)]
pub enum Follow {
    /// Messages after this seq.
    AfterSeq(i64),
    /// Messages created after this time (None: every message).
    Since(Option<jiff::Timestamp>),
}

impl Follow {
    /// The position a GET /messages window follows, when that is all it asks (a seq, or a time,
    /// not both; no `until`, not folded): such a long-poll can wait through its channel's feed,
    /// which carries messages as they were appended. A time given in a form the feed cannot
    /// compare exactly (no offset, finer than microseconds) is read alone.
    pub fn of(
        after_seq: Option<i64>,
        since: Option<&str>,
        until: Option<&str>,
        fold: Option<bool>,
    ) -> Option<Self> {
        if until.is_some() || fold == Some(true) {
            return None;
        }
        match (after_seq, since.map(str::trim)) {
            (Some(seq), None) => Some(Follow::AfterSeq(seq)),
            (None, None | Some("-infinity")) => Some(Follow::Since(None)),
            (None, Some(since)) => {
                let since = since.parse::<jiff::Timestamp>().ok()?;
                (since.subsec_nanosecond() % 1000 == 0).then_some(Follow::Since(Some(since)))
            }
            (Some(_), Some(_)) => None,
        }
    }

    /// Whether a message the feed hands over is in the window (after the time followed). Messages
    /// after the first one that is are too: createdAt rises with seq.
    fn wants(&self, message: &str) -> bool {
        let Follow::Since(Some(since)) = self else { return true };
        serde_json::from_str::<api::Stamp>(message)
            .ok()
            .and_then(|stamp| stamp.created_at.parse::<jiff::Timestamp>().ok())
            .is_none_or(|created| created > *since)
    }
}

/// Whether new messages can still fall inside a window that ends at `until`: waiting only makes
/// sense while they can.
pub fn still_open(until: Option<&str>) -> bool {
    match until.map(str::trim) {
        None | Some("infinity") | Some("+infinity") => true,
        Some("-infinity") => false,
        // The database already accepted this bound, so it parses; if jiff disagreed, waiting is
        // the safe choice (the deadline still ends it).
        Some(until) => until.parse::<jiff::Timestamp>().map_or(true, |t| t > jiff::Timestamp::now()),
    }
}

/// What one long-poll waits on, and until when.
pub struct LongPoll<'a> {
    pub topic: Topic,
    pub deadline: Instant,
    /// Counts against this user's long-polls once it waits; authenticated with this token.
    pub token: &'a Option<String>,
    /// The user's id, when the caller already has it (else asked of the database before waiting).
    pub user: Option<String>,
}

impl Live {
    /// Answers the first non-empty page `read` gives, or the empty one when the deadline passes,
    /// the gateway shuts down, or `open` says nothing new can match any more.
    pub async fn long_poll<R, F>(
        &self,
        poll: LongPoll<'_>,
        open: impl Fn() -> bool,
        mut read: R,
    ) -> Result<JsonText, ApiError>
    where
        R: FnMut() -> F,
        F: Future<Output = Result<String, ApiError>>,
    {
        let mut subscription = self.hub.subscribe(poll.topic);
        let mut user = poll.user;
        let mut place = None;
        loop {
            let page = read().await?;
            if page != "[]" || !open() || Instant::now() >= poll.deadline {
                return Ok(JsonText(page));
            }
            if place.is_none() {
                let id = match user.take() {
                    Some(id) => id,
                    None => self.user_of(poll.token).await?,
                };
                place = Some(self.take_place(&id)?);
            }
            match subscription.wait(poll.deadline).await {
                Wake::Changed => continue,
                Wake::Timeout | Wake::Shutdown => return Ok(JsonText(page)),
            }
        }
    }

    /// The long-poll of a window that only follows a position: `read` alone first (every check and
    /// error of get_messages), then the wait through the channel's feed, at most `limit` messages
    /// (get_messages' default when None).
    /// A poll that follows a time learns the channel's head before its read: what the read does not
    /// return is after that head (createdAt rises with seq), so the feed follows on from there and
    /// hands over only what is newer than the time.
    pub async fn long_poll_channel<R, F>(
        &self,
        token: &Option<String>,
        (channel, follow, limit): (&str, Follow, Option<i32>),
        deadline: Instant,
        read: R,
    ) -> Result<JsonText, ApiError>
    where
        R: Fn() -> F,
        F: Future<Output = Result<String, ApiError>>,
    {
        // Only a poll that may wait needs the head: a plain read costs one call, as before. A poll
        // that follows a time learns it with its caller, in one call before its read: what the
        // read does not return lies after that head.
        let waits = Instant::now() < deadline;
        let start = match follow {
            Follow::Since(_) if waits => Some(self.since_start(token, channel).await),
            _ => None,
        };
        let page = read().await?;
        if page != "[]" || !waits || Instant::now() >= deadline {
            return Ok(JsonText(page));
        }
        let _waiting = self.hub.hold();
        let (caller, after_seq) = match (follow, start) {
            (Follow::AfterSeq(seq), _) => (self.caller(token).await?, seq),
            (Follow::Since(_), Some(start)) => {
                let start = start?;
                // No head: the channel was created between the two calls; the client asks again.
                let Some(head) = start.last_seq else { return Ok(JsonText(page)) };
                (Caller::from(start.caller), head)
            }
            (Follow::Since(_), None) => return Ok(JsonText(page)),
        };
        let _place = self.take_place(&caller.user)?;
        let _here = self.here(channel, &caller.user);
        let mut reader = self.feeds.open_live(self.interest(channel, caller, after_seq, false));
        // The read before refused a limit outside 1..1000.
        let limit = usize::try_from(limit.unwrap_or(api::DEFAULT_MESSAGE_LIMIT)).unwrap_or_default();
        let mut messages: Vec<Arc<str>> = Vec::new();
        while messages.is_empty() {
            let delivery = tokio::select! {
                delivery = reader.next() => delivery,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match delivery {
                Some(Delivery::Message { json, .. }) if follow.wants(&json) => messages.push(json),
                // Capped history: get_messages would answer what is still held, as this will.
                Some(Delivery::Message { .. } | Delivery::Reset { .. }) => {}
                Some(Delivery::Presence { .. } | Delivery::Typing { .. }) => {}
                Some(Delivery::Closed { reason: super::feeds::SHUTTING_DOWN }) | None => {
                    return Ok(JsonText("[]".into()))
                }
                // Not a member any more, token expired, too slow: a read of its own says what to
                // answer.
                Some(Delivery::Closed { .. }) => return read().await.map(JsonText),
            }
        }
        while messages.len() < limit {
            match reader.try_next() {
                Some(Delivery::Message { json, .. }) => messages.push(json),
                Some(Delivery::Reset { .. } | Delivery::Presence { .. } | Delivery::Typing { .. }) => {}
                Some(Delivery::Closed { .. }) | None => break,
            }
        }
        Ok(JsonText(format!("[{}]", messages.join(", "))))
    }

    /// Whom `token` speaks for, and the channel's last seq, without reading a message.
    async fn since_start(&self, token: &Option<String>, channel: &str) -> Result<api::SinceStart, ApiError> {
        db::call_typed(&self.pool, api::SINCE_START, &[token, &channel]).await
    }

    /// The id of the user `token` belongs to, as the database verifies it.
    pub async fn user_of(&self, token: &Option<String>) -> Result<String, ApiError> {
        db::call_json(&self.pool, api::AUTHENTICATE, &[token]).await
    }
}
