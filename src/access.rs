//! Who may do what to a channel: its id rules, its invite model, and what a caller is to it (owner,
//! member, stranger, the system). The rules every channel operation asks first, below the
//! operations themselves (messages, channels, rooms), so each of those imports this and nothing
//! imports back. An expired channel is a missing one.

use crate::announce;
use crate::auth::Caller;
use crate::db::{self, pg_uuid};
use crate::error::{HatchatError, Result};

pub const MAX_CHANNEL_ID_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteModel {
    /// Only the owner adds members.
    Owner,
    /// Any member adds members.
    Member,
    /// Anyone may add themselves; members may add others.
    SelfJoin,
}

impl InviteModel {
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "owner" => Ok(Self::Owner),
            "member" => Ok(Self::Member),
            "self" => Ok(Self::SelfJoin),
            other => Err(HatchatError::invalid(format!(
                "inviteModel must be \"owner\", \"member\" or \"self\", got {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
            Self::SelfJoin => "self",
        }
    }

    pub fn may_add(self, inviter: Role, inviting_self: bool) -> bool {
        match (self, inviter) {
            (_, Role::System) => true,
            (Self::Owner, role) => role == Role::Owner,
            (Self::Member, role) => role != Role::Stranger,
            (Self::SelfJoin, role) => role != Role::Stranger || inviting_self,
        }
    }
}

/// What the caller is to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
    Stranger,
    /// The server secret: reads, posts and adds members anywhere, owns nothing.
    System,
}

/// 1..200 characters, no control characters; otherwise any text (rooms use ids with `/`).
pub fn valid_channel_id(raw: &str) -> Result<&str> {
    crate::limits::short_text(raw, "channel id", MAX_CHANNEL_ID_CHARS)
}

/// A channel as an authorization decision sees it. Expired channels are not found.
pub struct Access {
    pub id: String,
    pub model: InviteModel,
    pub role: Role,
    pub is_room: bool,
}

impl Access {
    /// Loads the channel and the caller's role in it, or 404.
    pub fn load(channel_id: &str, caller: &Caller) -> Result<Self> {
        let found = db::row(
            "SELECT c.owner_id = $2, c.invite_model, c.type IS NOT NULL, \
                    EXISTS (SELECT 1 FROM hatchat.members m WHERE m.channel_id = c.id AND m.user_id = $2) \
               FROM hatchat.channels c WHERE c.id = $1 AND hatchat.is_live(c.expires_at)",
            &[channel_id.into(), pg_uuid(caller.id()).into()],
            |row| {
                let owner = row.get::<bool>(1)?.unwrap_or(false);
                let model = row.get::<String>(2)?.unwrap_or_default();
                let is_room = row.get::<bool>(3)?.unwrap_or(false);
                let member = row.get::<bool>(4)?.unwrap_or(false);
                Ok((owner, model, is_room, member))
            },
        )?;
        let (owner, model, is_room, member) = found.ok_or_else(|| channel_not_found(channel_id))?;
        let role = match (caller.is_system(), owner, member) {
            (true, _, _) => Role::System,
            (false, true, _) => Role::Owner,
            (false, false, true) => Role::Member,
            (false, false, false) => Role::Stranger,
        };
        Ok(Self { id: channel_id.to_string(), model: InviteModel::parse(&model)?, role, is_room })
    }

    /// Reading and posting: members, and the system.
    pub fn require_member(&self) -> Result<()> {
        match self.role {
            Role::Stranger => Err(members_only(&self.id)),
            _ => Ok(()),
        }
    }

    /// Posting: members, and the system, but not to a room. A room takes only what the room
    /// functions write: their `from` is the server's word, so no other write path (send, batch,
    /// edit, reaction) may reach one. Deletes still do.
    pub fn require_poster(&self) -> Result<()> {
        self.require_member()?;
        if self.is_room {
            Err(rooms_take_room_posts(&self.id))
        } else {
            Ok(())
        }
    }

    pub fn require_owner(&self) -> Result<()> {
        match self.role {
            Role::Owner => Ok(()),
            _ => Err(HatchatError::Forbidden(format!("only the owner of channel {:?} may do this", self.id))),
        }
    }
}

pub fn channel_not_found(id: &str) -> HatchatError {
    HatchatError::NotFound(format!("channel {id:?} not found"))
}

pub fn rooms_take_room_posts(id: &str) -> HatchatError {
    HatchatError::Conflict(format!(
        "channel {id:?} is a room: only the room functions write to it (post_room_message; HTTP: POST \
         /chat/v1/auth/{{token}}/rooms/{{id}})"
    ))
}

