//! Who holds a live stream on which channel through this gateway, told to the database
//! (`hatchat.presence_sync`) in batches, together with the gateway's lease.
//!
//! - A stream (SSE, a WebSocket subscription, a long-poll) holds a `Here` while it is open. When the
//!   last one of a user on a channel closes, the user stays for `LINGER`: a stream that ended with
//!   its token and resumes, a network blip, or the gap between two long-polls is no leave and join.
//! - Changes go out as soon as the previous sync has answered, so a burst of streams opening is one
//!   call, and a quiet gateway makes one call per lease renewal (a third of the lease) and none in
//!   between: the work is in proportion to the changes, not to the users held.
//! - When the database says the lease was not held (it restarted, failed over, or this gateway was
//!   away longer than its lease), or a sync failed, the next one sends everything held (`whole`).
//!   So presence is rebuilt from the live streams within a renewal of the database coming back.

use crate::db;
use crate::error::ApiError;
use deadpool_postgres::Pool;
use hatchat_wire::api;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a user stays present after their last stream on a channel closed.
pub const LINGER: Duration = Duration::from_secs(5);
/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A channel and a user.
type Pair = (String, String);

pub struct Presence {
    gateway: String,
    pool: Pool,
    lease: Duration,
    state: Mutex<State>,
    changed: Notify,
    syncs: AtomicU64,
}

#[derive(Default)]
struct State {
    held: HashMap<Pair, Held>,
    /// Told to nobody yet.
    joins: HashSet<Pair>,
    leaves: HashSet<Pair>,
    /// Send everything held next, instead of the changes.
    whole: bool,
}

struct Held {
    streams: usize,
    /// When the last stream closed and the user lingers: when they leave.
    leave_at: Option<Instant>,
}

/// One sync's worth: the pairs that join (everything held, when `whole`), and those that leave.
struct Batch {
    joins: Vec<Pair>,
    leaves: Vec<Pair>,
    whole: bool,
}

/// A stream's presence on its channel, until dropped.
pub struct Here {
    presence: Arc<Presence>,
    pair: Pair,
}

impl Drop for Here {
    fn drop(&mut self) {
        self.presence.closed(&self.pair);
    }
}

impl Presence {
    /// A gateway's presence, under a new random id; `run` tells the database.
    pub fn new(pool: Pool, lease: Duration) -> Arc<Self> {
        let state = State { whole: true, ..State::default() };
        Arc::new(Presence {
            gateway: uuid::Uuid::new_v4().to_string(),
            pool,
            lease,
            state: Mutex::new(state),
            changed: Notify::new(),
            syncs: AtomicU64::new(0),
        })
    }

