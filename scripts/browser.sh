#!/usr/bin/env bash
# The browser the UI tests (tests/ui) drive: Debian's `chromium` and `chromium-driver` packages.
#
# Usage: scripts/browser.sh install | status
#   install  install both packages with apt-get when /usr/bin/chromium or /usr/bin/chromedriver is
#            missing (as root, or through sudo); quick when both are there. `make test` runs it before
#            pytest, so a first install shows its progress and no test finds the browser missing.
#   status   the versions found, or what is missing; exit 0 only when both are there
#
# Environment:
#   KET_CHROMIUM_BIN      the browser     (default /usr/bin/chromium)
#   KET_CHROMEDRIVER_BIN  its WebDriver   (default /usr/bin/chromedriver); with both set to a browser
#                         and a driver of the same version installed some other way, nothing is installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_DIR="$ROOT/.stack/logs"
APT_LOG="$LOG_DIR/browser-apt.log"
CHROMIUM="${KET_CHROMIUM_BIN:-/usr/bin/chromium}"
CHROMEDRIVER="${KET_CHROMEDRIVER_BIN:-/usr/bin/chromedriver}"
PACKAGES=(chromium chromium-driver)

SCRIPT_NAME=browser
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

present() { [[ -x $CHROMIUM && -x $CHROMEDRIVER ]]; }

version_of() { "$1" --version 2>/dev/null | head -n1 || echo "$1: does not run"; }

# apt-get with its output in the log and a progress line every 15 s (a first install fetches ~100 MB).
apt_with_progress() {
    local label=$1 pid start next rc=0
    shift
    start=$SECONDS
    next=$((start + 15))
    "$@" >>"$APT_LOG" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if ((SECONDS >= next)); then
            say "  ... $label: $((SECONDS - start))s, last output: $(tail -n 1 "$APT_LOG" 2>/dev/null | cut -c1-100)"
            next=$((SECONDS + 15))
        fi
    done
    wait "$pid" || rc=$?
    return "$rc"
}

cmd_install() {
    if present; then
        say "browser: $(version_of "$CHROMIUM"); $(version_of "$CHROMEDRIVER")"
        return 0
    fi
    if [[ -n ${KET_CHROMIUM_BIN:-}${KET_CHROMEDRIVER_BIN:-} ]]; then
        die "KET_CHROMIUM_BIN=$CHROMIUM / KET_CHROMEDRIVER_BIN=$CHROMEDRIVER: not both executable. Point them at an installed browser and its driver, or unset both to use Debian's packages."
    fi
    command -v apt-get >/dev/null ||
        die "chromium/chromedriver not found and there is no apt-get here: install Chromium and its matching chromedriver, then set KET_CHROMIUM_BIN and KET_CHROMEDRIVER_BIN."
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null ||
            die "chromium/chromedriver not found: run 'sudo apt-get install -y ${PACKAGES[*]}' (needs root)."
        sudo=(sudo)
    fi
    mkdir -p "$LOG_DIR"
    : >"$APT_LOG"
    say "browser: installing Debian's ${PACKAGES[*]} (apt-get install -y --no-install-recommends; about 100 MB the first time; log $(rel "$APT_LOG"))"
    if ! apt_with_progress "apt-get install" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
        say "browser: install failed with the current package lists; running apt-get update once and retrying"
        apt_with_progress "apt-get update" "${sudo[@]}" apt-get update || true
        apt_with_progress "apt-get install" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${PACKAGES[@]}" || {
            show_log_tail "$APT_LOG"
            die "could not install ${PACKAGES[*]}; the log above says why (log: $APT_LOG)"
        }
    fi
    present || die "apt-get installed ${PACKAGES[*]} but $CHROMIUM or $CHROMEDRIVER is still missing"
    say "browser: installed $(version_of "$CHROMIUM"); $(version_of "$CHROMEDRIVER")"
}

cmd_status() {
    if present; then
        say "browser: $(version_of "$CHROMIUM"); $(version_of "$CHROMEDRIVER")"
    else
        say "browser: missing ($CHROMIUM or $CHROMEDRIVER); 'scripts/browser.sh install' installs Debian's ${PACKAGES[*]}"
        return 3
    fi
}

case ${1:-} in
    install) cmd_install ;;
    status) cmd_status ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 64
        ;;
esac
