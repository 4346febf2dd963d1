#!/usr/bin/env bash
# Lose the primary, lose nothing (issue 30): starts scripts/ha.sh's replicated deployment (a
# pg_auto_failover monitor, a primary and a synchronous standby) from the tests' private
# PostgreSQL installation with the dev build in it, and runs gateway/tests/failover.rs against it:
# clients send and follow streams through one gateway while the primary is killed (SIGKILL) and
# switched over. Its failover timeouts are ha.sh's, tuned for one machine (about 7 s from a kill
# to the first write). Run by scripts/test.sh; alone: scripts/test-failover.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_toolchain
pg_bin=$(private_pg_install "$(test_pg_install_dir)")
[ -n "${HATCHAT_SKIP_INSTALL:-}" ] || install_extension dev "$pg_bin/pg_config"

dir=$(mktemp -d /tmp/hatchat-ha.XXXXXX)
export HATCHAT_PG_BIN=$pg_bin HATCHAT_HA_DIR=$dir
trap 'bash "$ROOT/scripts/ha.sh" stop "$dir"; rm -rf "$dir"' EXIT
say "a monitor, a primary and a synchronous standby under $dir"
url=$(bash "$ROOT/scripts/ha.sh" start "$dir" | tail -1)
HATCHAT_TEST_DATABASE_URL=$url cargo test -p hatchat-gateway --test failover -- --ignored --nocapture
