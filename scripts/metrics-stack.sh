#!/usr/bin/env bash
# The metrics side of the local stack, without containers:
#   collector   OpenTelemetry Collector with collector-config/collector.yaml (binary built by
#               scripts/collector/build.sh): OTLP 127.0.0.1:14317 (gRPC) / 14318 (HTTP), span metrics
#               for Prometheus on 127.0.0.1:8889, health 127.0.0.1:13134, own metrics 127.0.0.1:18888;
#               forwards every span to the stack's Jaeger (OTLP 127.0.0.1:4317).
#   prometheus  Prometheus with collector-config/prometheus.yml, on 127.0.0.1:19090, data in .stack/.
#
# Usage: scripts/metrics-stack.sh install | up | down | status
#   install install Prometheus (and promtool) if missing and build the collector (or take it from the
#           per-user cache, see scripts/collector/build.sh); starts nothing. `make test` runs it before
#           pytest, so the tests that use promtool or the collector binary find them.
#   up      install/build what is missing, start both, wait until Prometheus has scraped the collector
#   down    stop what this checkout started (pid files in .stack/run)
#   status  one line per component; exit 0 only when both run
#
# Prometheus comes from Debian's `prometheus` package: when no `prometheus` is on PATH, `up` runs
# `apt-get install -y --no-install-recommends prometheus` (as root; that package also installs a
# system service on :9090, which this script neither uses nor starts). Set KET_PROMETHEUS_BIN to use
# another Prometheus 2.x binary instead (its promtool is looked for next to it, then on PATH).
#
# Services send spans to the collector (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14317) to get both
# traces in Jaeger and metrics in Prometheus; sending to Jaeger's 4317 directly gives traces only.
#
# Environment (defaults in brackets):
#   KET_METRICS_OTLP_GRPC_PORT [14317]  KET_METRICS_OTLP_HTTP_PORT [14318]  KET_METRICS_EXPORTER_PORT [8889]
#   KET_METRICS_HEALTH_PORT [13134]     KET_METRICS_TELEMETRY_PORT [18888]  KET_PROMETHEUS_PORT [19090]
#   KET_JAEGER_OTLP [127.0.0.1:4317]    where the collector sends traces
#   KET_METRICS_FLUSH_INTERVAL [5s]     how often the connectors emit metrics
#   KET_PROMETHEUS_SCRAPE_INTERVAL [2s] how often Prometheus scrapes the collector
#   KET_SERVICEGRAPH_STORE_TTL [60s]    how long a send span waits for its process span
#   KET_METRICS_START_TIMEOUT [60]      seconds
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$ROOT/.stack"
RUN_DIR="$STACK/run"
LOG_DIR="$STACK/logs"
WORK="$STACK/metrics"
COLLECTOR_BIN="$STACK/bin/otelcol-events"
COLLECTOR_CONFIG="$ROOT/collector-config/collector.yaml"
PROM_TEMPLATE="$ROOT/collector-config/prometheus.yml"
PROM_CONFIG="$WORK/prometheus.yml"
PROM_DATA="$WORK/prometheus-data"

OTLP_GRPC_PORT="${KET_METRICS_OTLP_GRPC_PORT:-14317}"
OTLP_HTTP_PORT="${KET_METRICS_OTLP_HTTP_PORT:-14318}"
EXPORTER_PORT="${KET_METRICS_EXPORTER_PORT:-8889}"
HEALTH_PORT="${KET_METRICS_HEALTH_PORT:-13134}"
TELEMETRY_PORT="${KET_METRICS_TELEMETRY_PORT:-18888}"
PROM_PORT="${KET_PROMETHEUS_PORT:-19090}"
JAEGER_OTLP="${KET_JAEGER_OTLP:-127.0.0.1:4317}"
FLUSH_INTERVAL="${KET_METRICS_FLUSH_INTERVAL:-5s}"
SCRAPE_INTERVAL="${KET_PROMETHEUS_SCRAPE_INTERVAL:-2s}"
STORE_TTL="${KET_SERVICEGRAPH_STORE_TTL:-60s}"
START_TIMEOUT="${KET_METRICS_START_TIMEOUT:-60}"
PY="${KET_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x $PY ]] || PY=python3

