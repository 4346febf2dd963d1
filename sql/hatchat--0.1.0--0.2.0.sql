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
