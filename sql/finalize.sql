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
ALTER FUNCTION hatchat.send_message(text, text, jsonb) SET plan_cache_mode = force_generic_plan;
