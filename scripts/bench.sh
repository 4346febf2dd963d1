#!/usr/bin/env bash
# Runs the gateway benchmark and prints its table: a durable private PostgreSQL cluster (fsync and
# synchronous_commit on, as in production), the release builds, a gateway started by the benchmark.
# Settings (environment): BENCH_SECONDS (10), BENCH_CONCURRENCY (1,4,16,64), BENCH_WAITERS (1000),
# BENCH_LATENCY_SAMPLES (500), BENCH_POOL_SIZE (32), BENCH_PARTS (sql,gateway,latency,idle,fanout:
# which tables to measure).
# Also writes the tables to target/bench/bench.md, and draws the throughput from them as
# target/bench/throughput.svg (the figures as target/bench/throughput.csv) with tools/benchchart.
# `scripts/bench.sh --citus`: instead, the send throughput on one node and on a 3-node Citus
# cluster side by side (scripts/bench-citus.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
[ "${1:-}" = --citus ] && exec bash "$ROOT/scripts/bench-citus.sh"

ensure_toolchain
install_extension release
cluster=$(mktemp -d /tmp/hatchat-bench.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"' EXIT
port=$(free_port)
start_cluster "$cluster" "$port" durable
create_database "$port" hatchat_bench
# The benchmark drives the gateway through the same harness as the HTTP suites.
export HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_bench"
ulimit -n 65536 2>/dev/null || true
say "benchmarking (a few minutes)"
mkdir -p target/bench
cargo bench -q -p hatchat-gateway --bench load | tee target/bench/bench.md
# The chart needs the gateway's table (BENCH_PARTS may have left it out).
if grep -q "spread: gateway" target/bench/bench.md; then
    cargo run -q --release -p hatchat-benchchart -- \
        target/bench/bench.md target/bench/throughput.svg target/bench/throughput.csv
fi
