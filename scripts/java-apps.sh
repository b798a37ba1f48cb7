#!/usr/bin/env bash
# The Java services of examples/java (a producer and a relay on kafka-clients) and the OpenTelemetry
# Java agent that traces them, for tests/e2e/test_java_chain.py and for trying a mixed chain by hand.
#
# Usage: scripts/java-apps.sh install | paths | run CLASS ARGS...
#   install  build the jar with Maven, copy its runtime jars and fetch the agent (versions pinned in
#            examples/java/pom.xml), unless the per-user cache already holds them; starts nothing.
#            `make test` runs it before pytest, so a cold build shows its progress there.
#   paths    (after install) print JAVA_CHAIN_CLASSPATH=... and JAVA_AGENT_JAR=..., one a line
#   run      install, then run eventchain.example.CLASS under the agent, e.g.
#            OTEL_SERVICE_NAME=java-orders scripts/java-apps.sh run OrderProducer orders order-1 '{}'
#            OTEL_* variables (endpoint, protocol, opt-ins) are the agent's own and passed on.
#
# Where things go: .stack/java-chain/{libs/,opentelemetry-javaagent.jar}; the per-user cache keeps
#   ${KET_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/kafka-event-tracing}/java-chain-<kafka>-<hash>/libs
#     (the jar and its runtime jars; <hash> covers the pom and the sources)
#   .../otel-javaagent-<version>/opentelemetry-javaagent.jar
# A warm run copies from there in about a second; a cold one resolves ~10 MB of jars and the ~25 MB
# agent with Maven (about a minute on 2 cores). Needs Java 17+ and Maven.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$ROOT/examples/java/pom.xml"
SRC="$ROOT/examples/java/src"
OUT="$ROOT/.stack/java-chain"
LOG_DIR="$ROOT/.stack/logs"
CACHE_ROOT="${KET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-event-tracing}"
SCRIPT_NAME=java-apps
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

pom_property() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$POM" | head -n1; }
sources_hash() {
    (cd "$ROOT/examples/java" && find pom.xml src -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-12
}

need_tools() {
    command -v java >/dev/null 2>&1 ||
        die "java not found: the Java services need a Java 17+ runtime and compiler (e.g. 'sudo apt-get install -y openjdk-17-jdk-headless')."
    command -v javac >/dev/null 2>&1 ||
        die "javac not found: building examples/java needs a JDK, not only a runtime (e.g. 'sudo apt-get install -y openjdk-17-jdk-headless')."
    command -v mvn >/dev/null 2>&1 ||
        die "mvn (Apache Maven) not found: it builds examples/java and fetches the agent. Install it, e.g. 'sudo apt-get install -y maven'."
}

# The jar and its runtime jars in $OUT/libs, from the cache or built.
ensure_libs() {
    local key cached build
    key="java-chain-$(pom_property kafka.version)-$(sources_hash)"
    cached="$CACHE_ROOT/$key/libs"
    if [[ -f $OUT/libs/.key && $(<"$OUT/libs/.key") == "$key" ]]; then
        return 0
    fi
    mkdir -p "$OUT" "$LOG_DIR"
    rm -rf "$OUT/libs.tmp"
    if [[ -f $cached/.key ]]; then
        say "java-apps: examples/java jars from the per-user cache ($cached)"
        cp -R "$cached" "$OUT/libs.tmp"
    else
        need_tools
        build="$ROOT/.stack/build/java-chain"
        say "java-apps: building examples/java with Maven (kafka-clients $(pom_property kafka.version); cold: ~10 MB into ~/.m2, about a minute; log $(rel "$LOG_DIR/java-apps-build.log"))"
        rm -rf "$build"
        run_with_progress "maven package" "$LOG_DIR/java-apps-build.log" \
            mvn -B -f "$POM" -DskipTests "-Dket.build.dir=$build" package \
            dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$OUT/libs.tmp"
        cp "$build/java-chain-1.jar" "$OUT/libs.tmp/"
        echo "$key" >"$OUT/libs.tmp/.key"
    fi
    rm -rf "$OUT/libs"
    mv -T "$OUT/libs.tmp" "$OUT/libs"
    cache_store "$OUT/libs" "$cached"
}

# The agent jar at $OUT/opentelemetry-javaagent.jar, from the cache or fetched.
ensure_agent() {
    local version cached jar="$OUT/opentelemetry-javaagent.jar" tmp
    version=$(pom_property otel.javaagent.version)
    cached="$CACHE_ROOT/otel-javaagent-$version/opentelemetry-javaagent.jar"
    if [[ -f $jar && -f $jar.version && $(<"$jar.version") == "$version" ]]; then
        return 0
    fi
    mkdir -p "$OUT" "$LOG_DIR"
    if [[ -f $cached ]]; then
        say "java-apps: OpenTelemetry Java agent $version from the per-user cache ($cached)"
        cp "$cached" "$jar.tmp"
    else
        need_tools
        tmp="$OUT/agent.tmp"
        rm -rf "$tmp"
        say "java-apps: fetching the OpenTelemetry Java agent $version with Maven (~25 MB; log $(rel "$LOG_DIR/java-agent-fetch.log"))"
        run_with_progress "maven fetch agent" "$LOG_DIR/java-agent-fetch.log" \
            mvn -B -f "$POM" dependency:copy \
            "-Dartifact=io.opentelemetry.javaagent:opentelemetry-javaagent:$version" "-DoutputDirectory=$tmp"
        mv -f "$tmp/opentelemetry-javaagent-$version.jar" "$jar.tmp"
        rm -rf "$tmp"
    fi
    mv -f "$jar.tmp" "$jar"
    echo "$version" >"$jar.version"
    cache_store "$jar" "$cached"
}

cmd_paths() {
    [[ -f $OUT/libs/.key && -f $OUT/opentelemetry-javaagent.jar ]] ||
        die "examples/java is not built yet: run 'scripts/java-apps.sh install' first."
    printf 'JAVA_CHAIN_CLASSPATH=%s\n' "$OUT/libs/*"
    printf 'JAVA_AGENT_JAR=%s\n' "$OUT/opentelemetry-javaagent.jar"
}

case ${1:-} in
    install)
        ensure_libs
        ensure_agent
        ;;
    paths) cmd_paths ;;
    run)
        shift
        [[ $# -ge 1 ]] || die "usage: scripts/java-apps.sh run CLASS ARGS..."
        ensure_libs
        ensure_agent
        class=$1
        shift
        exec java -Xmx256m "-javaagent:$OUT/opentelemetry-javaagent.jar" -cp "$OUT/libs/*" \
            "eventchain.example.$class" "$@"
        ;;
    *)
        warn "usage: scripts/java-apps.sh install | paths | run CLASS ARGS..."
        exit 2
        ;;
esac
