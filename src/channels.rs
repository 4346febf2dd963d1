//! Channels: an id, an owner, members, an invite model that says who may add members, and
//! retention (keep the newest N messages; expire some time after the last post). Creating a
//! channel makes the creator its owner and first member; every real join (and leave) posts a
//! system message, so members see it in the channel's own ordered history. Rooms (rooms.rs) are
//! channels too, with a type and a fixed member list.

use crate::access::{self, channel_not_found, drop_if_expired, valid_channel_id, Access, InviteModel, Role};
use crate::auth::{self, SYSTEM_USER};
use crate::commit;
use crate::db::{self, pg_uuid, rust_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use crate::messages;
use crate::notifications;
use crate::users;
use pgrx::prelude::*;
use serde::Deserialize;
use uuid::Uuid;

/// `create_channel`'s options: retention and notifications. Unknown keys are refused, so a typo
/// does not silently create an unlimited channel.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelOptions {
    pub max_messages: Option<i32>,
    pub ttl_seconds: Option<i32>,
    /// Whether a post creates notifications for the other members. Also read as `notify`, its
    /// name until 0.2 (accepted until the next minor version).
    #[serde(default, alias = "notify")]
    pub notify_members: bool,
}

impl ChannelOptions {
    pub fn parse(json: &str) -> Result<Self> {
        let options: Self = serde_json::from_str(json).map_err(|e| {
            HatchatError::invalid(format!(
                "options must be an object with maxMessages, ttlSeconds (positive integers) and \
                 notifyMembers (boolean): {e}"
            ))
        })?;
        for (name, value) in [("maxMessages", options.max_messages), ("ttlSeconds", options.ttl_seconds)] {
            if value.is_some_and(|v| v < 1) {
                return Err(HatchatError::invalid(format!("{name} must be at least 1")));
            }
        }
        Ok(options)
    }
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn create_channel(
    token: Option<&str>,
    id: Option<&str>,
    invite_model: default!(Option<&str>, "'owner'"),
    options: default!(Option<Jsonb>, "'{}'"),
) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let id = valid_channel_id(required(id, "channel id")?)?;
    let model = InviteModel::parse(invite_model.unwrap_or("owner"))?;
    let options = match options {
        Some(options) => {
            let text = options.to_text();
            crate::limits::check_depth(&text)?;
            ChannelOptions::parse(&text)?
        }
        None => ChannelOptions::default(),
    };
    drop_if_expired(id)?;
    let created = db::first::<Jsonb>(
        "WITH w AS (INSERT INTO hatchat.channels (id, owner_id, invite_model, max_messages, ttl_seconds, expires_at, notify_members) \
                    VALUES ($1, $2, $3, $4, $5, clock_timestamp() + $5 * interval '1 second', $6) \
                    ON CONFLICT (id) DO NOTHING RETURNING *) \
         SELECT hatchat.channel_json(w.id, w.owner_id, w.invite_model, w.created_at, w.max_messages, \
                                w.ttl_seconds, w.expires_at, w.notify_members) FROM w",
        &[
            id.into(),
            pg_uuid(caller.id()).into(),
            model.as_str().into(),
            options.max_messages.into(),
            options.ttl_seconds.into(),
            options.notify_members.into(),
        ],
    )?;
    let channel = created.ok_or_else(|| HatchatError::Conflict(format!("channel id {id:?} is taken")))?;
    access::clear_leftovers(&[id.to_string()])?;
    if !caller.is_system() {
        join(id, caller.id())?;
    }
    Ok(channel)
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn update_channel(token: Option<&str>, id: Option<&str>, invite_model: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let id = valid_channel_id(required(id, "channel id")?)?;
    let model = InviteModel::parse(required(invite_model, "inviteModel")?)?;
    Access::load(id, &caller)?.require_owner()?;
    let updated = db::first::<Jsonb>(
        "WITH w AS (UPDATE hatchat.channels SET invite_model = $2 WHERE id = $1 RETURNING *) \
         SELECT hatchat.channel_json(w.id, w.owner_id, w.invite_model, w.created_at, w.max_messages, \
                                w.ttl_seconds, w.expires_at, w.notify_members) FROM w",
        &[id.into(), model.as_str().into()],
    )?;
    Ok(updated.ok_or_else(|| channel_not_found(id))?)
}

/// Deletes the channel with its members and messages, and wakes its listeners (who then find it
/// gone instead of waiting out their long-poll).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn delete_channel(token: Option<&str>, id: Option<&str>) -> SqlResult<()> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let id = valid_channel_id(required(id, "channel id")?)?;
    Access::load(id, &caller)?.require_owner()?;
    let gone = access::delete_channels(&[id.to_string()], false)?;
    notifications::forget_channels(&gone)?;
    Ok(())
}

