#!/usr/bin/env bash
# The real local stack, without containers:
#   kafka   Apache Kafka, one combined KRaft node   127.0.0.1:19092 (controller 127.0.0.1:19093)
#   jaeger  Jaeger v2, in-memory storage            OTLP 127.0.0.1:4317 (gRPC) / 4318 (HTTP),
#                                                   query API + UI 127.0.0.1:16686, health 127.0.0.1:13133
#   rabbitmq  RabbitMQ from Debian's rabbitmq-server  AMQP 127.0.0.1:5672 (Erlang distribution 127.0.0.1:25672,
#             package, data and logs in .stack/rabbitmq  epmd on 4369), user guest/guest
#
# Usage: scripts/stack.sh up | down [kafka|jaeger]... | status | ui-assets | run -- COMMAND...
#   up      build/fetch what is missing, start both, wait until they really answer
#   down    stop what this checkout started (pid files in .stack/run), wait for the ports to close
#   status  one line per component (Jaeger's says whether the UI or its placeholder page is served);
#           exit 0 only when both are up
#   ui-assets  fetch and unpack the Jaeger UI the next start serves, print its folder; starts nothing
#   run     start what is not running, run COMMAND, then stop what was started for it (when
#           the last concurrent `run` in this checkout finishes; a stack started by hand with
#           `up` stays up); exits with COMMAND's exit code
#
# Environment:
#   KET_PYTHON                 python with confluent-kafka (default: .venv/bin/python)
#   KET_CACHE_DIR              per-user artifact cache
#                              (default: ${XDG_CACHE_HOME:-~/.cache}/kafka-event-tracing)
#   KET_KAFKA_HEAP             JVM heap options (default: -Xms256m -Xmx512m)
#   KET_KAFKA_START_TIMEOUT    seconds (default 120);  KET_JAEGER_START_TIMEOUT  seconds (default 60)
#   KET_JAEGER_UI_ASSETS       the Jaeger UI to serve on the query port: a jaeger-ui release's
#                              assets.tar.gz or its unpacked folder (for machines that cannot download)
#   KET_JAEGER_UI_URL          where to download assets.tar.gz when KET_JAEGER_UI_ASSETS is not set
#                              (default: the jaeger-ui release of KET_JAEGER_UI_VERSION on GitHub)
#   KET_JAEGER_UI_VERSION      default: the version of the Jaeger module in scripts/jaeger/go.mod
#   KET_JAEGER_UI_SHA256       if set, a tarball with another checksum is refused
#                              Tarballs are unpacked once into the cache (jaeger-ui-VERSION-CHECKSUM/);
#                              without any, Jaeger starts with its placeholder page and says so.
#   KET_RABBITMQ_START_TIMEOUT seconds (default 60)
#   KET_RABBITMQ_SBIN          folder with RabbitMQ's rabbitmq-server and rabbitmqctl scripts
#                              (default: /usr/lib/rabbitmq/bin, Debian's package, which `up` installs
#                              with apt-get when it is missing; its system service is neither used nor started)
#   KET_PORT_OFFSET            added to every port above (default 0), so a second checkout can run
#                              its own stack next to the first; `up` remembers it for status/down,
#                              and `run` passes the addresses on as KET_KAFKA_BOOTSTRAP,
#                              KET_JAEGER_URL, KET_OTLP_ENDPOINT / KET_OTLP_HTTP_ENDPOINT and KET_RABBITMQ_URL
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$ROOT/.stack"
RUN_DIR="$STACK/run"
LOG_DIR="$STACK/logs"
BIN_DIR="$STACK/bin"
KAFKA_LIBS="$STACK/kafka-libs"
KAFKA_DATA="$STACK/kafka-data"
KAFKA_CONF="$STACK/kafka/server.properties"
KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_TEMPLATE="$ROOT/scripts/kafka/server.properties"
KAFKA_LOG4J="$ROOT/scripts/kafka/log4j2.properties"
JAEGER_MOD_DIR="$ROOT/scripts/jaeger"
JAEGER_BIN="$BIN_DIR/jaeger"
JAEGER_CONFIG="$ROOT/collector-config/jaeger.yaml"
READY="$ROOT/scripts/stack_ready.py"

PY="${KET_PYTHON:-$ROOT/.venv/bin/python}"
CACHE_ROOT="${KET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-event-tracing}"
KAFKA_HEAP="${KET_KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_TIMEOUT="${KET_KAFKA_START_TIMEOUT:-120}"
JAEGER_TIMEOUT="${KET_JAEGER_START_TIMEOUT:-60}"
RABBITMQ_TIMEOUT="${KET_RABBITMQ_START_TIMEOUT:-60}"
RABBITMQ_SBIN="${KET_RABBITMQ_SBIN:-/usr/lib/rabbitmq/bin}"
RABBITMQ_DIR="$STACK/rabbitmq"
if ((EUID == 0)) && id rabbitmq >/dev/null 2>&1 && ! runuser -u rabbitmq -- test -x "$ROOT" 2>/dev/null; then
    # A checkout the package's user cannot enter (a private temporary folder, say): the
    # node's folders go where it can, one per checkout.
    RABBITMQ_DIR="/var/tmp/kafka-event-tracing-rabbitmq-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
fi
RABBITMQ_NODE="ket@localhost"

# Ports: the defaults below, all shifted by KET_PORT_OFFSET (or by the offset the running
# stack was started with).
OFFSET_FILE="$RUN_DIR/port-offset"
PORT_OFFSET="${KET_PORT_OFFSET:-$(cat "$OFFSET_FILE" 2>/dev/null || echo 0)}"
if ! [[ $PORT_OFFSET =~ ^[0-9]+$ ]] || ((PORT_OFFSET >= 40000)); then
    echo "stack: error: KET_PORT_OFFSET must be a number below 40000" >&2
    exit 1