    /// `user` has a stream on `channel` until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>, channel: &str, user: &str) -> Here {
        let pair = (channel.to_string(), user.to_string());
        let mut state = self.state.lock().expect("presence lock");
        let held = state.held.entry(pair.clone()).or_insert(Held { streams: 0, leave_at: None });
        let arrives = held.streams == 0 && held.leave_at.is_none();
        held.streams += 1;
        held.leave_at = None;
        // A leave not yet told is taken back: the database still has the user.
        if arrives && !state.leaves.remove(&pair) {
            state.joins.insert(pair.clone());
            self.changed.notify_one();
        }
        Here { presence: Arc::clone(self), pair }
    }

    fn closed(&self, pair: &Pair) {
        let mut state = self.state.lock().expect("presence lock");
        if let Some(held) = state.held.get_mut(pair) {
            held.streams -= 1;
            if held.streams == 0 {
                held.leave_at = Some(Instant::now() + LINGER);
                self.changed.notify_one();
            }
        }
    }

    /// Tells the database, renews the lease, and sleeps until the next change, renewal or leave.
    pub async fn run(self: Arc<Self>) {
        let renewal = self.lease / 3;
        let mut next_sync = Instant::now();
        let mut failing = false;
        loop {
            let now = Instant::now();
            // After a failed sync nothing is tried before its retry: a database that is away (a
            // failover) refuses at once, and changes must not turn that into a busy loop.
            let due = !failing || next_sync <= now;
            if let Some(batch) = due.then(|| self.take(now, next_sync <= now)).flatten() {
                let outcome = self.sync(&batch).await;
                failing = outcome.is_err();
                next_sync = match outcome {
                    Ok(false) if !batch.whole => {
                        // The database lost this gateway's lease: send everything, now.
                        self.state.lock().expect("presence lock").whole = true;
                        now
                    }
                    Ok(_) => now + renewal,
                    Err(error) => {
                        tracing::warn!(message = error.message, "telling the database who is present failed");
                        self.state.lock().expect("presence lock").whole = true;
                        now + RETRY
                    }
                };
                continue;
            }
            let leave = self.next_leave().filter(|_| !failing);
            let wake_at = leave.map_or(next_sync, |leave| leave.min(next_sync));
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = self.changed.notified() => {}
            }
        }
    }

    /// Lets go of everything held (the gateway is stopping): its users leave now, not a lease later.
    pub async fn depart(&self) {
        let batch = Batch { joins: Vec::new(), leaves: Vec::new(), whole: true };
        if let Err(error) = self.sync(&batch).await {
            tracing::warn!(message = error.message, "letting go of presence failed");
        }
    }

    /// What the next sync sends, if anything: due leaves move from held to told, then the changes
    /// (or everything) are taken; with `renew`, an empty batch too.
    fn take(&self, now: Instant, renew: bool) -> Option<Batch> {
        let mut guard = self.state.lock().expect("presence lock");
        let state = &mut *guard;
        let due = |_: &Pair, held: &mut Held| held.streams == 0 && held.leave_at.is_some_and(|at| at <= now);
        for (pair, _) in state.held.extract_if(due) {
            if !state.joins.remove(&pair) {
                state.leaves.insert(pair);
            }
        }
        if state.whole {
            state.whole = false;
            state.joins.clear();
            state.leaves.clear();
            return Some(Batch {
                joins: state.held.keys().cloned().collect(),
                leaves: Vec::new(),
                whole: true,
            });
        }
        if state.joins.is_empty() && state.leaves.is_empty() && !renew {
            return None;
        }
        let joins = state.joins.drain().collect();
        let leaves = state.leaves.drain().collect();
        Some(Batch { joins, leaves, whole: false })
    }

    fn next_leave(&self) -> Option<Instant> {
        let state = self.state.lock().expect("presence lock");
        state.held.values().filter_map(|held| held.leave_at).min()
    }

    /// Syncs tried so far, failed ones included.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// One call: the batch and the lease; whether the lease was held.
    async fn sync(&self, batch: &Batch) -> Result<bool, ApiError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let (join_channels, join_users) = split(&batch.joins);
        let (leave_channels, leave_users) = split(&batch.leaves);
        let lease = i32::try_from(self.lease.as_secs().clamp(1, 3600)).unwrap_or(3600);
        let answer: api::PresenceSync = db::call_typed(
            &self.pool,
            api::PRESENCE_SYNC,
            &[
                &self.gateway,
                &join_channels,
                &join_users,
                &leave_channels,
                &leave_users,
                &batch.whole,
                &lease,
            ],
        )
        .await?;
        Ok(answer.held)
    }
}

fn split(pairs: &[Pair]) -> (Vec<&str>, Vec<&str>) {
    pairs.iter().map(|(channel, user)| (channel.as_str(), user.as_str())).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool whose every connection is refused at once, as during a failover.
    fn unreachable() -> Pool {
        crate::db::pool("postgres://nobody@127.0.0.1:1/none", "test", 2, None).unwrap()
    }

    #[tokio::test]
    async fn a_database_that_refuses_is_tried_again_after_a_second_not_at_once() {
        let presence = Presence::new(unreachable(), Duration::from_secs(15));
        let running = tokio::spawn(Arc::clone(&presence).run());
        let mut held = Vec::new();
        for i in 0..50 {
            // Streams coming and going meanwhile: each is a change to tell.
            held.push(presence.enter("c", &format!("user-{i}")));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let syncs = presence.syncs();
        running.abort();
        assert!((2..=4).contains(&syncs), "{syncs} syncs in 2.5 s of a database refusing");
    }
}
