#!/usr/bin/env bash
# Start or stop an MLflow tracking server for sweeps.
#
#   scripts/mlflow-server.sh start     launch it, write its PID file, print its URI
#   scripts/mlflow-server.sh stop      stop it (the PID file's process group)
#   scripts/mlflow-server.sh status    say whether it runs
#
# Environment:
#   MLFLOW_HOME               state folder (default ./mlflow-server): PID file,
#                             log, the default SQLite store, artifacts/
#   MLFLOW_PORT               port (default 5000)
#   MLFLOW_HOST               bind address (default 127.0.0.1; to serve compute
#                             nodes, bind an address they reach and see
#                             `mlflow server --help` for --allowed-hosts)
#   MLFLOW_BACKEND_STORE_URI  any SQLAlchemy URI (default sqlite:///$MLFLOW_HOME/mlflow.db)
#   MLFLOW_WORKERS            server worker processes (default 2)
#   MLFLOW_BIN                the mlflow executable (default: `mlflow` on PATH)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  MLflow's GenAI job runner (default false
#                             here: eight more processes, unused by sweeps)
#
# Artifacts are proxied by the server (clients log to mlflow-artifacts:/) and
# stored under $MLFLOW_HOME/artifacts.
set -euo pipefail

readonly STOP_GRACE_S=10
readonly START_TIMEOUT_S=120

usage() {
    cat >&2 <<'EOF'
usage: mlflow-server.sh start|stop|status
Runs `mlflow server` on ${MLFLOW_HOST:-127.0.0.1}:${MLFLOW_PORT:-5000}, state in ${MLFLOW_HOME:-./mlflow-server}.
See the header of this script for the environment it reads.
EOF
    exit 2
}

log() { printf '[mlflow-server] %s\n' "$*" >&2; }
die() { printf '[mlflow-server] error: %s\n' "$*" >&2; exit 1; }

HOME_DIR="${MLFLOW_HOME:-./mlflow-server}"
if [[ "${1:-}" == start ]]; then
    mkdir -p "$HOME_DIR"
fi
if [[ -d "$HOME_DIR" ]]; then
    HOME_DIR="$(cd "$HOME_DIR" && pwd -P)"
fi
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
PID_FILE="$HOME_DIR/mlflow-server.pid"
URI_FILE="$HOME_DIR/mlflow-server.uri"
LOG_FILE="$HOME_DIR/mlflow-server.log"

# Print the PID from the PID file if it is alive and is an `mlflow server`.
live_pid() {
    [[ -s "$PID_FILE" ]] || return 1
    local pid cmdline
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *mlflow*" server "* ]] || return 1
    printf '%s\n' "$pid"
}

# http_ok HOST PORT PATH: the server answers PATH with status 200.
http_ok() {
    local status
    exec 3<>"/dev/tcp/$1/$2" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$3" "$1" "$2" >&3
    read -r -t 5 status <&3 || status=""
    exec 3<&-
    [[ "$status" == "HTTP/"*" 200"* ]]
}

cmd_start() {
    local pid
    if pid="$(live_pid)"; then
        log "already running (pid $pid)"
        cat "$URI_FILE"
        return 0
    fi
    local mlflow="${MLFLOW_BIN:-mlflow}"
    command -v "$mlflow" >/dev/null || die "'$mlflow' not found; activate the venv or set MLFLOW_BIN"
    if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
        die "something already listens on $HOST:$PORT; choose another MLFLOW_PORT"
    fi
    local backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$HOME_DIR/mlflow.db}"
    mkdir -p "$HOME_DIR/artifacts"
    log "starting on $HOST:$PORT (store $backend, artifacts $HOME_DIR/artifacts, log $LOG_FILE)"
    # setsid: the server and its workers form their own process group, which
    # `stop` signals as a whole. In this non-interactive shell the background
    # child is not a group leader, so setsid execs in place and $! is the server.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
        setsid "$mlflow" server \
        --host "$HOST" \
        --port "$PORT" \
        --workers "${MLFLOW_WORKERS:-2}" \
        --backend-store-uri "$backend" \
        --artifacts-destination "$HOME_DIR/artifacts" \
        </dev/null >"$LOG_FILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until http_ok "$HOST" "$PORT" /health 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            die "mlflow server exited during start; log above"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOG_FILE" >&2
            cmd_stop
            die "no answer on http://$HOST:$PORT/health after ${START_TIMEOUT_S}s"
        fi
        sleep 0.5
    done
    printf 'http://%s:%s\n' "$HOST" "$PORT" >"$URI_FILE"
    log "up (pid $pid); export MLFLOW_TRACKING_URI=$(cat "$URI_FILE")"
    cat "$URI_FILE"
}

cmd_stop() {
    local pid
    if ! pid="$(live_pid)"; then
        log "not running (no live mlflow server in $PID_FILE)"
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping pid $pid and its process group"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE_S))
    while kill -0 -- "-$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "still running after ${STOP_GRACE_S}s; sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE" "$URI_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(live_pid)"; then
        printf 'running (pid %s) at %s\n' "$pid" "$(cat "$URI_FILE" 2>/dev/null || echo "?")"
    else
        printf 'stopped\n'
        return 1
    fi
}

[[ $# -eq 1 ]] || usage
case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac
