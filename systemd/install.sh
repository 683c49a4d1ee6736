#!/usr/bin/env bash
# Install or uninstall Eunomia as a system service (run by `make install` / `make uninstall`).
#
#   $PREFIX/app/        the code and the tracers (supervisor/, workers/, ipc/, bpf/, docs/)
#   $PREFIX/venv/       its own virtual environment, from $SYSTEM_PYTHON with --system-site-packages (for BCC)
#   $PREFIX/bin/eunomiactl              the command; $BINDIR/eunomiactl links to it
#   $UNITDIR/eunomia.service            the systemd unit
#   /etc/eunomia/eunomia.yaml           the default config, only if there is none yet (never overwritten)
#   /var/lib/eunomia/                   the store (kept by uninstall unless PURGE=1)
#
# Everything goes under $DESTDIR when it is set (packaging): then nothing on the host is touched, and the
# installed files name the final paths, not $DESTDIR.
set -euo pipefail

: "${DESTDIR:=}"
: "${PREFIX:=/opt/eunomia}"
: "${BINDIR:=/usr/local/bin}"
: "${UNITDIR:=/etc/systemd/system}"
: "${SYSTEM_PYTHON:=/usr/bin/python3}"
: "${PURGE:=0}"
CONFDIR=/etc/eunomia       # systemd's ConfigurationDirectory=eunomia
STATEDIR=/var/lib/eunomia  # systemd's StateDirectory=eunomia
MARK=.eunomia-install
APP_CONTENT=(supervisor workers ipc bpf docs README.md pyproject.toml)

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR%/}
APP=$ROOT$PREFIX/app
VENV=$ROOT$PREFIX/venv

log() { printf 'eunomia install: %s\n' "$*"; }
die() { printf 'eunomia install: error: %s\n' "$*" >&2; exit 1; }
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

