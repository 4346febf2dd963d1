//! Presence and typing: who has a live stream on a channel, and who is typing there. Neither is a
//! message (no seq, no unread count, no notification) and neither is kept: the tables are UNLOGGED
//! (sql/schema.sql), so a heartbeat writes no WAL beyond its commit record, and a crash or a
//! failover empties them.
//!
//! - Gateways say who holds streams, in batches (`presence_sync`), and renew their lease in the
//!   same call. A gateway that stops renewing loses its rows at the next sync of any gateway.
//! - A user is present on a channel while any live lease holds a row of theirs, and their presence
//!   is not hidden. Joins and leaves are written where that changes, and typing where a member
//!   types, into `hatchat.ephemera`, which streams read on the channel's presence wake-up
//!   (`channel_ephemera`, per gateway feed). Both announce `announce::presence`, a key apart from
//!   the channel's messages.
//! - Members only; a muted member's typing goes nowhere; nobody is shown a user they blocked.
//!
//! Only the gateway's role may call `presence_sync` and `channel_ephemera`: they trust the ids they
//! are given, as `channel_window` does.

use crate::access::{valid_channel_id, Access};
use crate::announce;
use crate::auth;
use crate::db::{self, pg_uuid, Jsonb};
use crate::error::{required, HatchatError, Result, SqlResult};
use pgrx::prelude::*;
use std::collections::BTreeSet;

/// How long a typing indicator lasts unless renewed; clients hide it after this.
pub const TYPING_SECONDS: i32 = 6;
/// How long joins, leaves and typing stay readable (a stream's feed reads them within moments).
const EPHEMERA_SECONDS: i32 = 15;

/// One typing at a time per user and channel, so two at once cannot both pass the limit below.
const ONE_TYPIST: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2::text, 29))";
/// The channel's events older than what streams read: typing keeps the table small also where no
/// gateway syncs (a deployment that uses the SQL API alone).
const PURGE_CHANNEL: &str = "\
    DELETE FROM hatchat.ephemera WHERE channel_id = $1 AND at < now() - $2 * interval '1 second'";
/// Typing is recorded at most once a second per user and channel. A muted member's typing is
/// recorded as withheld: it is limited the same (a shadow mute is not told) and shown to nobody.
const TYPE: &str = "\
    INSERT INTO hatchat.ephemera (channel_id, kind, user_id) \
    SELECT $1, CASE WHEN $3 THEN 'withheld' ELSE 'typing' END, $2 \
     WHERE NOT EXISTS (SELECT 1 FROM hatchat.ephemera e \
                        WHERE e.channel_id = $1 AND e.user_id = $2 AND e.kind IN ('typing', 'withheld') \
                          AND e.at > now() - interval '1 second') \
    RETURNING jsonb_build_object('channelId', channel_id, 'userId', user_id, \
                                 'until', hatchat.iso_time(at + $4 * interval '1 second'))";

/// Tell the channel's other members that the caller is typing (for `TYPING_SECONDS`). Members
/// only; refused for a banned user, one who disabled chat, and the server secret; at most once a
/// second per channel (53400). Nothing is stored as a message.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn typing(token: Option<&str>, channel_id: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let user = caller.user()?.id;
    caller.may_post()?;
    let channel = valid_channel_id(required(channel_id, "channelId")?)?;
    Access::load(channel, &caller)?.require_member()?;
    db::execute(ONE_TYPIST, &[channel.into(), pg_uuid(user).into()])?;
    db::execute(PURGE_CHANNEL, &[channel.into(), EPHEMERA_SECONDS.into()])?;
    let args = [channel.into(), pg_uuid(user).into(), caller.is_muted().into(), TYPING_SECONDS.into()];
    let answer = db::first::<Jsonb>(TYPE, &args)?
        .ok_or_else(|| HatchatError::TooOften("typing is sent at most once a second per channel".into()))?;
    if !caller.is_muted() {
        announce::presence(channel)?;
    }
    Ok(answer)
}