PROM_URL="http://127.0.0.1:$PROM_PORT"
COMPONENTS=(collector prometheus)

SCRIPT_NAME=metrics-stack
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

pid_file() { printf '%s' "$RUN_DIR/metrics-$1.pid"; }
log_of() { printf '%s' "$LOG_DIR/metrics-$1.log"; }

# What the command line of our process contains (guards against a reused pid).
signature() {
    case $1 in
        collector) printf '%s' "$COLLECTOR_CONFIG" ;;
        prometheus) printf '%s' "$PROM_CONFIG" ;;
    esac
}

ports_of() {
    case $1 in
        collector) echo "$OTLP_GRPC_PORT $OTLP_HTTP_PORT $EXPORTER_PORT $HEALTH_PORT $TELEMETRY_PORT" ;;
        prometheus) echo "$PROM_PORT" ;;
    esac
}

our_pid() { pid_from_file "$(pid_file "$1")" "$(signature "$1")"; }


# An HTTP GET that prints the body and fails on anything but 200 (python: no curl needed).
http_get() {
    "$PY" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# ------------------------------------------------------------------ what the components need

prometheus_bin() {
    if [[ -n ${KET_PROMETHEUS_BIN:-} ]]; then
        [[ -x $KET_PROMETHEUS_BIN ]] || die "KET_PROMETHEUS_BIN=$KET_PROMETHEUS_BIN is not an executable"
        printf '%s' "$KET_PROMETHEUS_BIN"
    else
        command -v prometheus
    fi
}

promtool_bin() {
    if [[ -n ${KET_PROMETHEUS_BIN:-} && -x $(dirname "$KET_PROMETHEUS_BIN")/promtool ]]; then
        printf '%s' "$(dirname "$KET_PROMETHEUS_BIN")/promtool"
    else
        command -v promtool
    fi
}

ensure_prometheus() {
    mkdir -p "$LOG_DIR"
    prometheus_bin >/dev/null && return 0
    command -v apt-get >/dev/null ||
        die "prometheus not found and there is no apt-get here: install Prometheus 2.x and set KET_PROMETHEUS_BIN."
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "prometheus not found: run 'sudo apt-get install -y prometheus' (needs root)."
        sudo=(sudo)
    fi
    say "prometheus: not installed; installing Debian's package (apt-get install -y --no-install-recommends prometheus)"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
        >"$LOG_DIR/metrics-apt.log" 2>&1; then
        say "prometheus: install failed with the current package lists; running apt-get update once and retrying"
        "${sudo[@]}" apt-get update >>"$LOG_DIR/metrics-apt.log" 2>&1 || true
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
            >>"$LOG_DIR/metrics-apt.log" 2>&1 || { show_log_tail "$LOG_DIR/metrics-apt.log"; die "could not install prometheus"; }
    fi
    prometheus_bin >/dev/null || die "prometheus was installed but is not on PATH"
}

ensure_collector() {
    "$ROOT/scripts/collector/build.sh" >"$LOG_DIR/metrics-collector-build.log" 2>&1 || {
        show_log_tail "$LOG_DIR/metrics-collector-build.log"
        die "building the collector failed (log: $(rel "$LOG_DIR/metrics-collector-build.log"))"
    }
    [[ -x $COLLECTOR_BIN ]] || die "no collector binary at $(rel "$COLLECTOR_BIN") after the build"
}

# ------------------------------------------------------------------------------ start

write_prometheus_config() {
    mkdir -p "$WORK" "$PROM_DATA"
    # Same file as docker-compose, pointed at loopback. The internal-metrics job goes to the
    # collector's telemetry port.
    sed -e "s|collector:8889|127.0.0.1:$EXPORTER_PORT|" \
        -e "s|collector:8888|127.0.0.1:$TELEMETRY_PORT|" \
        -e "s|^\(    scrape_interval:\).*|\1 $SCRAPE_INTERVAL|" \
        -e "s|^\(  scrape_interval:\).*|\1 $SCRAPE_INTERVAL|" \
        -e "s|^\(  evaluation_interval:\).*|\1 $SCRAPE_INTERVAL|" \
        "$PROM_TEMPLATE" >"$PROM_CONFIG"
    grep -q "127.0.0.1:$EXPORTER_PORT" "$PROM_CONFIG" ||
        die "could not point $(rel "$PROM_CONFIG") at the collector (is collector:8889 still in $(rel "$PROM_TEMPLATE")?)"
}

start_collector() {
    local log
    log=$(log_of collector)
    [[ -f $log ]] && mv -f "$log" "$log.prev"
    say "collector: starting, OTLP 127.0.0.1:$OTLP_GRPC_PORT/$OTLP_HTTP_PORT -> Jaeger $JAEGER_OTLP, metrics 127.0.0.1:$EXPORTER_PORT (log $(rel "$log"))"
    (cd "$WORK" && exec env \
        OTLP_GRPC_ENDPOINT="127.0.0.1:$OTLP_GRPC_PORT" \
        OTLP_HTTP_ENDPOINT="127.0.0.1:$OTLP_HTTP_PORT" \
        JAEGER_OTLP_ENDPOINT="$JAEGER_OTLP" \
        PROMETHEUS_EXPORTER_ENDPOINT="127.0.0.1:$EXPORTER_PORT" \
        COLLECTOR_HEALTH_ENDPOINT="127.0.0.1:$HEALTH_PORT" \
        COLLECTOR_TELEMETRY_HOST=127.0.0.1 \
        COLLECTOR_TELEMETRY_PORT="$TELEMETRY_PORT" \
        METRICS_FLUSH_INTERVAL="$FLUSH_INTERVAL" \
        SERVICEGRAPH_STORE_TTL="$STORE_TTL" \
        setsid "$COLLECTOR_BIN" --config "$COLLECTOR_CONFIG" </dev/null >"$log" 2>&1) &
    echo $! >"$(pid_file collector)"
}

start_prometheus() {
    local log bin
    log=$(log_of prometheus)
    bin=$(prometheus_bin)
    [[ -f $log ]] && mv -f "$log" "$log.prev"
    write_prometheus_config
    say "prometheus: starting on $PROM_URL, scraping 127.0.0.1:$EXPORTER_PORT every $SCRAPE_INTERVAL (log $(rel "$log"))"
    (cd "$WORK" && exec setsid "$bin" \
        --config.file="$PROM_CONFIG" \
        --storage.tsdb.path="$PROM_DATA" \
        --storage.tsdb.retention.time=2d \
        --web.listen-address="127.0.0.1:$PROM_PORT" \
        --enable-feature=exemplar-storage \
        </dev/null >"$log" 2>&1) &
    echo $! >"$(pid_file prometheus)"
}

# Real readiness: the collector's health check says it is up and its metrics endpoint and OTLP
# port answer; Prometheus is ready AND its last scrape of the collector succeeded.
component_ready() {
    case $1 in
        collector)
            http_get "http://127.0.0.1:$HEALTH_PORT/" >/dev/null &&
                http_get "http://127.0.0.1:$EXPORTER_PORT/metrics" >/dev/null &&
                port_open "$OTLP_GRPC_PORT" && port_open "$OTLP_HTTP_PORT"
            ;;
        prometheus)
            http_get "$PROM_URL/-/ready" >/dev/null &&
                http_get "$PROM_URL/api/v1/targets?state=active" |
                "$PY" -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(t["labels"].get("job") == "collector" and t["health"] == "up" for t in targets) else 1)'
            ;;
    esac
}