fi
KAFKA_PORT=$((19092 + PORT_OFFSET))
KAFKA_CONTROLLER_PORT=$((19093 + PORT_OFFSET))
OTLP_GRPC_PORT=$((4317 + PORT_OFFSET))
OTLP_HTTP_PORT=$((4318 + PORT_OFFSET))
QUERY_HTTP_PORT=$((16686 + PORT_OFFSET))
QUERY_GRPC_PORT=$((16685 + PORT_OFFSET))
HEALTH_PORT=$((13133 + PORT_OFFSET))
RABBITMQ_PORT=$((5672 + PORT_OFFSET))
RABBITMQ_DIST_PORT=$((25672 + PORT_OFFSET))
RABBITMQ_URL="amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2F"
KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
KAFKA_PORTS=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
JAEGER_QUERY_URL="http://127.0.0.1:$QUERY_HTTP_PORT"
JAEGER_PORTS=("$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$QUERY_HTTP_PORT" "$QUERY_GRPC_PORT" "$HEALTH_PORT")
RABBITMQ_PORTS=("$RABBITMQ_PORT" "$RABBITMQ_DIST_PORT")
((PORT_OFFSET == 0)) || RABBITMQ_NODE="ket$PORT_OFFSET@localhost"
# With an offset Jaeger runs from a copy of its config with the ports rewritten.
if ((PORT_OFFSET == 0)); then
    JAEGER_RUN_CONFIG="$JAEGER_CONFIG"
else
    JAEGER_RUN_CONFIG="$STACK/jaeger/jaeger.yaml"
fi
COMPONENTS=(kafka jaeger rabbitmq)

SCRIPT_NAME=stack
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# ---------------------------------------------------------------- processes and ports

port_owner() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true
    fi
}

# The pid file only counts when the process behind it is still the one we started
# (guards against pid reuse after a reboot or a crash).
pid_signature() {
    case $1 in
        kafka) printf '%s' "$KAFKA_CONF" ;;
        jaeger) printf '%s' "$JAEGER_BIN" ;;
        rabbitmq) printf '%s' "$RABBITMQ_DIR/home" ;;  # the Erlang VM's -home argument
    esac
}

our_pid() { pid_from_file "$RUN_DIR/$1.pid" "$(pid_signature "$1")"; }

ports_of() {
    case $1 in
        kafka) printf '%s\n' "${KAFKA_PORTS[@]}" ;;
        jaeger) printf '%s\n' "${JAEGER_PORTS[@]}" ;;
        rabbitmq) printf '%s\n' "${RABBITMQ_PORTS[@]}" ;;
    esac
}

# True when every listening port of the component belongs to pid (checked with ss when present).
ports_owned_by() {
    local comp=$1 pid=$2 port owner ok=0
    command -v ss >/dev/null 2>&1 || return 0
    while read -r port; do
        owner=$(port_owner "$port")
        if [[ -n $owner && $owner != *"pid=$pid,"* ]]; then
            warn "stack: error: port $port is held by another process ($owner), not by our $comp ($pid)."
            ok=1
        fi
    done < <(ports_of "$comp")
    return "$ok"
}

kafka_cluster_id() { sed -n 's/^cluster.id=//p' "$KAFKA_DATA/meta.properties" 2>/dev/null | head -n1; }

main_port() { case $1 in kafka) echo "$KAFKA_PORT" ;; jaeger) echo "$QUERY_HTTP_PORT" ;; rabbitmq) echo "$RABBITMQ_PORT" ;; esac; }

log_of() { printf '%s' "$LOG_DIR/$1.log"; }


# ------------------------------------------------------------------- preflight checks

need_java() {
    command -v java >/dev/null 2>&1 ||
        die "java not found: Kafka 4.1 needs a Java 17+ runtime. Install one, e.g. 'sudo apt-get install -y openjdk-17-jre-headless' (Debian/Ubuntu) or 'brew install openjdk@17' (macOS)."
    local ver major
    ver=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    major=${ver%%.*}
    [[ $major == 1 ]] && major=$(echo "$ver" | cut -d. -f2)
    if [[ $major =~ ^[0-9]+$ ]] && ((major < 17)); then
        die "java $ver found, but Kafka 4.1 needs Java 17 or newer (e.g. 'sudo apt-get install -y openjdk-17-jre-headless')."
    fi
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die "mvn (Apache Maven) not found: it resolves the Kafka jars from scripts/kafka/pom.xml. Install it, e.g. 'sudo apt-get install -y maven' or 'brew install maven'."
}

need_go() {
    local want
    want=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$JAEGER_MOD_DIR/go.mod")
    command -v go >/dev/null 2>&1 ||
        die "go not found: it builds Jaeger from scripts/jaeger/go.mod. Install Go $want or newer (https://go.dev/doc/install); an older Go (1.21+) also works, it fetches the go $want toolchain by itself."
}

need_python() {
    [[ -x $PY ]] || die "python not found at $PY: run 'make venv' first (or set KET_PYTHON to a python with confluent-kafka and pika installed)."
    "$PY" -c 'import confluent_kafka, pika' 2>/dev/null ||
        die "$PY cannot import confluent_kafka and pika: run 'make venv' (or set KET_PYTHON)."
}

# Returns 1 (and says which) when a port the component needs is taken by a process that is not ours.
check_ports_free() {
    local comp=$1 port owner busy=0
    while read -r port; do
        if port_open "$port"; then
            owner=$(port_owner "$port")
            warn "stack: error: port $port (needed by $comp) is already in use by another process${owner:+: $owner}."
            busy=1
        fi
    done < <(ports_of "$comp")
    return "$busy"
}

