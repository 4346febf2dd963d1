-- hatchat 0.1.0 -> 0.2.0, run by `ALTER EXTENSION hatchat UPDATE` (or `... UPDATE TO '0.2.0'`).
--
-- pgrx writes each release's install script (hatchat--<version>.sql, from the code); it cannot
-- write upgrade scripts, so each schema or function change adds its statements here by hand, in
-- the order the change was made. The rule for contributors (README, "Upgrading"): a change that
-- alters what `CREATE EXTENSION hatchat` makes also lands here, and scripts/test-upgrade.sh checks
-- that 0.1.0 updated by this script is the same database, object for object, as 0.2.0 installed
-- afresh, and that everything written before reads back the same after.
--
-- New functions are created as pgrx's install script creates them (MODULE_PATHNAME and the
-- wrapper's symbol), and API functions are then given to hatchat_owner as sql/finalize.sql does.
-- A function whose arguments change is dropped and created again (CREATE OR REPLACE cannot change
-- a signature); its grants and settings are restated. A new column goes at the end of its table
-- in sql/schema.sql too, where ALTER TABLE ... ADD COLUMN puts it.

\echo Use "ALTER EXTENSION hatchat UPDATE" to load this file. \quit

-- ===== Chat semantics (issue 17): idempotent sends, read positions, edits, deletes, reactions =====

ALTER TABLE hatchat.users ADD COLUMN read_receipts boolean NOT NULL DEFAULT true;
ALTER TABLE hatchat.channels ADD COLUMN counted bigint NOT NULL DEFAULT 0;
ALTER TABLE hatchat.members
    ADD COLUMN read_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN read_count bigint NOT NULL DEFAULT 0;
ALTER TABLE hatchat.messages
    ADD COLUMN client_id text,
    ADD COLUMN kind text CHECK (kind IN ('edit', 'delete', 'reaction')),
    ADD COLUMN target bigint,
    ADD COLUMN counted bigint NOT NULL DEFAULT 0,
    ADD COLUMN edit_seq bigint,
    ADD COLUMN deleted boolean NOT NULL DEFAULT false,
    ADD CHECK ((kind IS NULL) = (target IS NULL));
CREATE UNIQUE INDEX messages_client_id ON hatchat.messages (channel_id, from_user_id, client_id)
    WHERE client_id IS NOT NULL;
CREATE INDEX messages_events ON hatchat.messages (channel_id, kind, target) WHERE kind IS NOT NULL;

CREATE TABLE hatchat.reactions (
    channel_id text NOT NULL,
    seq        bigint NOT NULL,
    user_id    uuid NOT NULL,
    reaction   text NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id, reaction)
);
REVOKE ALL ON hatchat.reactions FROM PUBLIC;
ALTER TABLE hatchat.reactions OWNER TO hatchat_owner;

-- Existing history: every message so far is a user's post or a system message (no events yet).
-- The running counts are what they would be had the messages been sent by 0.2.0, and every member
-- has read everything: a release that starts counting should not call old history unread.
UPDATE hatchat.messages m
   SET counted = n.counted
  FROM (SELECT channel_id, seq,
               count(*) FILTER (WHERE from_user_id <> '00000000-0000-0000-0000-000000000000')
                   OVER (PARTITION BY channel_id ORDER BY seq) AS counted
          FROM hatchat.messages) n
 WHERE m.channel_id = n.channel_id AND m.seq = n.seq;
UPDATE hatchat.channels c
   SET counted = coalesce((SELECT max(m.counted) FROM hatchat.messages m WHERE m.channel_id = c.id), 0);
UPDATE hatchat.members mb
   SET read_seq = c.last_seq, read_count = c.counted
  FROM hatchat.channels c
 WHERE c.id = mb.channel_id;

