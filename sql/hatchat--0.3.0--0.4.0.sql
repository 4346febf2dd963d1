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

