//! How a sending transaction commits: it lets go of its locks before its commit is flushed, and
//! answers only after.
//!
//! A send holds its channel's counter row until its transaction ends, and PostgreSQL releases a
//! committing transaction's locks only after its commit record is flushed: the senders of one
//! channel commit one flush at a time, whatever their number. Here a sending transaction writes
//! its commit record without waiting for the flush (as `synchronous_commit = off` would), becomes
//! visible, releases its locks, and only then waits for the flush (and for synchronous standbys,
//! if any) before its COMMIT returns. The next sender of the channel goes on meanwhile, and their
//! flushes are shared: a hot channel is no longer one flush per message.
//!
//! Why nothing is lost or reordered: the write-ahead log is flushed in order, so a commit that
//! survives a crash has every earlier commit with it (seq N+1 is never durable without seq N), and
//! no client hears COMMIT before its own commit is durable. What changes is that a commit is
//! visible for a moment before it is durable: a read in that moment could show a message that a
//! crash then takes back (and whose seq the next send reuses). So reads that show messages or
//! notifications call `durable_reads` before answering: while any early commit is between
//! visible and flushed, it flushes the log first. A writing transaction needs nothing: its own
//! commit record comes after every commit it saw, so its flush covers them.
//!
//! Needs the preload (the count of early commits lives in shared memory); without it, or with
//! `hatchat.release_locks_before_flush = off`, sends commit as PostgreSQL does by default. A
//! session with `synchronous_commit = off` asked for less and gets what it asked for; one with
//! `remote_apply` commits as PostgreSQL does (its standbys answer an applied commit at once only
//! when the commit record asks them to, which it does only under that setting). Not with Citus
//! preloaded: its commit callbacks commit the workers' transactions before ours is durable.

use crate::error::{HatchatError, Result};
use crate::placement::Placement;
use crate::settings;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PgAtomic, PgXactCallbackEvent};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Transactions between their early commit (PRE_COMMIT) and the end of their flush, all backends.
static EARLY: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"hatchat_early_commits") };
/// Set in the postmaster when hatchat is preloaded; backends inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init`.
pub fn init() {
    // SAFETY: reads a flag PostgreSQL sets while loading shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(EARLY = AtomicU32::new(0));
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Commits as PostgreSQL does.
    Plain,
    /// Will commit early; nothing changed yet.
    Enlisted,
    /// Past PRE_COMMIT: counted in EARLY, `synchronous_commit` off until the commit record is
    /// written; the session's own value is kept here, and where the last commit record ended.
    Committing { own: i32, last_end: u64 },
    /// Committed and visible; waits for the flush up to this position after the locks are gone.
    Flushing { upto: u64 },
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Plain) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Makes the current transaction commit early (see above). Called by every send.
pub fn release_locks_early() {
    if !PRELOADED.load(Ordering::Relaxed)
        || STATE.get() != State::Plain
        || !settings::RELEASE_LOCKS_BEFORE_FLUSH.get()
        || !Placement::here().commits_early()
    {
        return;
    }
    // SAFETY: reads the GUC's variable in this backend.
    let own = unsafe { pg_sys::synchronous_commit };
    if own == pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_OFF as i32
        || own >= pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_APPLY as i32
    {
        return;
    }
    if !CALLBACK_REGISTERED.replace(true) {
        // SAFETY: registers a plain function for this backend's lifetime.
        unsafe { pg_sys::RegisterResourceReleaseCallback(Some(after_locks), std::ptr::null_mut()) };
    }
    STATE.set(State::Enlisted);
    pgrx::register_xact_callback(PgXactCallbackEvent::PreCommit, commit_without_flush);
    pgrx::register_xact_callback(PgXactCallbackEvent::Commit, remember_commit);
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, forget);
}

/// PRE_COMMIT: the commit record will be written without waiting for its flush. Counted first, so
/// a reader that can see this commit finds the count above zero.
fn commit_without_flush() {
    EARLY.get().fetch_add(1, Ordering::SeqCst);
    // SAFETY: this backend's GUC variable, restored at COMMIT or ABORT below. Set directly, not
    // through the GUC machinery, so nothing else (e.g. the synchronous replication mode) changes.
    let (own, last_end) = unsafe { (pg_sys::synchronous_commit, pg_sys::XactLastCommitEnd) };
    unsafe { pg_sys::synchronous_commit = pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_OFF as i32 };
    STATE.set(State::Committing { own, last_end });
}

/// COMMIT: the commit record is written and the transaction visible; the locks go next.
fn remember_commit() {
    if let State::Committing { own, last_end } = STATE.get() {
        // SAFETY: as above; XactLastCommitEnd is where this transaction's commit record ends (it
        // is not moved by a transaction that wrote nothing: then there is nothing to wait for).
        unsafe { pg_sys::synchronous_commit = own };
        let upto = unsafe { pg_sys::XactLastCommitEnd };
        if upto == last_end {
            STATE.set(State::Plain);
            EARLY.get().fetch_sub(1, Ordering::SeqCst);
        } else {
            STATE.set(State::Flushing { upto });
        }
    }
}