CREATE OR REPLACE FUNCTION hatchat.message_json(m hatchat.messages, username text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('seq', m.seq, 'createdAt', hatchat.iso_time(m.created_at),
                              'fromUserId', m.from_user_id, 'username', username,
                              'payload', m.payload)
           || jsonb_strip_nulls(jsonb_build_object('event', m.kind, 'target', m.target,
                                                   'clientId', m.client_id));

CREATE FUNCTION hatchat.unread(c hatchat.channels, m hatchat.members) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN m.user_id IS NOT NULL THEN
        greatest(0, c.counted - m.read_count
                    - (SELECT count(*) FROM hatchat.messages d
                        WHERE d.channel_id = c.id AND d.kind = 'delete' AND d.target > m.read_seq))
    END;

CREATE FUNCTION hatchat.read_state_json(c hatchat.channels, me hatchat.members) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('lastSeq', c.last_seq, 'readSeq', me.read_seq, 'unread', hatchat.unread(c, me));

-- Sends take an optional client id; get_messages can fold.
DROP FUNCTION hatchat.send_message(text, text, jsonb);
CREATE FUNCTION hatchat.send_message(
    "token" text, "channel_id" text, "payload" jsonb, "client_id" text DEFAULT NULL
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'send_message_wrapper';
ALTER FUNCTION hatchat.send_message(text, text, jsonb, text) SET plan_cache_mode = force_generic_plan;

DROP FUNCTION hatchat.send_message_text(text, text, text);
CREATE FUNCTION hatchat.send_message_text(
    "token" text, "channel_id" text, "payload_text" text, "client_id" text DEFAULT NULL
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'send_message_text_wrapper';
ALTER FUNCTION hatchat.send_message_text(text, text, text, text) SET plan_cache_mode = force_generic_plan;

DROP FUNCTION hatchat.get_messages(text, text, text, text, integer, bigint);
CREATE FUNCTION hatchat.get_messages(
    "token" text, "channel_id" text, "since" text DEFAULT '-infinity', "until" text DEFAULT 'infinity',
    "row_limit" integer DEFAULT 20, "after_seq" bigint DEFAULT NULL, "fold" boolean DEFAULT false
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'get_messages_wrapper';

CREATE FUNCTION hatchat.mark_read("token" text, "channel_id" text, "seq" bigint) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'mark_read_wrapper';
CREATE FUNCTION hatchat.set_read_receipts("token" text, "enabled" boolean, "self_id" uuid DEFAULT NULL)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'set_read_receipts_wrapper';
CREATE FUNCTION hatchat.edit_message("token" text, "channel_id" text, "seq" bigint, "payload" jsonb)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'edit_message_wrapper';
CREATE FUNCTION hatchat.delete_message("token" text, "channel_id" text, "seq" bigint) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'delete_message_wrapper';
CREATE FUNCTION hatchat.react("token" text, "channel_id" text, "seq" bigint, "reaction" text)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'react_wrapper';
CREATE FUNCTION hatchat.unreact("token" text, "channel_id" text, "seq" bigint, "reaction" text)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'unreact_wrapper';

ALTER FUNCTION hatchat.send_message(text, text, jsonb, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.send_message_text(text, text, text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.get_messages(text, text, text, text, integer, bigint, boolean) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.mark_read(text, text, bigint) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.set_read_receipts(text, boolean, uuid) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.edit_message(text, text, bigint, jsonb) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.delete_message(text, text, bigint) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.react(text, text, bigint, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.unreact(text, text, bigint, text) OWNER TO hatchat_owner;

-- ===== Live streams (issue 16): one read of a channel's window per wake-up, for the gateway =====

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_gateway') THEN
        CREATE ROLE hatchat_gateway NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION hatchat.channel_window(
    "channel_id" text, "after_seq" bigint, "row_limit" integer, "user_ids" uuid[]
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'channel_window_wrapper';
REVOKE EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) TO hatchat_gateway;
ALTER FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) OWNER TO hatchat_owner;

CREATE FUNCTION hatchat.stream_caller("token" text) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'stream_caller_wrapper';
ALTER FUNCTION hatchat.stream_caller(text) OWNER TO hatchat_owner;

-- ---- citus (issue 15), part 1: helpers that also work on a Citus cluster -----------------------
-- The JSON helpers take columns instead of whole rows (a shard's rows are of another type), and
-- two helpers for statements Citus plans: is_live from the expiry column, add_interval (IMMUTABLE).
DROP FUNCTION hatchat.user_json(hatchat.users);
CREATE FUNCTION hatchat.user_json(id uuid, username text, public_key text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', id, 'username', username, 'publicKey', public_key);
DROP FUNCTION hatchat.moderation_json(hatchat.users);
CREATE FUNCTION hatchat.moderation_json(id uuid, banned_until timestamptz, muted boolean, chat_disabled boolean)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('userId', id, 'bannedUntil', hatchat.iso_time(banned_until),
                              'muted', muted, 'chatDisabled', chat_disabled);
CREATE FUNCTION hatchat.is_live(expires_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN expires_at IS NULL OR expires_at > now();
CREATE FUNCTION hatchat.add_interval(t timestamptz, i interval) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((t AT TIME ZONE 'UTC') + i) AT TIME ZONE 'UTC';
-- ---- end citus part 1 ---------------------------------------------------------------------------

-- ---- citus (issue 15), part 2: hatchat.distribute() and hatchat.drop_shards() (sql/citus.sql) --
-- Distributes hatchat's tables: users and api_secret become reference tables (a copy on every
-- node); channels, members, messages are sharded by channel id, colocated; inboxes, notifications,
-- blocks by user id, colocated. Works on an empty database and on one holding a single-node
-- hatchat's data (the rows move into the shards). Run once, as a superuser, on the coordinator of
-- a cluster whose workers are added; a second call only says so.
CREATE FUNCTION hatchat.distribute(shard_count integer DEFAULT 32) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    fks jsonb := '[]';
    tables text[] := ARRAY['hatchat.users', 'hatchat.api_secret', 'hatchat.channels', 'hatchat.members',
                           'hatchat.messages', 'hatchat.reactions', 'hatchat.inboxes', 'hatchat.notifications', 'hatchat.blocks'];
    fn regprocedure;
BEGIN
    IF shard_count IS NULL OR shard_count NOT BETWEEN 1 AND 64000 THEN
        RAISE EXCEPTION 'shard_count must be 1..64000, got %', shard_count USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'hatchat.distribute() needs Citus: CREATE EXTENSION citus first, on a cluster '
                        'whose workers are added (README, "Scale out")' USING ERRCODE = '55000';
    END IF;
    IF (SELECT groupid FROM pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'run hatchat.distribute() on the coordinator' USING ERRCODE = '55000';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary') THEN
        RAISE EXCEPTION 'no workers: add them with citus_add_node() first' USING ERRCODE = '55000';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'hatchat.users'::regclass) THEN
        RAISE NOTICE 'hatchat is already distributed';
        RETURN;
    END IF;
    -- One connection per node for the whole transaction: Citus requires it once a table with a
    -- foreign key to a reference table is changed in a transaction that distributed tables.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

    -- 1. Foreign keys off, on every node (kept to be added back in step 3). Citus refuses to
    -- distribute a table referencing a local one, and a local table referencing a new reference
    -- table is turned into a "Citus local table" whose new shell collides on the workers with
    -- their own copy (CREATE EXTENSION was propagated there). Citus never creates or alters the
    -- shells of an extension's tables itself, so the workers' copies lose their keys too.
    FOR fk IN SELECT c.conrelid::regclass::text AS tab, c.conname, pg_get_constraintdef(c.oid) AS def
                FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
               WHERE r.relnamespace = 'hatchat'::regnamespace AND c.contype = 'f'
               ORDER BY c.conrelid::regclass::text, c.conname LOOP
        fks := fks || jsonb_build_object('tab', fk.tab, 'name', fk.conname, 'def', fk.def);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
        PERFORM run_command_on_workers(format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', fk.tab, fk.conname));
    END LOOP;

    -- 2. Distribute; existing rows are copied into the shards. The tables stay the extension's, so
    -- DROP EXTENSION and upgrades still know them.
    PERFORM create_reference_table('hatchat.users');
    PERFORM create_reference_table('hatchat.api_secret');
    PERFORM create_distributed_table('hatchat.channels', 'id', shard_count => shard_count, colocate_with => 'none');
    PERFORM create_distributed_table('hatchat.members', 'channel_id', colocate_with => 'hatchat.channels');
    PERFORM create_distributed_table('hatchat.messages', 'channel_id', colocate_with => 'hatchat.channels');
    PERFORM create_distributed_table('hatchat.reactions', 'channel_id', colocate_with => 'hatchat.channels');
    PERFORM create_distributed_table('hatchat.inboxes', 'user_id', shard_count => shard_count, colocate_with => 'none');
    PERFORM create_distributed_table('hatchat.notifications', 'user_id', colocate_with => 'hatchat.inboxes');
    PERFORM create_distributed_table('hatchat.blocks', 'user_id', colocate_with => 'hatchat.inboxes');

    -- 3. The foreign keys back, one per statement (Citus refuses ADD CONSTRAINT with other
    -- subcommands); Citus creates them on the shards and the shells. All are of the kinds it
    -- supports: to the reference table users, or between colocated tables on their shard key.
    FOR fk IN SELECT * FROM jsonb_to_recordset(fks) AS f(tab text, name text, def text) LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tab, fk.name, fk.def);
    END LOOP;

    -- 4. The coordinator's local copies of the rows are invisible now: free their space.
    PERFORM truncate_local_data_after_distributing_table(t::regclass) FROM unnest(tables) AS t;

    -- 5. Citus connects to the other nodes as the current user, which inside the API functions
    -- (SECURITY DEFINER) is hatchat_owner: it must be able to log in, node to node only (pg_hba.conf
    -- of every node; README, "Scale out"). Citus propagates ALTER ROLE to every node.
    ALTER ROLE hatchat_owner LOGIN;

    -- 6. No forced generic plans: with parameters left in a generic plan Citus cannot always find
    -- the one shard a statement touches. ALTER FUNCTION on an extension's function is not
    -- propagated: run on every node (the workers run the functions when called there).
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.pronamespace = 'hatchat'::regnamespace
                 AND EXISTS (SELECT 1 FROM unnest(p.proconfig) s WHERE s LIKE 'plan_cache_mode=%') LOOP
        EXECUTE format('ALTER FUNCTION %s RESET plan_cache_mode', fn);
        PERFORM run_command_on_workers(format('ALTER FUNCTION %s RESET plan_cache_mode', fn));
    END LOOP;
END
$$;

-- On a Citus cluster, DROP EXTENSION hatchat leaves every shard behind (Citus reads the tables
-- dropped with an extension as partitions dropped with their parent, and forgets only their
-- metadata). This drops the shards first: the step before DROP EXTENSION hatchat on a cluster.
-- The tables are unusable afterwards. Does nothing on a database that is not distributed.
CREATE FUNCTION hatchat.drop_shards() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE NOTICE 'Citus is not installed: nothing to drop';
        RETURN;
    END IF;
    PERFORM citus_drop_all_shards(p.logicalrelid, 'hatchat', c.relname)
       FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
      WHERE c.relnamespace = 'hatchat'::regnamespace;
END
$$;

-- For superusers only (they alter roles, tables and every node).
REVOKE ALL ON FUNCTION hatchat.distribute(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hatchat.drop_shards() FROM PUBLIC;
-- ---- end citus part 2 ---------------------------------------------------------------------------

-- ---- citus (issue 15), part 3: the channel, message and read-state helpers take columns -------
-- (on a shard a row is of the shard's own type); the unread count's delete count moves into the
-- callers' queries (a helper reading messages itself could not run on a shard).
DROP FUNCTION hatchat.channel_json(hatchat.channels);
CREATE FUNCTION hatchat.channel_json(id text, owner_id uuid, invite_model text, created_at timestamptz,
                                     max_messages integer, ttl_seconds integer, expires_at timestamptz,
                                     notify_members boolean) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('id', id, 'ownerId', owner_id, 'inviteModel', invite_model,
                              'createdAt', hatchat.iso_time(created_at),
                              'maxMessages', max_messages, 'ttlSeconds', ttl_seconds,
                              'expiresAt', hatchat.iso_time(expires_at), 'notifyMembers', notify_members);
DROP FUNCTION hatchat.message_json(hatchat.messages, text);
CREATE FUNCTION hatchat.message_json(seq bigint, created_at timestamptz, from_user_id uuid, username text,
                                     payload jsonb, kind text, target bigint, client_id text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('seq', seq, 'createdAt', hatchat.iso_time(created_at),
                              'fromUserId', from_user_id, 'username', username,
                              'payload', payload)
           || jsonb_strip_nulls(jsonb_build_object('event', kind, 'target', target,
                                                   'clientId', client_id));
DROP FUNCTION hatchat.read_state_json(hatchat.channels, hatchat.members);
DROP FUNCTION hatchat.unread(hatchat.channels, hatchat.members);
CREATE FUNCTION hatchat.read_state_json(last_seq bigint, read_seq bigint, counted bigint, read_count bigint,
                                        deleted_since bigint) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('lastSeq', last_seq, 'readSeq', read_seq,
                              'unread', CASE WHEN read_seq IS NOT NULL
                                             THEN greatest(0, counted - read_count - deleted_since) END);
DROP FUNCTION hatchat.is_live(hatchat.channels);
-- ---- end citus part 3 ---------------------------------------------------------------------------
