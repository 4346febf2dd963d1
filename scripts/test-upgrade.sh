#!/usr/bin/env bash
# Tests the upgrade path as an operator meets it. Builds the previous release from its commit,
# installs it into a PostgreSQL installation of the upgrade test's own, writes users, channels,
# messages, rooms, notifications and blocks through its API (tests/upgrade.rs, phase 1), then
# installs this checkout's build over it, restarts, runs `ALTER EXTENSION hatchat UPDATE`, and
# checks that
#   (a) the updated database holds exactly what a fresh `CREATE EXTENSION hatchat` of this version
#       makes: every object of the extension, dumped and normalised, compares equal;
#   (b) everything written before reads back the same through this version's API (phase 2).
# Run by scripts/test.sh; alone: scripts/test-upgrade.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The release the upgrade script starts from: its commit, and that commit's install script as
# pgrx generated it (kept in sql/ as the record of what that release made).
FROM_VERSION=0.2.0
FROM_COMMIT=74a0c9f82dfff9b719fa521b799694d17f16b411
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
# expected differences and are dropped; comments and blank lines too.
describe() {
    pg_dump -h 127.0.0.1 -p "$port" -U postgres --schema-only --binary-upgrade --no-comments "$1" \
        | sed -e '/^UPDATE pg_catalog.pg_class$/,/^WHERE oid = /d' \
        | grep -v -e '^--' -e '^$' -e 'binary_upgrade_set_' -e 'pg_catalog.set_config' -e '^\\\(un\)\?restrict ' \
        | sed -e "s/$1/DATABASE/g"
}
describe hatchat_upgraded >"$work/upgraded.sql"
describe hatchat_fresh >"$work/fresh.sql"
say "comparing the updated schema with a fresh $TO_VERSION install ($(wc -l <"$work/fresh.sql") lines)"
diff -u "$work/fresh.sql" "$work/upgraded.sql" \
    || die "$FROM_VERSION updated to $TO_VERSION differs from a fresh $TO_VERSION install (diff above: fresh vs updated)"

say "phase 2: reading it back through the $TO_VERSION API"
cargo test -q --test upgrade -- --ignored --exact after_upgrade
say "upgrade $FROM_VERSION -> $TO_VERSION: schema equal, data read back"