/// Who is present, from the live leases' rows (local tables: on a cluster, they stay on the
/// coordinator, and the channel's tables are asked with the ids as arrays).
const PRESENT: &str = "\
    SELECT coalesce(array_agg(s.user_id ORDER BY s.since, s.user_id), '{}'), \
           coalesce(array_agg(s.since ORDER BY s.since, s.user_id), '{}') \
      FROM (SELECT p.user_id, min(p.since) AS since \
              FROM hatchat.presence p JOIN hatchat.gateway_leases g ON g.gateway_id = p.gateway_id \
             WHERE p.channel_id = $1 AND g.expires_at > now() GROUP BY p.user_id) s";
const MEMBERS_AMONG: &str = "\
    SELECT coalesce(array_agg(m.user_id), '{}') FROM hatchat.members m \
     WHERE m.channel_id = $1 AND m.user_id = ANY($2)";
const BLOCKED_AMONG: &str = "\
    SELECT coalesce(array_agg(b.blocked_user_id), '{}') FROM hatchat.blocks b \
     WHERE b.user_id = $1 AND b.blocked_user_id = ANY($2)";
const PRESENCE_JSON: &str = "\
    SELECT coalesce(jsonb_agg(jsonb_build_object('userId', u.id, 'username', u.username, \
                                                 'since', hatchat.iso_time(s.since)) ORDER BY s.ord), '[]') \
      FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY s(id, since, ord) \
      JOIN hatchat.users u ON u.id = s.id \
     WHERE NOT u.presence_hidden AND u.id = ANY($3) AND NOT u.id = ANY($4)";

/// `[{userId, username, since}]`: the channel's members with a live stream on it on any gateway,
/// longest present first. Members only. Users who hide their presence, and users the caller
/// blocked, are left out.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn channel_presence(token: Option<&str>, channel_id: Option<&str>) -> SqlResult<Jsonb> {
    let caller = auth::authenticate(token)?;
    let channel = valid_channel_id(required(channel_id, "channelId")?)?;
    Access::load(channel, &caller)?.require_member()?;
    let (users, since): (Vec<pgrx::Uuid>, Vec<pgrx::datum::TimestampWithTimeZone>) =
        db::row(PRESENT, &[channel.into()], |row| {
            Ok((row.get(1)?.unwrap_or_default(), row.get(2)?.unwrap_or_default()))
        })?
        .unwrap_or_default();
    let members = db::one::<Vec<pgrx::Uuid>>(MEMBERS_AMONG, &[channel.into(), users.clone().into()])?;
    let blocked =
        db::one::<Vec<pgrx::Uuid>>(BLOCKED_AMONG, &[pg_uuid(caller.id()).into(), users.clone().into()])?;
    let args = [users.into(), since.into(), members.into(), blocked.into()];
    Ok(db::one::<Jsonb>(PRESENCE_JSON, &args)?)
}

/// Whether others see the caller present (they do by default). Hiding is a leave on every channel
/// where the caller is present, showing again a join: written as `hide` and `show`, which streams
/// are told whatever the setting is now, while the joins and leaves of a hidden user are kept from
/// them when read (`channel_ephemera`). So no lock is shared with the gateways' syncs: a sync that
/// wrote a join while its user hid is held back when read, and a user holding a transaction open
/// holds up nobody else. `self_id`, when given (the
/// gateway's `/users/{id}/presence`), must be the caller.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_presence_hidden(
    token: Option<&str>,
    hidden: Option<bool>,
    self_id: default!(Option<pgrx::Uuid>, "NULL"),
) -> SqlResult<Jsonb> {
    let user = auth::require_self(token, self_id)?.id;
    let hidden = required(hidden, "hidden")?;
    let changed = db::execute(
        "UPDATE hatchat.users SET presence_hidden = $2 WHERE id = $1 AND presence_hidden <> $2",
        &[pg_uuid(user).into(), hidden.into()],
    )? > 0;
    if changed {
        let channels = db::column::<String>(
            "INSERT INTO hatchat.ephemera (channel_id, kind, user_id) \
             SELECT DISTINCT p.channel_id, CASE WHEN $2 THEN 'hide' ELSE 'show' END, p.user_id \
               FROM hatchat.presence p WHERE p.user_id = $1 RETURNING channel_id",
            &[pg_uuid(user).into(), hidden.into()],
        )?;
        announce_presence(channels)?;
    }
    let answer = serde_json::json!({"userId": user.to_string(), "presenceHidden": hidden});
    Ok(Jsonb::from_text(&answer.to_string())?)
}