case "$PREFIX" in
    /*) ;;
    *) die "PREFIX must be an absolute path, not '$PREFIX'" ;;
esac
[ "$PREFIX" != / ] || die "PREFIX=/ would mix Eunomia's files with the system's; use a folder of its own"

install_app() {
    rm -rf "$APP.new"
    mkdir -p "$APP.new"
    tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' -cf - "${APP_CONTENT[@]}" | tar -C "$APP.new" -xf -
    rm -rf "$APP"
    mv "$APP.new" "$APP"
}

install_venv() {
    [ -x "$VENV/bin/python" ] || "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
    local requirements
    requirements=$("$SYSTEM_PYTHON" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$SRC/pyproject.toml")
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check $requirements
    local site rel
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    rel=$("$SYSTEM_PYTHON" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$APP" "$site")
    printf '%s\n' "$rel" > "$site/eunomia.pth"  # relative: the tree works under DESTDIR and after moving it
    if [ -n "$ROOT" ]; then
        # scripts pip wrote name the python under DESTDIR: make them name the final one
        { grep -rlI --null -F "$ROOT$PREFIX" "$VENV/bin" "$VENV/pyvenv.cfg" || true; } |
            xargs -0 -r sed -i "s|$ROOT$PREFIX|$PREFIX|g"
    fi
    # bytecode now, with the final paths in it: under ProtectSystem=strict the agent cannot write it later
    local strip=()
    [ -z "$ROOT" ] || strip=(-s "$ROOT" -p /)
    "$VENV/bin/python" -m compileall -q -f "${strip[@]}" "$APP" "$site" >/dev/null
    if ! "$VENV/bin/python" -c 'import bcc' 2>/dev/null; then
        [ -n "$ROOT" ] || die "BCC's python3-bpfcc is not visible from $VENV (run systemd/prepare-host.sh)"
        log "note: BCC (python3-bpfcc) is not installed here; the target host needs it"
    fi
}

install_command() {
    mkdir -p "$ROOT$PREFIX/bin"
    cat > "$ROOT$PREFIX/bin/eunomiactl" <<'EOF'
#!/bin/sh
# eunomiactl with Eunomia's own virtual environment. PYTHONSAFEPATH: never import from the current directory
# (this runs as root; the workers it starts inherit the setting).
here=$(dirname "$(readlink -f "$0")")
PYTHONSAFEPATH=1 exec "$here/../venv/bin/python" -m supervisor.cli.main "$@"
EOF
    chmod 0755 "$ROOT$PREFIX/bin/eunomiactl"
    mkdir -p "$ROOT$BINDIR"
    ln -sfn "$PREFIX/bin/eunomiactl" "$ROOT$BINDIR/eunomiactl"
}

install_unit() {
    mkdir -p "$ROOT$UNITDIR"
    sed "s|/opt/eunomia|$PREFIX|g" "$SRC/systemd/eunomia.service" > "$ROOT$UNITDIR/eunomia.service.new"
    chmod 0644 "$ROOT$UNITDIR/eunomia.service.new"
    mv "$ROOT$UNITDIR/eunomia.service.new" "$ROOT$UNITDIR/eunomia.service"
}

install_config() {
    install -d -m 0700 "$ROOT$CONFDIR" "$ROOT$STATEDIR"
    if [ -e "$ROOT$CONFDIR/eunomia.yaml" ]; then
        log "kept the existing $CONFDIR/eunomia.yaml (the shipped default is $PREFIX/eunomia.yaml.default)"
    else
        install -m 0644 "$SRC/systemd/eunomia.yaml" "$ROOT$CONFDIR/eunomia.yaml"
    fi
    install -m 0644 "$SRC/systemd/eunomia.yaml" "$ROOT$PREFIX/eunomia.yaml.default"
}

do_install() {
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or set DESTDIR to stage the files)"; fi
    mkdir -p "$ROOT$PREFIX"
    install_app
    install_venv
    install_command
    install_unit
    install_config
    printf 'PREFIX=%s\nBINDIR=%s\nUNITDIR=%s\n' "$PREFIX" "$BINDIR" "$UNITDIR" > "$ROOT$PREFIX/$MARK"
    log "installed under ${ROOT:-}$PREFIX; unit $UNITDIR/eunomia.service; config $CONFDIR/eunomia.yaml"
    if systemd_running; then
        systemctl daemon-reload
        log "start it with: systemctl enable --now eunomia"
    elif [ -z "$ROOT" ]; then
        log "systemd is not running on this host; run the agent with: $BINDIR/eunomiactl run"
    fi
}

do_uninstall() {
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or set DESTDIR)"; fi
    if [ ! -e "$ROOT$PREFIX/$MARK" ]; then
        if [ "$PURGE" = 1 ]; then  # like dpkg --purge after a remove: what uninstall kept
            rm -rf "$ROOT$CONFDIR" "$ROOT$STATEDIR"
            log "not installed; purged $CONFDIR and $STATEDIR"
            return
        fi
        die "no Eunomia installation in $ROOT$PREFIX (no $MARK); nothing removed"
    fi
    if systemd_running && systemctl list-unit-files eunomia.service >/dev/null 2>&1; then
        systemctl disable --now eunomia.service >/dev/null 2>&1 || true
    fi
    rm -f "$ROOT$UNITDIR/eunomia.service"
    if [ -L "$ROOT$BINDIR/eunomiactl" ] && [ "$(readlink "$ROOT$BINDIR/eunomiactl")" = "$PREFIX/bin/eunomiactl" ]; then
        rm -f "$ROOT$BINDIR/eunomiactl"
    fi
    local config=$ROOT$CONFDIR/eunomia.yaml
    if [ "$PURGE" = 1 ]; then
        rm -rf "$ROOT$CONFDIR" "$ROOT$STATEDIR"
        log "purged $CONFDIR and $STATEDIR"
    else
        if [ -f "$config" ] && cmp -s "$config" "$ROOT$PREFIX/eunomia.yaml.default"; then
            rm -f "$config"  # never edited: nothing of the operator's is lost
        elif [ -e "$config" ]; then
            log "kept $CONFDIR/eunomia.yaml (changed since installed; PURGE=1 removes it)"
        fi
        rmdir "$ROOT$CONFDIR" 2>/dev/null || true
        [ ! -d "$ROOT$STATEDIR" ] || log "kept the data in $STATEDIR (PURGE=1 removes it)"
    fi
    rm -rf "$ROOT$PREFIX/app" "$ROOT$PREFIX/app.new" "$ROOT$PREFIX/venv" "$ROOT$PREFIX/bin" \
        "$ROOT$PREFIX/eunomia.yaml.default" "$ROOT$PREFIX/$MARK"
    rmdir "$ROOT$PREFIX" 2>/dev/null || log "left $ROOT$PREFIX: it holds files Eunomia did not install"
    if systemd_running; then systemctl daemon-reload; fi
    log "uninstalled"
}

case "${1:-}" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 install|uninstall" ;;
esac
