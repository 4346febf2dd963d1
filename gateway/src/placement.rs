//! Which node of a Citus cluster holds a channel, so that group commit batches only sends whose
//! channels live on one node: a batch spanning two workers would commit with two-phase commit.
//! The extension answers (`hatchat.channel_nodes`, from Citus's own shard metadata and hash); the
//! answer is cached per channel for `TTL`, so a channel costs one lookup per `TTL`, not one per
//! send. A shard that moved meanwhile leaves a stale answer: that costs a two-phase commit until
//! the entry expires, never correctness (the database routes every statement itself). On a single
//! node there is no `Placement` at all: one group, no query.

use deadpool_postgres::Pool;
use hatchat_wire::api;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is used before it is asked again (shards move rarely, by an operator).
const TTL: Duration = Duration::from_secs(300);
/// Channels remembered at most; past it the cache starts over (a lookup each, once).
const MAX_ENTRIES: usize = 100_000;

/// A Citus group id: one per node.
pub type Node = i32;

pub struct Placement {
    pool: Pool,
    cache: Mutex<HashMap<String, (Option<Node>, Instant)>>,
}

impl Placement {
    /// A placement cache when the database is distributed; None on a single node, and with an
    /// extension too old to answer.
    pub async fn detect(pool: &Pool) -> Option<Self> {
        let client = pool.get().await.ok()?;
        let row = client.query_one(api::HAS_CHANNEL_NODES, &[]).await.ok()?;
        row.get::<_, bool>(0).then(|| Self { pool: pool.clone(), cache: Mutex::default() })
    }

    /// The node that holds `channel`, or None when it cannot be told (the send then batches with
    /// the other sends of unknown place: at worst a two-phase commit).
    pub async fn node_of(&self, channel: &str) -> Option<Node> {
        if let Some(&(node, at)) = self.cache.lock().expect("placement lock").get(channel) {
            if at.elapsed() < TTL {
                return node;
            }
        }
        let node = self.look_up(channel).await;
        let mut cache = self.cache.lock().expect("placement lock");
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(channel.to_string(), (node, Instant::now()));
        node
    }

    async fn look_up(&self, channel: &str) -> Option<Node> {
        let client = self.pool.get().await.ok()?;
        let statement = client.prepare_cached(api::CHANNEL_NODE).await.ok()?;
        match client.query_one(&statement, &[&channel]).await {
            Ok(row) => row.get(0),
            Err(error) => {
                tracing::debug!(%error, "could not tell the node of a channel");
                None
            }
        }
    }
}