fn announce_presence(channels: impl IntoIterator<Item = String>) -> Result<()> {
    for channel in channels.into_iter().collect::<BTreeSet<_>>() {
        announce::presence(&channel)?;
    }
    Ok(())
}

/// One transaction at a time changes presence: whether a change is a join or a leave depends on
/// the rows of every gateway, so two gateways' changes to one user must not pass each other.
const SERIALIZE: &str = "SELECT pg_advisory_xact_lock(8386051539313706401)";
/// Renews the gateway's lease; true when it held one (false: new, or the database lost it). The
/// clock, not the transaction's start: a sync that waited for the lock renews from when it runs.
const RENEW: &str = "\
    INSERT INTO hatchat.gateway_leases AS g (gateway_id, expires_at) \
    VALUES ($1, clock_timestamp() + $2 * interval '1 second') \
    ON CONFLICT (gateway_id) DO UPDATE SET expires_at = EXCLUDED.expires_at \
    RETURNING xmax <> 0";
/// Rows of gateways whose lease ran out, and of this gateway's leaves (or, when it sends all it
/// holds, every row of its that it no longer holds).
const REMOVE: &str = "\
    WITH dead AS (DELETE FROM hatchat.gateway_leases WHERE expires_at <= clock_timestamp() RETURNING gateway_id) \
    DELETE FROM hatchat.presence p \
     WHERE p.gateway_id IN (SELECT gateway_id FROM dead) \
        OR (p.gateway_id = $1 AND ((p.channel_id, p.user_id) IN (SELECT * FROM unnest($2::text[], $3::uuid[])) \
            OR ($6 AND (p.channel_id, p.user_id) NOT IN (SELECT * FROM unnest($4::text[], $5::uuid[]))))) \
    RETURNING p.channel_id, p.user_id";
const ADD: &str = "\
    INSERT INTO hatchat.presence (channel_id, user_id, gateway_id) \
    SELECT j.c, j.u, $3 FROM unnest($1::text[], $2::uuid[]) j(c, u) \
    ON CONFLICT DO NOTHING RETURNING channel_id, user_id";
/// A removed row is a leave when no row of its user on the channel is left; an added one a join
/// when no other gateway holds one and none was removed just now (a user moving from a gateway
/// that died to this one stays). A hidden user's are written too, and kept from streams when read.
const CHANGES: &str = "\
    INSERT INTO hatchat.ephemera (channel_id, kind, user_id) \
    SELECT e.c, e.kind, e.u FROM ( \
        SELECT r.c, 'leave' AS kind, r.u FROM unnest($1::text[], $2::uuid[]) r(c, u) \
         WHERE NOT EXISTS (SELECT 1 FROM hatchat.presence p WHERE p.channel_id = r.c AND p.user_id = r.u) \
        UNION \
        SELECT a.c, 'join', a.u FROM unnest($3::text[], $4::uuid[]) a(c, u) \
         WHERE NOT EXISTS (SELECT 1 FROM hatchat.presence p \
                            WHERE p.channel_id = a.c AND p.user_id = a.u AND p.gateway_id <> $5) \
           AND (a.c, a.u) NOT IN (SELECT * FROM unnest($1::text[], $2::uuid[]))) e \
    RETURNING channel_id";
const PURGE: &str = "DELETE FROM hatchat.ephemera WHERE at < now() - $1 * interval '1 second'";

/// Pairs of (channel, user), as a statement's two arrays.
#[derive(Default)]
struct Pairs {
    channels: Vec<String>,
    users: Vec<pgrx::Uuid>,
}

impl Pairs {
    fn of(channels: Option<Vec<Option<String>>>, users: Option<Vec<Option<pgrx::Uuid>>>) -> Result<Self> {
        let channels: Option<Vec<String>> = channels.unwrap_or_default().into_iter().collect();
        let users: Option<Vec<pgrx::Uuid>> = users.unwrap_or_default().into_iter().collect();
        match (channels, users) {
            (Some(channels), Some(users)) if channels.len() == users.len() => Ok(Pairs { channels, users }),
            _ => Err(HatchatError::invalid("channel ids and user ids must pair up, without NULLs")),
        }
    }

