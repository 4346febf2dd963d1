-- Scale out on Citus (docs/scale-out.md): hatchat.distribute() turns a hatchat database on the
-- coordinator of a Citus cluster into a distributed one, and hatchat.drop_shards() is the step
-- before DROP EXTENSION hatchat there. Both do nothing on a single node but explain themselves:
-- a single-node install is unchanged. Why each step: docs/citus.md.

-- Distributes hatchat's tables: users, deleted_users, api_secret, wake_secret and issuers become reference
-- tables (a copy on every node); channels, members, messages are sharded by channel id, colocated; inboxes, notifications,
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

-- Which node holds each channel: the Citus group id of its shard's placement, in the order given
-- (NULL for a channel id Citus cannot place). NULL as a whole when the database is not
-- distributed. The gateway groups its queued sends by it, so that a batch commits on one node
-- (one-phase commit) instead of spanning workers (two-phase). An answer can be stale by the time
-- it is used (a shard moved): that costs a two-phase commit, never correctness. SECURITY DEFINER:
-- Citus's get_shard_id_for_distribution_column asks for rights on the table, which callers lack.
CREATE FUNCTION hatchat.channel_nodes(channel_ids text[]) RETURNS integer[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Two statements: without Citus, pg_dist_partition does not exist to be named.
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'hatchat.channels'::regclass) THEN
        RETURN NULL;
    END IF;
    RETURN ARRAY(SELECT (SELECT min(p.groupid) FROM pg_dist_placement p
                          WHERE p.shardid = get_shard_id_for_distribution_column('hatchat.channels', c.id))
                   FROM unnest(channel_ids) WITH ORDINALITY AS c(id, ord)
                  ORDER BY c.ord);
END
$$;
REVOKE ALL ON FUNCTION hatchat.channel_nodes(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_nodes(text[]) TO hatchat_gateway;
