#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host for Eunomia (idempotent, as root):
#   - python3-bpfcc (iovisor BCC's bindings; NOT the unrelated PyPI package "bcc") and python3-venv;
#   - bpftrace, which runs the bpftrace tracers (kind: bpftrace);
#   - kernel headers for the running kernel: the exact package when the distro has one,
#     otherwise the generic headers package, linked as /lib/modules/$(uname -r)/build and source;
#   - tracefs mounted at /sys/kernel/tracing.
set -euo pipefail

log() { printf 'prepare-host: %s\n' "$*"; }
die() { printf 'prepare-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (eBPF needs it, and so does installing packages)"
command -v apt-get >/dev/null || die "this script supports Debian/Ubuntu (apt-get) only; see docs/install.md"

release=$(uname -r)
arch=$(dpkg --print-architecture)
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
updated=0
apt_update_once() { [ "$updated" -eq 1 ] || { apt-get update -qq; updated=1; }; }
install_pkgs() {
    local missing=()
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    apt_update_once
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_pkgs python3-bpfcc python3-venv python3-pip bpftrace

# --- kernel headers ---------------------------------------------------------------
build="/lib/modules/$release/build"
if [ -e "$build/include/config/kernel.release" ] || [ -e "$build/Makefile" ]; then
    log "kernel headers present at $build ($(readlink -f "$build"))"
else
    apt_update_once
    if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
        install_pkgs "linux-headers-$release"
        log "installed the exact headers package linux-headers-$release"
    else
        install_pkgs "linux-headers-$arch"
        generic=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
        [ -n "$generic" ] || die "linux-headers-$arch installed no /usr/src/linux-headers-*-$arch"
        common=$(ls -d "${generic%-"$arch"}"-common 2>/dev/null || echo "$generic")
        mkdir -p "/lib/modules/$release"
        ln -sfn "$generic" "/lib/modules/$release/build"
        ln -sfn "$common" "/lib/modules/$release/source"
        log "no headers package for kernel $release: linked the generic $(basename "$generic") as" \
            "/lib/modules/$release/build and source (approximate headers; Eunomia's tracers never" \
            "dereference kernel structs, so they do not depend on exact layouts)"
    fi
fi

# --- tracefs ------------------------------------------------------------------------
if [ -d /sys/kernel/tracing/events ]; then
    log "tracefs mounted at /sys/kernel/tracing"
else
    mount -t tracefs nodev /sys/kernel/tracing
    log "mounted tracefs at /sys/kernel/tracing"
fi