ports_free_or_die() {
    local comp busy=0
    for comp in "$@"; do check_ports_free "$comp" || busy=1; done
    if ((busy)); then
        warn "  Stop that process. If it is this project's stack started from another checkout, run 'scripts/stack.sh down' there."
        exit 1
    fi
}

# -------------------------------------------------------------- cached build artifacts

sha12() { cat "$@" | sha256sum | cut -c1-12; }

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1; }
kafka_key() { printf 'kafka-%s-%s' "$(kafka_version)" "$(sha12 "$KAFKA_POM")"; }

jaeger_version() {
    sed -n 's:^[[:space:]]*github.com/jaegertracing/jaeger \(v[^ ]*\).*:\1:p' "$JAEGER_MOD_DIR/go.mod" | head -n1
}
jaeger_key() {
    printf 'jaeger-%s-%s-%s-%s' "$(jaeger_version)" "$(uname -s | tr '[:upper:]' '[:lower:]')" "$(uname -m)" \
        "$(sha12 "$JAEGER_MOD_DIR/go.mod" "$JAEGER_MOD_DIR/go.sum")"
}

ensure_kafka_libs() {
    local key version cached tmp
    key=$(kafka_key)
    version=$(kafka_version)
    cached="$CACHE_ROOT/$key/kafka-libs"
    if [[ -f $KAFKA_LIBS/.key && $(<"$KAFKA_LIBS/.key") == "$key" ]]; then
        :
    elif [[ -f $cached/.key ]]; then
        say "kafka: jars for Kafka $version from the per-user cache ($cached)"
        rm -rf "$KAFKA_LIBS" "$KAFKA_LIBS.tmp"
        cp -R "$cached" "$KAFKA_LIBS.tmp"
        mv -T "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    else
        need_mvn
        say "kafka: resolving Kafka $version jars with Maven (first run downloads ~45 MB into ~/.m2; log $(rel "$LOG_DIR/kafka-mvn.log"))"
        tmp="$KAFKA_LIBS.tmp"
        rm -rf "$tmp"
        run_with_progress "maven resolve" "$LOG_DIR/kafka-mvn.log" \
            mvn -B -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
            "-DoutputDirectory=$tmp"
        echo "$key" >"$tmp/.key"
        rm -rf "$KAFKA_LIBS"
        mv -T "$tmp" "$KAFKA_LIBS"
    fi
    cache_store "$KAFKA_LIBS" "$cached"
}

ensure_jaeger_bin() {
    local key version cached
    key=$(jaeger_key)
    version=$(jaeger_version)
    cached="$CACHE_ROOT/$key/jaeger"
    mkdir -p "$BIN_DIR"
    if [[ -x $JAEGER_BIN && $JAEGER_BIN -nt $JAEGER_MOD_DIR/go.mod && $JAEGER_BIN -nt $JAEGER_MOD_DIR/go.sum ]]; then
        :
    elif [[ -x $cached ]]; then
        say "jaeger: binary for $version from the per-user cache ($cached)"
        cp "$cached" "$JAEGER_BIN.tmp"
        mv -f "$JAEGER_BIN.tmp" "$JAEGER_BIN"
    else
        need_go
        say "jaeger: building Jaeger $version from scripts/jaeger/go.mod (cold: ~1 GB of modules and 5-15 min on 2 cores; warm Go caches: seconds; log $(rel "$LOG_DIR/jaeger-build.log"))"
        (
            cd "$JAEGER_MOD_DIR"
            export CGO_ENABLED=0
            run_with_progress "go build" "$LOG_DIR/jaeger-build.log" \
                go build -v -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
        )
        mv -f "$JAEGER_BIN.tmp" "$JAEGER_BIN"
    fi
    cache_store "$JAEGER_BIN" "$cached"
}

# ------------------------------------------------------------------------------ RabbitMQ
#
# Debian's rabbitmq-server package, run as a plain local process: its own data, log and config
# folders under .stack/rabbitmq, node name ket@localhost, AMQP on 127.0.0.1 only. Run as root (as
# here), the node runs as the package's `rabbitmq` user, which owns those folders; run as another
# user, it runs as that user. The package's system service is neither used nor started.

rabbitmq_bin() { printf '%s' "$RABBITMQ_SBIN/$1"; }

ensure_rabbitmq() {
    [[ -x $(rabbitmq_bin rabbitmq-server) && -x $(rabbitmq_bin rabbitmqctl) ]] && return 0
    [[ -n ${KET_RABBITMQ_SBIN:-} ]] && die "KET_RABBITMQ_SBIN=$KET_RABBITMQ_SBIN holds no rabbitmq-server and rabbitmqctl"
    command -v apt-get >/dev/null ||
        die "RabbitMQ not found ($(rabbitmq_bin rabbitmq-server)) and there is no apt-get here: install RabbitMQ 3.x and set KET_RABBITMQ_SBIN to the folder of its rabbitmq-server script."
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "RabbitMQ not found: run 'sudo apt-get install -y rabbitmq-server' (needs root)."
        sudo=(sudo)
    fi
    say "rabbitmq: not installed; installing Debian's package (apt-get install -y --no-install-recommends rabbitmq-server, ~30 MB with Erlang; log $(rel "$LOG_DIR/rabbitmq-apt.log"))"
    if ! ( run_with_progress "apt-get install rabbitmq-server" "$LOG_DIR/rabbitmq-apt.log" \
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server ); then
        say "rabbitmq: install failed with the current package lists; running apt-get update once and retrying"
        run_with_progress "apt-get update" "$LOG_DIR/rabbitmq-apt-update.log" "${sudo[@]}" apt-get update
        run_with_progress "apt-get install rabbitmq-server" "$LOG_DIR/rabbitmq-apt.log" \
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server
    fi
    [[ -x $(rabbitmq_bin rabbitmq-server) ]] || die "rabbitmq-server was installed but $(rabbitmq_bin rabbitmq-server) is missing"
}

