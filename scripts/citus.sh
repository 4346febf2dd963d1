#!/usr/bin/env bash
# A local Citus cluster for hatchat (issue 15): a coordinator and two workers as throwaway
# PostgreSQL clusters of the tests' private installation, with Citus (built once per machine from
# ../shared/citus) and the dev build of hatchat installed into it — never into the system's.
#
#   scripts/citus.sh build           build Citus (once) and install it and hatchat (dev)
#   scripts/citus.sh start DIR [DB]  start the three nodes under DIR; prints the coordinator's URL
#   scripts/citus.sh stop DIR        stop them (DIR stays; rm -rf it to throw the data away)
#   scripts/citus.sh env DIR         the PATH and URL to use the running cluster from a shell
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pg_bin=$(private_pg_install "$(test_pg_install_dir)")
export PATH="$pg_bin:$PATH"

prepare() {
    ensure_toolchain
    install_citus "$pg_bin/pg_config"
    [ -n "${HATCHAT_SKIP_INSTALL:-}" ] || install_extension dev "$pg_bin/pg_config"
}

coordinator_url() {
    local ports
    read -ra ports <"$1/ports"
    echo "postgres://postgres@127.0.0.1:${ports[0]}/${2:-hatchat_test}"
}

case "${1:-}" in
    build) prepare ;;
    start)
        [ -n "${2:-}" ] || die "usage: scripts/citus.sh start DIR [DATABASE]"
        prepare
        citus_cluster_start "$2" "${3:-hatchat_test}"
        say "Citus coordinator and workers on ports $(cat "$2/ports")"
        coordinator_url "$2" "${3:-}"
        ;;
    stop)
        [ -n "${2:-}" ] || die "usage: scripts/citus.sh stop DIR"
        citus_cluster_stop "$2"
        ;;
    env)
        [ -n "${2:-}" ] || die "usage: scripts/citus.sh env DIR [DATABASE]"
        echo "export PATH=$pg_bin:\$PATH"
        echo "export HATCHAT_TEST_DATABASE_URL=$(coordinator_url "$2" "${3:-}")"
        ;;
    *) die "usage: scripts/citus.sh build | start DIR [DATABASE] | stop DIR | env DIR" ;;
esac
