//! Notification fan-out on a Citus cluster: the notifications of one message, created one
//! receiving user at a time, so that each statement touches one user's shard.

use crate::announce;
use crate::db::{self, Jsonb};
use crate::error::{HatchatError, Result};
use crate::names;
use crate::settings;

/// The notifications message ($1, $2) would create (`notification_targets`), before blocks are
/// applied, in user order: a router query on a cluster.
const TARGETS: &str = concat!(
    "WITH ",
    notification_targets!(""),
    " SELECT receiver, user_id, sender, body FROM targets ORDER BY user_id, receiver"
);

/// Which of users $1 blocked user $2. Blocks are keyed by the blocking user (sharded by user on
/// Citus, apart from the channel's tables), hence a query of their own.
const BLOCKERS: &str = "\
    SELECT b.user_id FROM hatchat.blocks b WHERE b.user_id = ANY($1) AND b.blocked_user_id = $2";

/// Bumps user $1's counter by $2 (creating the inbox); the new last id. The user's inbox row stays
/// locked to the end of the transaction.
const BUMP_INBOX: &str = concat!(
    "INSERT INTO hatchat.inboxes AS i (user_id, last_id, pending_since) VALUES ($1, $2, clock_timestamp()) ",
    bump_inbox!(),
    " RETURNING i.last_id"
);

/// One notification to be created: for whom, and what. The member whose settings decided it
/// (`receiver`) is who may have blocked the sender.
struct Target {
    receiver: pgrx::Uuid,
    user_id: pgrx::Uuid,
    sender: pgrx::Uuid,
    body: Jsonb,
}

/// Creates the notifications of message `seq` of `channel_id` and queues a NOTIFY naming the
/// users whose streams grew (delivered at commit). Each of those users keeps only the newest
/// `hatchat.max_notifications`: older ones are deleted, the new ones past the limit are never
/// inserted, ids are never reused.
///
/// Statement by statement, one user at a time in user-id order (so concurrent posts lock inboxes
/// in one order and never deadlock): each statement then touches one user's rows, which on Citus
/// is a router query on that user's shard, however the channel's and the users' shards lie.
pub(super) fn fan_out(channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<()> {
    let targets = unblocked(targets(channel_id, seq, push)?)?;
    let keep = i64::from(settings::MAX_NOTIFICATIONS.get());
    let mut grown = Vec::new();
    for group in targets.chunk_by(|a, b| a.user_id == b.user_id) {
        let user_id = group[0].user_id;
        let count = group.len() as i64;
        let last_id = db::first::<i64>(BUMP_INBOX, &[user_id.into(), count.into()])?
            .ok_or_else(|| HatchatError::Internal("an upsert returns its row".into()))?;
        db::execute(
            "DELETE FROM hatchat.notifications WHERE user_id = $1 AND id <= $2",
            &[user_id.into(), (last_id - keep).into()],
        )?;
        for (target, id) in group.iter().zip(last_id - count + 1..) {
            if id > last_id - keep {
                db::execute(
                    "INSERT INTO hatchat.notifications (user_id, id, body, channel_id, seq) VALUES ($1, $2, $3, $4, $5)",
                    &[user_id.into(), id.into(), target.body.into(), channel_id.into(), seq.into()],
                )?;
            }
        }
        grown.push(user_id);
    }
    announce::users(&grown)
}

fn targets(channel_id: &str, seq: i64, push: Option<Jsonb>) -> Result<Vec<Target>> {
    let args = [
        channel_id.into(),
        seq.into(),
        push.into(),
        names::SERVER_SECRET_NAME.into(),
        hatchat_wire::CHAT_SERVICE.into(),
    ];
    db::query(TARGETS, &args, |rows| {
        let mut targets = Vec::new();
        for row in rows {
            if let (Some(receiver), Some(user_id), Some(sender), Some(body)) =
                (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)
            {
                targets.push(Target { receiver, user_id, sender, body });
            }
        }
        Ok(targets)
    })
}

/// `targets` without those decided by a member who blocked the sender (the sender is the user of
/// the `chat-disabled` rows, and the receiver of no row).
fn unblocked(targets: Vec<Target>) -> Result<Vec<Target>> {
    let Some(sender) = targets.first().map(|t| t.sender) else { return Ok(targets) };
    let receivers: Vec<pgrx::Uuid> = targets.iter().map(|t| t.receiver).collect();
    let blockers = db::column::<pgrx::Uuid>(BLOCKERS, &[receivers.into(), sender.into()])?;
    Ok(targets.into_iter().filter(|t| !blockers.contains(&t.receiver)).collect())
}
