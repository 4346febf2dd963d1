#!/usr/bin/env bash
# Runs every test of hatchat on a fresh or prepared machine: formatting, lints, unit tests, then the
# SQL and HTTP suites against a throwaway PostgreSQL cluster with the extension installed.
# Installs what is missing first (PostgreSQL headers, clang, cargo-pgrx).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "unit tests"
cargo test --workspace --lib --bins

install_extension dev
cluster=$(mktemp -d /tmp/hatchat-test.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"' EXIT
port=$(free_port)
say "throwaway PostgreSQL on 127.0.0.1:$port"
start_cluster "$cluster" "$port" throwaway
create_database "$port" hatchat_test
export HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_test"

say "SQL and HTTP suites"
cargo test --workspace --test '*'
say "all tests passed"