wait_ready() {
    local comp=$1 pid deadline
    pid=$(<"$(pid_file "$comp")")
    deadline=$((SECONDS + START_TIMEOUT))
    until component_ready "$comp"; do
        if ! pid_alive "$pid"; then
            show_log_tail "$(log_of "$comp")"
            rm -f "$(pid_file "$comp")"
            warn "metrics-stack: error: $comp exited during start-up (log: $(rel "$(log_of "$comp")"))"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$(log_of "$comp")"
            stop_pid "$pid"
            rm -f "$(pid_file "$comp")"
            warn "metrics-stack: error: $comp was not ready within ${START_TIMEOUT}s"
            return 1
        fi
        sleep 0.5
    done
}

stop_pid() {
    local pid=$1 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + 30))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.3; done
    if pid_alive "$pid"; then
        warn "  process $pid did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# ------------------------------------------------------------------------- subcommands

cmd_install() {
    local prom promtool
    ensure_prometheus
    prom=$(prometheus_bin)
    promtool=$(promtool_bin) || die "promtool not found (next to $prom or on PATH); it comes with Prometheus"
    say "prometheus: $prom ($("$prom" --version 2>&1 | head -n1)); promtool: $promtool"
    # The build's own output (progress of a cold build included) goes to the terminal.
    "$ROOT/scripts/collector/build.sh" || die "building the collector failed (scripts/collector/build.sh)"
    [[ -x $COLLECTOR_BIN ]] || die "no collector binary at $(rel "$COLLECTOR_BIN") after the build"
}