# The command line that runs a RabbitMQ script with the node's environment, as the user the node
# runs as (in RABBITMQ_CMD).
rabbitmq_cmd() {
    local script=$1
    shift
    RABBITMQ_CMD=()
    ((EUID == 0)) && RABBITMQ_CMD=(runuser -u rabbitmq --)
    RABBITMQ_CMD+=(env HOME="$RABBITMQ_DIR/home"
        RABBITMQ_NODENAME="$RABBITMQ_NODE"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
        RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT"
        RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia"
        RABBITMQ_LOG_BASE="$RABBITMQ_DIR/log"
        RABBITMQ_CONFIG_FILE="$RABBITMQ_DIR/etc/rabbitmq.conf"
        RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_DIR/etc/enabled_plugins"
        RABBITMQ_FEATURE_FLAGS_FILE="$RABBITMQ_DIR/mnesia/feature_flags"
        RABBITMQ_PID_FILE="$RABBITMQ_DIR/node.pid"
        "$(rabbitmq_bin "$script")" "$@")
}

start_rabbitmq() {
    local log launcher deadline vm=""
    log=$(log_of rabbitmq)
    mkdir -p "$RABBITMQ_DIR"/{mnesia,log,etc,home}
    printf '%s\n' "# Written by scripts/stack.sh" "listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT" \
        "loopback_users = none" "cluster_name = $RABBITMQ_NODE" >"$RABBITMQ_DIR/etc/rabbitmq.conf"
    [[ -f $RABBITMQ_DIR/etc/enabled_plugins ]] || echo '[].' >"$RABBITMQ_DIR/etc/enabled_plugins"
    rm -f "$RABBITMQ_DIR/node.pid"
    if ((EUID == 0)); then
        # The node runs as the package's user: it must own (and reach) its folders.
        chown -R rabbitmq:rabbitmq "$RABBITMQ_DIR"
        runuser -u rabbitmq -- test -w "$RABBITMQ_DIR/mnesia" ||
            die "the rabbitmq user cannot write $RABBITMQ_DIR (a parent folder it cannot enter?); run the stack from a checkout it can reach"
    fi
    rotate_log "$log"
    say "rabbitmq: starting node $RABBITMQ_NODE on 127.0.0.1:$RABBITMQ_PORT (log $(rel "$log"), node logs $(rel "$RABBITMQ_DIR/log"))"
    rabbitmq_cmd rabbitmq-server
    (cd "$RABBITMQ_DIR" && exec setsid "${RABBITMQ_CMD[@]}" </dev/null >"$log" 2>&1 9>&-) &
    launcher=$!
    # The script does not exec the Erlang VM, and stopping it would not stop the VM: the pid
    # file names the VM, which writes its own pid early in its boot.
    deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        vm=$(cat "$RABBITMQ_DIR/node.pid" 2>/dev/null || true)
        [[ $vm =~ ^[0-9]+$ ]] && break
        pid_alive "$launcher" || break
        sleep 0.2
    done
    if [[ $vm =~ ^[0-9]+$ ]]; then
        echo "$vm" >"$RUN_DIR/rabbitmq.pid"
    else
        echo "$launcher" >"$RUN_DIR/rabbitmq.pid"  # wait_ready reports it exited, with the log
    fi
}

