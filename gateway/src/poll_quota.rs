//! How many long-polls each user may hold waiting at once on this gateway: the counting, apart from
//! the waiting itself (long_poll.rs) and the state that holds it (state.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
