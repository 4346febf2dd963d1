-- hatchat's tables and the JSON shapes the API returns. Runs first in CREATE EXTENSION (bootstrap),
-- before the Rust functions are created.
--
-- Ready to shard by channel (Citus): every per-channel table leads its primary key with
-- channel_id and points its foreign keys at channels(id); users is the one shared table (a
-- reference table on Citus). No global sequence: seq is per channel.

CREATE TABLE hatchat.users (
    id          uuid PRIMARY KEY,
    username    text NOT NULL,
    -- PEM as registered; NULL only for the system user, who can never sign anything.
    public_key  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Moderation: writes are refused until then (hatchat_admin or the server secret sets it).
    banned_until  timestamptz,
    -- Posts by a muted user answer as usual but are neither stored nor delivered.
    muted         boolean NOT NULL DEFAULT false,
    -- Set by the user: they cannot post and receive no notifications.
    chat_disabled boolean NOT NULL DEFAULT false,
    -- Whether other members see this user's read position (read receipts) in get_channel.
    read_receipts boolean NOT NULL DEFAULT true,
    -- A trusted issuer's user (src/auth/issuers.rs) signs in with that issuer's tokens, not a key.
    issuer        text,
    -- Whether others see this user present on channels (presence, src/presence.rs).
    presence_hidden boolean NOT NULL DEFAULT false,
    -- Each user signs in one way: with their key, through their issuer, or (the system) never.
    CONSTRAINT signs_in_one_way CHECK (CASE
        WHEN id = '00000000-0000-0000-0000-000000000000' THEN public_key IS NULL AND issuer IS NULL
        WHEN issuer IS NOT NULL THEN public_key IS NULL
        ELSE public_key IS NOT NULL END)
);
-- Usernames are unique ignoring case.
CREATE UNIQUE INDEX users_username_key ON hatchat.users (lower(username));

