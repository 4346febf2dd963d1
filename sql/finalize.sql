-- Runs last in CREATE EXTENSION, after the functions exist.

-- send_messages runs statements over arrays whose sizes only the call knows. With the default
-- plan_cache_mode, PostgreSQL re-plans them at every call (custom plans look cheaper when the
-- array is in hand), which cost more than the rest of a small batch. Its statements are written
-- so that one generic plan serves every size (per-row index probes), and are planned once per
-- backend.
ALTER FUNCTION hatchat.send_messages(jsonb) SET plan_cache_mode = force_generic_plan;

-- send_message is the other hot path: left to choose, PostgreSQL kept re-planning its statements
-- at every call. Forced generic, a single send costs a third less CPU (2,340 -> 3,450 a second,
-- one pgbench client, synchronous_commit off). Not every function gains: get_messages' generic
-- plan cannot see which of its optional bounds are set, and is thousands of times slower.
ALTER FUNCTION hatchat.send_message(text, text, jsonb, text) SET plan_cache_mode = force_generic_plan;
-- send_message_text is the same send with the payload as text: the gateway's lone sends.
ALTER FUNCTION hatchat.send_message_text(text, text, text, text) SET plan_cache_mode = force_generic_plan;

-- Least privilege: the API functions are SECURITY DEFINER, so they run as their owner. Owned by
-- the superuser who installed the extension, a bug in one of them (or in PostgreSQL's handling of
-- its input) would act with superuser rights. They are owned instead by hatchat_owner, a NOLOGIN
-- role that owns hatchat's tables and nothing else: a function can do no more than read and write
-- hatchat's own tables. Nobody may log in as it or be granted it, so nobody reaches the tables
-- but through the functions. The one exception is a Citus cluster: there Citus connects from node
-- to node as the functions' owner, so hatchat.distribute() gives it LOGIN (pg_hba.conf of every
-- node then admits it from the other nodes only; docs/scale-out.md), and an install into a
-- database with Citus (another database of the cluster, a worker added later) accepts that.
DO $$
DECLARE
    object record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_owner') THEN
        CREATE ROLE hatchat_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    ELSIF EXISTS (SELECT 1 FROM pg_roles r
                   WHERE r.rolname = 'hatchat_owner'
                     AND ((r.rolcanlogin AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus'))
                          OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb
                          OR r.rolreplication OR r.rolbypassrls
                          OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid))) THEN
        -- Someone made a role of that name with powers (or members): it must not own the tables.
        RAISE EXCEPTION 'role hatchat_owner exists with LOGIN, other attributes or members; '
                        'drop it or make it a plain NOLOGIN role without members first';
    END IF;
    FOR object IN SELECT c.oid::regclass AS name FROM pg_class c
                   WHERE c.relnamespace = 'hatchat'::regnamespace AND c.relkind IN ('r', 'p') LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO hatchat_owner', object.name);
    END LOOP;
    FOR object IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                   WHERE p.pronamespace = 'hatchat'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO hatchat_owner', object.name);
    END LOOP;
END
$$;
