#!/usr/bin/env bash
# Runs the broker: the hatchat gateway on 127.0.0.1:8080 (or $HATCHAT_LISTEN) over the database in
# $DATABASE_URL or, without it, over a private PostgreSQL cluster kept in .hatchat/ (made on the
# first run, reused after). Installs what is missing first; cheap when everything is there.
#
#   scripts/run.sh          build, install, start the database and serve
#   scripts/run.sh psql [psql arguments]   psql on the embedded database (with the extension)
#   scripts/run.sh stop     stop the embedded database cluster
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

command=${1:-serve}

# The embedded cluster's data lives in the project (git-ignored) when the postgres user can reach
# it; a checkout under a private home (/root) falls back to /var/tmp.
embedded_data_dir() {
    if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$ROOT"; then
        echo "$ROOT/.hatchat/pgdata"
    else
        echo "/var/tmp/hatchat-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)/pgdata"
    fi
}

start_embedded_database() {
    local dir port
    dir=$(embedded_data_dir)
    if [ -f "$dir/postmaster.pid" ] && as_postgres pg_ctl -D "$dir" status >/dev/null 2>&1; then
        port=$(cluster_port "$dir")
    else
        port=${HATCHAT_PG_PORT:-54329}
        say "starting the embedded PostgreSQL in $dir on 127.0.0.1:$port"
    fi
    # Also for a running cluster: one made by an earlier version gets the preload (and a restart).
    start_cluster "$dir" "$port" durable
    create_database "$port" hatchat
    update_extension "$dir" "$port" hatchat
    echo "postgres://postgres@127.0.0.1:$port/hatchat"
}

# update_extension DIR PORT NAME: a database made by an earlier release of hatchat is updated to
# the installed one. The server is restarted first: it holds the old library, preloaded.
update_extension() {
    local dir=$1 port=$2 name=$3 installed available
    installed=$(psql -h 127.0.0.1 -p "$port" -U postgres -d "$name" -tAc \
        "SELECT extversion FROM pg_extension WHERE extname = 'hatchat'")
    available=$(psql -h 127.0.0.1 -p "$port" -U postgres -d "$name" -tAc \
        "SELECT default_version FROM pg_available_extensions WHERE name = 'hatchat'")
    [ "$installed" = "$available" ] && return 0
    say "updating hatchat $installed -> $available in $name (restarting PostgreSQL first)"
    stop_cluster "$dir"
    start_cluster "$dir" "$port" durable
    psql -h 127.0.0.1 -p "$port" -U postgres -d "$name" -qc "ALTER EXTENSION hatchat UPDATE"
}

case "$command" in
    serve)
        ensure_toolchain
        install_extension release
        say "building the gateway"
        cargo build --release -p hatchat-gateway -q
        if [ -z "${DATABASE_URL:-}" ]; then
            DATABASE_URL=$(start_embedded_database)
            export DATABASE_URL
        fi
        say "serving on http://${HATCHAT_LISTEN:-127.0.0.1:8080} (Ctrl-C stops the gateway)"
        exec "$ROOT/target/release/hatchat-gateway"
        ;;
    psql)
        shift
        ensure_toolchain
        install_extension release
        url=$(start_embedded_database)
        exec psql "$url" "$@"
        ;;
    stop)
        stop_cluster "$(embedded_data_dir)"
        say "embedded database stopped"
        ;;
    *)
        die "usage: scripts/run.sh [serve|psql|stop]"
        ;;
esac
