#!/usr/bin/env bash
# A replicated hatchat (issue 30): a pg_auto_failover monitor, a primary and one synchronous
# standby, three PostgreSQL clusters of the system's installation (the one pg_autoctl manages, with
# hatchat installed and preloaded) on free ports of 127.0.0.1, everything under DIR.
#
#   scripts/ha.sh start DIR          make (once) and start the three; prints the gateway's URL
#   scripts/ha.sh stop DIR           stop them (DIR stays; rm -rf it to throw the data away)
#   scripts/ha.sh status DIR         the monitor's view, and whether hatchat's settings agree
#   scripts/ha.sh url DIR            the multi-host URL the gateway connects with
#   scripts/ha.sh kill-primary DIR [--postgres]
#                                    the primary's machine dies: SIGKILL its keeper and its
#                                    postmaster, wait for the standby to take writes, then bring the
#                                    keeper back and wait for the old primary to rejoin as the
#                                    synchronous standby; prints both times. --postgres kills only
#                                    the postmaster and leaves the keeper to restart it.
#   scripts/ha.sh switchover DIR     a clean switchover (pg_autoctl perform switchover), timed
#
# Why pg_auto_failover: docs/operations.md, "Replication and failover".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The PostgreSQL installation the three clusters run from: the system's (with the release build
# scripts/run.sh installs), or HATCHAT_PG_BIN, a private copy with a build of its own in it (the
# failover test's; scripts/test-failover.sh).
SYSTEM_PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_BIN=${HATCHAT_PG_BIN:-$SYSTEM_PG_BIN}
NODES=(node1 node2)

# --- Settings -------------------------------------------------------------------------------------
# Failover timing, tuned for a test on one machine (the defaults, in brackets, suit a network).
# The monitor declares a data node unhealthy when its health checks fail and its keeper has not
# reported for node_considered_unhealthy_timeout; it then gives the primary primary_demote_timeout
# to drain before it promotes the standby.
MONITOR_SETTINGS=(
    "pgautofailover.health_check_period = 1000"              # ms between health checks [5000]
    "pgautofailover.health_check_timeout = 1000"             # ms connect timeout [5000]
    "pgautofailover.health_check_max_retries = 1"            # [2]
    "pgautofailover.health_check_retry_delay = 500"          # ms [2000]
    "pgautofailover.node_considered_unhealthy_timeout = 3000" # ms without a report [20000]
    "pgautofailover.primary_demote_timeout = 3000"           # ms the primary gets to drain [30000]
    "pgautofailover.startup_grace_period = 3000"             # ms after the monitor starts [10000]
    # pg_autoctl sizes every node's shared_buffers to a quarter of the machine's memory.
    "shared_buffers = 128MB"
)
# The keepers' (pg_autoctl run on each data node), in seconds. A primary that can reach neither
# the monitor nor its standby demotes itself after network_partition_timeout: kept below the
# monitor's unhealthy + demote timeouts (6 s), so that it has stopped before the standby is
# promoted. A postmaster that the keeper cannot restart for postgresql_restart_failure_timeout is
# reported as down, which starts a failover.
KEEPER_SETTINGS=(
    "timeout.network_partition_timeout 5"                    # [20]
    "timeout.postgresql_restart_failure_timeout 3"           # [20]
    "timeout.postgresql_restart_failure_max_retries 3"       # [3]
)

# hatchat's settings (src/settings.rs; docs/operations.md, "Settings"): one file, DIR/hatchat.conf,
# included by both data nodes' postgresql.conf, so that they cannot differ, whichever node is the
# primary. Written once: edit it, then `scripts/ha.sh status DIR` checks both nodes agree after a
# reload (SELECT pg_reload_conf() on each).
write_hatchat_conf() {
    local file=$1/hatchat.conf
    [ -f "$file" ] && return 0
    cat >"$file" <<'EOF'
# hatchat's settings for both data nodes of this replicated deployment (scripts/ha.sh). Both
# nodes include this very file: change it here, then reload both.
# pg_stat_statements: pg_autoctl preloads it and creates it in the database hatchat.
shared_preload_libraries = 'hatchat,pg_stat_statements'
# Commits wait for the synchronous standby (pg_auto_failover sets synchronous_standby_names).
synchronous_commit = on
max_connections = 300
shared_buffers = 256MB
hatchat.registration = 'open'
hatchat.max_token_lifetime = 86400
hatchat.max_payload_bytes = 65536
hatchat.room_max_messages = 100
hatchat.room_ttl = 5184000
hatchat.max_json_depth = 64
hatchat.max_notifications = 1000
hatchat.max_reactions_per_user = 20
hatchat.max_reactions_per_message = 100
hatchat.release_locks_before_flush = on
EOF
}

# --- Helpers --------------------------------------------------------------------------------------