#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn get_channel(token: Option<&str>, id: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let id = valid_channel_id(required(id, "channel id")?)?;
    Access::load(id, &caller)?.require_member()?;
    // Read receipts: each member's read position, but for those who turned them off (the caller
    // always sees their own). A key of its own, so `members` keeps its shape.
    let channel = db::first::<Jsonb>(
        "SELECT hatchat.channel_json(c.id, c.owner_id, c.invite_model, c.created_at, c.max_messages, \
                                c.ttl_seconds, c.expires_at, c.notify_members) \
                || hatchat.read_state_json(c.last_seq, me.read_seq, c.counted, me.read_count, \
                    (SELECT count(*) FROM hatchat.messages d \
                      WHERE d.channel_id = c.id AND d.kind = 'delete' AND d.target > me.read_seq)) \
                || jsonb_build_object('members', \
                (SELECT coalesce(jsonb_agg(jsonb_build_object('id', u.id, 'username', u.username) \
                                           ORDER BY m.joined_at, u.id), '[]'::jsonb) \
                   FROM hatchat.members m JOIN hatchat.users u ON u.id = m.user_id \
                  WHERE m.channel_id = c.id), \
                'readReceipts', \
                (SELECT coalesce(jsonb_agg(jsonb_build_object('userId', u.id, 'readSeq', m.read_seq) \
                                           ORDER BY m.joined_at, u.id), '[]'::jsonb) \
                   FROM hatchat.members m JOIN hatchat.users u ON u.id = m.user_id \
                  WHERE m.channel_id = c.id AND (u.read_receipts OR u.id = $2))) \
           FROM hatchat.channels c \
           LEFT JOIN hatchat.members me ON me.channel_id = c.id AND me.user_id = $2 \
          WHERE c.id = $1",
        &[id.into(), pg_uuid(caller.id()).into()],
    )?;
    commit::durable_reads()?;
    Ok(channel.ok_or_else(|| channel_not_found(id))?)
}

/// The live channels the caller is a member of, oldest first, each with the caller's read state.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn list_channels(token: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let channels = db::one::<Jsonb>(
        "SELECT coalesce(jsonb_agg(hatchat.channel_json(c.id, c.owner_id, c.invite_model, c.created_at, c.max_messages, \
                                c.ttl_seconds, c.expires_at, c.notify_members) \
                                  || hatchat.read_state_json(c.last_seq, m.read_seq, c.counted, m.read_count, \
                    (SELECT count(*) FROM hatchat.messages d \
                      WHERE d.channel_id = c.id AND d.kind = 'delete' AND d.target > m.read_seq)) \
                                  ORDER BY c.created_at, c.id), '[]'::jsonb) \
           FROM hatchat.channels c JOIN hatchat.members m ON m.channel_id = c.id \
          WHERE m.user_id = $1 AND hatchat.is_live(c.expires_at)",
        &[pg_uuid(caller.id()).into()],
    )?;
    commit::durable_reads()?;
    Ok(channels)
}

