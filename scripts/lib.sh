# Shared by the project's commands (run.sh, test.sh, bench.sh): install what is missing — cheaply
# when it is already there — and manage private PostgreSQL clusters. Source it; don't run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGRX_VERSION=0.18.1
PG_MAJOR=15
export PATH="$HOME/.cargo/bin:/usr/lib/postgresql/$PG_MAJOR/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Postgres refuses to run as root: as root, its programs run as the `postgres` user.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

package_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

apt_install() {
    say "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

# PostgreSQL 15 with server headers of exactly the server's version (pgrx builds against them),
# plus what bindgen needs, and make (the gateway's allocator, jemalloc, is built from its C source).
ensure_system_packages() {
    local wanted=(libclang-dev clang make sudo python3) missing=()
    for p in "${wanted[@]}"; do package_installed "$p" || missing+=("$p"); done
    if ! package_installed "postgresql-$PG_MAJOR"; then
        missing+=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR")
    elif ! package_installed "postgresql-server-dev-$PG_MAJOR"; then
        local version
        version=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
        if ! apt_install "postgresql-server-dev-$PG_MAJOR=$version"; then
            # The archive moved on: take server and headers together at the newer version.
            missing+=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR")
        fi
    fi
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
}

ensure_cargo_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        say "installing cargo-pgrx $PGRX_VERSION (a few minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "^pg$PG_MAJOR = \"$(command -v pg_config)\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        cargo pgrx init "--pg$PG_MAJOR" "$(command -v pg_config)" >/dev/null
    fi
}

# rust-toolchain.toml names the Rust the project is built with. rustup cannot download here, so a
# machine whose stable toolchain is that version gets it linked under its version's name.
ensure_rust_toolchain() {
    command -v rustup >/dev/null || return 0
    local wanted
    wanted=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")
    rustup toolchain list | grep -q "^$wanted" && return 0
    if rustup run stable rustc --version 2>/dev/null | grep -q "^rustc $wanted "; then
        rustup toolchain link "$wanted" "$(rustup run stable rustc --print sysroot)"
    else
        die "Rust $wanted (rust-toolchain.toml) is not installed: rustup toolchain install $wanted"
    fi
}

ensure_toolchain() {
    ensure_system_packages
    ensure_rust_toolchain
    ensure_cargo_pgrx
}

# What the web client's tests need: Debian's Chromium and ChromeDriver, and Node for the unit tests
# of its JavaScript (Debian's nodejs when none is installed).
ensure_browser_tools() {
    local missing=()
    for p in chromium chromium-driver; do package_installed "$p" || missing+=("$p"); done
    command -v node >/dev/null || missing+=(nodejs)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    [ -x /usr/bin/chromedriver ] || die "chromium-driver could not be installed: the browser test needs it"
}

