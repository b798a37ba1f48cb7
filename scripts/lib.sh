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
