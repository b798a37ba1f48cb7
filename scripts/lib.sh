# Shell helpers shared by scripts/stack.sh and scripts/metrics-stack.sh (sourced, not run).
# The sourcing script sets ROOT and SCRIPT_NAME first.

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }
rel() { printf '%s' "${1#"$ROOT"/}"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Alive and not a zombie.
pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [[ -n $state && $state != Z* ]]
}

# The pid in FILE, printed only when that process is alive and its command line contains
# SIGNATURE: a pid file left from before a reboot or a crash may name someone else's process.
pid_from_file() {
    local file=$1 signature=$2 pid args
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    args=$(ps -ww -o args= -p "$pid" 2>/dev/null || true)
    [[ $args == *"$signature"* ]] || return 1
    printf '%s' "$pid"
}

# The last LINES (default 40) lines of a log on stderr, and where the whole log is.
show_log_tail() {
    local log=$1 lines=${2:-40}
    if [[ -f $log ]]; then
        warn "---- last $lines lines of $(rel "$log") ----"
        tail -n "$lines" "$log" >&2 || true
        warn "---- end of $(rel "$log") (full log: $log) ----"
    else
        warn "(no log at $log)"
    fi
}

# Runs a long command with its output in a log file, printing a progress line every 15 s.
run_with_progress() {
    local label=$1 log=$2 rc=0 pid start next
    shift 2
    start=$SECONDS
    next=$((start + 15))
    "$@" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if ((SECONDS >= next)); then
            say "  ... $label: $((SECONDS - start))s, last output: $(tail -n 1 "$log" 2>/dev/null | cut -c1-100)"
            next=$((SECONDS + 15))
        fi
    done
    wait "$pid" || rc=$?
    if ((rc != 0)); then
        warn "$SCRIPT_NAME: error: $label failed (exit $rc)."
        show_log_tail "$log"
        exit 1
    fi
    say "  $label: done in $((SECONDS - start))s"
}

# Copies a file or folder into the cache atomically (concurrent checkouts may race).
cache_store() {
    local src=$1 dest=$2 tmp
    [[ -e $dest ]] && return 0
    mkdir -p "$(dirname "$dest")"
    tmp="$dest.tmp.$$"
    if cp -R "$src" "$tmp" 2>/dev/null && mv -T "$tmp" "$dest" 2>/dev/null; then
        say "  cached in $dest"
    else
        rm -rf "$tmp"
    fi
}
