//! Group commit. Measured on a 2-core machine, a send in a transaction of its own costs about
//! 500 µs of PostgreSQL CPU (authentication, the counter row update, the insert, the commit);
//! sends committed together cost about 200 µs each. So a gateway runs at most `slots` send
//! transactions at once: a send that finds a slot free goes at once, alone (`send_message`) — never
//! held back waiting for company — and sends that arrive while every slot is busy go together in
//! the next free slot, as one `send_messages` call: one transaction, one commit, one round trip.
//! Sends to one hot channel batch this way too, which is what lets it pass one commit per message.
//!
//! A channel is in at most one batch at a time: sends to a channel whose batch is in flight wait
//! for the next. A batch that has run for `STALL` stops counting against the slots (up to half
//! the pool in all), so the sends queued behind it start in a slot of their own: if an outside transaction holds a channel's
//! counter row (a long transaction that sent to it), it holds up the sends batched with it, never
//! the gateway. One slot is the default: measured here, more slots commit smaller batches and
//! spend more database CPU per send (see docs/performance.md), and stall relief gives the robustness
//! that extra slots would otherwise buy.
//!
//! Each send still gets its own answer, the one it would get alone: the extension checks every
//! item on its own, and payloads travel as JSON text inside a string (`payloadText`), converted
//! per item, so a payload PostgreSQL cannot store (`"\u0000"`, a lone surrogate) fails its own
//! item instead of the cast of the whole batch. A lone send goes through `send_message_text`, the
//! same conversion. A send whose channel id or token holds a NUL character (which no jsonb can)
//! goes alone, and so does a payload that would push a batch past `MAX_BATCH_BYTES`. A slot's
//! work runs in a task of its own, so a client that hangs up does not stall the sends queued
//! behind it (its send completes; only the answer is dropped).
//!
//! On a Citus cluster a batch holds only sends whose channels live on one node (placement.rs), so
//! it commits there alone (one-phase) instead of across workers (two-phase commit); on one node
//! every send is of the same place.

use crate::error::ApiError;
use crate::placement::{Node, Placement};
use deadpool_postgres::Pool;
use hatchat_wire::api;
use hatchat_wire::api::Item;
use serde_json::value::RawValue;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The extension's limit per `send_messages` call.
const MAX_BATCH: usize = 1000;
/// The most payload bytes one batch carries: far under jsonb's 256 MB, which a batch of large
/// bodies could otherwise pass and fail together.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// SQLSTATE deadlock_detected: a batch can only deadlock with an outside transaction that locked
/// channels in another order; it changed nothing, so it is retried.
const DEADLOCK: &str = "40P01";
/// A batch running longer than this is waiting on a lock (or a stalled disk), not working: a
/// commit takes about a millisecond here.
const STALL: Duration = Duration::from_millis(50);

pub struct GroupCommit {
    pool: Pool,
    slots: usize,
    /// Where each channel lives, on a cluster (None on one node).
    placement: Option<Placement>,
    /// Slots at most, stalled ones included: half the pool, so that a database slow enough to
    /// stall every batch still leaves connections for reads and the other routes.
    max_slots: usize,
    state: Mutex<State>,
    /// Send transactions run and the sends they carried: their ratio is the batching achieved.
    transactions: AtomicU64,
    messages: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    busy_slots: usize,
    /// Busy slots whose batch has run longer than `STALL`: they do not count against the limit.
    stalled_slots: usize,
    /// Channels with a batch in flight (a send without a channel fails alone, keyed by None).
    in_flight: HashSet<Option<String>>,
}

impl State {
    /// Slots at work that count against the limit.
    fn working_slots(&self) -> usize {
        self.busy_slots - self.stalled_slots
    }

    /// The queued sends whose channels have no batch in flight (up to a batch), in arrival order;
    /// their channels are then in flight.
    fn take_batch(&mut self) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut waiting = VecDeque::new();
        while let Some(pending) = self.queue.pop_front() {
            if !self.in_flight.contains(&pending.channel) && fits(&batch, bytes, &pending) {
                bytes += pending.size();
                batch.push(pending);
            } else {
                waiting.push_back(pending);
            }
        }
        self.queue = waiting;
        for pending in &batch {
            self.in_flight.insert(pending.channel.clone());
        }
        batch
    }
}

/// Whether `pending` may join `batch`: the first send always starts one; then up to `MAX_BATCH`
/// sends and `MAX_BATCH_BYTES` whose channels live on the first one's node, and never a send that
/// must go alone (or join one that must).
fn fits(batch: &[Pending], bytes: usize, pending: &Pending) -> bool {
    batch.first().is_none_or(|first| {
        first.batchable()
            && pending.batchable()
            && first.node == pending.node
            && batch.len() < MAX_BATCH
            && bytes + pending.size() <= MAX_BATCH_BYTES
    })
}