# Stops our node (rabbitmqctl stop, then signals to the VM if need be) and the epmd daemon the
# node started, when no other Erlang node uses it.
stop_rabbitmq() {
    local pid=$1
    rabbitmq_cmd rabbitmqctl -q -t 30 stop
    (cd "$RABBITMQ_DIR" && "${RABBITMQ_CMD[@]}") >>"$(log_of rabbitmq)" 2>&1 || true
    stop_pids "$pid"
    if command -v epmd >/dev/null 2>&1 && epmd -names 2>/dev/null | grep -q 'up and running' &&
        ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

# ------------------------------------------------------------------------- the Jaeger UI
#
# The binary built from the Go module embeds no UI (it serves a placeholder page); its jaeger_query
# extension serves the UI from a directory given as ui.assets_path. The directory comes from
# KET_JAEGER_UI_ASSETS (a jaeger-ui assets.tar.gz or an unpacked directory), else from the release
# asset at KET_JAEGER_UI_URL. A tarball is unpacked once into the cache, keyed by version and checksum.
# Nothing here stops the stack: without assets Jaeger starts with its placeholder page and one line
# says how to supply them.

JAEGER_UI_STATE="$RUN_DIR/jaeger-ui"   # how the running Jaeger got its UI (read by `status`)
JAEGER_UI_DIR=""                       # set by resolve_jaeger_ui
JAEGER_UI_PROBLEM=""

jaeger_ui_version() { printf '%s' "${KET_JAEGER_UI_VERSION:-$(jaeger_version)}"; }
jaeger_ui_url() {
    printf '%s' "${KET_JAEGER_UI_URL:-https://github.com/jaegertracing/jaeger-ui/releases/download/$(jaeger_ui_version)/assets.tar.gz}"
}
jaeger_ui_howto() {
    printf 'set KET_JAEGER_UI_ASSETS to a jaeger-ui %s assets.tar.gz (or its unpacked build/ folder), or KET_JAEGER_UI_URL to where it can be downloaded, then restart Jaeger: scripts/stack.sh down jaeger && make stack-up' \
        "$(jaeger_ui_version)"
}

# The UI folder inside DIR (an unpacked release asset or the build folder itself), or fails.
ui_build_dir() {
    local dir=$1 sub
    for sub in packages/jaeger-ui/build build .; do
        if [[ -f $dir/$sub/index.html && -d $dir/$sub/static ]]; then
            (cd "$dir/$sub" && pwd)
            return 0
        fi
    done
    return 1
}

# Unpacks a jaeger-ui tarball into the cache (once per version and checksum) and sets JAEGER_UI_DIR
# to the UI folder; fails with JAEGER_UI_PROBLEM set.
ui_unpack() {
    local tarball=$1 version sum dest tmp build
    version=$(jaeger_ui_version)
    sum=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [[ -n ${KET_JAEGER_UI_SHA256:-} && ${KET_JAEGER_UI_SHA256,,} != "$sum" ]]; then
        JAEGER_UI_PROBLEM="$tarball has sha256 $sum, not KET_JAEGER_UI_SHA256=$KET_JAEGER_UI_SHA256"
        return 1
    fi
    dest="$CACHE_ROOT/jaeger-ui-$version-${sum:0:12}"
    if [[ -f $dest/index.html ]]; then
        JAEGER_UI_DIR=$dest
        return 0
    fi
    mkdir -p "$CACHE_ROOT"
    tmp=$(mktemp -d "$CACHE_ROOT/.jaeger-ui-unpack.XXXXXX")
    if ! tar -xzf "$tarball" -C "$tmp" 2>"$tmp.err"; then
        JAEGER_UI_PROBLEM="$tarball is not a gzipped tar archive ($(grep -m1 . "$tmp.err"))"
        rm -rf "$tmp" "$tmp.err"
        return 1
    fi
    rm -f "$tmp.err"
    if ! build=$(ui_build_dir "$tmp"); then
        JAEGER_UI_PROBLEM="$tarball holds no jaeger-ui build (no packages/jaeger-ui/build/index.html)"
        rm -rf "$tmp"
        return 1
    fi
    # Renamed into place in one step: a concurrent start in another checkout may race us.
    mv -T "$build" "$dest" 2>/dev/null || [[ -f $dest/index.html ]] || {
        JAEGER_UI_PROBLEM="could not move the unpacked UI to $dest"
        rm -rf "$tmp"
        return 1
    }
    rm -rf "$tmp"
    say "jaeger-ui: unpacked $version into $dest (once; later starts reuse it)"
    JAEGER_UI_DIR=$dest
}

# Downloads URL to FILE (python, so no curl is needed), with a progress line every 10 s; fails with
# JAEGER_UI_PROBLEM set.
ui_download() {
    local url=$1 file=$2
    mkdir -p "$(dirname "$file")"
    if "$PY" - "$url" "$file.part" 2>"$file.err" <<'PYEOF'; then
import sys, time, urllib.request
url, dest = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=20) as resp, open(dest, "wb") as out:
        size, got, start = resp.headers.get("Content-Length"), 0, time.monotonic()
        report = start + 10
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            got += len(chunk)
            if time.monotonic() >= report:
                of = f" of {int(size) / 1e6:.1f}" if size else ""
                print(f"  ... jaeger-ui: {got / 1e6:.1f}{of} MB, {time.monotonic() - start:.0f}s", flush=True)
                report += 10
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
        mv -f "$file.part" "$file"
        rm -f "$file.err"
        return 0
    fi
    JAEGER_UI_PROBLEM="downloading $url failed ($(tail -n1 "$file.err" | cut -c1-160))"
    rm -f "$file.part" "$file.err"
    return 1
}

# Sets JAEGER_UI_DIR (the folder to serve) or JAEGER_UI_PROBLEM (why there is none).
resolve_jaeger_ui() {
    local src=${KET_JAEGER_UI_ASSETS:-} url version file cached
    JAEGER_UI_DIR=""
    JAEGER_UI_PROBLEM=""
    version=$(jaeger_ui_version)
    if [[ -n $src ]]; then
        if [[ -d $src ]]; then
            JAEGER_UI_DIR=$(ui_build_dir "$src") ||
                JAEGER_UI_PROBLEM="KET_JAEGER_UI_ASSETS=$src holds no index.html and static/ (nor packages/jaeger-ui/build/)"
        elif [[ -f $src ]]; then
            ui_unpack "$src" || JAEGER_UI_PROBLEM="KET_JAEGER_UI_ASSETS: $JAEGER_UI_PROBLEM"
        else
            JAEGER_UI_PROBLEM="KET_JAEGER_UI_ASSETS=$src does not exist"
        fi
        [[ -n $JAEGER_UI_DIR ]] && say "jaeger-ui: $version from KET_JAEGER_UI_ASSETS ($JAEGER_UI_DIR)"
        return 0
    fi
    url=$(jaeger_ui_url)
    file="$CACHE_ROOT/downloads/jaeger-ui-$version-$(printf '%s' "$url" | sha256sum | cut -c1-12).tar.gz"
    if [[ ! -f $file ]]; then
        say "jaeger-ui: downloading $version from $url"
        ui_download "$url" "$file" || true
    fi
    if [[ -f $file ]]; then
        if ui_unpack "$file"; then
            say "jaeger-ui: $version from $url ($JAEGER_UI_DIR)"
            return 0
        fi
        rm -f "$file" # not a UI archive (an error page?): fetched again next time
    fi
    # Offline, but unpacked before (from an override or a download): the same version still serves.
    cached=$(find "$CACHE_ROOT" -maxdepth 2 -path "*/jaeger-ui-$version-*/index.html" -printf '%T@ %h\n' 2>/dev/null |
        sort -rn | head -n1 | cut -d' ' -f2- || true)
    if [[ -n $cached ]]; then
        say "jaeger-ui: ${JAEGER_UI_PROBLEM:-no download}; serving $version unpacked earlier ($cached)"
        JAEGER_UI_DIR=$cached
        JAEGER_UI_PROBLEM=""
    fi
}

