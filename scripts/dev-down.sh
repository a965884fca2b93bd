#!/usr/bin/env bash
# Stop what scripts/dev-up.sh started: the processes recorded in $STATE_DIR/*.pid (webhook-sink, delivery-worker,
# crm-api, and a nats-server only if dev-up started it itself). It never stops a PostgreSQL or NATS server that
# was already running; the database, the secrets and the demo workspace are kept for the next dev-up.
#
# Usage: scripts/dev-down.sh
#
# State lives in $STATE_DIR, default <repo>/.dev.
set -euo pipefail

case "${1-}" in
  "") ;;
  -h | --help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "dev-down: unknown option '$1' (try --help)" >&2
    exit 2
    ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${STATE_DIR:-$REPO_ROOT/.dev}"

log() { printf '==> %s\n' "$*" >&2; }

if [[ ! -d "$STATE_DIR" ]]; then
  log "nothing to stop ($STATE_DIR does not exist)"
  exit 0
fi

pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# pid_is PID NAME: is PID alive and running the program NAME (guards against a recycled pid)?
pid_is() {
  pid_alive "$1" || return 1
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || ps -o args= -p "$1" 2>/dev/null || true)"
  [[ "$cmd" == *"$2"* ]]
}

# stop_recorded NAME: SIGTERM (services drain on it), then SIGKILL after 20 s.
stop_recorded() {
  local name="$1" pidfile="$STATE_DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(tr -dc '0-9' <"$pidfile")"
  if pid_is "$pid" "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_alive "$pid"; then
      log "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    log "$name is not running (stale pid file)"
  fi
  rm -f "$pidfile"
}

# Producers and consumers first, the NATS server (only ever one dev-up started) last.
stop_recorded webhook-sink
stop_recorded delivery-worker
stop_recorded crm-api
stop_recorded nats-server
log "stopped; PostgreSQL and any NATS server not started by dev-up are left running"
