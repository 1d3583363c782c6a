#!/usr/bin/env bash
# Bootstrap a Docker engine, Compose v2 and local stand-in base images on a Debian host
# with no Docker and no registry access (what ../shared/docs/docker-here.md verified).
#
#   sudo ops/bootstrap-docker.sh            # or: make docker-bootstrap
#
# Idempotent: every step checks first and skips work already done (engine installed,
# dockerd answering, compose plugin present, stand-in image built from the same recipe).
# Every wait has a timeout. Steps:
#   1. apt-get install docker.io debootstrap (Debian 12: dockerd 20.10)
#   2. start dockerd in the background, no bridge (containers use the host network, so
#      all traffic stays on 127.0.0.1), log to $DOCKERD_LOG, wait for `docker info`
#   3. Compose v2: download trixie's docker-compose package through a private apt
#      source list (the system is not upgraded) and install its CLI plugin
#   4. stand-ins for exactly the images the resolved Compose configuration names
#      (ops/compose_images.py: `docker compose --profile '*' config` with .env, or
#      .env.example when there is none; service images plus the bases of the builds).
#      Each image is mapped by repository name to a recipe in ops/standins/<name>/
#      (debootstrap rootfs -> docker import -> a small Dockerfile adding the official
#      image's interface) and tagged with the image's own name; an image no recipe
#      provides (unknown repository, another version) stops the script, named.
#
# Environment (all optional):
#   BOOTSTRAP_STATE_DIR  work folder (default /var/lib/habitto-docker-bootstrap)
#   DOCKERD_LOG          dockerd's log file (default /var/log/habitto-dockerd.log)
#   DOCKERD_TIMEOUT      seconds to wait for dockerd (default 90)
#   DEBIAN_MIRROR        (default http://deb.debian.org/debian)
#   COMPOSE_ENV_FILE     env file to resolve the images with (default .env, else .env.example)
#   SKIP_STANDINS=1      engine and compose only
set -o errexit -o pipefail -o nounset

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STANDINS_DIR="$REPO_DIR/ops/standins"
STATE_DIR=${BOOTSTRAP_STATE_DIR:-/var/lib/habitto-docker-bootstrap}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/habitto-dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-90}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
COMPOSE_SUITE=trixie
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
HOST_CA=/etc/ssl/certs/ca-certificates.crt
LABEL_KEY=org.habitto.standin.recipe

started=$(date +%s)
log() { printf '%s bootstrap-docker: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = "0" ] || die "run as root (it installs packages and starts dockerd)"
command -v apt-get >/dev/null || die "not a Debian host (no apt-get)"
mkdir -p "$STATE_DIR"

# One bootstrap at a time (other sessions on this machine may run it too).
exec 9>"$STATE_DIR/lock"
flock -w 1800 9 || die "another bootstrap held $STATE_DIR/lock for 30 minutes"

APT_OPTS=(-o Acquire::http::Timeout=30 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)

# --- 1. packages -----------------------------------------------------------------
install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v python3 >/dev/null || missing+=(python3)  # ops/compose_images.py
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages: docker.io, debootstrap and python3 already installed"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get "${APT_OPTS[@]}" update -qq
    timeout 900 apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
        "${missing[@]}" ca-certificates xz-utils >/dev/null
}

# --- 2. dockerd ------------------------------------------------------------------
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
    if engine_answers; then
        log "dockerd: already answering ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
        return
    fi
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "dockerd" ]; then
        log "dockerd: a dockerd process exists but does not answer yet; waiting for it"
    else
        log "dockerd: starting (no bridge, host network only), log in $DOCKERD_LOG"
        # setsid + nohup: the daemon outlives this script and its terminal.
        # 9>&-: the daemon must not inherit (and hold forever) the bootstrap lock.
        setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
            >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    fi
    local deadline=$(( $(date +%s) + DOCKERD_TIMEOUT ))
    until engine_answers; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer within ${DOCKERD_TIMEOUT}s (log: $DOCKERD_LOG)"
        fi
        sleep 1
    done
    log "dockerd: answering ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
}

