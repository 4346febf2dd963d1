#!/usr/bin/env bash
# hatchat on a real Citus cluster (issue 15): builds Citus once per machine (scripts/lib.sh,
# build_citus), starts a coordinator and two workers as throwaway clusters, and
#   1. distributes a database that already holds data written through the API on one node
#      (tests/upgrade.rs phase 1), then reads everything back through the coordinator (phase 2);
#   2. distributes a fresh database (`CREATE EXTENSION citus; CREATE EXTENSION hatchat;
#      SELECT hatchat.distribute(...)`, as docs/scale-out.md says) and runs the SQL and HTTP
#      suites against the coordinator;
#   3. drops the shards and the extension, and checks that no node keeps anything of hatchat.
# Run by scripts/test.sh; alone: scripts/test-citus.sh [cargo test arguments for step 2]
#   HATCHAT_CITUS_SHARDS  shard count for distribute() (default 32)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain
pg_bin=$(private_pg_install "$(test_pg_install_dir)")
export PATH="$pg_bin:$PATH"
install_citus "$pg_bin/pg_config"
[ -n "${HATCHAT_SKIP_INSTALL:-}" ] || install_extension dev "$pg_bin/pg_config"
shards=${HATCHAT_CITUS_SHARDS:-32}

dir=$(mktemp -d /tmp/hatchat-citus.XXXXXX)
trap 'citus_cluster_stop "$dir"; rm -rf "$dir"' EXIT
say "Citus coordinator and two workers under $dir"
citus_cluster_start "$dir" hatchat_data
read -ra ports <"$dir/ports"
citus_cluster_start "$dir" hatchat_test
url() { echo "postgres://postgres@127.0.0.1:${ports[0]}/$1"; }
psql_on() { psql "$(url "$1")" -v ON_ERROR_STOP=1 -qtA "${@:2}"; }

say "1. a database holding data, then distributed ($shards shards)"
psql_on hatchat_data -c "CREATE EXTENSION hatchat"
export HATCHAT_UPGRADE_STATE=$dir/state.json
HATCHAT_TEST_DATABASE_URL=$(url hatchat_data) cargo test -q --test upgrade -- --ignored --exact before_upgrade
psql_on hatchat_data -c "SELECT hatchat.distribute(shard_count => $shards)" >/dev/null
HATCHAT_TEST_DATABASE_URL=$(url hatchat_data) cargo test -q --test upgrade -- --ignored --exact after_upgrade

say "2. the suites against the coordinator of a distributed database"
psql_on hatchat_test -c "CREATE EXTENSION hatchat" -c "SELECT hatchat.distribute(shard_count => $shards)" >/dev/null
# The few tests that do not apply to a cluster skip themselves here, with their reason, and say so
# on the terminal ("SKIPPED on Citus: ..."): `skip_on_citus` at their top (tests/common/skip.rs).
[ $# -gt 0 ] || set -- --workspace --test '*'
HATCHAT_TEST_DATABASE_URL=$(url hatchat_test) HATCHAT_TEST_ANNOUNCER=worker cargo test "$@"
# The tests that only make sense on a cluster (ignored on one node): wake-ups from a worker.
HATCHAT_TEST_DATABASE_URL=$(url hatchat_test) cargo test -p hatchat-gateway --test citus -- --ignored

say "3. hatchat.drop_shards(), then DROP EXTENSION hatchat leaves nothing on any node"
for db in hatchat_data hatchat_test; do
    psql_on "$db" -c "SELECT hatchat.drop_shards()" -c "DROP EXTENSION hatchat" >/dev/null
    left=$(psql_on "$db" -c "SELECT string_agg(result, ' ') FROM run_command_on_all_nodes(
        \$\$SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'hatchat'\$\$)")
    [ "$left" = "0 0 0" ] || die "$db: relations of schema hatchat left on the nodes (counts: $left)"
done
say "Citus: the suites passed on the coordinator; distribute() kept the data; nothing left after DROP"
