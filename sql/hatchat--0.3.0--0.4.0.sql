-- hatchat 0.3.0 -> 0.4.0, run by `ALTER EXTENSION hatchat UPDATE` (or `... UPDATE TO '0.4.0'`).
--
-- The rules are those of the earlier upgrade scripts: every change to what `CREATE EXTENSION
-- hatchat` makes adds its statements here, in the order the change was made, and
-- scripts/test-upgrade.sh checks that 0.3.0 updated by this script is the same database, object
-- for object, as 0.4.0 installed afresh, and that everything written before reads back the same.

\echo Use "ALTER EXTENSION hatchat UPDATE" to load this file. \quit

-- ---- backups that restore (issue 24) ------------------------------------------------------------
-- Every table's rows go into pg_dump's output (sql/schema.sql says why, and what is left out).
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
-- ---- end backups ----------------------------------------------------------------------------------

-- ---- trust boundary II (issue 25) ---------------------------------------------------------------
-- Erasure reaches every copy: a notification names the message it copies, so a delete finds it.
ALTER TABLE hatchat.notifications ADD COLUMN seq bigint;

-- An identity is never reused: deleted users' ids are kept (sql/schema.sql). The users deleted
-- before this release are known by what they left behind: messages and reactions under an id that
-- no user holds.
CREATE TABLE hatchat.deleted_users (
    id         uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO hatchat.deleted_users (id)
SELECT m.from_user_id FROM hatchat.messages m
 WHERE m.from_user_id <> '00000000-0000-0000-0000-000000000000'
   AND NOT EXISTS (SELECT 1 FROM hatchat.users u WHERE u.id = m.from_user_id)
UNION
SELECT r.user_id FROM hatchat.reactions r WHERE NOT EXISTS (SELECT 1 FROM hatchat.users u WHERE u.id = r.user_id);
SELECT pg_catalog.pg_extension_config_dump('hatchat.deleted_users', '');
REVOKE ALL ON hatchat.deleted_users FROM PUBLIC;
ALTER TABLE hatchat.deleted_users OWNER TO hatchat_owner;

-- Wake-ups that say nothing: keys are SipHash-2-4 under a per-database secret (sql/schema.sql).
CREATE TABLE hatchat.wake_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea NOT NULL CHECK (length(secret) = 16)
);
INSERT INTO hatchat.wake_secret (secret)
VALUES (substring(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) FROM 1 FOR 16));
REVOKE ALL ON hatchat.wake_secret FROM PUBLIC;
ALTER TABLE hatchat.wake_secret OWNER TO hatchat_owner;
CREATE FUNCTION hatchat.wake_secret() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT encode(w.secret, 'hex') FROM hatchat.wake_secret w $$;
REVOKE EXECUTE ON FUNCTION hatchat.wake_secret() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.wake_secret() TO hatchat_gateway, hatchat_admin;
ALTER FUNCTION hatchat.wake_secret() OWNER TO hatchat_owner;