pub fn members_only(id: &str) -> HatchatError {
    HatchatError::Forbidden(format!("only members of channel {id:?} may do this"))
}

/// Deletes channels with their members (a foreign key cascades); `only_expired` re-checks expiry
/// under the row lock, so a channel a post refreshed meanwhile stays. The ids deleted. Expiry is
/// spelled out rather than `NOT hatchat.is_live(c.expires_at)`: Citus refuses a STABLE function of
/// a column in the WHERE of a multi-shard write (it would have to run on the shards).
const DELETE_CHANNELS: &str = "\
    DELETE FROM hatchat.channels c WHERE c.id = ANY($1) AND (NOT $2 OR c.expires_at <= now()) \
    RETURNING c.id";

/// Deletes the messages of channels that are gone (messages have no foreign key: see schema.sql),
/// with their reactions (keyed by seq: a new channel of the same id must not inherit them).
const DELETE_MESSAGES: &str = "\
    WITH reactions AS (DELETE FROM hatchat.reactions WHERE channel_id = ANY($1)) \
    DELETE FROM hatchat.messages WHERE channel_id = ANY($1)";

/// Who was present on a channel, and its recent joins, leaves and typing, go with it: a channel made
/// again under the id must tell its members nothing of the old one's (unlogged tables of their
/// own, src/presence.rs, so a statement apart from the channel's tables).
const DELETE_PRESENCE: &str = "\
    WITH ephemera AS (DELETE FROM hatchat.ephemera WHERE channel_id = ANY($1)) \
    DELETE FROM hatchat.presence WHERE channel_id = ANY($1)";

/// The one way channels are deleted (by their owner, expired, with their owner's account), with
/// their messages, and announced (waiters on them find them gone). The messages go in a statement
/// of their own: a send that held a channel's counter row while this waited for it commits its
/// message before the channel row goes, and only a statement begun after that wait (a fresh
/// snapshot) sees that message to delete it.
pub fn delete_channels(ids: &[String], only_expired: bool) -> Result<Vec<String>> {
    let gone = db::column::<String>(DELETE_CHANNELS, &[ids.to_vec().into(), only_expired.into()])?;
    if !gone.is_empty() {
        clear_leftovers(&gone)?;
        gone.iter().try_for_each(|id| announce::channel(id))?;
    }
    Ok(gone)
}

/// Deletes what channels of `ids` leave behind: their messages, presence and ephemera. Run when
/// they are deleted, and before a channel or room is created under an id: no message of an earlier
/// channel of that id may survive into it (deletion removes them; this is the backstop that makes a
/// leftover harmless).
pub fn clear_leftovers(ids: &[String]) -> Result<()> {
    db::execute(DELETE_MESSAGES, &[ids.to_vec().into()])?;
    db::execute(DELETE_PRESENCE, &[ids.to_vec().into()])?;
    Ok(())
}

/// Removes `id` if it exists but has expired, so the id is free again (an expired channel behaves
/// as a missing one, also when it is created anew).
pub fn drop_if_expired(id: &str) -> Result<()> {
    delete_channels(&[id.to_string()], true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_models_decide_who_may_add_whom() {
        use InviteModel as M;
        use Role as R;
        // (model, inviter, inviting self) -> allowed
        let table = [
            (M::Owner, R::Owner, false, true),
            (M::Owner, R::Member, false, false),
            (M::Owner, R::Stranger, true, false),
            (M::Owner, R::System, false, true),
            (M::Member, R::Owner, false, true),
            (M::Member, R::Member, false, true),
            (M::Member, R::Stranger, true, false),
            (M::Member, R::Stranger, false, false),
            (M::SelfJoin, R::Owner, false, true),
            (M::SelfJoin, R::Member, false, true),
            (M::SelfJoin, R::Stranger, true, true),
            (M::SelfJoin, R::Stranger, false, false),
        ];
        for (model, inviter, inviting_self, allowed) in table {
            let decided = model.may_add(inviter, inviting_self);
            assert_eq!(decided, allowed, "{model:?} {inviter:?} self={inviting_self}");
        }
    }

    #[test]
    fn invite_model_names_round_trip() {
        for name in ["owner", "member", "self"] {
            assert_eq!(InviteModel::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(InviteModel::parse("anyone").unwrap_err().sqlstate_code(), "22023");
    }

    #[test]
    fn channel_ids_are_bounded() {
        assert!(valid_channel_id("triominos/v1/alice/bob").is_ok());
        assert!(valid_channel_id(&"x".repeat(200)).is_ok());
        for bad in ["", &"x".repeat(201), "new\nline"] {
            assert_eq!(valid_channel_id(bad).unwrap_err().sqlstate_code(), "22023");
        }
    }
}
