#!/usr/bin/env bash
# Builds .stack/bin/otelcol-events from manifest.yaml with the collector builder (ocb) pinned in go.mod.
#
#   scripts/collector/build.sh          build when the binary is missing or older than its inputs
#   scripts/collector/build.sh --force  always rebuild
#
# Needs Go and the Go module proxy. Generated sources go to .stack/build/otelcol-events (not committed).
# A cold build compiles a few hundred modules: 10-15 minutes on 2 cores; with the Go build cache that
# the Jaeger build leaves behind, about 4 minutes; a no-op when the binary is up to date.
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

up_to_date() {
  [[ -x $BIN ]] || return 1
  local f
  for f in "$HERE/manifest.yaml" "$HERE/go.mod" "$HERE/go.sum" "$SUMS"; do
    [[ -f $f && $BIN -nt $f ]] || return 1
  done
}

if [[ "${1:-}" != "--force" ]] && up_to_date; then
  echo "otelcol-events is up to date: ${BIN#"$ROOT"/}"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the collector" >&2; exit 1; }
mkdir -p "$OUT" "$(dirname "$BIN")"
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
touch "$BIN"
"$BIN" --version