-- The ids of deleted users, kept for good: an id is never registered again, so nobody can become
-- the author of a deleted user's messages (which stay, under their id). Usernames are freed.
CREATE TABLE hatchat.deleted_users (
    id         uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- Trusted issuers: apps whose login signs their users in (src/auth/issuers.rs).
CREATE TABLE hatchat.issuers (
    iss             text PRIMARY KEY,
    audience        text NOT NULL,
    username_claim  text NOT NULL,
    jwks            jsonb NOT NULL,
    jwks_url        text,
    -- md5 of jwks as text: what a backend's parsed copy of the keys is checked against.
    keys_digest     text NOT NULL,
    keys_updated_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The reserved author of join/leave messages.
INSERT INTO hatchat.users (id, username, public_key)
VALUES ('00000000-0000-0000-0000-000000000000', 'system', NULL);

-- The channels' rules on values are domains, not CHECK constraints: PostgreSQL turns a table's
-- CHECK constraints into expressions at every statement that writes the table (every send's
-- counter UPDATE paid for three), while a domain's are cached per backend and checked only where
-- a value is assigned to the column.
CREATE DOMAIN hatchat.invite_model AS text
    CONSTRAINT invite_model_check CHECK (VALUE IN ('owner', 'member', 'self'));
CREATE DOMAIN hatchat.positive_integer AS integer CONSTRAINT positive_integer_check CHECK (VALUE > 0);
-- What an event row is (messages.kind), for the same reason: every send inserts a message.
CREATE DOMAIN hatchat.event_kind AS text
    CONSTRAINT event_kind_check CHECK (VALUE IN ('edit', 'delete', 'reaction'));

CREATE TABLE hatchat.channels (
    id           text PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    invite_model hatchat.invite_model NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The per-channel counter: every send bumps it in its own transaction (see messages/mod.rs).
    last_seq     bigint NOT NULL DEFAULT 0,
    last_at      timestamptz NOT NULL DEFAULT '-infinity',
    -- Rooms (the multi-room chat service) are channels with a type and a fixed member list.
    type         text,
    -- Retention: keep the newest max_messages; expire ttl_seconds after the last post or refresh.
    max_messages hatchat.positive_integer,
    ttl_seconds  hatchat.positive_integer,
    -- NULL: never. An expired channel is treated as missing at once and purged later.
    expires_at   timestamptz,
    -- Whether a post creates notifications for the other members (rooms do).
    notify_members boolean NOT NULL DEFAULT false,
    -- How many countable messages (a user's own posts: not system messages, not edit, delete or
    -- reaction events) the channel has had, bumped in the same UPDATE as last_seq. Unread counts
    -- are differences of this running count (see reads.rs), so a send stays O(1).
    counted      bigint NOT NULL DEFAULT 0
);
CREATE INDEX channels_owner_id ON hatchat.channels (owner_id);
CREATE INDEX channels_expires_at ON hatchat.channels (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE hatchat.members (
    channel_id text NOT NULL REFERENCES hatchat.channels (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    joined_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- How far this member has read (never moves backwards; a post of theirs moves it to that post)
    -- and the channel's `counted` as of that seq.
    read_seq   bigint NOT NULL DEFAULT 0,
    read_count bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
);
-- "My channels" and the cascade when a user is deleted.
CREATE INDEX members_user_id ON hatchat.members (user_id);

-- No foreign key to channels: its check is a query per inserted row, a quarter of a send's CPU
-- (measured: 165 -> 125 µs per send_message). Messages are only appended under their channel's
-- locked counter row, and deleted with their channel by access::delete_channels.
CREATE TABLE hatchat.messages (
    channel_id   text NOT NULL,
    seq          bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    -- No foreign key: a deleted user's messages stay (their username then reads as null).
    from_user_id uuid NOT NULL,
    payload      jsonb NOT NULL,
    -- The sender's own id for this send (idempotent retries): unique per (channel, sender).
    client_id    text,
    -- NULL for a message; 'edit', 'delete' or 'reaction' for an event about message `target`.
    -- Kept outside the payload, so no payload can pass for an event.
    kind         hatchat.event_kind,
    target       bigint,
    -- The channel's `counted` once this row was appended (see channels.counted).
    counted      bigint NOT NULL DEFAULT 0,
    -- A message's current state: the seq of its latest edit event, and whether it was deleted
    -- (then its payload and its edits' payloads are erased: JSON null).
    edit_seq     bigint,
    deleted      boolean NOT NULL DEFAULT false,
    CHECK ((kind IS NULL) = (target IS NULL)),
    PRIMARY KEY (channel_id, seq),
    -- createdAt strictly increases within a channel; the index serves `since` windows.
    UNIQUE (channel_id, created_at)
);
-- Idempotent sends: a retry finds the first send under the channel's counter lock.
CREATE UNIQUE INDEX messages_client_id ON hatchat.messages (channel_id, from_user_id, client_id)
    WHERE client_id IS NOT NULL;
-- The events about a message (its edits, to erase them; deletes after a read position, for unread).
CREATE INDEX messages_events ON hatchat.messages (channel_id, kind, target) WHERE kind IS NOT NULL;

-- One of each reaction per user and message: the current state that `fold` reports and `react`
-- checks; each change is also a 'reaction' event in the channel.
CREATE TABLE hatchat.reactions (
    channel_id text NOT NULL,
    seq        bigint NOT NULL,
    user_id    uuid NOT NULL,
    reaction   text NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id, reaction)
);

-- Who blocked whom: a blocked sender's posts notify nobody who blocked them. Keyed by the
-- blocking user (a per-user table, shardable by user).
CREATE TABLE hatchat.blocks (
    user_id         uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    blocked_user_id uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, blocked_user_id)
);

-- Each user's notification stream is ordered by a per-user counter bumped in the posting
-- transaction (the same construction as a channel's seq, for the same reason: a reader paging
-- with after_id never misses a notification that commits late). A notification stream belongs to
-- its user, so these tables are keyed by user_id (shardable by user).
CREATE TABLE hatchat.inboxes (
    user_id uuid PRIMARY KEY REFERENCES hatchat.users (id) ON DELETE CASCADE,
    last_id bigint NOT NULL DEFAULT 0,
    -- When the oldest notification still waiting to be forwarded was created (NULL: none waits;
    -- it may lie earlier than that one after retention or purging deleted older ones). Forwarding
    -- takes users in this order, a few notifications each, so finding who waits reads this
    -- table's small partial index instead of every pending notification. Set by fan_out in the
    -- row it updates anyway; recomputed, under this row's lock, when notifications are marked.
    pending_since timestamptz
);
CREATE INDEX inboxes_pending ON hatchat.inboxes (pending_since, user_id) WHERE pending_since IS NOT NULL;

CREATE TABLE hatchat.notifications (
    user_id      uuid NOT NULL REFERENCES hatchat.inboxes (user_id) ON DELETE CASCADE,
    id           bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    body         jsonb NOT NULL,
    -- The channel (room) whose message this is about, so purging the channel deletes it. No
    -- foreign key: notifications are keyed by user, channels by channel (sharded apart on Citus).
    channel_id   text,
    -- Set once the gateway forwarded it to HATCHAT_NOTIFY_URL.
    forwarded_at timestamptz,
    -- Set when the receiver refused it (4xx) or kept failing past the gateway's give-up time: it
    -- is no longer forwarded, and the user's next ones go on.
    undeliverable_at     timestamptz,
    undeliverable_reason text,
    -- The message (seq of channel_id) this notification is about, so that the message's delete
    -- erases the copy too (NULL in those made before 0.4.0).
    seq          bigint,
    PRIMARY KEY (user_id, id)
);
-- Each user's notifications still to forward, in order.
CREATE INDEX notifications_to_forward ON hatchat.notifications (user_id, id)
    WHERE forwarded_at IS NULL AND undeliverable_at IS NULL;
CREATE INDEX notifications_undeliverable ON hatchat.notifications (undeliverable_at, user_id, id)
    WHERE undeliverable_at IS NOT NULL;
CREATE INDEX notifications_channel_id ON hatchat.notifications (channel_id) WHERE channel_id IS NOT NULL;

-- The server secret, as a salted SHA-256 (the secret itself is never stored). One row at most.
CREATE TABLE hatchat.api_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    salt      bytea NOT NULL,
    hash      bytea NOT NULL,
    set_at    timestamptz NOT NULL DEFAULT now()
);

-- The secret wake-up keys are made with (hatchat_wire::wake::Secret): a NOTIFY can be heard by
-- any role allowed to LISTEN, and without this a key would be a plain hash of a guessable id
-- (`c:game/alice/bob`). 16 bytes from two random uuids (gen_random_uuid draws from PostgreSQL's
-- strong random source). Read by the extension, which owns it, and through hatchat.wake_secret()
-- by the gateway role. Not dumped: every install makes its own, and gateways read it at start.
CREATE TABLE hatchat.wake_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea NOT NULL CHECK (length(secret) = 16)
);
INSERT INTO hatchat.wake_secret (secret)
VALUES (substring(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) FROM 1 FOR 16));

