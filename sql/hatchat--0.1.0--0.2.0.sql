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