# The one line said when Jaeger runs without its UI.
say_ui_missing() {
    warn "jaeger: UI missing (Jaeger serves its placeholder page on $JAEGER_QUERY_URL/, the API works): $JAEGER_UI_PROBLEM; $(jaeger_ui_howto)"
}

# What GET / on the query port serves: "ui", "placeholder", or "none".
served_ui() {
    "$PY" - "$JAEGER_QUERY_URL/" <<'PYEOF' 2>/dev/null || echo none
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
        page = resp.read(1 << 16).decode("utf-8", "replace")
except Exception:
    print("none")
else:
    print("ui" if "<title>Jaeger UI</title>" in page else "placeholder")
PYEOF
}

# ------------------------------------------------------------------------ start / stop

rotate_log() { if [[ -f $1 ]]; then mv -f "$1" "$1.prev"; fi; }

start_kafka() {
    local cid log
    log=$(log_of kafka)
    mkdir -p "$(dirname "$KAFKA_CONF")" "$KAFKA_DATA"
    {
        sed -e "s/127\.0\.0\.1:19092/127.0.0.1:$KAFKA_PORT/g" \
            -e "s/127\.0\.0\.1:19093/127.0.0.1:$KAFKA_CONTROLLER_PORT/g" "$KAFKA_TEMPLATE"
        printf '\n# Added by scripts/stack.sh\nlog.dirs=%s\n' "$KAFKA_DATA"
    } >"$KAFKA_CONF"
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        say "kafka: formatting storage in $(rel "$KAFKA_DATA") (once per checkout)"
        cid=$(java -cp "$KAFKA_LIBS/*" "-Dlog4j2.configurationFile=$KAFKA_LOG4J" \
            kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log" | tail -n1)
        [[ -n $cid ]] || { show_log_tail "$LOG_DIR/kafka-format.log"; die "could not create a Kafka cluster id."; }
        if ! java -cp "$KAFKA_LIBS/*" "-Dlog4j2.configurationFile=$KAFKA_LOG4J" \
            kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF" >>"$LOG_DIR/kafka-format.log" 2>&1; then
            show_log_tail "$LOG_DIR/kafka-format.log"
            die "formatting Kafka storage failed (log: $LOG_DIR/kafka-format.log)."
        fi
    fi
    rotate_log "$log"
    say "kafka: starting on $KAFKA_BOOTSTRAP (log $(rel "$log"))"
    # shellcheck disable=SC2086  # KAFKA_HEAP holds several JVM options
    (cd "$ROOT" && exec setsid java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true "-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$LOG_DIR" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" </dev/null >"$log" 2>&1 9>&-) &
    echo $! >"$RUN_DIR/kafka.pid"
}

start_jaeger() {
    local log
    log=$(log_of jaeger)
    rotate_log "$log"
    if [[ $JAEGER_RUN_CONFIG != "$JAEGER_CONFIG" ]]; then
        mkdir -p "$(dirname "$JAEGER_RUN_CONFIG")"
        sed -e "s/127\.0\.0\.1:4317\b/127.0.0.1:$OTLP_GRPC_PORT/g" \
            -e "s/127\.0\.0\.1:4318\b/127.0.0.1:$OTLP_HTTP_PORT/g" \
            -e "s/127\.0\.0\.1:16686\b/127.0.0.1:$QUERY_HTTP_PORT/g" \
            -e "s/127\.0\.0\.1:16685\b/127.0.0.1:$QUERY_GRPC_PORT/g" \
            -e "s/127\.0\.0\.1:13133\b/127.0.0.1:$HEALTH_PORT/g" "$JAEGER_CONFIG" >"$JAEGER_RUN_CONFIG"
    fi
    local ui_args=()
    if [[ -n $JAEGER_UI_DIR ]]; then
        # The compose stack's image embeds the UI; here the same config gets it from a folder.
        ui_args=("--set=extensions::jaeger_query::ui::assets_path=$JAEGER_UI_DIR")
        printf 'dir %s\n' "$JAEGER_UI_DIR" >"$JAEGER_UI_STATE"
    else
        printf 'missing %s\n' "$JAEGER_UI_PROBLEM" >"$JAEGER_UI_STATE"
    fi
    say "jaeger: starting, OTLP 127.0.0.1:$OTLP_GRPC_PORT/$OTLP_HTTP_PORT, UI/API $JAEGER_QUERY_URL (log $(rel "$log"))"
    (cd "$ROOT" && exec setsid "$JAEGER_BIN" --config "$JAEGER_RUN_CONFIG" "${ui_args[@]}" </dev/null >"$log" 2>&1 9>&-) &
    echo $! >"$RUN_DIR/jaeger.pid"
}

wait_ready() {
    local comp=$1 pid rc=0
    pid=$(<"$RUN_DIR/$comp.pid")
    case $comp in
        kafka) "$PY" "$READY" kafka "$KAFKA_BOOTSTRAP" "$pid" "$KAFKA_TIMEOUT" "$(kafka_cluster_id)" || rc=$? ;;
        jaeger) "$PY" "$READY" jaeger "$JAEGER_QUERY_URL" "$pid" "$JAEGER_TIMEOUT" \
            "127.0.0.1:$OTLP_GRPC_PORT" "127.0.0.1:$OTLP_HTTP_PORT" || rc=$? ;;
        rabbitmq) "$PY" "$READY" rabbitmq "$RABBITMQ_URL" "$pid" "$RABBITMQ_TIMEOUT" "$RABBITMQ_NODE" || rc=$? ;;
    esac
    # The probes talk to a port, not a process: make sure the listener is ours.
    if ((rc == 0)) && ! ports_owned_by "$comp" "$pid"; then
        rc=1
    fi
    if ((rc != 0)); then
        show_log_tail "$(log_of "$comp")"
        if pid_alive "$pid"; then
            warn "stack: stopping the $comp process ($pid) that did not become ready"
            if [[ $comp == rabbitmq ]]; then stop_rabbitmq "$pid"; else stop_pids "$pid"; fi
        fi
        rm -f "$RUN_DIR/$comp.pid"
        warn "stack: error: $comp failed to start; see $(log_of "$comp")"
        return 1
    fi
    return 0
}