/// ABORT (also after a PRE_COMMIT that failed later): nothing to flush.
fn forget() {
    if let State::Committing { own, .. } = STATE.replace(State::Plain) {
        // SAFETY: as above.
        unsafe { pg_sys::synchronous_commit = own };
        EARLY.get().fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs at every resource owner release; acts once, after the top transaction's locks are gone.
#[pg_guard]
unsafe extern "C-unwind" fn after_locks(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if phase != pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS || !is_top_level {
        return;
    }
    let State::Flushing { upto } = STATE.replace(State::Plain) else { return };
    if is_commit {
        // SAFETY: flushes the log up to our commit record and waits for synchronous standbys (a
        // no-op without them), as RecordTransactionCommit would have before releasing the locks.
        unsafe {
            pg_sys::XLogFlush(upto);
            pg_sys::SyncRepWaitForLSN(upto, true);
        }
    }
    EARLY.get().fetch_sub(1, Ordering::SeqCst);
}

/// Called by reads before they answer: nothing they saw can be taken back by a crash (or lost
/// with a primary whose synchronous standbys never got it, if the reader's `synchronous_commit`
/// asks for standbys). Costs an atomic read unless an early commit is between visible and
/// durable; then the read waits for the log to be flushed as far as it has been written.
pub fn durable_reads() -> Result<()> {
    // SAFETY: plain calls and reads of this backend's variables.
    if !PRELOADED.load(Ordering::Relaxed)
        || EARLY.get().load(Ordering::SeqCst) == 0
        || unsafe { pg_sys::RecoveryInProgress() }
    {
        return Ok(());
    }
    // A commit this read saw wrote its record before it became visible, so it ends at or before
    // the end of the log written so far.
    let upto = written_end();
    // SAFETY: flushes the log up to a position already written.
    unsafe { pg_sys::XLogFlush(upto) };
    wait_for_standbys(upto)
}

/// The end of the last record written: the insert position, except that at the start of a page
/// (or segment) that position lies past the page header, where no record ends yet, and flushing
/// to it would be refused.
fn written_end() -> u64 {
    let align = |size: usize| size.next_multiple_of(pg_sys::MAXIMUM_ALIGNOF as usize) as u64;
    let short_header = align(std::mem::size_of::<pg_sys::XLogPageHeaderData>());
    let long_header = align(std::mem::size_of::<pg_sys::XLogLongPageHeaderData>());
    // SAFETY: reads the insert position and a setting fixed at startup.
    let (position, segment) = unsafe { (pg_sys::GetXLogInsertRecPtr(), pg_sys::wal_segment_size as u64) };
    if position % segment == long_header {
        position - long_header
    } else if position % u64::from(pg_sys::XLOG_BLCKSZ) == short_header {
        position - short_header
    } else {
        position
    }
}

/// SyncRepLock's place in PostgreSQL 15's main LWLock array (storage/lwlocknames.h).
const SYNC_REP_LOCK: usize = 32;

/// Waits, as a commit does, until the synchronous standbys the reader's `synchronous_commit` asks
/// for have the log up to `upto`. Interrupts are held as in a commit; a cancel still ends the
/// wait (PostgreSQL's own rule), and then the read fails instead of showing what the standbys may
/// not have.
fn wait_for_standbys(upto: u64) -> Result<()> {
    // SAFETY: this backend's variables; the standby names are a GUC string (NULL or C string).
    let mode = unsafe { pg_sys::synchronous_commit };
    let defined = unsafe { !pg_sys::SyncRepStandbyNames.is_null() && *pg_sys::SyncRepStandbyNames != 0 };
    let wait_mode = match mode as u32 {
        pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_WRITE => 0,
        pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_FLUSH => 1,
        pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_APPLY => 2,
        _ => return Ok(()),
    };
    // SAFETY: as RecordTransactionCommit calls it (interrupts held); WalSndCtl is shared memory
    // set up at startup; an 8-byte LSN is read whole.
    unsafe {
        if !defined || pg_sys::max_wal_senders == 0 || pg_sys::WalSndCtl.is_null() {
            return Ok(());
        }
        pg_sys::InterruptHoldoffCount += 1;
        pg_sys::SyncRepWaitForLSN(upto, false);
        pg_sys::InterruptHoldoffCount -= 1;
        // The wait ends when the standbys have it, when synchronous standbys are turned off (the
        // checkpointer's flag), or when it was canceled. The flag and the LSNs are read under
        // SyncRepLock: turning standbys off, the checkpointer wakes the waiters and then clears
        // the flag, both under that lock held exclusively, so a waiter woken that way and reading
        // without the lock could still see the flag set and take its release for a cancel.
        let sync_rep_lock = std::ptr::addr_of_mut!((*pg_sys::MainLWLockArray.add(SYNC_REP_LOCK)).lock);
        pg_sys::LWLockAcquire(sync_rep_lock, pg_sys::LWLockMode::LW_SHARED);
        let control = &*pg_sys::WalSndCtl;
        let still_defined = control.sync_standbys_status & pg_sys::SYNC_STANDBY_DEFINED as u8 != 0;
        let reached = control.lsn[wait_mode];
        pg_sys::LWLockRelease(sync_rep_lock);
        if still_defined && reached < upto {
            return Err(HatchatError::Canceled(
                "canceled while waiting for the synchronous standbys to have what this read saw".into(),
            ));
        }
    }
    Ok(())
}
