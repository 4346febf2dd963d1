//! One user's notification stream (GET /notifications/events): a read per wake-up of that user.
//! Notifications are per user, so there is no read to share between streams.

use super::bounds::{Place, Purse};
use super::feeds::{OpenStream, SHUTTING_DOWN, TOKEN_EXPIRED, UNAVAILABLE};
use super::hub::{Subscription, Wake};
use super::Live;
use crate::db;
use crate::error::ApiError;
use axum::http::StatusCode;
use hatchat_wire::api;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Notifications one read returns at most.
const PAGE: i32 = 100;

/// What a notification stream hands out, in order.
pub enum Notice {
    /// A notification, as get_notifications returns it, with its id.
    Notification { id: i64, json: Box<RawValue> },
    /// The last: why the stream ends, and the id to resume after.
    Closed { reason: &'static str, last: i64 },
}

pub struct NotificationStream {
    live: Live,
    token: Option<String>,
    after: i64,
    expires: Option<Instant>,
    pending: VecDeque<(i64, Box<RawValue>)>,
    /// What `pending` holds, in bytes.
    purse: Arc<Purse>,
    /// The last read was a full page, or more than the purse held: read again before waiting.
    more: bool,
    subscription: Subscription,
    closed: bool,
    _held: (Place, OpenStream),
}

impl Live {
    /// The notifications of `token`'s user after `after`, then live.
    pub async fn notifications(
        &self,
        token: Option<String>,
        after: i64,
    ) -> Result<NotificationStream, ApiError> {
        let caller = self.caller(&token).await?;
        let place = self.take_place(&caller.user)?;
        // Subscribed before the first read: nothing that commits in between is missed.
        let subscription = self.hub.subscribe_uncounted(self.hub.user(&caller.user));
        let purse = self.budget.purse();
        let (pending, more) = keep_what_fits(self.read_notifications(&token, after).await?, &purse);
        Ok(NotificationStream {
            live: self.clone(),
            token,
            after,
            expires: caller.expires,
            pending,
            purse,
            more,
            subscription,
            closed: false,
            _held: (place, self.feeds.stream_opened()),
        })
    }

    /// `get_notifications` after `after`, each with its id.
    async fn read_notifications(
        &self,
        token: &Option<String>,
        after: i64,
    ) -> Result<VecDeque<(i64, Box<RawValue>)>, ApiError> {
        let page: Vec<Box<RawValue>> =
            db::call_typed(&self.pool, api::GET_NOTIFICATIONS, &[token, &after, &PAGE]).await?;
        page.into_iter()
            .map(|raw| {
                let api::Id { id } = serde_json::from_str(raw.get())
                    .map_err(|e| ApiError::internal(format!("a notification without an id: {e}")))?;
                Ok((id, raw))
            })
            .collect()
    }
}

impl NotificationStream {
    pub async fn next(&mut self) -> Option<Notice> {
        loop {
            if let Some((id, json)) = self.pending.pop_front() {
                self.purse.give_back(json.get().len());
                self.after = id;
                return Some(Notice::Notification { id, json });
            }
            if self.closed {
                return None;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let deadline = self.expires.unwrap_or(far);
            let wake = if self.more { Wake::Changed } else { self.subscription.wait(deadline).await };
            let ended = match wake {
                Wake::Shutdown => Some(SHUTTING_DOWN),
                _ if self.expires.is_some_and(|at| at <= Instant::now()) => Some(TOKEN_EXPIRED),
                _ => match self.live.read_notifications(&self.token, self.after).await {
                    Ok(page) => {
                        (self.pending, self.more) = keep_what_fits(page, &self.purse);
                        None
                    }
                    Err(error) if error.status == StatusCode::UNAUTHORIZED => Some(TOKEN_EXPIRED),
                    Err(_) => Some(UNAVAILABLE),
                },
            };
            if let Some(reason) = ended {
                self.closed = true;
                return Some(Notice::Closed { reason, last: self.after });
            }
        }
    }
}

/// The notifications of a page that fit in the stream's purse (one at least), and whether there is
/// more to read at once (a full page, or one that did not fit whole). The rest is read again.
fn keep_what_fits(
    mut page: VecDeque<(i64, Box<RawValue>)>,
    purse: &Purse,
) -> (VecDeque<(i64, Box<RawValue>)>, bool) {
    let full = page.len() >= PAGE as usize;
    let fits = page.iter().take_while(|(_, json)| purse.take(json.get().len())).count();
    let cut = fits < page.len();
    page.truncate(fits);
    (page, full || cut)
}