-- ---- your users, your login (issue 28), part 1: the registration policy ------------------------
-- register_user takes the server secret, for hatchat.registration = secret (src/users.rs).
DROP FUNCTION hatchat.register_user(uuid, text, text);
CREATE FUNCTION hatchat.register_user(
	"id" uuid,
	"public_key" TEXT,
	"username" TEXT,
	"secret" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'register_user_wrapper';
ALTER FUNCTION hatchat.register_user(uuid, text, text, text) OWNER TO hatchat_owner;
-- ---- end registration policy ----------------------------------------------------------------------

-- ---- your users, your login (issue 28), part 2: trusted issuers --------------------------------
-- An app's login signs its users in (src/auth/issuers.rs, sql/schema.sql).
ALTER TABLE hatchat.users ADD COLUMN issuer text;
ALTER TABLE hatchat.users DROP CONSTRAINT only_system_has_no_key;
ALTER TABLE hatchat.users ADD CONSTRAINT signs_in_one_way CHECK (CASE
        WHEN id = '00000000-0000-0000-0000-000000000000' THEN public_key IS NULL AND issuer IS NULL
        WHEN issuer IS NOT NULL THEN public_key IS NULL
        ELSE public_key IS NOT NULL END);
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
SELECT pg_catalog.pg_extension_config_dump('hatchat.issuers', '');
REVOKE ALL ON hatchat.issuers FROM PUBLIC;
ALTER TABLE hatchat.issuers OWNER TO hatchat_owner;
CREATE FUNCTION hatchat.add_issuer(
	"token" TEXT,
	"iss" TEXT,
	"jwks" jsonb,
	"audience" TEXT,
	"username_claim" TEXT DEFAULT 'preferred_username',
	"jwks_url" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_issuer_wrapper';
CREATE FUNCTION hatchat.list_issuers(
	"token" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'list_issuers_wrapper';
CREATE FUNCTION hatchat.remove_issuer(
	"token" TEXT,
	"iss" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'remove_issuer_wrapper';
CREATE FUNCTION hatchat.set_issuer_keys(
	"iss" TEXT,
	"jwks" jsonb
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_issuer_keys_wrapper';
CREATE FUNCTION hatchat.issuer_key_sources() RETURNS jsonb
STRICT SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'issuer_key_sources_wrapper';
-- Granted before the owner changes, as in a fresh install (the grantor is the installer).
REVOKE EXECUTE ON FUNCTION hatchat.set_issuer_keys(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.set_issuer_keys(text, jsonb) TO hatchat_gateway, hatchat_admin;
REVOKE EXECUTE ON FUNCTION hatchat.issuer_key_sources() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.issuer_key_sources() TO hatchat_gateway, hatchat_admin;
ALTER FUNCTION hatchat.add_issuer(text, text, jsonb, text, text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.list_issuers(text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.remove_issuer(text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.set_issuer_keys(text, jsonb) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.issuer_key_sources() OWNER TO hatchat_owner;
-- ---- end trusted issuers ----------------------------------------------------------------------------

-- ---- plain SQL at pgmq's pace (issue 27) ----------------------------------------------------------
-- The CHECK constraints on channels' values and on messages.kind become domains (sql/schema.sql
-- says why). Each domain gets its constraint after the column has its type: a column changed to a
-- domain that has constraints is rewritten, one changed first and checked after is only scanned.
CREATE DOMAIN hatchat.invite_model AS text;
CREATE DOMAIN hatchat.positive_integer AS integer;
CREATE DOMAIN hatchat.event_kind AS text;
ALTER TABLE hatchat.channels
    DROP CONSTRAINT channels_invite_model_check,
    DROP CONSTRAINT channels_max_messages_check,
    DROP CONSTRAINT channels_ttl_seconds_check,
    ALTER COLUMN invite_model TYPE hatchat.invite_model,
    ALTER COLUMN max_messages TYPE hatchat.positive_integer,
    ALTER COLUMN ttl_seconds TYPE hatchat.positive_integer;
ALTER TABLE hatchat.messages
    DROP CONSTRAINT messages_kind_check,
    ALTER COLUMN kind TYPE hatchat.event_kind;
ALTER DOMAIN hatchat.invite_model
    ADD CONSTRAINT invite_model_check CHECK (VALUE IN ('owner', 'member', 'self'));
ALTER DOMAIN hatchat.positive_integer ADD CONSTRAINT positive_integer_check CHECK (VALUE > 0);
ALTER DOMAIN hatchat.event_kind
    ADD CONSTRAINT event_kind_check CHECK (VALUE IN ('edit', 'delete', 'reaction'));
-- ---- end plain SQL at pgmq's pace -----------------------------------------------------------------

-- ---- presence and typing (issue 29) -------------------------------------------------------------
-- Who is here and who is typing, held in UNLOGGED tables (src/presence.rs, sql/schema.sql).
ALTER TABLE hatchat.users ADD COLUMN presence_hidden boolean NOT NULL DEFAULT false;
CREATE UNLOGGED TABLE hatchat.gateway_leases (
    gateway_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE UNLOGGED TABLE hatchat.presence (
    channel_id text NOT NULL,
    user_id    uuid NOT NULL,
    gateway_id uuid NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id, gateway_id)
);
CREATE INDEX presence_gateway ON hatchat.presence (gateway_id);
CREATE UNLOGGED TABLE hatchat.ephemera (
    channel_id text NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    kind       text NOT NULL CHECK (kind IN ('join', 'leave', 'hide', 'show', 'typing', 'withheld')),
    user_id    uuid NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, id)
);
REVOKE ALL ON hatchat.gateway_leases, hatchat.presence, hatchat.ephemera FROM PUBLIC;
ALTER TABLE hatchat.gateway_leases OWNER TO hatchat_owner;
ALTER TABLE hatchat.presence OWNER TO hatchat_owner;
ALTER TABLE hatchat.ephemera OWNER TO hatchat_owner;
CREATE FUNCTION hatchat.typing(
	"token" TEXT,
	"channel_id" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'typing_wrapper';
CREATE FUNCTION hatchat.channel_presence(
	"token" TEXT,
	"channel_id" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'channel_presence_wrapper';
CREATE FUNCTION hatchat.set_presence_hidden(
	"token" TEXT,
	"hidden" bool,
	"self_id" uuid DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_presence_hidden_wrapper';
CREATE FUNCTION hatchat.presence_sync(
	"gateway_id" uuid,
	"join_channels" TEXT[],
	"join_users" uuid[],
	"leave_channels" TEXT[],
	"leave_users" uuid[],
	"whole" bool,
	"lease_seconds" INT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'presence_sync_wrapper';
CREATE FUNCTION hatchat.channel_ephemera(
	"channel_id" TEXT,
	"user_ids" uuid[]
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'channel_ephemera_wrapper';
REVOKE EXECUTE ON FUNCTION hatchat.presence_sync(uuid, text[], uuid[], text[], uuid[], boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.presence_sync(uuid, text[], uuid[], text[], uuid[], boolean, integer) TO hatchat_gateway;
REVOKE EXECUTE ON FUNCTION hatchat.channel_ephemera(text, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_ephemera(text, uuid[]) TO hatchat_gateway;
ALTER FUNCTION hatchat.typing(text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.channel_presence(text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.set_presence_hidden(text, boolean, uuid) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.presence_sync(uuid, text[], uuid[], text[], uuid[], boolean, integer) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.channel_ephemera(text, uuid[]) OWNER TO hatchat_owner;
-- ---- end presence and typing ------------------------------------------------------------------------

-- distribute() makes deleted_users, wake_secret and issuers reference tables, as users.
CREATE OR REPLACE FUNCTION hatchat.distribute(shard_count integer DEFAULT 32) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    fks jsonb := '[]';
    tables text[] := ARRAY['hatchat.users', 'hatchat.deleted_users', 'hatchat.api_secret', 'hatchat.wake_secret', 'hatchat.issuers',
                           'hatchat.channels', 'hatchat.members', 'hatchat.messages', 'hatchat.reactions',
                           'hatchat.inboxes', 'hatchat.notifications', 'hatchat.blocks'];
    fn regprocedure;
BEGIN
    IF shard_count IS NULL OR shard_count NOT BETWEEN 1 AND 64000 THEN
        RAISE EXCEPTION 'shard_count must be 1..64000, got %', shard_count USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'hatchat.distribute() needs Citus: CREATE EXTENSION citus first, on a cluster '
                        'whose workers are added (docs/scale-out.md)' USING ERRCODE = '55000';
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
    PERFORM create_reference_table('hatchat.deleted_users');
    PERFORM create_reference_table('hatchat.api_secret');
    -- Every node keys its wake-ups with the coordinator's secret (a worker's own install made
    -- another, which the reference table's rows now stand in for).
    PERFORM create_reference_table('hatchat.wake_secret');
    -- Every node verifies an issuer's tokens (wherever a function authenticates).
    PERFORM create_reference_table('hatchat.issuers');
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
    -- of every node; docs/scale-out.md). Citus propagates ALTER ROLE to every node.
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

-- ---- lose the primary, lose nothing (issue 30): client ids for events ---------------------------
-- An edit, a delete or a reaction retried after a lost answer (a failover) with the same client id
-- gets the first answer and appends nothing (src/messages/events.rs).
DROP FUNCTION hatchat.edit_message(text, text, bigint, jsonb);
CREATE FUNCTION hatchat.edit_message(
	"token" TEXT,
	"channel_id" TEXT,
	"seq" bigint,
	"payload" jsonb,
	"client_id" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'edit_message_wrapper';
DROP FUNCTION hatchat.delete_message(text, text, bigint);
CREATE FUNCTION hatchat.delete_message(
	"token" TEXT,
	"channel_id" TEXT,
	"seq" bigint,
	"client_id" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'delete_message_wrapper';
DROP FUNCTION hatchat.react(text, text, bigint, text);
CREATE FUNCTION hatchat.react(
	"token" TEXT,
	"channel_id" TEXT,
	"seq" bigint,
	"reaction" TEXT,
	"client_id" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'react_wrapper';
DROP FUNCTION hatchat.unreact(text, text, bigint, text);
CREATE FUNCTION hatchat.unreact(
	"token" TEXT,
	"channel_id" TEXT,
	"seq" bigint,
	"reaction" TEXT,
	"client_id" TEXT DEFAULT NULL
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'unreact_wrapper';
ALTER FUNCTION hatchat.edit_message(text, text, bigint, jsonb, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.delete_message(text, text, bigint, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.react(text, text, bigint, text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.unreact(text, text, bigint, text, text) OWNER TO hatchat_owner;
-- ---- end client ids for events --------------------------------------------------------------------

-- ---- ten thousand online (issue 27): a stream's opening in one function ----------------------
-- get_messages' checks and stream_caller's answer in one call, for the gateway (src/window.rs).
CREATE FUNCTION hatchat.open_stream(
	"token" TEXT,
	"channel_id" TEXT,
	"after_seq" bigint
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'open_stream_wrapper';
REVOKE EXECUTE ON FUNCTION hatchat.open_stream(text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.open_stream(text, text, bigint) TO hatchat_gateway;
ALTER FUNCTION hatchat.open_stream(text, text, bigint) OWNER TO hatchat_owner;
-- ---- end a stream's opening --------------------------------------------------------------------------

-- ---- ten thousand online (issue 27): streams' openings in one call ------------------------------
-- A gateway's reconnect storm checks its streams' openings in batches (src/window.rs).
CREATE FUNCTION hatchat.open_streams(
	"items" TEXT
) RETURNS jsonb
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'open_streams_wrapper';
REVOKE EXECUTE ON FUNCTION hatchat.open_streams(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.open_streams(text) TO hatchat_gateway;
ALTER FUNCTION hatchat.open_streams(text) OWNER TO hatchat_owner;
-- ---- end streams' openings -------------------------------------------------------------------------
