//! Stream openings, batched. Each stream that opens asks the database once whether its token may
//! read the channel from its position, and each WebSocket whom its token speaks for, as it
//! connects (`open_streams`); a reconnect storm is thousands of those at once. An opening whose
//! slot is free goes at once, alone; openings that arrive while it is busy go together in its
//! next call, up to `MAX_BATCH`: one transaction and one round trip. Each opening still gets
//! exactly the answer or the error it would get alone.
//!
//! A token always goes to the same slot, and each slot to one connection of its own: the backend
//! keeps the tokens it verified, so a user's streams and reconnects (one token, many openings)
//! cost one signature check there rather than one on each of the pool's backends.

use crate::db;
use crate::error::ApiError;
use deadpool_postgres::Pool;
use hatchat_wire::api::{self, StreamItem, StreamOpen};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The extension's limit per `open_streams` call.
const MAX_BATCH: usize = 1000;
/// Calls at once, a connection each: enough to keep both cores of a small database busy while
/// one batch is on the wire, few enough that a storm's openings batch.
pub const SLOTS: usize = 2;

pub struct Opener {
    slots: Vec<Slot>,
}

/// One connection's openings: those waiting, and whether a call is under way.
struct Slot {
    pool: Pool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    busy: bool,
}

struct Pending {
    token: Option<String>,
    /// None for a connection that only asks whom its token speaks for.
    channel: Option<String>,
    after_seq: i64,
    answer: oneshot::Sender<Result<StreamOpen, ApiError>>,
}

impl Opener {
    /// A slot for each pool, which should hold one connection.
    pub fn new(pools: Vec<Pool>) -> Arc<Self> {
        let slots = pools.into_iter().map(|pool| Slot { pool, state: Mutex::default() }).collect();
        Arc::new(Opener { slots })
    }

    /// What the database says of a stream of `channel` after `after_seq` for `token`: whether
    /// messages follow, and whom the token speaks for; or the error a read would get.
    pub async fn open(
        self: &Arc<Self>,
        token: &Option<String>,
        channel: &str,
        after_seq: i64,
    ) -> Result<StreamOpen, ApiError> {
        self.ask(token, Some(channel.to_string()), after_seq).await
    }

    /// Whom `token` speaks for (401 for a bad token), asked with the openings around it.
    pub async fn caller(self: &Arc<Self>, token: &Option<String>) -> Result<api::StreamCaller, ApiError> {
        Ok(self.ask(token, None, 0).await?.caller)
    }

    async fn ask(
        self: &Arc<Self>,
        token: &Option<String>,
        channel: Option<String>,
        after_seq: i64,
    ) -> Result<StreamOpen, ApiError> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending { token: token.clone(), channel, after_seq, answer };
        let index = self.slot_of(token);
        let start = {
            let mut state = self.slots[index].state.lock().unwrap_or_else(|e| e.into_inner());
            state.queue.push(pending);
            !std::mem::replace(&mut state.busy, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).run(index));
        }
        answered.await.unwrap_or_else(|_| Err(ApiError::internal("a stream's opening was dropped")))
    }

    fn slot_of(&self, token: &Option<String>) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        (hasher.finish() % self.slots.len() as u64) as usize
    }

    /// A slot's calls for what is queued until nothing is. In a task of its own, so a client that
    /// hangs up does not stall the openings batched with its own.
    async fn run(self: Arc<Self>, index: usize) {
        let slot = &self.slots[index];
        loop {
            let batch: Vec<Pending> = {
                let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.queue.is_empty() {
                    state.busy = false;
                    return;
                }
                let take = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..take).collect()
            };
            let answers = call(&slot.pool, &batch).await;
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.answer.send(answer);
            }
        }
    }
}

/// One `open_streams` call for a batch: each opening's answer, in order.
async fn call(pool: &Pool, batch: &[Pending]) -> Vec<Result<StreamOpen, ApiError>> {
    let items: Vec<StreamItem> = batch
        .iter()
        .map(|p| StreamItem {
            token: p.token.as_deref().map(Cow::Borrowed),
            channel_id: p.channel.as_deref().map(Cow::Borrowed),
            after_seq: Some(p.after_seq),
        })
        .collect();
    db::call_batch(pool, api::OPEN_STREAMS, &items, |opened| {
        serde_json::from_str(opened)
            .map_err(|e| ApiError::internal(format!("unexpected opening answer: {e}")))
    })
    .await
}