-- Presence and typing (src/presence.rs): ephemeral, so UNLOGGED. Nothing here is WAL-logged
-- (a gateway's lease renewal writes only its transaction's commit record), and a crash restart or a
-- failover empties the tables: each gateway then finds its lease gone and sends what it holds
-- again. They stay on one node (the coordinator, on a Citus cluster), are not dumped, and are read
-- apart from the channel tables (ids pass between them as arrays).
--
-- A gateway holds a lease while it runs, renewed every few seconds; its rows die with it.
CREATE UNLOGGED TABLE hatchat.gateway_leases (
    gateway_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
-- Who has a live stream on a channel, per gateway: a user is present while any live lease holds a
-- row of theirs.
CREATE UNLOGGED TABLE hatchat.presence (
    channel_id text NOT NULL,
    user_id    uuid NOT NULL,
    gateway_id uuid NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id, gateway_id)
);
CREATE INDEX presence_gateway ON hatchat.presence (gateway_id);
-- What live streams are told and nothing stores: joins, leaves and typing, kept for seconds (the
-- lease renewals purge them). Streams read a channel's rows on its presence wake-up and skip the
-- ids they have seen, so the order in which rows commit does not matter.
CREATE UNLOGGED TABLE hatchat.ephemera (
    channel_id text NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    kind       text NOT NULL CHECK (kind IN ('join', 'leave', 'hide', 'show', 'typing', 'withheld')),
    user_id    uuid NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, id)
);