ensure_pg_auto_failover() {
    package_installed "postgresql-$PG_MAJOR" || ensure_system_packages
    package_installed "postgresql-$PG_MAJOR-auto-failover" || apt_install "postgresql-$PG_MAJOR-auto-failover"
    if [ "$PG_BIN" != "$SYSTEM_PG_BIN" ]; then
        # A private copy made before the package was installed lacks the monitor's extension.
        local root=${PG_BIN%"$SYSTEM_PG_BIN"}
        [ -f "$PG_BIN/../lib/pgautofailover.so" ] || dpkg -L "postgresql-$PG_MAJOR-auto-failover" \
            | grep -E "^/usr/(lib|share)/postgresql/$PG_MAJOR/(lib|extension)/pgautofailover[^/]*$" \
            | xargs cp --parents -t "$root"
        [ -f "$PG_BIN/../lib/hatchat.so" ] || die "no hatchat build in $PG_BIN/.. (HATCHAT_PG_BIN)"
    elif [ ! -f "$PG_BIN/../lib/hatchat.so" ]; then
        ensure_toolchain
        install_extension release
    fi
}

# pg_autoctl as the postgres user, its configuration and state files under DIR (not in the
# postgres user's home, where every deployment of the machine would share them), run from DIR
# (the postgres user may not be able to enter the caller's directory).
autoctl() {
    (cd "$DIR" && as_postgres env -u RUST_BACKTRACE XDG_CONFIG_HOME="$DIR/xdg/config" \
        XDG_DATA_HOME="$DIR/xdg/data" XDG_RUNTIME_DIR="$DIR/xdg/run" PATH="$PG_BIN:$PATH" pg_autoctl "$@")
}

port_of() { # port_of NAME: monitor, node1 or node2
    local names=(monitor "${NODES[@]}") ports i
    read -ra ports <"$DIR/ports"
    for i in 0 1 2; do [ "${names[$i]}" = "$1" ] && { echo "${ports[$i]}"; return; }; done
    die "no node $1"
}

monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$(port_of monitor)/pg_auto_failover?sslmode=disable"; }

gateway_url() {
    echo "postgres://postgres@127.0.0.1:$(port_of node1),127.0.0.1:$(port_of node2)/hatchat?target_session_attrs=read-write&connect_timeout=2"
}

psql_at() { # psql_at PORT DATABASE SQL...
    local port=$1 db=$2
    shift 2
    PGCONNECT_TIMEOUT=2 timeout 5 psql -h 127.0.0.1 -p "$port" -U postgres -d "$db" -XqAt -v ON_ERROR_STOP=1 "$@"
}

