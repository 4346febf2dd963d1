//! Where the rows live: all on this node, or spread over a Citus cluster's shards (docs/scale-out.md).
//! Decided once per backend — Citus must be preloaded, so whether it is loaded holds for the
//! backend's life — and every difference between the two is a method here. The rest of the
//! extension runs the same code on both.
//!
//! Why they differ: Citus routes a statement to one shard only when it names the one channel (or
//! user) it touches, takes row locks only in such statements, and cannot route an UPDATE joined
//! with an array. So where one node runs one set-based statement over many channels or users, a
//! cluster runs the same work one channel (or user) per statement; and what hatchat does around a
//! commit must wait for Citus's own commit of the workers.

use crate::db;
use crate::error::Result;
use crate::jsonb::Jsonb;
use crate::messages::batch::{self, Candidate, Standing};
use crate::messages::{self, Admitted, Extra};
use crate::notifications;
use pgrx::prelude::*;
use std::cell::Cell;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One PostgreSQL holds every row: set-based statements, a fixed number per call.
    OneNode,
    /// Citus is loaded: tables may be distributed, so each statement names its shard's key.
    Sharded,
}

/// Each item's outcome of a batch's append, by its position in the array.
pub type Outcomes = Vec<(i64, Result<String>)>;

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

    /// How a send alone appends (`send_message`), once admitted: the one statement of modifying
    /// CTEs (`APPEND`) on one node. On a cluster that statement runs as several steps over two
    /// connections to the channel's worker, which then commits in two phases: there the batch's
    /// per-channel statements append it, over one connection. None when the channel is missing or
    /// the sender may not post there.
    pub fn append_alone(self, send: &Admitted) -> Result<Option<Jsonb>> {
        match self {
            Placement::OneNode => {
                let extra = Extra { client_id: send.client_id.as_deref(), ..Extra::default() };
                messages::append_with(&send.channel, send.sender.id(), send.payload, None, extra)
            }
            Placement::Sharded => batch::per_channel::append_alone(send),
        }
    }

    /// Whether a send by a token this backend verified before may go in one statement, the append
    /// that checks the sender's stored key itself (`send_as_known`). Not on a cluster: that
    /// statement is `APPEND`, which commits in two phases there (`append_alone`).
    pub fn sends_known_signers_in_one_statement(self) -> bool {
        self == Placement::OneNode
    }

    /// Locks a batch's live channels in id order and says, for each (channel, sender) of a live
    /// channel, what the sender is there: one statement for the whole batch on one node, two per
    /// channel on a cluster (Citus takes row locks only in single-shard statements).
    pub(crate) fn lock_and_check(
        self,
        candidates: &[Candidate],
    ) -> Result<HashMap<(String, Uuid), Standing>> {
        match self {
            Placement::OneNode => batch::membership(candidates),
            Placement::Sharded => batch::per_channel::membership(candidates),
        }
    }

    /// Appends a batch's accepted items: one statement for the whole batch on one node, a few per
    /// channel on a cluster (Citus cannot route an UPDATE joined with the batch's arrays).
    pub(crate) fn append_batch(self, accepted: &[Candidate]) -> Result<Outcomes> {
        match self {
            Placement::OneNode => batch::append_all(accepted),
            Placement::Sharded => batch::per_channel::append_all(accepted),
        }
    }

    /// Creates the notifications of one message: one statement for all its receivers on one node;
    /// on a cluster one receiver at a time, as the inboxes are sharded by user and a statement
    /// that writes several users' rows cannot be routed.
    pub fn fan_out(self, channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<()> {
        match self {
            Placement::OneNode => notifications::fan_out(channel_id, seq, push),
            Placement::Sharded => notifications::per_user::fan_out(channel_id, seq, push),
        }
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