stop_pids() {
    local pid deadline
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 45))
    for pid in "$@"; do
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.3; done
        if pid_alive "$pid"; then
            warn "  process $pid did not stop after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    done
}

wait_ports_closed() {
    local port deadline
    deadline=$((SECONDS + 20))
    for port in "$@"; do
        while port_open "$port" && ((SECONDS < deadline)); do sleep 0.3; done
        if port_open "$port"; then
            warn "stack: warning: port $port is still open after stopping $(port_owner "$port")"
            return 1
        fi
    done
}

# ----------------------------------------------------------------------- subcommands

cmd_up() {
    local comp pid to_start=() failed=0
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$BIN_DIR"
    for comp in "${COMPONENTS[@]}"; do
        if pid=$(our_pid "$comp"); then
            say "$comp: already running (pid $pid)"
        else
            rm -f "$RUN_DIR/$comp.pid"
            to_start+=("$comp")
        fi
    done
    ports_free_or_die "${to_start[@]}"
    need_python
    if [[ " ${to_start[*]} " == *" kafka "* ]]; then
        need_java
        ensure_kafka_libs
    fi
    if [[ " ${to_start[*]} " == *" jaeger "* ]]; then
        ensure_jaeger_bin
        resolve_jaeger_ui
    fi
    if [[ " ${to_start[*]} " == *" rabbitmq "* ]]; then
        ensure_rabbitmq
    fi
    # Builds can take minutes: look at the ports again right before starting.
    ports_free_or_die "${to_start[@]}"
    echo "$PORT_OFFSET" >"$OFFSET_FILE"
    for comp in "${to_start[@]}"; do "start_$comp"; done
    # Readiness is checked for every component, also the ones already running.
    for comp in "${COMPONENTS[@]}"; do
        [[ -f $RUN_DIR/$comp.pid ]] || continue
        if wait_ready "$comp"; then
            say "$comp: ready (pid $(<"$RUN_DIR/$comp.pid"))"
        else
            failed=1
        fi
    done
    if ((failed)); then
        warn "stack: not everything started; 'scripts/stack.sh status' shows what runs, 'scripts/stack.sh down' stops it."
        return 1
    fi
    # Started (or confirmed) by hand: test runs must not stop it afterwards.
    [[ -n ${KET_STACK_FROM_RUN:-} ]] || rm -f "$RUN_DIR/started-by-run"
    check_served_ui
    say "stack: up (Kafka $KAFKA_BOOTSTRAP, RabbitMQ 127.0.0.1:$RABBITMQ_PORT, OTLP 127.0.0.1:$OTLP_GRPC_PORT, Jaeger $JAEGER_QUERY_URL)"
}