# install_extension [release|dev] [PG_CONFIG]: builds the extension and installs it into the
# PostgreSQL installation PG_CONFIG describes (the system's by default).
install_extension() {
    local profile=${1:-release} pg_config=${2:-$(command -v pg_config)} flags=()
    [ "$profile" = release ] && flags+=(--release)
    [ "$(id -u)" = 0 ] || case "$pg_config" in /usr/*) flags+=(--sudo) ;; esac
    say "building and installing the hatchat extension ($profile) into $(dirname "$pg_config")"
    (cd "$ROOT" && cargo pgrx install "${flags[@]}" --pg-config "$pg_config" >/dev/null)
    install_upgrade_scripts "$pg_config"
}

# install_upgrade_scripts PG_CONFIG: cargo pgrx installs only the current version's install script;
# `ALTER EXTENSION hatchat UPDATE` also needs the hand-written scripts from each earlier release.
install_upgrade_scripts() {
    local dest
    dest="$("$1" --sharedir)/extension"
    case "$dest" in /usr/*) [ "$(id -u)" = 0 ] || local sudo=sudo ;; esac
    ${sudo:-} cp "$ROOT"/sql/hatchat--*--*.sql "$dest/"
}

# private_pg_install DIR: a copy of the system's PostgreSQL installation (programs, libraries,
# share files; headers linked) under DIR, made once; prints its bin directory. PostgreSQL finds
# its libraries and extensions relative to its own programs, so a cluster started from this copy
# loads the extension build installed into it, and the system installation, the one the broker of
# scripts/run.sh loads, never sees that build.
private_pg_install() {
    local dir=$1 lib=/usr/lib/postgresql/$PG_MAJOR share=/usr/share/postgresql/$PG_MAJOR
    if [ ! -x "$dir$lib/bin/postgres" ]; then
        mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql" "$dir/usr/include/postgresql"
        cp -a "$lib" "$dir/usr/lib/postgresql/"
        cp -a "$share" "$dir/usr/share/postgresql/"
        ln -sfn "/usr/include/postgresql/$PG_MAJOR" "$dir/usr/include/postgresql/$PG_MAJOR"
    fi
    echo "$dir$lib/bin"
}

# Where the tests' private installation lives: outside the checkout, which the postgres user may
# not be able to reach, and kept between runs (it is a cache, made again when missing).
test_pg_install_dir() {
    echo "/var/tmp/hatchat-test-pg-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster DIR PORT [durable|throwaway] [PRELOAD]: initialises (once) and starts a private
# cluster that listens on 127.0.0.1:PORT and a socket in DIR, trusting local connections as
# `postgres`. PRELOAD (default `hatchat`, empty for none) is its shared_preload_libraries: preloaded,
# hatchat announces changes from its announcer instead of each sender's transaction
# (docs/how-it-works.md, "How wake-ups travel"). A cluster made before without it gets it, and is restarted.
start_cluster() {
    local dir=$1 port=$2 kind=${3:-durable} preload=${4-hatchat}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_postgres initdb -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
            echo "max_connections = 300"
            echo "shared_buffers = 256MB"
            if [ "$kind" = throwaway ]; then
                # Test data is thrown away: durability only costs time. synchronous_commit stays
                # on, as in production, so commits take the path they take there (src/commit.rs);
                # without fsync, a flush is a write.
                echo "fsync = off"
                echo "full_page_writes = off"
            fi
        } | as_postgres tee -a "$dir/postgresql.conf" >/dev/null
    fi
    if [ -n "$preload" ] && ! grep -qs '^shared_preload_libraries' "$dir/postgresql.conf"; then
        echo "shared_preload_libraries = '$preload'" | as_postgres tee -a "$dir/postgresql.conf" >/dev/null
        as_postgres pg_ctl -D "$dir" status >/dev/null 2>&1 && stop_cluster "$dir"
    fi
    if ! as_postgres pg_ctl -D "$dir" status >/dev/null 2>&1; then
        # Without RUST_BACKTRACE in its environment (a developer shell may set it), no error the
        # extension raises carries a Rust backtrace to clients.
        as_postgres env -u RUST_BACKTRACE pg_ctl -D "$dir" -l "$dir/server.log" -o "-p $port" -w start >/dev/null \
            || { cat "$dir/server.log" >&2; die "PostgreSQL did not start (log above)"; }
    fi
}

stop_cluster() {
    as_postgres pg_ctl -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

# The port a running private cluster listens on.
cluster_port() {
    sed -n '4p' "$1/postmaster.pid"
}

# create_database PORT NAME: creates NAME (if missing) with the extension in it.
create_database() {
    local port=$1 name=$2
    psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1 \
        || createdb -h 127.0.0.1 -p "$port" -U postgres "$name"
    psql -h 127.0.0.1 -p "$port" -U postgres -d "$name" -qc "CREATE EXTENSION IF NOT EXISTS hatchat"
}

# --- Citus (issue 15): a coordinator and two workers as throwaway clusters -------------------------

# Citus's source, as this project receives it: ../shared/citus beside the checkout (or beside its
# parent, for a clone made one level deeper); CITUS_TARBALL overrides.
citus_tarball() {
    local candidate
    for candidate in "$ROOT/../shared/citus/citus-13.2.2.tar.gz" "$ROOT/../../shared/citus/citus-13.2.2.tar.gz"; do
        [ -f "$candidate" ] && { echo "$candidate"; return; }
    done
    echo "$ROOT/../shared/citus/citus-13.2.2.tar.gz"
}
CITUS_TARBALL=${CITUS_TARBALL:-$(citus_tarball)}

# Where the built Citus tree is kept: outside the checkout, once per machine, keyed by the
# tarball's sha256 so that a different tarball builds afresh.
citus_build_dir() {
    local sum
    sum=$(sha256sum "$CITUS_TARBALL" | cut -c1-12)
    echo "/var/tmp/hatchat-citus-$(basename "$CITUS_TARBALL" .tar.gz | sed 's/^citus-//')-$sum"
}

# build_citus: unpacks and builds Citus once (about a minute on 2 cores); prints the built tree.
# Built against the system's pg_config: a private copy of the installation has the same headers.
build_citus() {
    [ -f "$CITUS_TARBALL" ] || die "no Citus source at $CITUS_TARBALL"
    local dir
    dir=$(citus_build_dir)
    if [ ! -f "$dir/.built" ]; then
        local missing=()
        for p in build-essential libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev; do
            package_installed "$p" || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
        say "building Citus from $(basename "$CITUS_TARBALL") into $dir (about a minute, once)"
        # Built where it stays: configure writes the tree's absolute path into its makefiles. The
        # marker is written last, so an interrupted build starts over.
        rm -rf "$dir" && mkdir -p "$dir"
        tar -xzf "$CITUS_TARBALL" -C "$dir" --strip-components=1
        # with_llvm=no: no JIT bitcode, which would double the build and changes no behaviour.
        (cd "$dir" && PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config ./configure >build.log 2>&1 \
            && make -j"$(nproc)" with_llvm=no >>build.log 2>&1) \
            || { tail -30 "$dir/build.log" >&2; die "the Citus build failed (log above)"; }
        touch "$dir/.built"
    fi
    echo "$dir"
}

# install_citus PG_CONFIG: installs the built Citus (citus and citus_columnar) into the PostgreSQL
# installation PG_CONFIG describes, skipped when that installation already has this build. Its
# headers are not installed: a private installation links the system's include directory.
install_citus() {
    local pg_config=$1 dir libdir
    dir=$(build_citus)
    libdir=$("$pg_config" --pkglibdir)
    cmp -s "$dir/src/backend/distributed/citus.so" "$libdir/citus.so" && return 0
    say "installing Citus into $(dirname "$pg_config")"
    make -C "$dir" install-extension with_llvm=no PG_CONFIG="$pg_config" >/dev/null
}

# citus_node_start DIR PORT: a throwaway cluster (start_cluster) that preloads Citus and hatchat.
citus_node_start() {
    local dir=$1 port=$2
    start_cluster "$dir" "$port" throwaway ""
    grep -qs '^shared_preload_libraries' "$dir/postgresql.conf" && return 0
    {
        echo "shared_preload_libraries = 'citus,hatchat'"
        echo "citus.enable_statistics_collection = off" # no phoning home
        echo "max_prepared_transactions = 100"          # Citus commits multi-node writes with 2PC
        echo "wal_level = logical"                      # shard moves (rebalancing) need it
    } | as_postgres tee -a "$dir/postgresql.conf" >/dev/null
    as_postgres pg_ctl -D "$dir" -l "$dir/server.log" -o "-p $port" -m fast -w restart >/dev/null \
        || { cat "$dir/server.log" >&2; die "Citus node in $dir did not start (log above)"; }
}

# citus_cluster_start DIR DATABASE: a coordinator (DIR/coordinator) and two workers (DIR/worker1,
# DIR/worker2) on free ports, DATABASE with `citus` on each, the workers added to the coordinator.
# Writes the ports to DIR/ports (coordinator first). Expects the private installation's programs
# first on PATH.
citus_cluster_start() {
    local dir=$1 db=$2 node port ports=()
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ -f "$dir/ports" ]; then read -ra ports <"$dir/ports"; fi
    local i=0
    for node in coordinator worker1 worker2; do
        port=${ports[$i]:-$(free_port)}
        ports[i]=$port
        citus_node_start "$dir/$node" "$port"
        psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
            || createdb -h 127.0.0.1 -p "$port" -U postgres "$db"
        psql -h 127.0.0.1 -p "$port" -U postgres -d "$db" -qc "CREATE EXTENSION IF NOT EXISTS citus"
        i=$((i + 1))
    done
    echo "${ports[*]}" >"$dir/ports"
    psql -h 127.0.0.1 -p "${ports[0]}" -U postgres -d "$db" -qAt -v ON_ERROR_STOP=1 \
        -c "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${ports[1]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${ports[2]})" >/dev/null
}

citus_cluster_stop() {
    local node
    for node in coordinator worker1 worker2; do
        [ -d "$1/$node" ] && stop_cluster "$1/$node"
    done
    return 0
}
