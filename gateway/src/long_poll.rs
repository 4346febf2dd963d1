//! The long-poll of GET /messages and GET /notifications: subscribe, then query, then wait for a
//! wake-up and query again, until something is there or the deadline passes; and the per-user
//! bound on long-polls waiting at once.
//!
//! No lost wake-ups: the request subscribes *before* it queries, so what commits between its query
//! and its wait has already marked its subscription. Waiting holds no database connection, and
//! dropping the request (the client went away) drops the wait.

use crate::app::{Answer, AppState};
use crate::db::{self, JsonText};
use crate::error::ApiError;
use crate::listen::{Topic, Wake};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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

/// Counts a long-poll against `user` (an id the database verified) until the permit is dropped
/// with the request; 429 when the user already holds the most a gateway allows.
fn admit(polls: &Arc<PollQuota>, user: &str) -> Result<PollPermit, ApiError> {
    polls.acquire(user).ok_or_else(|| {
        ApiError::too_many_requests(
            format!(
                "a user may hold at most {} waiting long-polls at once on this gateway; \
                 try again when one has answered",
                polls.per_user()
            ),
            1,
        )
    })
}

/// How many long-polls each user may hold waiting at once on this gateway. Each one is a task, a
/// subscription and a re-query on every wake-up; without a bound, one client could hold any number.
/// Users are counted by the id the database verified from their token, never by what a request
/// claims, or anyone could use up someone else's share.
pub struct PollQuota {
    per_user: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One long-poll counted against its user; dropping it (the request ended, however) gives it back.
pub struct PollPermit {
    quota: Arc<PollQuota>,
    user: String,
}

impl PollQuota {
    pub fn new(per_user: usize) -> Arc<Self> {
        Arc::new(Self { per_user, held: Mutex::default() })
    }

    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// A permit for one more long-poll of `user`, unless the user already holds `per_user`.
    pub fn acquire(self: &Arc<Self>, user: &str) -> Option<PollPermit> {
        let mut held = self.held.lock().expect("poll quota lock");
        let count = held.entry(user.to_string()).or_default();
        if *count >= self.per_user {
            if *count == 0 {
                held.remove(user);
            }
            return None;
        }
        *count += 1;
        Some(PollPermit { quota: Arc::clone(self), user: user.to_string() })
    }

    /// Long-polls `user` holds now.
    pub fn held_by(&self, user: &str) -> usize {
        self.held.lock().expect("poll quota lock").get(user).copied().unwrap_or(0)
    }
}

impl Drop for PollPermit {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().expect("poll quota lock");
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_quota_and_dropping_a_permit_gives_it_back() {
        let quota = PollQuota::new(2);
        let first = quota.acquire("alice").unwrap();
        let second = quota.acquire("alice").unwrap();
        assert!(quota.acquire("alice").is_none());
        assert!(quota.acquire("bob").is_some(), "another user is not affected");
        drop(first);
        assert_eq!(quota.held_by("alice"), 1);
        let third = quota.acquire("alice").unwrap();
        assert!(quota.acquire("alice").is_none());
        drop((second, third));
        assert_eq!(quota.held_by("alice"), 0);
        assert!(quota.held.lock().unwrap().is_empty(), "no entry left behind");
        let none = PollQuota::new(0);
        assert!(none.acquire("carol").is_none());
        assert!(none.held.lock().unwrap().is_empty());
    }
}