struct Pending {
    token: Option<String>,
    channel: Option<String>,
    payload: Option<Box<RawValue>>,
    /// The client's message id, if any: the extension answers a retry with the first answer, in
    /// a batch or alone.
    client_id: Option<String>,
    /// The node that holds the channel, on a cluster (None on one node, or not known).
    node: Option<Node>,
    answer: oneshot::Sender<Result<String, ApiError>>,
}

impl Pending {
    /// Whether the batch's JSON can carry this send: a NUL character (which a client can put in a
    /// channel id as `\u0000`) has no jsonb form, and would fail the cast of the whole batch.
    fn batchable(&self) -> bool {
        let nul = |text: &Option<String>| text.as_deref().is_some_and(|t| t.contains('\0'));
        !nul(&self.channel) && !nul(&self.token) && !nul(&self.client_id)
    }

    /// This send as a `send_messages` item. The payload goes as its JSON text inside a JSON string:
    /// any text is a valid string, so the array always casts to jsonb.
    fn item(&self) -> Item<'_> {
        Item {
            token: self.token.as_deref(),
            channel_id: self.channel.as_deref(),
            payload_text: self.payload.as_deref().map(RawValue::get),
            client_id: self.client_id.as_deref(),
        }
    }

    /// Bytes this send adds to a batch.
    fn size(&self) -> usize {
        let len = |text: &Option<String>| text.as_deref().map_or(0, str::len);
        len(&self.token)
            + len(&self.channel)
            + len(&self.client_id)
            + self.payload.as_deref().map_or(0, |p| p.get().len())
    }
}

impl GroupCommit {
    /// Group commit that batches by node (`placement`, on a Citus cluster).
    pub fn new(pool: Pool, slots: usize, placement: Option<Placement>) -> Arc<Self> {
        let slots = slots.max(1);
        let max_slots = slots.max(pool.status().max_size / 2);
        Arc::new(Self {
            pool,
            slots,
            placement,
            max_slots,
            state: Mutex::default(),
            transactions: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        })
    }