# After a start: the page on / is the UI, or one line says why not and how to get it.
check_served_ui() {
    local state
    [[ $(served_ui) == ui ]] && return 0
    state=$(cat "$JAEGER_UI_STATE" 2>/dev/null || true)
    if [[ $state == dir\ * ]]; then
        JAEGER_UI_PROBLEM="Jaeger was given ${state#dir } but does not serve it (see $(rel "$(log_of jaeger)"))"
    else
        JAEGER_UI_PROBLEM=${state#missing }
        JAEGER_UI_PROBLEM=${JAEGER_UI_PROBLEM:-no UI assets were given to the running Jaeger}
    fi
    say_ui_missing
}

cmd_down() {
    local comps=("$@") comp pid pids=() ports=() stopped=() rc=0 port
    ((${#comps[@]})) || comps=("${COMPONENTS[@]}")
    for comp in "${comps[@]}"; do
        [[ $comp == kafka || $comp == jaeger || $comp == rabbitmq ]] ||
            die "unknown component '$comp' (kafka, jaeger or rabbitmq)"
        if [[ $comp == rabbitmq ]] && pid=$(our_pid "$comp"); then
            say "$comp: stopping node $RABBITMQ_NODE (pid $pid)"
            stop_rabbitmq "$pid"
            stopped+=("$comp")
            while read -r port; do ports+=("$port"); done < <(ports_of "$comp")
        elif pid=$(our_pid "$comp"); then
            say "$comp: stopping (pid $pid)"
            pids+=("$pid")
            stopped+=("$comp")
            while read -r port; do ports+=("$port"); done < <(ports_of "$comp")
        elif [[ -f $RUN_DIR/$comp.pid ]]; then
            say "$comp: not running (removing stale pid file)"
        else
            say "$comp: not running"
        fi
    done
    if ((${#pids[@]})); then stop_pids "${pids[@]}"; fi
    if ((${#ports[@]})); then wait_ports_closed "${ports[@]}" || rc=1; fi
    for comp in "${comps[@]}"; do
        our_pid "$comp" >/dev/null || rm -f "$RUN_DIR/$comp.pid"
    done
    if ! our_pid kafka >/dev/null && ! our_pid jaeger >/dev/null && ! our_pid rabbitmq >/dev/null; then
        rm -f "$RUN_DIR/started-by-run" "$OFFSET_FILE"
    fi
    if ((rc == 0 && ${#stopped[@]})); then say "stack: stopped ${stopped[*]}"; fi
    return "$rc"
}

component_state() { # prints: up|starting|down|foreign
    local comp=$1 pid
    if pid=$(our_pid "$comp"); then
        if port_open "$(main_port "$comp")"; then echo up; else echo starting; fi
    elif port_open "$(main_port "$comp")"; then
        echo foreign
    else
        echo down
    fi
}

cmd_status() {
    local comp state pid all_up=0 detail
    for comp in "${COMPONENTS[@]}"; do
        state=$(component_state "$comp")
        pid=$(our_pid "$comp" || true)
        case $comp in
            kafka) detail="bootstrap $KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)" ;;
            jaeger) detail="OTLP grpc 127.0.0.1:$OTLP_GRPC_PORT http 127.0.0.1:$OTLP_HTTP_PORT, API/UI $JAEGER_QUERY_URL" ;;
            rabbitmq) detail="AMQP 127.0.0.1:$RABBITMQ_PORT, node $RABBITMQ_NODE" ;;
        esac
        case $state in
            up) [[ $comp == jaeger ]] && detail="$detail; $(ui_status)" ;;
            starting) detail="$detail; process alive, port $(main_port "$comp") not open yet" ;;
            foreign) detail="$detail; port $(main_port "$comp") answers but was not started from this checkout" ;;
            down) detail="$detail; log $(rel "$(log_of "$comp")")" ;;
        esac
        [[ $state == up ]] || all_up=3
        printf '%-8s %-9s pid %-8s %s\n' "$comp" "$state" "${pid:--}" "$detail"
    done
    return "$all_up"
}

# For Jaeger's status line: whether GET / serves the real UI (and from where) or the placeholder page.
ui_status() {
    local state
    state=$(cat "$JAEGER_UI_STATE" 2>/dev/null || true)
    case $(served_ui) in
        ui) printf 'UI served from %s' "${state#dir }" ;;
        placeholder)
            JAEGER_UI_PROBLEM=${state#missing }
            [[ $state == dir\ * ]] && JAEGER_UI_PROBLEM="Jaeger was given ${state#dir } but does not serve it"
            printf 'UI missing, placeholder page instead (%s); %s' \
                "${JAEGER_UI_PROBLEM:-started without UI assets}" "$(jaeger_ui_howto)"
            ;;
        *) printf 'UI: no answer on %s/' "$JAEGER_QUERY_URL" ;;
    esac
}

# ------------------------------------------------------------------- run (for make test)
#
# Several test runs may share one checkout's stack at the same time. Each run holds a
# lease (.stack/run/leases/<pid>) while its command runs. Components a run had to start
# are listed in .stack/run/started-by-run; the last run to finish stops exactly those.
# A stack started by hand (`up`) is never stopped by a run.

LEASES="$RUN_DIR/leases"
RUN_STARTED="$RUN_DIR/started-by-run"

# Held on fd 9. Re-entrant: a run whose start failed cleans up while it still holds the lock (the
# EXIT trap), and must not wait for itself. The services are started with fd 9 closed, so none of
# them keeps the lock once this script is gone.
STACK_LOCK_HELD=0

lock_stack() {
    command -v flock >/dev/null 2>&1 || return 0
    ((STACK_LOCK_HELD)) && return 0
    exec 9>"$RUN_DIR/lock"
    if ! flock -n 9; then
        say "stack: another scripts/stack.sh is starting or stopping the stack; waiting for it"
        flock 9
    fi
    STACK_LOCK_HELD=1
}

unlock_stack() {
    command -v flock >/dev/null 2>&1 || return 0
    flock -u 9 || true
    STACK_LOCK_HELD=0
}

live_leases() {
    local f pid
    for f in "$LEASES"/*; do
        [[ -e $f ]] || continue
        pid=${f##*/}
        if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid"; then
            printf '%s\n' "$pid"
        else
            rm -f "$f"
        fi
    done
}

# shellcheck disable=SC2317  # called from traps
run_cleanup() {
    trap - EXIT INT TERM
    local others comps=()
    lock_stack
    rm -f "$LEASES/$$"
    others=$(live_leases | tr '\n' ' ')
    if [[ -n $others ]]; then
        say "stack: still in use by other test run(s) (pid ${others% }); leaving it up"
    elif [[ -s $RUN_STARTED ]]; then
        mapfile -t comps < <(sort -u "$RUN_STARTED")
        say "stack: stopping what test runs started: ${comps[*]}"
        cmd_down "${comps[@]}" || true
        rm -f "$RUN_STARTED"
    else
        say "stack: it was running before this run; leaving it up"
    fi
    unlock_stack
}

cmd_run() {
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "usage: scripts/stack.sh run -- COMMAND..."
    local comp rc=0
    mkdir -p "$LEASES"
    lock_stack
    : >"$LEASES/$$"
    trap 'run_cleanup; exit 130' INT
    trap 'run_cleanup; exit 143' TERM
    trap 'run_cleanup' EXIT
    for comp in "${COMPONENTS[@]}"; do
        our_pid "$comp" >/dev/null || echo "$comp" >>"$RUN_STARTED"
    done
    KET_STACK_FROM_RUN=1 cmd_up
    unlock_stack
    export KET_KAFKA_BOOTSTRAP="$KAFKA_BOOTSTRAP" KET_JAEGER_URL="$JAEGER_QUERY_URL" \
        KET_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_GRPC_PORT" KET_OTLP_HTTP_ENDPOINT="http://127.0.0.1:$OTLP_HTTP_PORT" \
        KET_RABBITMQ_URL="$RABBITMQ_URL"
    set +e
    "$@"
    rc=$?
    set -e
    exit "$rc"
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    ui-assets)
        # Resolve (download, unpack) the UI assets the next Jaeger start would serve, start nothing.
        mkdir -p "$RUN_DIR"
        resolve_jaeger_ui
        if [[ -n $JAEGER_UI_DIR ]]; then say "jaeger-ui: assets in $JAEGER_UI_DIR"; else say_ui_missing; exit 1; fi
        ;;
    run) shift; cmd_run "$@" ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 64
        ;;
esac
