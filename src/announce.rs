//! Announcing what changed to every gateway: a PostgreSQL NOTIFY on `hatchat_wire::wake`'s
//! channel, naming the keys of the channels and users that changed (a wake-up).
//!
//! A transaction that NOTIFYs takes a database-wide lock when it commits and holds it until its
//! commit is flushed, so senders that announce their own messages commit one at a time. With
//! hatchat in `shared_preload_libraries`, no sender does: a commit callback hands the keys of what
//! its transaction changed to the announcer, one background worker per database, which raises one
//! coalesced NOTIFY in a transaction of its own. The callback runs after the commit is visible to
//! other sessions, so a wake-up never arrives before what it announces can be read. Without the
//! preload (or when the announcer cannot start), a change is announced from its own transaction,
//! as PostgreSQL delivers NOTIFYs at commit: correct, only slower under many concurrent senders.
//!
//! Nothing is lost quietly: keys that do not fit the queue, or that a failing announcer held, turn
//! into one "everyone look again" wake-up.

use crate::db;
use crate::error::{HatchatError, Result};
use crate::placement::{AnnounceAt, Placement};
use hatchat_wire::wake::{self, Kind, WakeUp};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock, PgXactCallbackEvent};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Databases with an announcer at once; a further one announces from its senders' transactions.
const DATABASES: usize = 16;
/// Keys a database's queue holds between two announcements; more become "everyone look again".
const KEYS: usize = 4096;
/// An announcer with nothing to do for this long exits (and lets its database be dropped); the
/// next send starts another.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// After an announcement the announcer lets keys gather this long before it looks again, and
/// senders meanwhile do not wake it: under load, one announcement (and one wake-up to each
/// gateway) per interval instead of one per commit, and no signal from any sender's commit. A
/// change after a quiet spell is announced at once. Whole milliseconds: a latch wait's timeout
/// is counted in them (a shorter one would not wait at all).
const GATHER: Duration = Duration::from_millis(1);
/// An announcer registered this long ago that never came up (a failed fork, a database that
/// refuses connections) is given up on: the next sender starts another.
const STARTUP_GRACE_MICROS: i64 = 10_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Worker {
    None,
    Starting,
    Running,
}

#[derive(Clone, Copy)]
struct Queue {
    /// The database this queue serves (0: free).
    database: u32,
    worker: Worker,
    /// The running announcer's latch (a pointer into shared memory), set to wake it.
    latch: usize,
    /// The running announcer's pid: only it may clear its own state on exit.
    pid: i32,
    /// When the announcer now starting was registered (µs, PostgreSQL's clock).
    started_at: i64,
    /// Keys were drained and are being announced: if the announcer dies now, they are lost and
    /// become "everyone look again".
    in_flight: bool,
    /// Transactions that will hand keys over (at commit) or give up (at abort): while any is
    /// open, the announcer does not exit.
    senders: u32,
    /// Keys were dropped (a full queue, a failed announcement): announce "everyone".
    overflow: bool,
    /// The announcer is awake and will look at the queue again before it sleeps: senders need not
    /// set its latch (a signal, when it sleeps).
    awake: bool,
    len: u32,
    keys: [u64; KEYS],
    users: [bool; KEYS],
}

impl Queue {
    const FREE: Queue = Queue {
        database: 0,
        worker: Worker::None,
        latch: 0,
        pid: 0,
        started_at: 0,
        in_flight: false,
        senders: 0,
        overflow: false,
        awake: false,
        len: 0,
        keys: [0; KEYS],
        users: [false; KEYS],
    };

    fn push(&mut self, key: u64, user: bool) {
        let at = self.len as usize;
        if at == KEYS {
            self.overflow = true;
            return;
        }
        self.keys[at] = key;
        self.users[at] = user;
        self.len += 1;
    }
}

#[derive(Clone, Copy)]
pub struct Queues([Queue; DATABASES]);

// SAFETY: plain old data (integers, booleans, arrays of them): valid in every process.
unsafe impl PGRXSharedMemory for Queues {}

impl Queues {
    fn of(&mut self, database: u32) -> Option<&mut Queue> {
        self.0.iter_mut().find(|q| q.database == database)
    }

    /// The database's queue, claiming a free one if it has none.
    fn claim(&mut self, database: u32) -> Option<&mut Queue> {
        let index = self
            .0
            .iter()
            .position(|q| q.database == database)
            .or_else(|| self.0.iter().position(|q| q.database == 0))?;
        let queue = &mut self.0[index];
        queue.database = database;
        Some(queue)
    }
}