# --- 3. Compose v2 ---------------------------------------------------------------
install_compose() {
    if timeout 10 docker compose version >/dev/null 2>&1; then
        log "compose: $(docker compose version --short) already installed"
        return
    fi
    log "compose: fetching $COMPOSE_SUITE's docker-compose package (private apt source list)"
    local apt_dir="$STATE_DIR/apt-$COMPOSE_SUITE"
    mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/download"
    cat >"$apt_dir/sources/$COMPOSE_SUITE.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $COMPOSE_SUITE
Components: main
Signed-By: $KEYRING
EOF
    # Private lists and cache: the host's own apt state is neither read nor changed.
    local opts=("${APT_OPTS[@]}"
        -o Dir::Etc::SourceList=/dev/null
        -o Dir::Etc::SourceParts="$apt_dir/sources"
        -o Dir::State::Lists="$apt_dir/lists"
        -o Dir::Cache="$apt_dir/cache"
        -o APT::Sandbox::User=root)
    timeout 600 apt-get "${opts[@]}" update -qq
    rm -f "$apt_dir/download"/*.deb
    (cd "$apt_dir/download" && timeout 600 apt-get "${opts[@]}" download docker-compose)
    local deb
    deb=$(ls "$apt_dir/download"/docker-compose_*.deb) || die "compose: download failed"
    rm -rf "$apt_dir/unpacked"
    dpkg -x "$deb" "$apt_dir/unpacked"
    install -D -m 0755 "$apt_dir/unpacked/usr/libexec/docker/cli-plugins/docker-compose" \
        "$PLUGIN_DIR/docker-compose"
    timeout 10 docker compose version >/dev/null || die "compose: plugin installed but 'docker compose version' fails"
    log "compose: installed $(docker compose version --short) from $(basename "$deb")"
}

# --- 4. stand-in base images -------------------------------------------------------
recipe_hash() { # content hash of a recipe folder: rebuild when the recipe changes
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

image_label() { # image label -> value, empty if no such image or label
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/<no value>//' || true
}

unmount_under() { # anything debootstrap (or a failed run) left mounted inside a rootfs
    local mnt
    for mnt in $(awk -v root="$1" 'index($2, root "/") == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$mnt" || die "cannot unmount $mnt"
    done
}

remove_rootfs() { # never rm -rf through a mount (a bind-mounted /dev would be the host's)
    [ -e "$1" ] || return 0
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}

build_standin() { # recipe name, then the image names it must answer to
    local name=$1 dir="$STANDINS_DIR/$1"
    shift
    local hash tags=() tag
    hash=$(recipe_hash "$dir")

    for tag in "$@"; do
        if docker image inspect "$tag" >/dev/null 2>&1; then
            local have
            have=$(image_label "$tag" "$LABEL_KEY")
            if [ -z "$have" ]; then
                log "standin $name: $tag exists and is not a stand-in (a real image); leaving it"
                continue
            fi
            [ "$have" = "$hash" ] || tags+=("$tag")
        else
            tags+=("$tag")
        fi
    done
    if [ "${#tags[@]}" = 0 ]; then
        log "standin $name: $* up to date (recipe $hash)"
        return
    fi

    local t0 packages rootfs_tag="habitto-standin-rootfs:$name"
    t0=$(date +%s)
    packages=$(grep -v '^\s*\(#\|$\)' "$dir/packages" | paste -sd, -)
    local pkg_hash
    pkg_hash=$(printf '%s %s %s' "$SUITE" "$packages" "$(cat "$dir/prune.sh" 2>/dev/null)" | sha256sum | cut -c1-16)
    if [ "$(image_label "$rootfs_tag" org.habitto.standin.rootfs)" = "$pkg_hash" ]; then
        log "standin $name: rootfs image $rootfs_tag up to date"
    else
        local rootfs="$STATE_DIR/rootfs-$name"
        remove_rootfs "$rootfs"
        mkdir -p "$STATE_DIR/debs"
        log "standin $name: debootstrap $SUITE minbase + $packages"
        # The host's CA bundle goes in first as well: downloads pass a TLS-inspecting
        # proxy whose CA only that file carries.
        if ! timeout 900 debootstrap --variant=minbase --include="$packages" \
                --cache-dir="$STATE_DIR/debs" "$SUITE" "$rootfs" "$MIRROR" \
                >"$STATE_DIR/debootstrap-$name.log" 2>&1; then
            tail -n 30 "$STATE_DIR/debootstrap-$name.log" >&2
            die "standin $name: debootstrap failed (log: $STATE_DIR/debootstrap-$name.log)"
        fi
        unmount_under "$rootfs"
        install -m 0644 "$HOST_CA" "$rootfs/etc/ssl/certs/ca-certificates.crt"
        if [ -x "$dir/prune.sh" ]; then "$dir/prune.sh" "$rootfs"; fi
        # Generic trimming: apt lists and caches, docs, man pages, translations.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
            "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
            "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* 2>/dev/null || true
        log "standin $name: importing rootfs as $rootfs_tag"
        tar --numeric-owner -C "$rootfs" -c . | timeout 600 docker import \
            --change "LABEL org.habitto.standin.rootfs=$pkg_hash" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$rootfs_tag" >/dev/null
        remove_rootfs "$rootfs"
    fi

    local tag_args=()
    for tag in "${tags[@]}"; do tag_args+=(-t "$tag"); done
    log "standin $name: building ${tags[*]}"
    if ! timeout 900 docker build --network host --build-arg ROOTFS="$rootfs_tag" \
            --label "$LABEL_KEY=$hash" "${tag_args[@]}" "$dir" \
            >"$STATE_DIR/build-$name.log" 2>&1; then
        tail -n 30 "$STATE_DIR/build-$name.log" >&2
        die "standin $name: docker build failed (log: $STATE_DIR/build-$name.log)"
    fi
    log "standin $name: built ${tags[*]} in $(( $(date +%s) - t0 ))s"
}

build_standins() {
    [ -f "$HOST_CA" ] || die "no $HOST_CA on the host"
    local mapping
    # "<recipe> <image>" lines; fails naming every image no recipe provides.
    mapping=$(python3 "$REPO_DIR/ops/compose_images.py" --standins \
        ${COMPOSE_ENV_FILE:+--env-file "$COMPOSE_ENV_FILE"}) \
        || die "cannot provide every image the Compose configuration names (see above)"
    log "standins: the configuration names $(echo "$mapping" | awk '{print $2}' | paste -sd' ' -)"
    local name
    for name in $(echo "$mapping" | awk '{print $1}' | sort -u); do
        [ -d "$STANDINS_DIR/$name" ] || die "no stand-in recipe $STANDINS_DIR/$name"
        # shellcheck disable=SC2046 # image names have no spaces
        build_standin "$name" $(echo "$mapping" | awk -v n="$name" '$1 == n {print $2}')
    done
}

install_packages
start_dockerd
install_compose
if [ "${SKIP_STANDINS:-0}" != "1" ]; then
    build_standins
fi
log "done in $(( $(date +%s) - started ))s: $(docker info --format 'engine {{.ServerVersion}}'), compose $(docker compose version --short)"
