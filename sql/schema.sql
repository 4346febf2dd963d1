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
    CONSTRAINT only_system_has_no_key
        CHECK ((public_key IS NULL) = (id = '00000000-0000-0000-0000-000000000000'))
);
-- Usernames are unique ignoring case.
CREATE UNIQUE INDEX users_username_key ON hatchat.users (lower(username));

-- The reserved author of join/leave messages.
INSERT INTO hatchat.users (id, username, public_key)
VALUES ('00000000-0000-0000-0000-000000000000', 'system', NULL);

CREATE TABLE hatchat.channels (
    id           text PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    invite_model text NOT NULL CHECK (invite_model IN ('owner', 'member', 'self')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The per-channel counter: every send bumps it in its own transaction (see messages.rs).
    last_seq     bigint NOT NULL DEFAULT 0,
    last_at      timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX channels_owner_id ON hatchat.channels (owner_id);

CREATE TABLE hatchat.members (
    channel_id text NOT NULL REFERENCES hatchat.channels (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES hatchat.users (id) ON DELETE CASCADE,
    joined_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (channel_id, user_id)
);
-- "My channels" and the cascade when a user is deleted.
CREATE INDEX members_user_id ON hatchat.members (user_id);

CREATE TABLE hatchat.messages (
    channel_id   text NOT NULL REFERENCES hatchat.channels (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    -- No foreign key: a deleted user's messages stay (their username then reads as null).
    from_user_id uuid NOT NULL,
    payload      jsonb NOT NULL,
    PRIMARY KEY (channel_id, seq),
    -- createdAt strictly increases within a channel; the index serves `since` windows.
    UNIQUE (channel_id, created_at)
);

-- Tables are reached only through the API functions (SECURITY DEFINER), which enforce the rules;
-- a role that may call them cannot bypass them by writing rows directly.
REVOKE ALL ON ALL TABLES IN SCHEMA hatchat FROM PUBLIC;
GRANT USAGE ON SCHEMA hatchat TO PUBLIC;

-- Timestamps leave as ISO-8601 UTC with microseconds: exactly what is stored, so a client can hand
-- a createdAt back as `since` and lose nothing.
CREATE FUNCTION hatchat.iso_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

CREATE FUNCTION hatchat.user_json(u hatchat.users) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', u.id, 'username', u.username, 'publicKey', u.public_key);

CREATE FUNCTION hatchat.channel_json(c hatchat.channels) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', c.id, 'ownerId', c.owner_id, 'inviteModel', c.invite_model,
                              'createdAt', hatchat.iso_time(c.created_at));

CREATE FUNCTION hatchat.message_json(m hatchat.messages, username text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('seq', m.seq, 'createdAt', hatchat.iso_time(m.created_at),
                              'fromUserId', m.from_user_id, 'username', username,
                              'payload', m.payload);
