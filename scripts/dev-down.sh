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

# shellcheck source=scripts/lib/procs.sh
source "$REPO_ROOT/scripts/lib/procs.sh"

# Producers and consumers first, the NATS server (only ever one dev-up started) last.
stop_recorded webhook-sink
stop_recorded delivery-worker
stop_recorded crm-api
stop_recorded nats-server
log "stopped; PostgreSQL and any NATS server not started by dev-up are left running"
