#!/usr/bin/env bash
# Builds the Debian package of hatchat for PostgreSQL 15 on Debian 12: the extension's files as
# `cargo pgrx package` makes them, every upgrade script in sql/, the gateway binary, its systemd
# unit and environment file. Writes target/package/hatchat_VERSION_ARCH.deb and prints its path.
#
#   scripts/package.sh           build the package
#   scripts/package.sh --check   build it, check its contents, then install it into a copy of
#                                PostgreSQL and run the SQL smoke test against a throwaway cluster
# PG_CONFIG (default: PostgreSQL 15's) says which PostgreSQL the extension is built for.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

pg_config=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
version=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "hatchat"))')
arch=$(dpkg --print-architecture)
out=target/package
stage=$out/hatchat_${version}_$arch

build_package() {
    ensure_toolchain
    rm -rf "$stage"
    mkdir -p "$stage"
    say "building the extension (release) for $("$pg_config" --version)"
    cargo pgrx package --pg-config "$pg_config" --out-dir "$stage" >/dev/null
    local extension_dir
    extension_dir=$stage$("$pg_config" --sharedir)/extension
    # Upgrade scripts (and any older full script kept for upgrade tests): the script pgrx generated
    # for this version stays as generated.
    for script in sql/hatchat--*.sql; do
        [ -e "$script" ] || continue
        [ -e "$extension_dir/$(basename "$script")" ] || install -m 644 "$script" "$extension_dir/"
    done
    say "building the gateway (release)"
    cargo build --release -q -p hatchat-gateway --bin hatchat-gateway
    install -D -m 755 target/release/hatchat-gateway "$stage/usr/bin/hatchat-gateway"
    install -D -m 644 packaging/hatchat-gateway.service "$stage/lib/systemd/system/hatchat-gateway.service"
    install -D -m 644 packaging/gateway.env "$stage/etc/hatchat/gateway.env"
    install -D -m 644 LICENSE "$stage/usr/share/doc/hatchat/copyright"
    install -D -m 644 README.md "$stage/usr/share/doc/hatchat/README.md"
    for page in docs/*.md docs/*.svg docs/*.png; do
        install -D -m 644 "$page" "$stage/usr/share/doc/hatchat/$page"
    done
    mkdir -p "$stage/DEBIAN"
    local size
    size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
        packaging/debian/control >"$stage/DEBIAN/control"
    install -m 644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
    install -m 755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/" >/dev/null
    rm -rf "$stage"
    echo "$out/hatchat_${version}_$arch.deb"
}

# check_contents DEB: the files an install needs are in the package, with sane modes.
check_contents() {
    local deb=$1 listing libdir sharedir
    listing=$(dpkg-deb -c "$deb")
    libdir=$("$pg_config" --pkglibdir) sharedir=$("$pg_config" --sharedir)
    local expected=(
        ".$libdir/hatchat.so"
        ".$sharedir/extension/hatchat.control"
        ".$sharedir/extension/hatchat--$version.sql"
        "./usr/bin/hatchat-gateway"
        "./lib/systemd/system/hatchat-gateway.service"
        "./etc/hatchat/gateway.env"
    )
    for script in sql/hatchat--*.sql; do
        [ -e "$script" ] && expected+=(".$sharedir/extension/$(basename "$script")")
    done
    for file in "${expected[@]}"; do
        grep -q " $file\$" <<<"$listing" || die "$deb lacks $file"
    done
    grep -q -- "-rwxr-xr-x root/root .* ./usr/bin/hatchat-gateway$" <<<"$listing" \
        || die "the gateway is not an executable owned by root"
    [ "$(dpkg-deb -f "$deb" Package Depends | tr '\n' ' ')" = "Package: hatchat Depends: postgresql-15, libc6, libgcc-s1 " ] \
        || die "unexpected control fields: $(dpkg-deb -f "$deb")"
    # Listed first, then matched: `tar | grep -q` fails under pipefail when grep's early exit
    # makes tar's next write a SIGPIPE (CI failed so once, with the file there).
    local control
    control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
    grep -qx './conffiles' <<<"$control" || die "no conffiles"
    # What `apt install ./hatchat_*.deb` would do here, without doing it.
    apt-get install --simulate -q "./$deb" >/dev/null || die "apt would not install $deb"
    # PGXN's description of the extension names the same version.
    [ "$(python3 -c 'import json; print(json.load(open("META.json"))["version"])')" = "$version" ] \
        || die "META.json's version is not $version"
    say "contents: ${#expected[@]} expected files present"
}

# smoke_test DEB: unpacks the package over a private copy of PostgreSQL (what `apt install` puts
# under /usr, without touching the system's), starts a throwaway cluster from that copy, and runs
# the SQL smoke test: CREATE EXTENSION, register a user, create a channel, send, read.
smoke_test() {
    local deb=$1 root bin cluster port
    root=$(mktemp -d /var/tmp/hatchat-package-test.XXXXXX)
    cluster=$(mktemp -d /tmp/hatchat-package-cluster.XXXXXX)
    trap 'stop_cluster "$cluster"; rm -rf "$cluster" "$root"' RETURN
    chmod 755 "$root" # the cluster runs as postgres, from the copy in here
    bin=$(private_pg_install "$root")
    # Only the package's own files may answer: an earlier build installed into the system's
    # PostgreSQL (scripts/run.sh) was copied along.
    rm -f "$root$("$pg_config" --pkglibdir)"/hatchat.so "$root$("$pg_config" --sharedir)"/extension/hatchat[.-]*
    dpkg-deb -x "$deb" "$root"
    [ -x "$root/usr/bin/hatchat-gateway" ] && "$root/usr/bin/hatchat-gateway" --version >/dev/null \
        || die "the packaged gateway does not run"
    port=$(free_port)
    PATH="$bin:$PATH" start_cluster "$cluster" "$port" throwaway ""
    PATH="$bin:$PATH" as_postgres psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v key="$(cat tests/fixtures/keys/alice.pub.pem)" -v user=6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c \
        -v token="$(scripts/make-token 6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c tests/fixtures/keys/alice.key.pem 600)" \
        -f - <<'SQL'
CREATE EXTENSION hatchat;
SELECT hatchat.register_user(:'user', :'key', 'alice') ->> 'username' AS username \gset
SELECT hatchat.create_channel(:'token', 'general', 'self') ->> 'id' AS channel \gset
SELECT hatchat.send_message(:'token', 'general', '{"text": "hello"}') ->> 'seq' AS seq \gset
SELECT hatchat.get_messages(:'token', 'general') -> -1 -> 'payload' ->> 'text' AS text \gset
SELECT extversion AS version FROM pg_extension WHERE extname = 'hatchat' \gset
\echo smoke: extension :version, user :username, channel :channel, message :seq read back as :text
SELECT :'username' = 'alice' AND :'channel' = 'general' AND :'text' = 'hello' AS ok \gset
\if :ok
\else
SELECT 'unexpected answers' AS smoke_test_failed, 1 / 0;
\endif
SQL
    say "smoke test passed: the packaged extension installs and answers"
}

deb=$(build_package)
say "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
if [ "${1:-}" = --check ]; then
    check_contents "$deb"
    smoke_test "$deb"
    # The plain closing line CI reads: contents, apt's dry run and the smoke test.
    echo "package: 3 passed, 0 failed"
fi