    fn returned(sql: &'static str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<Self> {
        db::query(sql, args, |rows| {
            let mut pairs = Pairs::default();
            for row in rows {
                if let (Some(channel), Some(user)) = (row.get::<String>(1)?, row.get::<pgrx::Uuid>(2)?) {
                    pairs.channels.push(channel);
                    pairs.users.push(user);
                }
            }
            Ok(pairs)
        })
    }
}

/// A gateway's presence changes and lease renewal, in one call: `joins` and `leaves` are (channel,
/// user) pairs of streams it opened and closed; with `whole`, the joins are everything it holds,
/// and any other row of its goes. Sweeps gateways whose lease ran out and purges old ephemera.
/// `{"held"}`: false when the gateway held no lease before (it started, or the database lost the
/// tables in a restart or a failover): it should then send everything it holds, with `whole`.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)]
fn presence_sync(
    gateway_id: Option<pgrx::Uuid>,
    join_channels: Option<Vec<Option<String>>>,
    join_users: Option<Vec<Option<pgrx::Uuid>>>,
    leave_channels: Option<Vec<Option<String>>>,
    leave_users: Option<Vec<Option<pgrx::Uuid>>>,
    whole: Option<bool>,
    lease_seconds: Option<i32>,
) -> SqlResult<Jsonb> {
    let gateway = required(gateway_id, "gateway id")?;
    let lease = required(lease_seconds, "lease seconds")?;
    if !(1..=3600).contains(&lease) {
        return Err(HatchatError::invalid("the lease is 1 to 3600 seconds").into());
    }
    let (joins, leaves) = (Pairs::of(join_channels, join_users)?, Pairs::of(leave_channels, leave_users)?);
    let whole = whole.unwrap_or(false);
    db::execute(SERIALIZE, &[])?;
    let held = db::one::<bool>(RENEW, &[gateway.into(), lease.into()])?;
    let args = [
        gateway.into(),
        leaves.channels.into(),
        leaves.users.into(),
        joins.channels.clone().into(),
        joins.users.clone().into(),
        whole.into(),
    ];
    let removed = Pairs::returned(REMOVE, &args)?;
    let added = Pairs::returned(ADD, &[joins.channels.into(), joins.users.into(), gateway.into()])?;
    if !removed.users.is_empty() || !added.users.is_empty() {
        let args = [
            removed.channels.into(),
            removed.users.into(),
            added.channels.into(),
            added.users.into(),
            gateway.into(),
        ];
        announce_presence(db::column::<String>(CHANGES, &args)?)?;
    }
    db::execute(PURGE, &[EPHEMERA_SECONDS.into()])?;
    Ok(Jsonb::from_text(&serde_json::json!({ "held": held }).to_string())?)
}

const EVENTS: &str = "\
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'kind', e.kind, 'userId', e.user_id, \
                              'at', hatchat.iso_time(e.at)) \
                   || CASE WHEN e.kind = 'typing' \
                           THEN jsonb_build_object('until', hatchat.iso_time(e.at + $2 * interval '1 second')) \
                           ELSE '{}' END ORDER BY e.id), '[]'), \
           coalesce(array_agg(DISTINCT e.user_id), '{}') \
      FROM hatchat.ephemera e \
     WHERE e.channel_id = $1 AND e.kind <> 'withheld' AND e.at > now() - $3 * interval '1 second'";
/// The events' users' names, and which of them hide their presence now.
const NAMES_AND_HIDDEN: &str = "\
    SELECT coalesce(jsonb_object_agg(u.id, u.username), '{}'), \
           coalesce(array_agg(u.id) FILTER (WHERE u.presence_hidden), '{}') \
      FROM hatchat.users u WHERE u.id = ANY($1)";