    /// (send transactions, sends) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.transactions.load(Ordering::Relaxed), self.messages.load(Ordering::Relaxed))
    }

    /// Sends one message (`channel` may be absent: the extension then says what is missing).
    pub async fn send(
        self: &Arc<Self>,
        token: Option<String>,
        channel: Option<String>,
        payload: Option<Box<RawValue>>,
        client_id: Option<String>,
    ) -> Result<String, ApiError> {
        let started = std::time::Instant::now();
        let (answer, answered) = oneshot::channel();
        let node = match (&self.placement, channel.as_deref()) {
            (Some(placement), Some(channel)) => placement.node_of(channel).await,
            _ => None,
        };
        let pending = Pending { token, channel, payload, client_id, node, answer };
        self.start_slot_after(|state| state.queue.push_back(pending));
        let answer = answered.await;
        crate::metrics::send_answered(started);
        answer.unwrap_or_else(|_| Err(ApiError::unavailable("the send was interrupted; try again")))
    }

    /// Changes the state with `change`, then starts a slot if one may: only while sends are queued
    /// (it is counted busy at once). The slot runs in a task of its own. (Boxed: a slot may start
    /// another, and the compiler needs the future's type written down to see that it is `Send`.)
    fn start_slot_after(self: &Arc<Self>, change: impl FnOnce(&mut State)) {
        let free = {
            let mut state = self.state.lock().expect("group commit lock");
            change(&mut state);
            let free = !state.queue.is_empty()
                && state.working_slots() < self.slots
                && state.busy_slots < self.max_slots;
            state.busy_slots += usize::from(free);
            free
        };
        if free {
            let slot: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(Arc::clone(self).work_slot());
            tokio::spawn(slot);
        }
    }

    /// One slot: takes what is queued (see `take_batch`), delivers it, and goes on until nothing
    /// it may take is waiting (sends for channels in flight elsewhere are picked up by the slot
    /// that has them in flight, when it finishes).
    async fn work_slot(self: Arc<Self>) {
        let mut delivered: Vec<Option<String>> = Vec::new();
        loop {
            let batch = {
                let mut state = self.state.lock().expect("group commit lock");
                for channel in delivered.drain(..) {
                    state.in_flight.remove(&channel);
                }
                // After a stall, slots started meanwhile may be more than the limit: one stops.
                let batch = if state.working_slots() > self.slots { Vec::new() } else { state.take_batch() };
                if batch.is_empty() {
                    state.busy_slots -= 1;
                    return;
                }
                batch
            };
            delivered = batch.iter().map(|p| p.channel.clone()).collect();
            self.deliver_watched(batch).await;
        }
    }

    /// Delivers a batch; if it stalls, its slot stops counting and the sends queued behind it
    /// start in another slot.
    async fn deliver_watched(self: &Arc<Self>, batch: Vec<Pending>) {
        let delivery = self.deliver(batch);
        tokio::pin!(delivery);
        if tokio::time::timeout(STALL, &mut delivery).await.is_ok() {
            return;
        }
        self.start_slot_after(|state| state.stalled_slots += 1);
        delivery.await;
        self.state.lock().expect("group commit lock").stalled_slots -= 1;
    }

    async fn deliver(&self, batch: Vec<Pending>) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::metrics::send_transaction(batch.len());
        // On a cluster a lone send goes as a batch of one too: send_message's one statement
        // (modifying CTEs) runs there as several steps over two connections to the channel's
        // worker, which Citus commits in two phases; send_messages' per-channel statements use one.
        let alone = batch.len() == 1 && (self.placement.is_none() || !batch[0].batchable());
        let answers = if alone {
            vec![self.send_alone(&batch[0]).await]
        } else {
            let mut answers = self.send_together(&batch).await;
            if answers.iter().any(|a| a.as_ref().is_err_and(|e| e.sqlstate.as_deref() == Some(DEADLOCK))) {
                answers = self.send_together(&batch).await;
            }
            answers
        };
        for (pending, answer) in batch.into_iter().zip(answers) {
            let _ = pending.answer.send(answer);
        }
    }

    async fn send_alone(&self, send: &Pending) -> Result<String, ApiError> {
        let payload = send.payload.as_deref().map(RawValue::get);
        crate::db::call_json(
            &self.pool,
            api::SEND_MESSAGE_TEXT,
            &[&send.token, &send.channel, &payload, &send.client_id],
        )
        .await
    }

    async fn send_together(&self, batch: &[Pending]) -> Vec<Result<String, ApiError>> {
        let items: Vec<Item> = batch.iter().map(Pending::item).collect();
        crate::db::call_batch(&self.pool, api::SEND_MESSAGES, &items, |sent| Ok(sent.to_string())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(channel: &str, payload: &str) -> Pending {
        let payload = RawValue::from_string(payload.to_string()).unwrap();
        Pending {
            token: None,
            channel: Some(channel.into()),
            payload: Some(payload),
            client_id: None,
            node: None,
            answer: oneshot::channel().0,
        }
    }

    fn on(node: Node, channel: &str) -> Pending {
        Pending { node: Some(node), ..pending(channel, "1") }
    }

    fn channels(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.channel.as_deref().unwrap()).collect()
    }

    #[test]
    fn items_carry_any_payload_as_a_json_string() {
        let poison = pending("c", r#""\u0000""#);
        let items = serde_json::to_string(&[poison.item()]).unwrap();
        assert_eq!(items, r#"[{"token":null,"channelId":"c","payloadText":"\"\\u0000\""}]"#);
    }

    #[test]
    fn a_send_without_a_jsonb_form_or_too_big_goes_alone() {
        let mut state = State::default();
        state.queue.extend([pending("a", "1"), pending("b\0", "2"), pending("c", "3")]);
        assert_eq!(channels(&state.take_batch()), ["a", "c"]);
        state.in_flight.clear();
        assert_eq!(channels(&state.take_batch()), ["b\0"]);

        let big = format!("\"{}\"", "x".repeat(MAX_BATCH_BYTES / 2));
        state.in_flight.clear();
        state.queue.extend([pending("a", &big), pending("b", &big), pending("c", "3")]);
        assert_eq!(channels(&state.take_batch()), ["a", "c"]);
        state.in_flight.clear();
        assert_eq!(channels(&state.take_batch()), ["b"]);
    }

    #[test]
    fn a_batch_holds_the_sends_of_one_node_and_the_others_wait_for_the_next() {
        let mut state = State::default();
        state.queue.extend([on(1, "a"), on(2, "b"), on(1, "c"), on(2, "d"), on(1, "e")]);
        assert_eq!(channels(&state.take_batch()), ["a", "c", "e"]);
        assert_eq!(channels(&state.take_batch()), ["b", "d"]);
        assert!(state.take_batch().is_empty());
    }
}