-- Backups (docs/operations.md, "Backups and restore"): pg_dump writes no row of a table that an
-- extension's script created unless the extension marks it, and a dump would otherwise hold only
-- `CREATE EXTENSION hatchat`. Every logged table here holds what cannot be made again (who exists, what
-- was said, who read what, who may not post), so every one is marked. The system user is the one
-- row CREATE EXTENSION makes itself: it is left out, so a restore does not insert it twice. There
-- is no sequence to mark: seqs and notification ids are the counters channels.last_seq and
-- inboxes.last_id, dumped with their rows. pg_dump orders the tables by their foreign keys.
SELECT pg_catalog.pg_extension_config_dump('hatchat.users',
                                           'WHERE id <> ''00000000-0000-0000-0000-000000000000''');
SELECT pg_catalog.pg_extension_config_dump('hatchat.channels', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.members', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.messages', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.reactions', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.blocks', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.inboxes', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.api_secret', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.deleted_users', '');
SELECT pg_catalog.pg_extension_config_dump('hatchat.issuers', '');

-- Roles (cluster-wide, so created only if missing): hatchat_admin may set the server secret and
-- moderate; hatchat_forwarder may read and mark notifications for forwarding (the gateway's role,
-- when it forwards); hatchat_gateway may read a channel's window for many readers at once
-- (channel_window, the gateway's shared read per wake-up).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_admin') THEN
        CREATE ROLE hatchat_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_forwarder') THEN
        CREATE ROLE hatchat_forwarder NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_gateway') THEN
        CREATE ROLE hatchat_gateway NOLOGIN;
    END IF;
END
$$;

-- Tables are reached only through the API functions (SECURITY DEFINER), which enforce the rules;
-- a role that may call them cannot bypass them by writing rows directly.
REVOKE ALL ON ALL TABLES IN SCHEMA hatchat FROM PUBLIC;
GRANT USAGE ON SCHEMA hatchat TO PUBLIC;

-- The wake-up secret, in hex, for the gateway role (and admins): see hatchat.wake_secret. A body
-- in quotes, not a RETURN: on a Citus cluster a SECURITY DEFINER function with a SQL-standard
-- body failed to run ("syntax error at or near RETURN").
CREATE FUNCTION hatchat.wake_secret() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT encode(w.secret, 'hex') FROM hatchat.wake_secret w $$;
REVOKE EXECUTE ON FUNCTION hatchat.wake_secret() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.wake_secret() TO hatchat_gateway, hatchat_admin;

-- Timestamps leave as ISO-8601 UTC with microseconds: exactly what is stored, so a client can hand
-- a createdAt back as `since` and lose nothing.
CREATE FUNCTION hatchat.iso_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- The JSON helpers take columns, not whole rows: on Citus a query runs on a shard, whose rows are
-- of the shard's own type (hatchat.users_102008), for which a row-taking helper does not exist.
CREATE FUNCTION hatchat.user_json(id uuid, username text, public_key text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', id, 'username', username, 'publicKey', public_key);

CREATE FUNCTION hatchat.channel_json(id text, owner_id uuid, invite_model text, created_at timestamptz,
                                     max_messages integer, ttl_seconds integer, expires_at timestamptz,
                                     notify_members boolean) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', id, 'ownerId', owner_id, 'inviteModel', invite_model,
                              'createdAt', hatchat.iso_time(created_at),
                              'maxMessages', max_messages, 'ttlSeconds', ttl_seconds,
                              'expiresAt', hatchat.iso_time(expires_at), 'notifyMembers', notify_members);

CREATE FUNCTION hatchat.moderation_json(id uuid, banned_until timestamptz, muted boolean, chat_disabled boolean)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('userId', id, 'bannedUntil', hatchat.iso_time(banned_until),
                              'muted', muted, 'chatDisabled', chat_disabled);

-- Whether a channel is live, from its expires_at: an expired one behaves as missing from the
-- moment it expires.
CREATE FUNCTION hatchat.is_live(expires_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN expires_at IS NULL OR expires_at > now();

-- t + i computed in UTC: for intervals of seconds (all hatchat adds) the same instant as `t + i`,
-- but IMMUTABLE (`t + i` is STABLE: months and days depend on the session's time zone). Citus
-- refuses STABLE functions applied to columns in an UPDATE of a distributed table ("STABLE
-- functions used in UPDATE queries cannot be called with column references"): UPDATEs that move
-- a column's time (last_at, expires_at) use this instead.
CREATE FUNCTION hatchat.add_interval(t timestamptz, i interval) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((t AT TIME ZONE 'UTC') + i) AT TIME ZONE 'UTC';

-- A channel's expiry after a send at `now`: `now` + its TTL, unless the stored expiry is already
-- within 1% of the TTL (a minute at most) of that, when it stays as it is. expires_at is indexed,
-- so a changed value makes every send's counter update a non-HOT update that rewrites the row's
-- index entries; this way a busy channel with a TTL keeps HOT updates, and lives at least 99% of
-- its TTL after its last post.
CREATE FUNCTION hatchat.refreshed_expiry(expires_at timestamptz, ttl_seconds integer, now timestamptz)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN expires_at > hatchat.add_interval(now, ttl_seconds * interval '1 second'
                                  - least(ttl_seconds * interval '10 milliseconds', interval '1 minute'))
                THEN expires_at
                ELSE hatchat.add_interval(now, ttl_seconds * interval '1 second') END;

-- What a send answers: alone or in a batch, the first time or retried with its client id.
CREATE FUNCTION hatchat.sent_json(channel_id text, seq bigint, created_at timestamptz, from_user_id uuid)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('channelId', channel_id, 'seq', seq,
                              'createdAt', hatchat.iso_time(created_at), 'fromUserId', from_user_id);

-- An event also names its kind and target (`event`, `target`), a send with a client id its
-- `clientId`; those keys are absent otherwise.
CREATE FUNCTION hatchat.message_json(seq bigint, created_at timestamptz, from_user_id uuid, username text,
                                     payload jsonb, kind text, target bigint, client_id text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('seq', seq, 'createdAt', hatchat.iso_time(created_at),
                              'fromUserId', from_user_id, 'username', username,
                              'payload', payload)
           || jsonb_strip_nulls(jsonb_build_object('event', kind, 'target', target,
                                                   'clientId', client_id));

-- What list_channels and get_channel add for the caller: the channel's last seq, the caller's read
-- position (NULL: not a member) and unread count. Unread: the channel's countable messages since
-- the read position (`counted - read_count`), less those deleted since (`deleted_since`: each
-- delete event after the read position names one countable message; the caller counts them in
-- its own query, which Citus runs on the channel's shard — a helper reading messages itself could
-- not run there). Their own posts are never among them (a post moves its sender's read position to
-- itself). O(deletes after the read position), never O(messages). Messages removed by retention
-- still count until read.
CREATE FUNCTION hatchat.read_state_json(last_seq bigint, read_seq bigint, counted bigint, read_count bigint,
                                        deleted_since bigint) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('lastSeq', last_seq, 'readSeq', read_seq,
                              'unread', CASE WHEN read_seq IS NOT NULL
                                             THEN greatest(0, counted - read_count - deleted_since) END);
