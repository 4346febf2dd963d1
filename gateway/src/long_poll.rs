//! The long-poll of GET /messages and GET /notifications: subscribe, then query, then wait for a
//! wake-up and query again, until something is there or the deadline passes; and the per-user
//! bound on long-polls waiting at once.
//!
//! No lost wake-ups: the request subscribes *before* it queries, so what commits between its query
//! and its wait has already marked its subscription. Waiting holds no database connection, and
//! dropping the request (the client went away) drops the wait.

use crate::db::{self, JsonText};
use crate::error::ApiError;
use crate::listen::{Topic, Wake};
use crate::poll_quota::{PollPermit, PollQuota};
use crate::state::{Answer, AppState};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// What one long-poll waits on, and until when.
pub struct LongPoll<'a> {
    pub topic: Topic,
    pub deadline: Instant,
    /// Counts against this user's long-polls once it waits; authenticated with this token.
    pub token: &'a Option<String>,
    /// The user's id, when the caller already has it (else asked of the database before waiting).
    pub user: Option<String>,
}

impl LongPoll<'_> {
    /// Answers the first non-empty page `query` gives, or the empty one when the deadline passes,
    /// the gateway shuts down, or `open` says nothing new can match any more.
    pub async fn run<Q, F>(self, app: &AppState, open: impl Fn() -> bool, mut query: Q) -> Answer
    where
        Q: FnMut() -> F,
        F: Future<Output = Result<String, ApiError>>,
    {
        let mut subscription = app.hub.subscribe(self.topic);
        let mut user = self.user;
        let mut permit = None;
        loop {
            let page = query().await?;
            if page != "[]" || !open() || Instant::now() >= self.deadline {
                return Ok(JsonText(page));
            }
            if permit.is_none() {
                let id = match user.take() {
                    Some(id) => id,
                    None => user_of(app, self.token).await?,
                };
                permit = Some(admit(&app.polls, &id)?);
            }
            match subscription.wait(self.deadline).await {
                Wake::Changed => continue,
                Wake::Timeout | Wake::Shutdown => return Ok(JsonText(page)),
            }
        }
    }
}

/// The id of the user `token` belongs to, as the database verifies it.
pub async fn user_of(app: &AppState, token: &Option<String>) -> Result<String, ApiError> {
    db::call_json(&app.pool, "SELECT hatchat.authenticate($1)::text", &[token]).await
}

/// Counts a long-poll, a live stream, a WebSocket or one of its subscriptions against `user` (an
/// id the database verified) until the permit is dropped with it; 429 when the user already holds
/// the most a gateway allows.
pub fn admit(polls: &Arc<PollQuota>, user: &str) -> Result<PollPermit, ApiError> {
    polls.acquire(user).ok_or_else(|| {
        ApiError::too_many_requests(
            format!(
                "a user may hold at most {} waiting long-polls, streams, WebSockets and WebSocket \
                 subscriptions at once on this gateway; try again when one has ended",
                polls.per_user()
            ),
            1,
        )
    })
}
