#!/usr/bin/env bash
# The gateway's send throughput (spread: a channel per client; hot: one channel) on one node and
# on a 3-node Citus cluster (a coordinator and two workers, hatchat distributed), in one run, with
# the release build. All nodes share this machine's cores, so the cluster's figure is the cost of
# distribution, not its gain (docs/scale-out.md). Every node is a throwaway cluster (fsync off,
# synchronous_commit off), the single node too, so that both rows pay the same for durability.
# Settings: those of scripts/bench.sh (BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_POOL_SIZE), and
# HATCHAT_CITUS_SHARDS (32). Also run by `scripts/bench.sh --citus`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain
pg_bin=$(private_pg_install "$(test_pg_install_dir)")
export PATH="$pg_bin:$PATH"
install_citus "$pg_bin/pg_config"
install_extension release "$pg_bin/pg_config"
ulimit -n 65536 2>/dev/null || true
mkdir -p target/bench

single=$(mktemp -d /tmp/hatchat-bench-single.XXXXXX)
cluster=$(mktemp -d /tmp/hatchat-bench-citus.XXXXXX)
trap 'stop_cluster "$single"; rm -rf "$single"; citus_cluster_stop "$cluster"; rm -rf "$cluster"' EXIT

port=$(free_port)
start_cluster "$single" "$port" throwaway
create_database "$port" hatchat_bench
say "one node: send throughput through the gateway"
HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_bench" BENCH_PARTS=gateway \
    cargo bench -q -p hatchat-gateway --bench load | tee target/bench/bench-single.md
stop_cluster "$single"

citus_cluster_start "$cluster" hatchat_bench
read -ra ports <"$cluster/ports"
url="postgres://postgres@127.0.0.1:${ports[0]}/hatchat_bench"
psql "$url" -v ON_ERROR_STOP=1 -qtA -c "SET client_min_messages = warning" -c "CREATE EXTENSION hatchat" \
    -c "SELECT hatchat.distribute(shard_count => ${HATCHAT_CITUS_SHARDS:-32})" >/dev/null
say "Citus, a coordinator and two workers: send throughput through the gateway"
HATCHAT_TEST_DATABASE_URL=$url BENCH_PARTS=gateway \
    cargo bench -q -p hatchat-gateway --bench load | tee target/bench/bench-citus.md
