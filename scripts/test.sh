#!/usr/bin/env bash
# Runs every test of hatchat on a fresh or prepared machine: formatting, lints, Rust and JavaScript
# unit tests, then the SQL, HTTP and browser suites against a throwaway PostgreSQL cluster with the
# extension installed. Installs what is missing first (PostgreSQL headers, clang, cargo-pgrx,
# Chromium and ChromeDriver, Node).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain
ensure_browser_tools

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "unit tests"
cargo test --workspace --lib --bins
say "web client unit tests (node --test)"
node --test web/tests/

install_extension dev
cluster=$(mktemp -d /tmp/hatchat-test.XXXXXX)
trap 'stop_cluster "$cluster"; rm -rf "$cluster"' EXIT
port=$(free_port)
say "throwaway PostgreSQL on 127.0.0.1:$port"
start_cluster "$cluster" "$port" throwaway
create_database "$port" hatchat_test
export HATCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/hatchat_test"

say "SQL, HTTP and browser suites"
cargo test --workspace --test '*'
say "all tests passed (browser screenshots in target/browser-test/)"
