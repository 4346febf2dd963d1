//! Where the rows live: all on this node, or spread over a Citus cluster's shards (docs/scale-out.md).
//! Decided once per backend — Citus must be preloaded, so whether it is loaded holds for the
//! backend's life — and every difference between the two is a method of `Placement`; the rest of
//! the extension runs the same code on both. The methods that run statements are defined beside
//! those statements, the modules above this one importing it (and never the other way round):
//!
//! - `append_alone` (messages/mod.rs): how a send alone appends;
//! - `lock_and_check`, `append_batch` (messages/batch.rs): how a batch locks its channels, checks
//!   its senders and appends;
//! - `fan_out` (notifications.rs): how a message's notifications are written.
//!
//! The others, here: whether a known signer sends in one statement, whether commits release their
//! locks early, when announcements are handed over, one connection per node.
//!
//! Why they differ: Citus routes a statement to one shard only when it names the one channel (or
//! user) it touches, takes row locks only in such statements, and cannot route an UPDATE joined
//! with an array. So where one node runs one set-based statement over many channels or users, a
//! cluster runs the same work one channel (or user) per statement; and what hatchat does around a
//! commit must wait for Citus's own commit of the workers.

use crate::db;
use crate::error::Result;
use pgrx::prelude::*;
use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One PostgreSQL holds every row: set-based statements, a fixed number per call.
    OneNode,
    /// Citus is loaded: tables may be distributed, so each statement names its shard's key.
    Sharded,
}

impl Placement {
    /// This backend's placement, found at its first call.
    pub fn here() -> Placement {
        thread_local! {
            static HERE: Cell<Option<Placement>> = const { Cell::new(None) };
        }
        HERE.get().unwrap_or_else(|| {
            // SAFETY: a GUC lookup by name; missing_ok, so NULL when Citus is not loaded.
            let citus = unsafe {
                !pg_sys::GetConfigOption(c"citus.multi_shard_modify_mode".as_ptr(), true, false).is_null()
            };
            let here = if citus { Placement::Sharded } else { Placement::OneNode };
            HERE.set(Some(here));
            here
        })
    }

    /// Whether a send by a token this backend verified before may go in one statement, the append
    /// that checks the sender's stored key itself (`send_as_known`). Not on a cluster: that
    /// statement is `APPEND`, which commits in two phases there (`append_alone`).
    pub fn sends_known_signers_in_one_statement(self) -> bool {
        self == Placement::OneNode
    }

    /// Whether a sending transaction may release its locks before its commit is flushed
    /// (src/commit.rs). Not on a cluster: Citus's commit callbacks commit the workers'
    /// transactions, which hold the channels' rows, before ours is durable.
    pub fn commits_early(self) -> bool {
        self == Placement::OneNode
    }

    /// When a transaction's announcements may be handed to the announcer (src/announce.rs).
    pub fn announce_at(self) -> AnnounceAt {
        match self {
            Placement::OneNode => AnnounceAt::Commit,
            Placement::Sharded => AnnounceAt::AfterCitusCommit,
        }
    }

    /// Makes the rest of the transaction use one connection per node (`SET LOCAL
    /// citus.multi_shard_modify_mode = sequential`) on a cluster; nothing on one node. A
    /// transaction that writes to several shards of a table at once (in parallel) may not write
    /// to a reference table after: Citus then refuses ("cannot modify table users because there
    /// was a parallel operation on a distributed table"). Deleting a user does both (their
    /// channels, then the user).
    pub fn one_connection_per_node(self) -> Result<()> {
        if self == Placement::Sharded {
            db::execute("SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)", &[])?;
        }
        Ok(())
    }
}

/// The moment a transaction's announcements go to the announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceAt {
    /// At commit (a commit callback): the rows are visible.
    Commit,
    /// After Citus has committed the workers: a transaction that wrote on two nodes commits them
    /// with two-phase commit, whose `COMMIT PREPARED` Citus sends from its own commit callback,
    /// which runs after ours.
    AfterCitusCommit,
}