cmd_up() {
    local comp port to_start=() failed=0
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$WORK"
    for comp in "${COMPONENTS[@]}"; do
        if pid=$(our_pid "$comp"); then
            say "$comp: already running (pid $pid)"
        else
            rm -f "$(pid_file "$comp")"
            for port in $(ports_of "$comp"); do
                port_open "$port" && die "port $port (needed by $comp) is in use by another process"
            done
            to_start+=("$comp")
        fi
    done
    [[ " ${to_start[*]} " == *" prometheus "* ]] && ensure_prometheus
    [[ " ${to_start[*]} " == *" collector "* ]] && ensure_collector
    port_open "${JAEGER_OTLP##*:}" ||
        warn "metrics-stack: warning: nothing listens on Jaeger's OTLP port ($JAEGER_OTLP): traces will queue in the collector until 'scripts/stack.sh up'"
    # Collector first: Prometheus' readiness includes a successful scrape of it.
    for comp in "${COMPONENTS[@]}"; do
        [[ " ${to_start[*]} " == *" $comp "* ]] || continue
        "start_$comp"
        if wait_ready "$comp"; then
            say "$comp: ready (pid $(<"$(pid_file "$comp")"))"
        else
            failed=1
            break
        fi
    done
    ((failed)) && return 1
    say "metrics-stack: up (send OTLP to 127.0.0.1:$OTLP_GRPC_PORT; Prometheus $PROM_URL)"
}

cmd_down() {
    local comp pid
    for comp in prometheus collector; do
        if pid=$(our_pid "$comp"); then
            say "$comp: stopping (pid $pid)"
            stop_pid "$pid"
        else
            say "$comp: not running"
        fi
        rm -f "$(pid_file "$comp")"
    done
}

cmd_status() {
    local comp pid rc=0
    for comp in "${COMPONENTS[@]}"; do
        if pid=$(our_pid "$comp"); then
            if component_ready "$comp"; then
                case $comp in
                    collector) say "collector   up        pid $pid  OTLP 127.0.0.1:$OTLP_GRPC_PORT/$OTLP_HTTP_PORT, metrics 127.0.0.1:$EXPORTER_PORT" ;;
                    prometheus) say "prometheus  up        pid $pid  $PROM_URL" ;;
                esac
            else
                say "$comp  starting/unhealthy  pid $pid"
                rc=1
            fi
        else
            say "$comp  down"
            rc=1
        fi
    done
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
