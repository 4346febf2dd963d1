//! How a feed tells its readers of joins and leaves when many come at once (a crowd arriving, a
//! reconnect storm). Each is told one by one up to `MAX_EACH` in a window; past that, one `resync`
//! at once, and while changes go on at most one more per window, at the window's end. While a
//! window is crowded the feed does not read presence at each change either, only at its end, so
//! typing in a crowded channel waits up to a window. A thousand readers told of every small group
//! of joins, as a storm's presence syncs deliver them, cost the gateway a write each: in a storm
//! of 10,000 streams, 630,000 writes in ten seconds.

use std::time::Duration;
use tokio::time::Instant;

/// Joins and leaves told one by one in a window; beyond, a `resync`.
pub const MAX_EACH: usize = 16;
/// How long changes past the limit wait to be told, together.
pub const WINDOW: Duration = Duration::from_secs(1);
/// `told` once a window has gone past the limit.
const CROWDED: usize = MAX_EACH + 1;

/// What to tell of the joins and leaves read now.
#[derive(Debug, PartialEq, Eq)]
pub enum Told {
    /// Each one, as it is.
    Each,
    /// One `resync` of this many changes instead.
    Resync(usize),
    /// Nothing yet: a `resync` at the window's end (`Crowd::due`).
    Held,
}

/// A feed's telling of joins and leaves, window by window.
pub struct Crowd {
    window_ends: Instant,
    told: usize,
    held: usize,
    /// A change was announced in a crowded window and not read yet.
    pending: bool,
}

impl Crowd {
    pub fn new(now: Instant) -> Self {
        Crowd { window_ends: now, told: 0, held: 0, pending: false }
    }

    /// Decides how `count` joins and leaves read at `now` are told (with any held before them).
    pub fn tell(&mut self, count: usize, now: Instant) -> Told {
        if now >= self.window_ends {
            self.pending = false;
            if self.held > 0 {
                // The crowd went on through the window: one resync for all of it, and the next
                // window starts crowded.
                let held = std::mem::take(&mut self.held) + count;
                self.window_ends = now + WINDOW;
                self.told = CROWDED;
                return Told::Resync(held);
            }
            if count > 0 {
                self.window_ends = now + WINDOW;
                self.told = 0;
            }
        }
        if count == 0 {
            return Told::Each;
        }
        if self.told + count <= MAX_EACH {
            self.told += count;
            Told::Each
        } else if self.told < CROWDED {
            self.told = CROWDED;
            Told::Resync(count)
        } else {
            self.held += count;
            Told::Held
        }
    }

    /// Whether a change announced at `now` is read at once. In a crowded window it waits for the
    /// window's end, read together with every other: in a storm each presence sync wakes every
    /// feed, and a read of a busy channel's presence costs the database milliseconds.
    pub fn read_now(&mut self, now: Instant) -> bool {
        let crowded = now < self.window_ends && self.told >= CROWDED;
        self.pending |= crowded;
        !crowded
    }

    /// When held or pending changes are to be read and told.
    pub fn due(&self) -> Option<Instant> {
        (self.held > 0 || self.pending).then_some(self.window_ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_are_told_each_a_crowd_once_then_once_a_window() {
        let start = Instant::now();
        let mut crowd = Crowd::new(start);
        assert_eq!(crowd.tell(10, start), Told::Each);
        assert_eq!(crowd.tell(6, start), Told::Each);
        assert_eq!(crowd.tell(1, start), Told::Resync(1), "the 17th in the window");
        assert_eq!(crowd.tell(5, start), Told::Held);
        assert_eq!(crowd.tell(5, start + WINDOW / 2), Told::Held);
        assert_eq!(crowd.due(), Some(start + WINDOW));
        let later = start + WINDOW;
        assert_eq!(crowd.tell(0, later), Told::Resync(10), "what was held, at the window's end");
        assert_eq!(crowd.due(), None);
        assert_eq!(crowd.tell(3, later), Told::Held, "still crowded in the next window");
        assert_eq!(crowd.tell(0, later + WINDOW), Told::Resync(3));
        // A window without changes ends the crowd.
        assert_eq!(crowd.tell(1, later + WINDOW * 3), Told::Each);
    }

    #[test]
    fn in_a_crowded_window_changes_are_read_at_its_end() {
        let start = Instant::now();
        let mut crowd = Crowd::new(start);
        assert!(crowd.read_now(start));
        assert_eq!(crowd.tell(MAX_EACH + 1, start), Told::Resync(MAX_EACH + 1));
        assert!(!crowd.read_now(start + WINDOW / 2), "crowded: wait");
        assert_eq!(crowd.due(), Some(start + WINDOW));
        let end = start + WINDOW;
        assert_eq!(crowd.tell(MAX_EACH + 4, end), Told::Resync(MAX_EACH + 4), "read at the window's end");
        assert_eq!(crowd.due(), None);
        assert!(!crowd.read_now(end), "the crowd goes on");
        assert_eq!(crowd.tell(4, end + WINDOW), Told::Each, "a few at the next end: one by one again");
        assert!(crowd.read_now(end + WINDOW));
    }

    #[test]
    fn many_in_one_read_are_one_resync() {
        let now = Instant::now();
        let mut crowd = Crowd::new(now);
        assert_eq!(crowd.tell(MAX_EACH + 1, now), Told::Resync(MAX_EACH + 1));
        assert_eq!(crowd.tell(0, now), Told::Each, "nothing to tell");
    }
}
