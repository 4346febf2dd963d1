-- hatchat 0.2.0 -> 0.3.0, run by `ALTER EXTENSION hatchat UPDATE` (or `... UPDATE TO '0.3.0'`).
--
-- The rules are those of hatchat--0.1.0--0.2.0.sql: every change to what `CREATE EXTENSION
-- hatchat` makes adds its statements here, in the order the change was made, and
-- scripts/test-upgrade.sh checks that 0.2.0 updated by this script is the same database, object
-- for object, as 0.3.0 installed afresh, and that everything written before reads back the same.

\echo Use "ALTER EXTENSION hatchat UPDATE" to load this file. \quit

-- ===== A send refreshes a channel's expiry in steps (HOT counter updates for channels with a TTL) =====

-- A channel's expiry after a send at `now`: `now` + its TTL, unless the stored expiry is already
-- within 1% of the TTL (a minute at most) of that, when it stays as it is. expires_at is indexed,
-- so a changed value makes every send's counter update a non-HOT update that rewrites the row's
-- index entries; this way a busy channel with a TTL keeps HOT updates, and lives at least 99% of
-- its TTL after its last post.
CREATE FUNCTION hatchat.refreshed_expiry(expires_at timestamptz, ttl_seconds integer, now timestamptz)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN expires_at > now + ttl_seconds * interval '1 second'
                                  - least(ttl_seconds * interval '10 milliseconds', interval '1 minute')
                THEN expires_at
                ELSE now + ttl_seconds * interval '1 second' END;