static QUEUES: PgLwLock<Queues> = unsafe { PgLwLock::new(c"hatchat_announcer") };
/// Set in the postmaster when hatchat is preloaded; backends inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init`: the announcer's shared memory exists only when hatchat is preloaded.
pub fn init() {
    // SAFETY: reads a flag PostgreSQL sets while loading shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(QUEUES = Queues([Queue::FREE; DATABASES]));
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

/// What the current transaction changed, for the commit callback.
#[derive(Default)]
struct Pending {
    channels: HashSet<u64>,
    users: HashSet<u64>,
}

thread_local! {
    /// Some while this transaction hands its keys to the announcer at commit.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
    /// The database's wake-up secret as this backend read it, with its table's OID then: an
    /// extension dropped and created again in this backend's database has another secret, in
    /// another table.
    static SECRET: Cell<Option<(pg_sys::Oid, wake::Secret)>> = const { Cell::new(None) };
}

/// The secret this database's wake-up keys are made with (`hatchat.wake_secret`), read once per
/// backend (and again if the extension was made anew). The check is two syscache lookups per
/// announcement; the extension's own OID would take a catalog scan (get_extension_oid) per send.
fn secret() -> Result<wake::Secret> {
    // SAFETY: syscache lookups by name; missing_ok, so InvalidOid instead of raising.
    let table = unsafe {
        let schema = pg_sys::get_namespace_oid(c"hatchat".as_ptr(), true);
        pg_sys::get_relname_relid(c"wake_secret".as_ptr(), schema)
    };
    if let Some((_, secret)) = SECRET.get().filter(|(oid, _)| *oid == table) {
        return Ok(secret);
    }
    let bytes = db::first::<Vec<u8>>("SELECT w.secret FROM hatchat.wake_secret w", &[])?;
    let secret = bytes
        .as_deref()
        .and_then(wake::Secret::from_bytes)
        .ok_or_else(|| HatchatError::Internal("hatchat.wake_secret holds no 16-byte secret".into()))?;
    SECRET.set(Some((table, secret)));
    Ok(secret)
}

/// Announces that `channel` changed (a message, a member, the channel itself), once the current
/// transaction commits.
pub fn channel(id: &str) -> Result<()> {
    announce(Kind::Channel, secret()?.key(Kind::Channel, id));
    Ok(())
}

/// Announces that `channel`'s presence or typing changed, once the current transaction commits.
pub fn presence(channel: &str) -> Result<()> {
    announce(Kind::Channel, secret()?.presence_key(channel));
    Ok(())
}

/// Announces that these users' notification streams grew, once the current transaction commits.
pub fn users(ids: &[pgrx::Uuid]) -> Result<()> {
    let secret = secret()?;
    for id in ids {
        announce(Kind::User, secret.key(Kind::User, &id.to_string()));
    }
    Ok(())
}

fn announce(kind: Kind, key: u64) {
    let queued = PENDING.with_borrow_mut(|pending| {
        if pending.is_none() && enlist() {
            *pending = Some(Pending::default());
        }
        let Some(pending) = pending else { return false };
        match kind {
            Kind::Channel => pending.channels.insert(key),
            Kind::User => pending.users.insert(key),
        };
        true
    });
    if !queued {
        let (channels, users) = match kind {
            Kind::Channel => (vec![key], vec![]),
            Kind::User => (vec![], vec![key]),
        };
        notify_now(&WakeUp::encode(&channels, &users, false));
    }
}

fn database() -> u32 {
    // SAFETY: set once the backend is connected; read-only afterwards.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Makes this transaction a sender of its database's announcer (starting one if none runs), and
/// arranges the hand-over at commit. False when there is no announcer to be had.
fn enlist() -> bool {
    if !PRELOADED.load(Ordering::Relaxed) {
        return false;
    }
    let database = database();
    let start = {
        let mut queues = QUEUES.exclusive();
        let Some(queue) = queues.claim(database) else { return false };
        queue.senders += 1;
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let start = match queue.worker {
            Worker::None => true,
            Worker::Starting => now - queue.started_at > STARTUP_GRACE_MICROS,
            Worker::Running => false,
        };
        if start {
            queue.worker = Worker::Starting;
            queue.started_at = now;
        }
        start
    };
    if start && !start_worker(database) {
        let mut queues = QUEUES.exclusive();
        if let Some(queue) = queues.of(database) {
            queue.worker = Worker::None;
            queue.senders -= 1;
        }
        return false;
    }
    match Placement::here().announce_at() {
        AnnounceAt::Commit => {
            pgrx::register_xact_callback(PgXactCallbackEvent::Commit, hand_over);
        }
        AnnounceAt::AfterCitusCommit => hand_over_after_citus(),
    }
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, give_up);
    pgrx::register_xact_callback(PgXactCallbackEvent::PrePrepare, refuse_prepare);
    true
}

fn start_worker(database: u32) -> bool {
    BackgroundWorkerBuilder::new("hatchat announcer")
        .set_type("hatchat announcer")
        .set_library("hatchat")
        .set_function("hatchat_announcer_main")
        .enable_spi_access()
        .set_argument(Some(pg_sys::Datum::from(database)))
        .set_restart_time(None)
        .load_dynamic()
        .is_ok()
}

/// The commit callback: the keys go to the queue and the announcer is woken. Runs after the
/// commit is visible; must not fail.
fn hand_over() {
    let Some(pending) = PENDING.with_borrow_mut(Option::take) else { return };
    let latch = {
        let mut queues = QUEUES.exclusive();
        let Some(queue) = queues.of(database()) else { return };
        for key in &pending.channels {
            queue.push(*key, false);
        }
        for key in &pending.users {
            queue.push(*key, true);
        }
        queue.senders = queue.senders.saturating_sub(1);
        if queue.awake {
            0
        } else {
            queue.latch
        }
    };
    if latch != 0 {
        // SAFETY: the latch of a live announcer's PGPROC, in shared memory.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// On Citus, the hand-over waits until Citus has committed the workers. A transaction that wrote
/// on two nodes commits them with two-phase commit, and Citus sends `COMMIT PREPARED` from its own
/// commit callback: ours, registered later (at the first send), would run before it, and a waiter
/// woken then could re-query before the rows on the workers are visible and go back to sleep.
/// Resource-release callbacks run after every commit callback. (A one-node transaction is safe
/// either way: Citus commits the worker before the local commit, in its pre-commit callback.)
/// Registered once per backend; it hands over only at a top-level commit, and only if this
/// transaction has keys pending.
fn hand_over_after_citus() {
    thread_local! {
        static REGISTERED: Cell<bool> = const { Cell::new(false) };
    }
    if !REGISTERED.replace(true) {
        // SAFETY: registers a callback that lives as long as the backend (a static function).
        unsafe { pg_sys::RegisterResourceReleaseCallback(Some(after_citus_commit), std::ptr::null_mut()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn after_citus_commit(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if is_commit && is_top_level && phase == pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS {
        hand_over();
    }
}

/// A prepared transaction runs neither commit nor abort callbacks here, and becomes visible later,
/// in another session: its changes could never be announced at the right time. Refused, as
/// PostgreSQL refuses to PREPARE a transaction that NOTIFYs; the abort that follows gives up.
fn refuse_prepare() {
    pgrx::ereport!(
        ERROR,
        pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "cannot PREPARE a transaction that changed hatchat data: commit it directly"
    );
}

/// The abort callback: nothing was committed, nothing to announce.
fn give_up() {
    PENDING.with_borrow_mut(Option::take);
    let mut queues = QUEUES.exclusive();
    if let Some(queue) = queues.of(database()) {
        queue.senders = queue.senders.saturating_sub(1);
    }
}

/// NOTIFYs from the current transaction (delivered when it commits).
fn notify_now(payloads: &[String]) {
    for payload in payloads {
        // SAFETY: pg_notify(text, text) with two non-null text datums, as SQL would call it.
        unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::pg_notify,
                &[wake::NOTIFY_CHANNEL.into_datum(), payload.as_str().into_datum()],
            );
        }
    }
}

/// Whether this backend's changes are announced by the announcer (`worker`) or from their own
/// transactions (`in-transaction`): what a test or an operator checks.
#[pg_extern(name = "announcer_mode")]
fn announcer_mode() -> &'static str {
    if PRELOADED.load(Ordering::Relaxed) {
        "worker"
    } else {
        "in-transaction"
    }
}

/// The announcer of one database (its oid is the argument): waits for keys, and announces them.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn hatchat_announcer_main(argument: pg_sys::Datum) {
    let database = argument.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), None);
    {
        let mut queues = QUEUES.exclusive();
        let Some(queue) = queues.claim(database) else { return };
        queue.worker = Worker::Running;
        queue.awake = true;
        // SAFETY: MyLatch points at this process's latch in shared memory once it runs; MyProcPid
        // is this process's.
        queue.latch = unsafe { pg_sys::MyLatch } as usize;
        queue.pid = unsafe { pg_sys::MyProcPid };
    }
    // SAFETY: registers a plain function, run once when this process exits for any reason.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(database)) };
    let (mut idle_since, mut alive) = (Instant::now(), true);
    // Drain before each wait: keys queued before this announcer set its latch (by the very send
    // that started it) go out at once, and after a SIGTERM what is queued still goes out.
    loop {
        if let Some(wake) = drain(database) {
            BackgroundWorker::transaction(|| {
                notify_now(&WakeUp::encode(&wake.channels, &wake.users, wake.all))
            });
            // A backend reports its statistics when it goes idle; a worker must say so itself, or
            // its transactions reach pg_stat_database only when it exits (at most once a second).
            // SAFETY: outside any transaction, in a process connected to its database.
            unsafe { pg_sys::pgstat_report_stat(false) };
            if let Some(queue) = QUEUES.exclusive().of(database) {
                queue.in_flight = false;
            }
            idle_since = Instant::now();
            if alive {
                // Senders leave the latch alone meanwhile; a SIGTERM or the postmaster's death
                // still ends the wait.
                alive = BackgroundWorker::wait_latch(Some(GATHER));
                continue;
            }
        } else if idle_since.elapsed() >= IDLE_EXIT && retire(database) {
            return;
        }
        if !alive {
            return;
        }
        if !fall_asleep(database) {
            continue;
        }
        alive = BackgroundWorker::wait_latch(Some(Duration::from_secs(5)));
        wake_up(database);
    }
}

/// Tells senders that this announcer is awake (it looks at the queue before it sleeps again). Only
/// the queue's own announcer says so: one that lost its place to a successor must not.
fn wake_up(database: u32) {
    // SAFETY: this process's pid.
    let me = unsafe { pg_sys::MyProcPid };
    if let Some(queue) = QUEUES.exclusive().of(database).filter(|queue| queue.pid == me) {
        queue.awake = true;
    }
}

/// Tells senders to wake the announcer from now on, unless keys arrived meanwhile (then it
/// drains again instead: false). Under the queue's lock, so no key is pushed unseen in between.
fn fall_asleep(database: u32) -> bool {
    let mut queues = QUEUES.exclusive();
    let Some(queue) = queues.of(database) else { return true };
    if queue.len > 0 || queue.overflow {
        return false;
    }
    queue.awake = false;
    true
}

/// Takes the queued keys (deduplicated), or None when there are none.
fn drain(database: u32) -> Option<WakeUp> {
    let mut queues = QUEUES.exclusive();
    let queue = queues.of(database)?;
    if queue.len == 0 && !queue.overflow {
        return None;
    }
    let mut wake = WakeUp { all: queue.overflow, ..WakeUp::default() };
    for at in 0..queue.len as usize {
        let keys = if queue.users[at] { &mut wake.users } else { &mut wake.channels };
        keys.push(queue.keys[at]);
    }
    queue.len = 0;
    queue.overflow = false;
    queue.in_flight = true;
    drop(queues);
    wake.channels.sort_unstable();
    wake.channels.dedup();
    wake.users.sort_unstable();
    wake.users.dedup();
    Some(wake)
}

/// Gives the queue up when nothing is queued and no sender is about to hand keys over.
fn retire(database: u32) -> bool {
    let mut queues = QUEUES.exclusive();
    let Some(queue) = queues.of(database) else { return true };
    if queue.len > 0 || queue.overflow || queue.senders > 0 {
        return false;
    }
    *queue = Queue::FREE;
    true
}

/// However the announcer ends, the next one is started by the next sender. Keys it had drained
/// but not announced (it died in its NOTIFY) become "everyone look again"; a queue with nothing
/// waiting and no sender gives its slot back. Only this announcer's own state is touched: a
/// successor may already run for the same database.
#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, argument: pg_sys::Datum) {
    let database = argument.value() as u32;
    // SAFETY: this process's pid.
    let me = unsafe { pg_sys::MyProcPid };
    let mut queues = QUEUES.exclusive();
    if let Some(queue) = queues.of(database).filter(|queue| queue.pid == me) {
        queue.worker = Worker::None;
        queue.latch = 0;
        queue.pid = 0;
        queue.awake = false;
        queue.overflow |= queue.in_flight;
        queue.in_flight = false;
        if queue.len == 0 && !queue.overflow && queue.senders == 0 {
            *queue = Queue::FREE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latch wait counts whole milliseconds: a shorter gathering interval would not wait at all,
    /// and every commit would signal the announcer again (it did, at 0.5 ms).
    #[test]
    fn the_gathering_interval_is_a_wait() {
        assert!(GATHER.as_millis() >= 1);
    }
}