const BLOCKERS: &str = "\
    SELECT coalesce(jsonb_object_agg(b.blocked, b.blockers), '{}') \
      FROM (SELECT blocked_user_id AS blocked, jsonb_agg(user_id) AS blockers FROM hatchat.blocks \
             WHERE user_id = ANY($1) AND blocked_user_id = ANY($2) GROUP BY blocked_user_id) b";
/// Only events of users who are members now (a channel made again under an id, a member removed,
/// tell nothing); joins and leaves of users hidden now are held back; `hide` and `show` are a
/// leave and a join. `$5`: the members among the readers and the events' users, asked once;
/// `members` answers the readers among them (and the system user, who reads everywhere).
const EPHEMERA_JSON: &str = "\
    SELECT jsonb_build_object( \
        'events', (SELECT coalesce(jsonb_agg(CASE e->>'kind' \
                                               WHEN 'hide' THEN jsonb_set(e, '{kind}', '\"leave\"') \
                                               WHEN 'show' THEN jsonb_set(e, '{kind}', '\"join\"') \
                                               ELSE e END ORDER BY (e->>'id')::bigint), '[]') \
                     FROM jsonb_array_elements($1::jsonb) e \
                    WHERE (e->>'userId')::uuid = ANY($5) \
                      AND NOT (e->>'kind' IN ('join', 'leave') AND (e->>'userId')::uuid = ANY($6))), \
        'names', $2::jsonb, 'blockedBy', $3::jsonb, \
        'members', (SELECT coalesce(jsonb_agg(r.id), '[]') FROM unnest($4::uuid[]) r(id) \
                     WHERE r.id = '00000000-0000-0000-0000-000000000000'::uuid OR r.id = ANY($5)))";

/// `{"events": [{id, kind, userId, at, until?}], "names": {userId: username}, "blockedBy": {userId:
/// [reader ids who blocked them]}, "members": [reader ids who are members]}`: a channel's recent
/// joins, leaves and typing, for the readers `user_ids` of a gateway's feed. The gateway hands each
/// reader the events it has not seen, unless the reader blocked their user or is no member.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn channel_ephemera(channel_id: Option<&str>, user_ids: Option<Vec<Option<pgrx::Uuid>>>) -> SqlResult<Jsonb> {
    let channel = valid_channel_id(required(channel_id, "channelId")?)?;
    let readers: Vec<pgrx::Uuid> = user_ids.unwrap_or_default().into_iter().flatten().collect();
    let args = [channel.into(), TYPING_SECONDS.into(), EPHEMERA_SECONDS.into()];
    let (events, actors) = db::row(EVENTS, &args, |row| {
        Ok((row.get::<Jsonb>(1)?, row.get::<Vec<pgrx::Uuid>>(2)?.unwrap_or_default()))
    })?
    .unwrap_or_default();
    let events = events.ok_or_else(|| HatchatError::Internal("no ephemera array".into()))?;
    let (names, hidden) = db::row(NAMES_AND_HIDDEN, &[actors.clone().into()], |row| {
        Ok((row.get::<Jsonb>(1)?, row.get::<Vec<pgrx::Uuid>>(2)?.unwrap_or_default()))
    })?
    .unwrap_or_default();
    let names = names.ok_or_else(|| HatchatError::Internal("no names object".into()))?;
    let blockers = db::one::<Jsonb>(BLOCKERS, &[readers.clone().into(), actors.clone().into()])?;
    let everyone: Vec<pgrx::Uuid> = readers.iter().chain(&actors).copied().collect();
    let members = db::one::<Vec<pgrx::Uuid>>(MEMBERS_AMONG, &[channel.into(), everyone.into()])?;
    let args = [events.into(), names.into(), blockers.into(), readers.into(), members.into(), hidden.into()];
    Ok(db::one::<Jsonb>(EPHEMERA_JSON, &args)?)
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION hatchat.presence_sync(uuid, text[], uuid[], text[], uuid[], boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.presence_sync(uuid, text[], uuid[], text[], uuid[], boolean, integer) TO hatchat_gateway;
REVOKE EXECUTE ON FUNCTION hatchat.channel_ephemera(text, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_ephemera(text, uuid[]) TO hatchat_gateway;
"#,
    name = "presence_grants",
    requires = [presence_sync, channel_ephemera]
);
