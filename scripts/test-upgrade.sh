#!/usr/bin/env bash
# Tests the upgrade path as an operator meets it. Builds the previous release from its commit,
# installs it into a PostgreSQL installation of the upgrade test's own, writes users, channels,
# messages, rooms, notifications and blocks through its API (tests/upgrade.rs, phase 1), then
# installs this checkout's build over it, restarts, runs `ALTER EXTENSION hatchat UPDATE`, and
# checks that
#   (a) the updated database holds exactly what a fresh `CREATE EXTENSION hatchat` of this version
#       makes: every object of the extension, dumped and normalised, compares equal;
#   (b) everything written before reads back the same through this version's API (phase 2).
# and finally that the updated database survives a backup (docs/operations.md): dumped with
# `pg_dumpall --globals-only` and `pg_dump -Fc`, restored into a new cluster, it reads back the same.
# Run by scripts/test.sh; alone: scripts/test-upgrade.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The release the upgrade script starts from: its commit, and that commit's install script as
# pgrx generated it (kept in sql/ as the record of what that release made).
FROM_VERSION=0.3.0
FROM_COMMIT=a69214e603cc6252319d7e4fe3c7c9cf36ea4320
TO_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

ensure_toolchain

work=$ROOT/target/upgrade
src=$work/hatchat-$FROM_VERSION
if [ ! -f "$src/Cargo.toml" ]; then
    git cat-file -e "$FROM_COMMIT^{commit}" 2>/dev/null || git fetch -q origin "$FROM_COMMIT" \
        || die "commit $FROM_COMMIT (release $FROM_VERSION) is not in this clone: fetch the history"
    mkdir -p "$src"
    git archive "$FROM_COMMIT" | tar -x -C "$src"
fi

pg_bin=$(private_pg_install "/var/tmp/hatchat-upgrade-pg-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)")
pg_config=$pg_bin/pg_config
export PATH="$pg_bin:$PATH"
rm -f "$("$pg_config" --pkglibdir)"/hatchat.so "$("$pg_config" --sharedir)"/extension/hatchat*

# The old release builds in this checkout's target directory, so the dependencies they share are
# compiled once. Both builds put their library at the same place (target/debug/libhatchat.so), and
# cargo puts it there only when it compiles the crate: each install touches its crate first.
say "building and installing hatchat $FROM_VERSION (commit ${FROM_COMMIT:0:12})"
touch "$src/src/lib.rs"
(cd "$src" && CARGO_TARGET_DIR="$ROOT/target" cargo pgrx install --pg-config "$pg_config" >/dev/null)
diff -q "$("$pg_config" --sharedir)/extension/hatchat--$FROM_VERSION.sql" "sql/hatchat--$FROM_VERSION.sql" >/dev/null \
    || die "sql/hatchat--$FROM_VERSION.sql is not what release $FROM_VERSION installs"

