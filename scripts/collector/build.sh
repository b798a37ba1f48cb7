#!/usr/bin/env bash
# Builds .stack/bin/otelcol-events from manifest.yaml with the collector builder (ocb) pinned in go.mod.
#
#   scripts/collector/build.sh          use the binary in .stack/bin or the per-user cache when it was
#                                       built from these inputs; build it otherwise
#   scripts/collector/build.sh --force  always rebuild (and replace the cached copy)
#
# Per-user cache: every binary built here is also kept in
#   ${KET_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/kafka-event-tracing}/otelcol-events-<version>-<os>-<arch>-<hash>/
# where <hash> covers manifest.yaml, go.mod, go.sum and otelcol-events.go.sum; another checkout (or a
# fresh clone) with the same inputs copies it from there instead of building.
#
# Needs Go and the Go module proxy. Generated sources go to .stack/build/otelcol-events (not committed).
# A cold build compiles a few hundred modules: 10-15 minutes on 2 cores; with the Go build cache that
# the Jaeger build leaves behind, about 4 minutes; a no-op when the binary is up to date or cached.
#
# Pinning: otelcol-events.go.sum (committed) is copied next to the generated go.mod before the builder
# runs `go mod tidy`, so every module the build uses must match a hash recorded in this repository.
# The public checksum database is not asked about the collector's own modules and one AWS SDK module
# (GONOSUMDB below): it had no record of several of them when this build was pinned, and the committed
# hashes are the check instead. To move to another collector release, change every version in
# manifest.yaml, delete otelcol-events.go.sum, run this script and commit the new go.sum.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/.stack/build/otelcol-events"   # = output_path in manifest.yaml
BIN="$ROOT/.stack/bin/otelcol-events"
SUMS="$HERE/otelcol-events.go.sum"

CACHE_ROOT="${KET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-event-tracing}"
INPUTS=("$HERE/manifest.yaml" "$HERE/go.mod" "$HERE/go.sum" "$SUMS")

# What the binary is built from: the collector version in the manifest, the platform, and a hash of
# every input file. Empty while otelcol-events.go.sum is missing (a build that records new pins).
build_key() {
  local version
  [[ -f $SUMS ]] || return 0
  version=$(sed -n 's/^[[:space:]]*version:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$HERE/manifest.yaml" | head -n1)
  printf 'otelcol-events-%s-%s-%s-%s' "${version:-unknown}" "$(uname -s | tr '[:upper:]' '[:lower:]')" \
    "$(uname -m)" "$(cat "${INPUTS[@]}" | sha256sum | cut -c1-12)"
}

# Copies $1 to $2 through a temporary file next to $2, so a reader never sees half a binary.
install_atomic() {
  local tmp="$2.tmp.$$"
  mkdir -p "$(dirname "$2")" && cp "$1" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$2" || {
    rm -f "$tmp"
    return 1
  }
}

KEY=$(build_key)
CACHED="${KEY:+$CACHE_ROOT/$KEY/otelcol-events}"

if [[ ${1:-} != "--force" && -n $KEY ]]; then
  if [[ -x $BIN && -f $BIN.key && $(<"$BIN.key") == "$KEY" ]]; then
    echo "otelcol-events is up to date: ${BIN#"$ROOT"/} ($KEY)"
    exit 0
  fi
  if [[ -x $CACHED ]]; then
    install_atomic "$CACHED" "$BIN"
    echo "$KEY" >"$BIN.key"
    echo "otelcol-events from the per-user cache: $CACHED -> ${BIN#"$ROOT"/}"
    "$BIN" --version
    exit 0
  fi
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the collector" >&2; exit 1; }
mkdir -p "$OUT" "$(dirname "$BIN")"
rm -f "$BIN.key"
rm -f "$OUT/go.mod"
if [[ -f $SUMS ]]; then cp "$SUMS" "$OUT/go.sum"; else rm -f "$OUT/go.sum"; fi

export CGO_ENABLED=0
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/open-telemetry/opentelemetry-collector-contrib,go.opentelemetry.io/collector,github.com/aws/aws-sdk-go-v2/service/servicediscovery"
cd "$HERE"
go tool builder --config "$HERE/manifest.yaml" --skip-strict-versioning=false
install -m 0755 "$OUT/otelcol-events" "$BIN"
if [[ ! -f $SUMS ]]; then
  cp "$OUT/go.sum" "$SUMS"
  echo "recorded the module hashes in ${SUMS#"$ROOT"/}: commit it"
elif ! cmp -s "$OUT/go.sum" "$SUMS"; then
  # go mod tidy added or dropped hashes: the build used modules this repository has not pinned.
  diff "$SUMS" "$OUT/go.sum" | head -n 20 >&2 || true
  rm -f "$BIN"
  echo "build.sh: the build resolved modules that ${SUMS#"$ROOT"/} does not pin (see above)" >&2
  exit 1
fi
KEY=$(build_key)
echo "$KEY" >"$BIN.key"
CACHED="$CACHE_ROOT/$KEY/otelcol-events"
if install_atomic "$BIN" "$CACHED"; then
  echo "cached in $CACHED"
else
  echo "build.sh: warning: could not store the binary in the per-user cache ($CACHED)" >&2
fi
"$BIN" --version
