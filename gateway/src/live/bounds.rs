//! What each user, and the whole gateway, may hold waiting: a count of long-polls, streams and
//! WebSocket subscriptions per user (`Quota`), and bytes held for clients (`Budget`, `Purse`).
//!
//! What live streams hold for clients that have not taken it yet, counted in bytes: each reader
//! (an SSE stream, a WebSocket subscription or socket, a long-poll's reader) within a bound of its
//! own, all of them together within one for the whole gateway. A count of messages is no bound:
//! at the default payload limit, 1,000 waiting messages are 64 MB. A client that does not read
//! can make the gateway hold its own bound at most, and many such clients (one person can register
//! many users while registration is open) the gateway's bound at most.
//!
//! One message always fits into an empty purse, however large: otherwise a reader whose bound is
//! smaller than a message could never move on. So the gateway's bound can be passed by one
//! message per reader, never by more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many long-polls each user may hold waiting at once on this gateway. Each one is a task, a
/// subscription and a re-query on every wake-up; without a bound, one client could hold any number.
/// Users are counted by the id the database verified from their token, never by what a request
/// claims, or anyone could use up someone else's share.
pub struct Quota {
    per_user: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One long-poll counted against its user; dropping it (the request ended, however) gives it back.
pub struct Place {
    quota: Arc<Quota>,
    user: String,
}

impl Quota {
    pub fn new(per_user: usize) -> Arc<Self> {
        Arc::new(Self { per_user, held: Mutex::default() })
    }

    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// A place for one more long-poll of `user`, unless the user already holds `per_user`.
    pub fn take(self: &Arc<Self>, user: &str) -> Option<Place> {
        let mut held = self.held.lock().expect("quota lock");
        if held.get(user).copied().unwrap_or(0) >= self.per_user {
            return None;
        }
        *held.entry(user.to_string()).or_default() += 1;
        Some(Place { quota: Arc::clone(self), user: user.to_string() })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().expect("quota lock");
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

/// The gateway's bound, and what all purses hold now.
pub struct Budget {
    per_reader: usize,
    total: usize,
    held: AtomicUsize,
}

/// One reader's share of the budget: filled by whoever hands the reader something (a feed, a
/// catch-up read, a socket's subscriptions), emptied as the client takes it. Dropping it gives
/// back what it still holds.
pub struct Purse {
    budget: Arc<Budget>,
    held: AtomicUsize,
}

impl Budget {
    pub fn new(per_reader: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { per_reader: per_reader.max(1), total: total.max(1), held: AtomicUsize::new(0) })
    }

    /// Bytes held for clients now, by every purse.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn purse(self: &Arc<Self>) -> Arc<Purse> {
        Arc::new(Purse { budget: Arc::clone(self), held: AtomicUsize::new(0) })
    }
}

impl Purse {
    /// Holds `bytes` more if they fit within the reader's bound and the gateway's, or if the purse
    /// is empty (one message always fits); false otherwise, holding nothing more.
    pub fn take(&self, bytes: usize) -> bool {
        let mine = self.held.load(Ordering::Acquire);
        if mine > 0 && mine + bytes > self.budget.per_reader {
            return false;
        }
        let all = self.budget.held.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if mine > 0 && all > self.budget.total {
            self.budget.held.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        self.held.fetch_add(bytes, Ordering::AcqRel);
        true
    }

    /// The client took `bytes`.
    pub fn give_back(&self, bytes: usize) {
        let bytes = bytes.min(self.held.load(Ordering::Acquire));
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.budget.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Whether the reader holds nothing now.
    pub fn is_empty(&self) -> bool {
        self.held.load(Ordering::Acquire) == 0
    }

    /// What this reader may hold.
    pub fn bound(&self) -> usize {
        self.budget.per_reader
    }
}

impl Drop for Purse {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(*self.held.get_mut(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long-polls `user` holds now.
    fn held_by(quota: &Quota, user: &str) -> usize {
        quota.held.lock().unwrap().get(user).copied().unwrap_or(0)
    }

    #[test]
    fn a_user_holds_at_most_the_quota_and_dropping_a_place_gives_it_back() {
        let quota = Quota::new(2);
        let first = quota.take("alice").unwrap();
        let second = quota.take("alice").unwrap();
        assert!(quota.take("alice").is_none());
        assert!(quota.take("bob").is_some(), "another user is not affected");
        drop(first);
        assert_eq!(held_by(&quota, "alice"), 1);
        let third = quota.take("alice").unwrap();
        assert!(quota.take("alice").is_none());
        drop((second, third));
        assert_eq!(held_by(&quota, "alice"), 0);
        assert!(quota.held.lock().unwrap().is_empty(), "no entry left behind");
        let none = Quota::new(0);
        assert!(none.take("carol").is_none());
        assert!(none.held.lock().unwrap().is_empty());
    }

    #[test]
    fn a_reader_holds_its_bound_and_one_message_always_fits() {
        let budget = Budget::new(100, 1000);
        let purse = budget.purse();
        assert!(purse.take(60));
        assert!(purse.take(40));
        assert!(!purse.take(1), "over the reader's bound");
        purse.give_back(100);
        assert!(purse.is_empty());
        assert!(purse.take(500), "one message fits an empty purse, however large");
        assert!(!purse.take(1));
        drop(purse);
        assert_eq!(budget.held(), 0, "a dropped purse gives back what it held");
    }

    #[test]
    fn the_gateway_bound_holds_across_readers() {
        let budget = Budget::new(100, 150);
        let (a, b) = (budget.purse(), budget.purse());
        assert!(a.take(80));
        assert!(b.take(60), "b is empty: its first message fits");
        assert!(!b.take(20), "the gateway holds 140 of 150");
        assert!(a.take(10));
        assert!(!a.take(10), "the gateway is full");
        a.give_back(90);
        assert!(b.take(20));
        assert_eq!(budget.held(), 80);
    }
}
