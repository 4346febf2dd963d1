-- Prototype of hatchat.distribute(shard_count) (issue 15): distributes hatchat's tables on a Citus
-- cluster. Not part of the extension yet: run it with psql on the coordinator of a cluster whose
-- workers are added, in a database with `CREATE EXTENSION citus; CREATE EXTENSION hatchat;`
-- (empty, or holding a single-node hatchat's data):
--
--     psql -v shard_count=32 -f sql/citus_prototype.sql <coordinator url>
--
-- What it leaves: users and api_secret reference tables; channels, members, messages colocated by
-- channel id; inboxes, notifications, blocks colocated by user id; the same foreign keys as on one
-- node; and the cluster-only settings the functions need (docs/citus.md says why each step).
-- Tried on Citus 13.2.2 / PostgreSQL 15 with scripts/citus.sh; DROP EXTENSION hatchat still works
-- afterwards. The functions do NOT all work yet: docs/citus.md lists the extension changes.
\set ON_ERROR_STOP 1
\if :{?shard_count}
\else
\set shard_count 32
\endif

-- 0. Only on a coordinator that has workers, and only once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'the citus extension is not installed in this database';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE groupid <> 0) THEN
        RAISE EXCEPTION 'no workers: add them with citus_add_node() first';
    END IF;
    IF (SELECT groupid FROM pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'run this on the coordinator';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'hatchat.users'::regclass) THEN
        RAISE EXCEPTION 'hatchat is already distributed';
    END IF;
END
$$;

-- 1. Foreign keys off, on every node. Citus refuses to distribute a table that references a local
-- table, and a reference table referenced by a local one turns that local table into a "Citus
-- local table" (which then cannot be distributed, and whose conversion collides with the workers'
-- copies: `relation "channels" already exists`). On the workers, the extension's own copies of the
-- tables (CREATE EXTENSION is propagated) become Citus's shell tables, which Citus never creates
-- or alters itself for extension-owned tables: their foreign keys must go too, or step 3 collides
-- (`constraint ... already exists`).
SELECT run_command_on_all_nodes($cmd$
    ALTER TABLE hatchat.channels DROP CONSTRAINT IF EXISTS channels_owner_id_fkey;
    ALTER TABLE hatchat.members DROP CONSTRAINT IF EXISTS members_channel_id_fkey;
    ALTER TABLE hatchat.members DROP CONSTRAINT IF EXISTS members_user_id_fkey;
    ALTER TABLE hatchat.messages DROP CONSTRAINT IF EXISTS messages_channel_id_fkey;
    ALTER TABLE hatchat.blocks DROP CONSTRAINT IF EXISTS blocks_user_id_fkey;
    ALTER TABLE hatchat.blocks DROP CONSTRAINT IF EXISTS blocks_blocked_user_id_fkey;
    ALTER TABLE hatchat.inboxes DROP CONSTRAINT IF EXISTS inboxes_user_id_fkey;
    ALTER TABLE hatchat.notifications DROP CONSTRAINT IF EXISTS notifications_user_id_fkey;
$cmd$);