keeper_running() {
    local pid
    pid=$(sed -n 1p "$DIR/xdg/run/pg_autoctl$DIR/$1/pg_autoctl.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# start_keeper NAME: `pg_autoctl run` for NAME in the background, its log in DIR/NAME.log. The
# keeper starts PostgreSQL itself, and restarts it when it dies.
# Started by Python, in a session of its own and with no descriptor but its log: a bash `&`
# would hand it copies of the caller's pipes, and whoever reads this script's output would wait
# for the keeper to end.
start_keeper() {
    keeper_running "$1" && return 0
    local user=()
    [ "$(id -u)" = 0 ] && user=(runuser -u postgres --)
    (cd "$DIR" && python3 -c '
import subprocess, sys
log = open(sys.argv[1], "ab")
subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
' "$DIR/$1.log" "${user[@]}" env -u RUST_BACKTRACE XDG_CONFIG_HOME="$DIR/xdg/config" \
        XDG_DATA_HOME="$DIR/xdg/data" XDG_RUNTIME_DIR="$DIR/xdg/run" PATH="$PG_BIN:$PATH" \
        pg_autoctl run --pgdata "$DIR/$1")
}

# state_json: the monitor's view of the data nodes, one "name port reported assigned" line each.
node_states() {
    psql_at "$(port_of monitor)" pg_auto_failover -F ' ' \
        -c "SELECT nodename, nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid" 2>/dev/null
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { status >&2; die "timed out after ${limit}s waiting for $what"; }
        sleep 0.1
    done
}

# A primary and a secondary, both where the monitor wants them and both answering (just after a
# start, the monitor still shows the states the nodes had when they stopped).
steady() {
    [ "$(node_states | awk '$3 == $4 && ($3 == "primary" || $3 == "secondary")' | wc -l)" = 2 ] \
        && [ "$(node_states | awk '$3 == "primary"' | wc -l)" = 1 ] \
        && psql_at "$(port_of node1)" postgres -c "SELECT 1" && psql_at "$(port_of node2)" postgres -c "SELECT 1"
}

first_node_up() { node_states | grep -Eq '^node1 [0-9]+ (single|wait_primary|primary) '; }

rejoined() { node_states | grep -q "^$1 [0-9]* secondary secondary" && steady; }

primary_name() { node_states | awk '$3 == "primary" && $4 == "primary" { print $1 }'; }

writable() { psql_at "$1" postgres -c "SELECT txid_current()"; }

# A write through the gateway's URL: txid_current() makes the commit write WAL, so it waits for
# the synchronous standby like a send does.
write_through_url() { PGCONNECT_TIMEOUT=2 timeout 5 psql -XqAt "$(gateway_url)" -c "SELECT txid_current()"; }

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# --- Commands -------------------------------------------------------------------------------------

start() {
    ensure_pg_auto_failover
    mkdir -p "$DIR/xdg/config" "$DIR/xdg/data" "$DIR/xdg/run"
    chmod 700 "$DIR/xdg/run"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$DIR"
    if [ ! -f "$DIR/ports" ]; then
        echo "$(free_port) $(free_port) $(free_port)" | as_postgres tee "$DIR/ports" >/dev/null
    fi
    write_hatchat_conf "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR/hatchat.conf"

    # --no-ssl: every connection (keepers, monitor, replication, the gateway) stays on the
    # loopback, where TLS protects nothing; --ssl-self-signed would only add certificates that
    # no client verifies (it does not protect against a man in the middle either). Trust is given
    # to 127.0.0.1 only (initdb --auth=trust, and pg_autoctl's rules name 127.0.0.1/32).
    local common=(--hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$PG_BIN/pg_ctl")
    if [ ! -f "$DIR/monitor/PG_VERSION" ]; then
        say "creating the pg_auto_failover monitor on 127.0.0.1:$(port_of monitor)"
        autoctl create monitor --pgdata "$DIR/monitor" --pgport "$(port_of monitor)" "${common[@]}" \
            >>"$DIR/monitor.log" 2>&1 || { tail -20 "$DIR/monitor.log" >&2; die "the monitor was not created"; }
        autoctl config set --pgdata "$DIR/monitor" postgresql.listen_addresses 127.0.0.1 >/dev/null
        printf '%s\n' "${MONITOR_SETTINGS[@]}" | as_postgres tee -a "$DIR/monitor/postgresql.conf" >/dev/null
    fi
    start_keeper monitor
    wait_for 30 "the monitor" psql_at "$(port_of monitor)" pg_auto_failover -c "SELECT 1"

    local node fresh
    for node in "${NODES[@]}"; do
        fresh=
        if [ ! -f "$DIR/xdg/config/pg_autoctl$DIR/$node/pg_autoctl.cfg" ]; then
            if [ "$node" = node1 ]; then
                # The first node's cluster is made here, so that its postgresql.conf includes
                # hatchat.conf from the start; pg_autoctl then registers it as the primary. The
                # standby is a pg_basebackup of it: the same postgresql.conf and pg_hba.conf.
                as_postgres "$PG_BIN/initdb" -D "$DIR/$node" -U postgres --auth=trust -E UTF8 >/dev/null
                echo "include '$DIR/hatchat.conf'" | as_postgres tee -a "$DIR/$node/postgresql.conf" >/dev/null
            fi
            say "creating $node on 127.0.0.1:$(port_of "$node")"
            autoctl create postgres --pgdata "$DIR/$node" --pgport "$(port_of "$node")" --listen 127.0.0.1 \
                --name "$node" --dbname hatchat --monitor "$(monitor_uri)" "${common[@]}" \
                >>"$DIR/$node.log" 2>&1 || { tail -20 "$DIR/$node.log" >&2; die "$node was not created"; }
            fresh=1
            local setting
            for setting in "${KEEPER_SETTINGS[@]}"; do
                # shellcheck disable=SC2086 # "name value"
                autoctl config set --pgdata "$DIR/$node" $setting >/dev/null
            done
        fi
        start_keeper "$node"
        if [ "$node" = node1 ] && [ -n "$fresh" ]; then
            wait_for 60 "node1 to be the primary" first_node_up
        fi
    done
    wait_for 120 "a primary and a synchronous standby" steady
    local primary
    primary=$(primary_name)
    psql_at "$(port_of "$primary")" hatchat -c "CREATE EXTENSION IF NOT EXISTS hatchat"
    say "primary $primary, standby $(node_states | awk '$3 == "secondary" { print $1 }'); monitor on $(port_of monitor)"
    gateway_url
}

stop() {
    [ -f "$DIR/ports" ] || return 0
    local node i
    # The monitor first: without it, the keepers keep their states (a primary whose standby
    # stopped first would be told to stop waiting for it, and fail to while it stops itself),
    # and the next start finds the pair as it was.
    for node in monitor "${NODES[@]}"; do
        [ -d "$DIR/$node" ] || continue
        autoctl stop --pgdata "$DIR/$node" >/dev/null 2>&1 || true
        i=0
        while keeper_running "$node" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        stop_cluster "$DIR/$node"
    done
    return 0
}

status() {
    autoctl show state --pgdata "$DIR/monitor" || true
    autoctl show settings --pgdata "$DIR/monitor" 2>/dev/null || true
    local node settings=() n=0
    for node in "${NODES[@]}"; do
        settings[n]=$(psql_at "$(port_of "$node")" postgres \
            -c "SELECT name || '=' || setting FROM pg_settings WHERE name LIKE 'hatchat.%' OR name IN ('shared_preload_libraries', 'synchronous_commit') ORDER BY name" 2>/dev/null) \
            || settings[n]="(down)"
        n=$((n + 1))
    done
    if [ "${settings[0]}" = "${settings[1]}" ]; then
        echo "hatchat settings: the same on both nodes"
    else
        echo "hatchat settings DIFFER (or a node is down):"
        diff <(echo "${settings[0]}") <(echo "${settings[1]}") || true
    fi
    echo "gateway URL: $(gateway_url)"
}

kill_primary() {
    local mode=${1:-node} old new t0 t_url t_back pid
    steady || die "not steady (a primary and a secondary): see scripts/ha.sh status $DIR"
    old=$(primary_name)
    pid=$(head -1 "$DIR/$old/postmaster.pid")
    if [ "$mode" = --postgres ]; then
        say "SIGKILL $old's postmaster ($pid); its keeper stays"
        t0=$(now)
        kill -KILL "$pid"
    else
        # The keeper's pid file: its pid on the first line, then "PID service" for each of its
        # children (the one that starts and stops PostgreSQL, the one that talks to the monitor).
        local keeper
        keeper=$(sed -n '1p; s/^\([0-9][0-9]*\) [a-z-]*$/\1/p' "$DIR/xdg/run/pg_autoctl$DIR/$old/pg_autoctl.pid")
        say "SIGKILL $old: its keeper and its children ($(echo $keeper)) and its postmaster ($pid)"
        t0=$(now)
        # shellcheck disable=SC2086 # one pid a word
        kill -KILL $keeper "$pid"
    fi
    # The first write through the gateway's URL, wherever it lands.
    wait_for 120 "a write through $(gateway_url)" write_through_url
    t_url=$(now)
    new=$(node_states | awk '$4 ~ /^(primary|wait_primary|single)$/ { print $1 }')
    if [ "$mode" != --postgres ]; then
        # The machine comes back: its keeper finds the monitor has demoted it, rewinds the old
        # primary (pg_rewind) and follows the new one.
        start_keeper "$old"
    fi
    if [ "$mode" = --postgres ]; then
        # The keeper restarts PostgreSQL at once; whether the monitor fails over meanwhile
        # depends on whether the keeper reported it down first. Wait until things settle.
        local calm=0
        until [ $calm -ge 50 ]; do
            if steady; then calm=$((calm + 1)); else calm=0; fi
            sleep 0.1
        done
        echo "killed: $old's postmaster; the primary is now $(primary_name)"
        echo "kill -> first write through the URL: $(elapsed "$t0" "$t_url") s"
        return
    fi
    wait_for 180 "$old to be back as the secondary" rejoined "$old"
    t_back=$(now)
    echo "killed: $old; took the writes: $new"
    echo "kill -> first write through the URL: $(elapsed "$t0" "$t_url") s"
    echo "kill -> $old secondary again: $(elapsed "$t0" "$t_back") s"
}

switchover() {
    local old t0 t_url t_back
    steady || die "not steady (a primary and a secondary): see scripts/ha.sh status $DIR"
    old=$(primary_name)
    say "switching over from $old"
    t0=$(now)
    autoctl perform switchover --pgdata "$DIR/monitor" >>"$DIR/switchover.log" 2>&1 &
    local job=$!
    sleep 0.2
    wait_for 120 "a write through $(gateway_url)" write_through_url
    t_url=$(now)
    wait "$job" || { tail -20 "$DIR/switchover.log" >&2; die "the switchover failed"; }
    wait_for 120 "$old to be back as the secondary" rejoined "$old"
    t_back=$(now)
    echo "switched over: $old -> $(primary_name)"
    echo "start -> first write through the URL: $(elapsed "$t0" "$t_url") s (a write may land on $old before it is demoted)"
    echo "start -> $old secondary again: $(elapsed "$t0" "$t_back") s"
}

command=${1:-}
[ -n "${2:-}" ] || die "usage: scripts/ha.sh start|stop|status|url|kill-primary|switchover DIR"
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
case "$command" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) gateway_url ;;
    kill-primary) kill_primary "${3:-}" ;;
    switchover) switchover ;;
    *) die "usage: scripts/ha.sh start|stop|status|url|kill-primary|switchover DIR" ;;
esac