cluster=$(mktemp -d /tmp/hatchat-upgrade.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"' EXIT
port=$(free_port)
start_cluster "$cluster" "$port" throwaway
psql_as() { psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
psql_as -d postgres -c "CREATE DATABASE hatchat_upgraded" -c "CREATE DATABASE hatchat_fresh"
psql_as -d hatchat_upgraded -c "CREATE EXTENSION hatchat"
[ "$(psql_as -d hatchat_upgraded -c "SELECT extversion FROM pg_extension WHERE extname = 'hatchat'")" = "$FROM_VERSION" ] \
    || die "the old build did not install $FROM_VERSION"

export HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_upgraded"
export HATCHAT_UPGRADE_STATE=$work/state.json
say "phase 1: writing through the $FROM_VERSION API"
cargo test -q --test upgrade -- --ignored --exact before_upgrade

say "installing this checkout ($TO_VERSION) over it, restarting, ALTER EXTENSION hatchat UPDATE"
touch "$ROOT/src/lib.rs"
install_extension dev "$pg_config"
stop_cluster "$cluster"
start_cluster "$cluster" "$port" throwaway
psql_as -d hatchat_upgraded -c "ALTER EXTENSION hatchat UPDATE"
psql_as -d hatchat_fresh -c "CREATE EXTENSION hatchat"

# Every object of the extension, as pg_dump writes it for pg_upgrade: that mode dumps an
# extension's members one by one (a plain dump only says CREATE EXTENSION). What that mode pins
# for pg_upgrade (OIDs, frozen transaction ids) and the dump's random \restrict key are the
# expected differences and are dropped; comments and blank lines too. The tables whose rows a
# dump keeps (pg_extension_config_dump) are named by OID there: they are compared by name instead.
describe() {
    pg_dump -h 127.0.0.1 -p "$port" -U postgres --schema-only --binary-upgrade --no-comments "$1" \
        | sed -e '/^UPDATE pg_catalog.pg_class$/,/^WHERE oid = /d' \
        | grep -v -e '^--' -e '^$' -e 'binary_upgrade_set_' -e 'pg_catalog.set_config' -e '^\\\(un\)\?restrict ' \
        | sed -e "s/$1/DATABASE/g" -e "/binary_upgrade_create_empty_extension/s/'{[0-9,]*}'/'{OIDS}'/"
    psql_as -d "$1" -c "SELECT extconfig::regclass[], extcondition FROM pg_extension WHERE extname = 'hatchat'"
}
describe hatchat_upgraded >"$work/upgraded.sql"
describe hatchat_fresh >"$work/fresh.sql"
say "comparing the updated schema with a fresh $TO_VERSION install ($(wc -l <"$work/fresh.sql") lines)"
diff -u "$work/fresh.sql" "$work/upgraded.sql" \
    || die "$FROM_VERSION updated to $TO_VERSION differs from a fresh $TO_VERSION install (diff above: fresh vs updated)"

# The updated database backed up as docs/operations.md says, before phase 2 writes to it, and
# restored into a new cluster that has none of hatchat's roles until the globals bring them.
say "backup: pg_dumpall --globals-only and pg_dump -Fc of the updated database, restored into a new cluster"
pg_dumpall -h 127.0.0.1 -p "$port" -U postgres --globals-only >"$work/globals.sql"
pg_dump -h 127.0.0.1 -p "$port" -U postgres -Fc -f "$work/hatchat_upgraded.dump" hatchat_upgraded
restored=$(mktemp -d /tmp/hatchat-restored.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"; stop_cluster "$restored"; rm -rf "$restored"' EXIT
restored_port=$(free_port)
start_cluster "$restored" "$restored_port" throwaway
psql_restored() { psql -h 127.0.0.1 -p "$restored_port" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
# The globals name the superuser this new cluster already has: that one error is expected.
psql -h 127.0.0.1 -p "$restored_port" -U postgres -qtA -d postgres -f "$work/globals.sql" 2>&1 \
    | grep -v 'role "postgres" already exists' | grep . && die "the globals did not restore (above)"
psql_restored -d postgres -c "CREATE DATABASE hatchat_restored"
pg_restore -h 127.0.0.1 -p "$restored_port" -U postgres --exit-on-error -d hatchat_restored "$work/hatchat_upgraded.dump"
misowned=$(psql_restored -d hatchat_restored -c "SELECT count(*) FROM pg_proc
    WHERE pronamespace = 'hatchat'::regnamespace AND prosecdef AND proowner <> 'hatchat_owner'::regrole")
[ "$misowned" = 0 ] || die "the restore left $misowned functions of hatchat owned by another role"

say "phase 2: reading it back through the $TO_VERSION API, in the updated database and in its restored copy"
cargo test -q --test upgrade -- --ignored --exact after_upgrade
HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$restored_port/hatchat_restored" \
    cargo test -q --test upgrade -- --ignored --exact after_upgrade
say "upgrade $FROM_VERSION -> $TO_VERSION: schema equal, data read back, also from a backup in a new cluster"