-- 2. Distribute. Existing rows are copied into the shards (the coordinator's local copies stay on
-- disk, invisible; step 4 empties them). Tables stay members of the extension: Citus skips the shell
-- tables of extension-owned tables (the workers' extension made them) and DROP EXTENSION drops all.
SELECT create_reference_table('hatchat.users');
SELECT create_reference_table('hatchat.api_secret');
SELECT create_distributed_table('hatchat.channels', 'id', shard_count => :shard_count, colocate_with => 'none');
SELECT create_distributed_table('hatchat.members', 'channel_id', colocate_with => 'hatchat.channels');
SELECT create_distributed_table('hatchat.messages', 'channel_id', colocate_with => 'hatchat.channels');
SELECT create_distributed_table('hatchat.inboxes', 'user_id', shard_count => :shard_count, colocate_with => 'none');
SELECT create_distributed_table('hatchat.notifications', 'user_id', colocate_with => 'hatchat.inboxes');
SELECT create_distributed_table('hatchat.blocks', 'user_id', colocate_with => 'hatchat.inboxes');

-- 3. Foreign keys back, one per statement (Citus refuses ADD CONSTRAINT with other subcommands).
-- Citus creates them between colocated shards and from shards to the reference table, and on the
-- workers' shell tables. Every one is supported: distributed -> reference, and distributed ->
-- distributed on the distribution column of colocated tables.
ALTER TABLE hatchat.channels ADD CONSTRAINT channels_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES hatchat.users (id) ON DELETE CASCADE;
ALTER TABLE hatchat.members ADD CONSTRAINT members_channel_id_fkey
    FOREIGN KEY (channel_id) REFERENCES hatchat.channels (id) ON DELETE CASCADE;
ALTER TABLE hatchat.members ADD CONSTRAINT members_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES hatchat.users (id) ON DELETE CASCADE;
ALTER TABLE hatchat.messages ADD CONSTRAINT messages_channel_id_fkey
    FOREIGN KEY (channel_id) REFERENCES hatchat.channels (id) ON DELETE CASCADE;
ALTER TABLE hatchat.blocks ADD CONSTRAINT blocks_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES hatchat.users (id) ON DELETE CASCADE;
ALTER TABLE hatchat.blocks ADD CONSTRAINT blocks_blocked_user_id_fkey
    FOREIGN KEY (blocked_user_id) REFERENCES hatchat.users (id) ON DELETE CASCADE;
ALTER TABLE hatchat.inboxes ADD CONSTRAINT inboxes_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES hatchat.users (id) ON DELETE CASCADE;
ALTER TABLE hatchat.notifications ADD CONSTRAINT notifications_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES hatchat.inboxes (user_id) ON DELETE CASCADE;

-- 4. The local rows copied in step 2 are no longer visible; free their space.
SELECT truncate_local_data_after_distributing_table(t)
  FROM unnest(ARRAY['hatchat.users', 'hatchat.api_secret', 'hatchat.channels', 'hatchat.members', 'hatchat.messages',
                     'hatchat.inboxes', 'hatchat.notifications', 'hatchat.blocks']::regclass[]) AS t;

-- 5. Citus opens its own connections to the workers as the current user: inside the SECURITY
-- DEFINER API functions that is hatchat_owner, which is NOLOGIN ("role hatchat_owner is not
-- permitted to log in"). On a cluster it must be able to log in, node to node only: give it
-- LOGIN here (Citus propagates ALTER ROLE to every node) and restrict it in pg_hba.conf of every
-- node to the other nodes' addresses (docs/citus.md). finalize.sql must then accept that.
ALTER ROLE hatchat_owner LOGIN;

-- 6. Stop-gaps that the extension must make unnecessary (docs/citus.md, "extension changes"):
-- Citus refuses non-IMMUTABLE functions in RETURNING of reference-table writes, and plans
-- generic plans with parameters badly. Functions are extension-owned, so Citus does not propagate
-- ALTER FUNCTION: run it on every node.
SELECT run_command_on_all_nodes($cmd$
    ALTER FUNCTION hatchat.iso_time(timestamptz) IMMUTABLE;
    ALTER FUNCTION hatchat.user_json(hatchat.users) IMMUTABLE;
    ALTER FUNCTION hatchat.channel_json(hatchat.channels) IMMUTABLE;
    ALTER FUNCTION hatchat.moderation_json(hatchat.users) IMMUTABLE;
    ALTER FUNCTION hatchat.message_json(hatchat.messages, text) IMMUTABLE;
    ALTER FUNCTION hatchat.send_messages(jsonb) RESET plan_cache_mode;
    ALTER FUNCTION hatchat.send_message(text, text, jsonb) RESET plan_cache_mode;
$cmd$);

SELECT logicalrelid AS "table", partmethod AS method, colocationid AS colocation,
       (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid) AS shards
  FROM pg_dist_partition p
 WHERE logicalrelid::text LIKE 'hatchat.%'
 ORDER BY colocationid, logicalrelid::text;
