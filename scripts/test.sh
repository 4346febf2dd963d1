#!/usr/bin/env bash
# Runs every test of hatchat on a fresh or prepared machine: formatting, lints, Rust and JavaScript
# unit tests, then the SQL, HTTP and browser suites against a throwaway PostgreSQL cluster with the
# extension installed, the upgrade path, a failover under load (scripts/test-failover.sh) and the
# Citus stage. Installs what is missing first (PostgreSQL headers, clang, cargo-pgrx, Chromium and
# ChromeDriver, Node, pg_auto_failover).
#
#   scripts/test.sh                     everything (what CI runs)
#   scripts/test.sh --test rooms [...]  only these cargo test arguments, against a fresh cluster
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain
ensure_browser_tools

if [ $# -eq 0 ]; then
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings

    say "unit tests"
    cargo test --workspace --lib --bins
    say "web client unit tests (node --test)"
    node --test web/tests/
fi

# The tests run against a PostgreSQL installation of their own, with the dev build installed into
# it: the system installation keeps the release build that scripts/run.sh installed.
pg_bin=$(private_pg_install "$(test_pg_install_dir)")
install_extension dev "$pg_bin/pg_config"
export PATH="$pg_bin:$PATH"
cluster=$(mktemp -d /tmp/hatchat-test.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"' EXIT
port=$(free_port)
say "throwaway PostgreSQL on 127.0.0.1:$port"
start_cluster "$cluster" "$port" throwaway
create_database "$port" hatchat_test
export HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_test"

if [ $# -gt 0 ]; then
    say "cargo test --workspace $*"
    cargo test --workspace "$@"
    exit 0
fi
say "SQL, HTTP and browser suites (announcer mode: hatchat preloaded)"
HATCHAT_TEST_ANNOUNCER=worker cargo test --workspace --test '*'

# Without the preload, changes are announced from each sender's own transaction: the suites about
# wake-ups run again in that mode, on a cluster of its own.
plain=$(mktemp -d /tmp/hatchat-test-plain.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"; stop_cluster "$plain"; rm -rf "$plain"' EXIT
plain_port=$(free_port)
say "throwaway PostgreSQL without the preload on 127.0.0.1:$plain_port"
start_cluster "$plain" "$plain_port" throwaway ""
create_database "$plain_port" hatchat_test
say "wake-up suites (in-transaction mode)"
HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$plain_port/hatchat_test" \
    HATCHAT_TEST_ANNOUNCER=in-transaction cargo test --workspace --test wake_ups --test long_poll --test batch --test messages --test wire
say "upgrade path ($(basename -a "$ROOT"/sql/hatchat--*--*.sql | tr '\n' ' '))"
bash "$ROOT/scripts/test-upgrade.sh"
say "failover: a primary and a synchronous standby under pg_auto_failover, killed and switched over"
HATCHAT_SKIP_INSTALL=1 bash "$ROOT/scripts/test-failover.sh"
# The same suites on a 3-node Citus cluster, hatchat distributed (docs/scale-out.md). The dev build
# is already installed in the tests' private installation.
# Citus cannot be downloaded here: without its source the stage cannot run, and says so loudly
# (HATCHAT_REQUIRE_CITUS=1 makes that a failure).
if [ -f "$CITUS_TARBALL" ]; then
    say "Citus: the SQL and HTTP suites against the coordinator of a 3-node cluster"
    HATCHAT_SKIP_INSTALL=1 bash "$ROOT/scripts/test-citus.sh"
    say "all tests passed (browser screenshots in target/browser-test/)"
elif [ -n "${HATCHAT_REQUIRE_CITUS:-}" ]; then
    die "no Citus source at $CITUS_TARBALL (set CITUS_TARBALL)"
else
    say "all other tests passed; the Citus stage was NOT run: no Citus source at $CITUS_TARBALL (set CITUS_TARBALL)"
fi
