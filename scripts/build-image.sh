#!/usr/bin/env bash
# Builds the local image compute_ctl:dev without any container registry.
#
#   1. Base: a Debian bookworm rootfs made by debootstrap (minbase + postgresql-15
#      + ca-certificates) from the Debian mirror this host's apt is configured
#      with, upgraded from the security suite when the mirror offers one,
#      trimmed, and `docker import`ed as $BASE_TAG. Cached: skipped when the tag
#      exists (set COMPUTE_CTL_REBUILD_BASE=1 to rebuild it).
#   2. Binary: `cargo build` of compute_ctl on the host (Debian 12 like the
#      image, so the binary's glibc matches), debug by default for a quick
#      edit-test loop, release with COMPUTE_CTL_IMAGE_PROFILE=release.
#   3. Image: docker/Dockerfile.local on top of the base with the legacy
#      builder, which needs no registry; the build context holds only the
#      binary, so this step takes seconds.
#
# Environment: COMPUTE_CTL_IMAGE (default compute_ctl:dev),
# COMPUTE_CTL_BASE_IMAGE (default compute_ctl-base:bookworm-pg15),
# COMPUTE_CTL_IMAGE_PROFILE (debug|release), DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR (override what is read from /etc/apt).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
image=${COMPUTE_CTL_IMAGE:-compute_ctl:dev}
base_tag=${COMPUTE_CTL_BASE_IMAGE:-compute_ctl-base:bookworm-pg15}
profile=${COMPUTE_CTL_IMAGE_PROFILE:-debug}
suite=bookworm
target_dir=${CARGO_TARGET_DIR:-$root/target}

log() { echo "build-image: $*" >&2; }
die() { echo "build-image: error: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed); start dockerd or check DOCKER_HOST"

# Prints "URI SUITE" for every enabled deb source of this host's apt
# configuration, in both the one-line (.list) and deb822 (.sources) formats.
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                print $i, $(i + 1)
             }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush() {
                 if (types ~ /(^| )deb( |$)/ && enabled != "no")
                     for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print uris[u], suites[s]
                 types = ""; enabled = ""; nu = 0; ns = 0
             }
             /^[ \t]*#/ { next }
             /^[ \t]*$/ { flush(); next }
             {
                 key = tolower($1); sub(/:$/, "", key)
                 if (key == "types") { $1 = ""; types = $0 }
                 else if (key == "enabled") enabled = tolower($2)
                 else if (key == "uris") for (i = 2; i <= NF; i++) uris[++nu] = $i
                 else if (key == "suites") for (i = 2; i <= NF; i++) suites[++ns] = $i
             }
             END { flush() }' "$f"
    done
}

# The first configured mirror that serves SUITE, or nothing.
mirror_for() { apt_sources | awk -v s="$1" '$2 == s { print $1; exit }'; }

ensure_debootstrap() {
    command -v debootstrap >/dev/null && return
    [ "$(id -u)" = 0 ] || die "debootstrap is missing; install it (apt-get install debootstrap) or run as root"
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
}

build_base() {
    [ "$(id -u)" = 0 ] || die "building the base image needs root (debootstrap, chroot)"
    ensure_debootstrap
    local mirror security rootfs
    mirror=${DEBIAN_MIRROR:-$(mirror_for "$suite")}
    [ -n "$mirror" ] || die "no Debian mirror for '$suite' in /etc/apt/sources.list{,.d}; set DEBIAN_MIRROR=<url>"
    security=${DEBIAN_SECURITY_MIRROR:-$(mirror_for "$suite-security")}
    rootfs=$(mktemp -d /var/tmp/compute_ctl-rootfs.XXXXXX)
    # mktemp makes the directory 0700; it becomes the image's /, which every
    # user (postgres above all) must be able to traverse.
    chmod 0755 "$rootfs"
    # Unmount and remove the rootfs however this function ends.
    trap 'umount "'"$rootfs"'/proc" 2>/dev/null || true; rm -rf --one-file-system "'"$rootfs"'"' EXIT

    log "debootstrap $suite from $mirror into $rootfs (a few minutes)"
    debootstrap --variant=minbase --include=postgresql-15,ca-certificates \
        "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        die "debootstrap failed (full log: $rootfs.log); check that $mirror is reachable or set DEBIAN_MIRROR"
    }
    rm -f "$rootfs.log"

    # The image's own apt sources: the same mirror (the image is meant to be
    # rebuilt here, not updated in place), plus updates and security.
    {
        echo "deb $mirror $suite main"
        if [ -n "$(mirror_for "$suite-updates")" ]; then echo "deb $mirror $suite-updates main"; fi
        if [ -n "$security" ]; then echo "deb $security $suite-security main"; fi
    } >"$rootfs/etc/apt/sources.list"

    log "applying updates${security:+ and security updates from $security}"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    mount -t proc proc "$rootfs/proc"
    # Valid-Until is not checked: mirrors here may serve a dated snapshot.
    chroot "$rootfs" apt-get -o Acquire::Check-Valid-Until=false -q update >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        die "apt-get update inside the rootfs failed; check the mirror ($mirror${security:+, $security})"
    }
    chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
        -o Dpkg::Options::=--force-confold upgrade >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        die "apt-get upgrade inside the rootfs failed"
    }
    rm -f "$rootfs.log"
    chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' postgresql-15 >&2

    # compute_ctl makes its own data directory: drop the cluster that the
    # postgresql-common postinst created and keep it from making another.
    chroot "$rootfs" pg_dropcluster 15 main 2>/dev/null || true
    mkdir -p "$rootfs/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" >"$rootfs/etc/postgresql-common/createcluster.d/compute_ctl.conf"
    umount "$rootfs/proc"

    log "trimming docs, man pages, translations and apt lists"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/i18n "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
    : >"$rootfs/etc/resolv.conf"
    echo "compute" >"$rootfs/etc/hostname"

    log "importing the rootfs as $base_tag"
    tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --message "debootstrap $suite minbase + postgresql-15 from $mirror" \
        - "$base_tag" >/dev/null
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
}

if [ -n "${COMPUTE_CTL_REBUILD_BASE:-}" ] || ! docker image inspect "$base_tag" >/dev/null 2>&1; then
    build_base
else
    log "base image $base_tag exists (cached; COMPUTE_CTL_REBUILD_BASE=1 rebuilds it)"
fi

case $profile in
    debug) cargo_flags=() ;;
    release) cargo_flags=(--release) ;;
    *) die "COMPUTE_CTL_IMAGE_PROFILE must be debug or release, not '$profile'" ;;
esac
log "building compute_ctl ($profile)"
cargo build -q --bin compute_ctl "${cargo_flags[@]}"

context="$target_dir/image-context"
rm -rf "$context"
mkdir -p "$context"
cp "$target_dir/$profile/compute_ctl" "$context/compute_ctl"
# Debug info stays on the host (target/); the image layer gets 5x smaller.
if command -v strip >/dev/null; then strip --strip-debug "$context/compute_ctl"; fi
old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
log "building $image on $base_tag"
DOCKER_BUILDKIT=0 docker build -q \
    --build-arg BASE_IMAGE="$base_tag" \
    -f docker/Dockerfile.local -t "$image" "$context" >"$context/build.log" 2>&1 || {
    cat "$context/build.log" >&2
    die "docker build of $image failed"
}
# The image this build replaced is now untagged: remove it unless a container still uses it.
new_id=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
