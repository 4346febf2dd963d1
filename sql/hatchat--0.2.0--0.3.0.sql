-- hatchat 0.2.0 -> 0.3.0, run by `ALTER EXTENSION hatchat UPDATE` (or `... UPDATE TO '0.3.0'`).
--
-- The rules are those of hatchat--0.1.0--0.2.0.sql: every change to what `CREATE EXTENSION
-- hatchat` makes adds its statements here, in the order the change was made, and
-- scripts/test-upgrade.sh checks that 0.2.0 updated by this script is the same database, object
-- for object, as 0.3.0 installed afresh, and that everything written before reads back the same.

\echo Use "ALTER EXTENSION hatchat UPDATE" to load this file. \quit