/// Adds `user_id` to the channel if the invite model allows the caller to. Adding a member again
/// succeeds without a second join message (`joined: false`).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn invite(token: Option<&str>, channel_id: Option<&str>, user_id: Option<pgrx::Uuid>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let user_id = required(user_id, "userId")?;
    let access = Access::load(channel_id, &caller)?;
    let inviting_self = rust_uuid(user_id) == caller.id();
    // Fixed for everyone, the server secret too: a room is named by its members.
    if access.is_room {
        return Err(HatchatError::Forbidden(format!("room {channel_id:?} has a fixed member list")).into());
    }
    if !access.model.may_add(access.role, inviting_self) {
        return Err(HatchatError::Forbidden(format!(
            "channel {channel_id:?} has invite model {:?}: you may not add {}",
            access.model.as_str(),
            if inviting_self { "yourself" } else { "other users" }
        ))
        .into());
    }
    if rust_uuid(user_id) == SYSTEM_USER || !users::user_exists(user_id)? {
        return Err(users::user_not_found(user_id).into());
    }
    let joined = join(channel_id, rust_uuid(user_id))?;
    Ok(db::one::<Jsonb>(
        "SELECT jsonb_build_object('channelId', $1::text, 'userId', $2::uuid, 'joined', $3::boolean)",
        &[channel_id.into(), user_id.into(), joined.into()],
    )?)
}

/// A member leaves. The owner cannot: a channel always has its owner (delete it instead). Rooms
/// keep their member list.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn leave_channel(token: Option<&str>, channel_id: Option<&str>) -> SqlResult<()> {
    let caller = auth::authenticate(token)?;
    caller.may_write()?;
    let user = caller.user()?;
    let channel_id = valid_channel_id(required(channel_id, "channelId")?)?;
    let access = Access::load(channel_id, &caller)?;
    access.require_member()?;
    if access.role == Role::Owner {
        return Err(HatchatError::Forbidden(format!(
            "the owner cannot leave channel {channel_id:?}; delete it instead"
        ))
        .into());
    }
    if access.is_room {
        return Err(HatchatError::Forbidden(format!("room {channel_id:?} has a fixed member list")).into());
    }
    let left = db::execute(
        "DELETE FROM hatchat.members WHERE channel_id = $1 AND user_id = $2",
        &[channel_id.into(), pg_uuid(user.id).into()],
    )?;
    if left > 0 {
        messages::post_system(channel_id, "leave", user.id)?;
    }
    Ok(())
}

/// Deletes expired channels with their members, messages and notifications; the number deleted.
/// The gateway calls it periodically; pg_cron users can schedule it.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn purge_expired() -> SqlResult<i32> {
    let expired =
        db::column::<String>("SELECT c.id FROM hatchat.channels c WHERE c.expires_at <= now()", &[])?;
    let purged = access::delete_channels(&expired, true)?;
    // Notifications have no foreign key to channels (they are keyed by user): deleted here.
    crate::notifications::forget_channels(&purged)?;
    Ok(i32::try_from(purged.len()).unwrap_or(i32::MAX))
}

/// Makes `user` a member; true when they were not one already (then the join message is posted).
fn join(channel_id: &str, user: Uuid) -> Result<bool> {
    let inserted = db::execute(
        "INSERT INTO hatchat.members (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[channel_id.into(), pg_uuid(user).into()],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    messages::post_system(channel_id, "join", user)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert_eq!(ChannelOptions::parse("{}").unwrap(), ChannelOptions::default());
        let all =
            ChannelOptions::parse(r#"{"maxMessages": 10, "ttlSeconds": 60, "notifyMembers": true}"#).unwrap();
        let expected = ChannelOptions { max_messages: Some(10), ttl_seconds: Some(60), notify_members: true };
        assert_eq!(all, expected);
        let old_name = ChannelOptions::parse(r#"{"maxMessages": 10, "ttlSeconds": 60, "notify": true}"#);
        assert_eq!(old_name.unwrap(), expected, "notify is read as notifyMembers until the next minor");
        for bad in [
            r#"{"maxMessages": 0}"#,
            r#"{"ttlSeconds": -5}"#,
            r#"{"maxMessages": "ten"}"#,
            r#"{"maxMessages": 1e12}"#,
            r#"{"maxMesages": 10}"#,
            r#"[]"#,
            r#"{"notify": "yes"}"#,
        ] {
            assert_eq!(ChannelOptions::parse(bad).unwrap_err().sqlstate_code(), "22023", "{bad}");
        }
    }
}
