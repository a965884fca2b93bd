#!/usr/bin/env bash
# Browser tests of the crm-api console (console.test.mjs: the views; operations.test.mjs: health, charts, recovery,
# attempt detail): headless Debian Chromium driven by playwright-core, against a real
# crm-api and delivery-worker on a fresh database, a unique JetStream stream, and a Node receiver playing the CRM.
#
#   browser-tests/run.sh            install what is missing, build, start the services, run `node --test`
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth for postgres) and NATS with JetStream on 127.0.0.1:4222; when
# they do not answer, scripts/dev-up.sh --services-only starts them. Installs Debian's chromium when
# /usr/bin/chromium is missing and runs `npm ci` here. Screenshots go to browser-tests/artifacts/<view>-<size>.png.
# Everything it starts (services, database, stream) is removed on exit, whatever the outcome.
#
# Environment: BROWSER_TEST_ROWS (default 1000) rows to seed; CHROMIUM (default /usr/bin/chromium);
# NATS_URL (default nats://127.0.0.1:4222); CARGO_TARGET_DIR as for cargo.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

log() { printf -- '--> %s\n' "$*" >&2; }
die() {
  printf 'browser-tests: error: %s\n' "$*" >&2
  exit 1
}
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    die "need root for: $*"
  fi
}
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

STARTED=$SECONDS
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
PG_HOST=127.0.0.1

# --- tools --------------------------------------------------------------------------------------------------
if [[ ! -x "$CHROMIUM" ]]; then
  log "installing Debian chromium"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
[[ -x "$CHROMIUM" ]] || die "$CHROMIUM not found"
command -v node >/dev/null 2>&1 || die "node (20 or later) is needed"
log "npm ci (playwright-core)"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

if ! port_open 127.0.0.1 5432 || ! port_open 127.0.0.1 4222; then
  log "starting PostgreSQL and NATS"
  scripts/dev-up.sh --services-only
fi

log "cargo build -p crm-api -p delivery-worker"
cargo build --quiet -p crm-api -p delivery-worker
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/debug"

# --- a private database, stream and set of services -----------------------------------------------------------
RUN_ID="$(rand_hex 6)"
DB_NAME="crm_browser_$RUN_ID"
STREAM="CRM_BROWSER_${RUN_ID^^}"
SUBJECT_PREFIX="crmbrowser$RUN_ID"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/crm-browser.XXXXXX")"
PIDS=()

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if ((rc != 0)); then
    for f in "$WORK"/*.log; do
      [[ -f "$f" ]] || continue
      echo "---- last lines of $(basename "$f") ----" >&2
      tail -n 30 "$f" >&2
    done
  fi
  node "$HERE/delete-stream.mjs" "$NATS_URL" "$STREAM" >/dev/null
  dropdb -w -h "$PG_HOST" -U postgres --if-exists --force "$DB_NAME"
  rm -rf "$WORK"
  log "cleaned up (database $DB_NAME, stream $STREAM); $((SECONDS - STARTED)) s in all"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

createdb -w -h "$PG_HOST" -U postgres "$DB_NAME"

API_PORT="$(free_port)"
WORKER_PORT="$(free_port)"
while [[ "$WORKER_PORT" == "$API_PORT" ]]; do WORKER_PORT="$(free_port)"; done
ADMIN_TOKEN="adm_$(rand_hex 24)"
SECRET_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"

# http:// and 127.0.0.0/8 are allowed ONLY because the test receiver listens on loopback.
service_env=(
  "DATABASE_URL=postgres://postgres@$PG_HOST:5432/$DB_NAME"
  "NATS_URL=$NATS_URL"
  "CRM_SECRET_KEY=$SECRET_KEY"
  "CRM_STREAM=$STREAM"
  "CRM_SUBJECT_PREFIX=$SUBJECT_PREFIX"
  "CRM_EGRESS_ALLOW_HTTP=true"
  "CRM_EGRESS_ALLOW_CIDRS=127.0.0.0/8"
  "CRM_WEBHOOK_TIMEOUT_MS=5000"
  "CRM_WEBHOOK_RETRY_BASE_MS=200"
  "CRM_WEBHOOK_RETRY_MAX_MS=2000"
  # operations.test.mjs: a delivery dies after 3 attempts, and 3 failures in a row pause the endpoint for 10 min
  # (so only "resume now" ends it within the test); recoveries go in small batches, so progress shows.
  "CRM_WEBHOOK_MAX_ATTEMPTS=3"
  "CRM_ENDPOINT_PAUSE_AFTER=3"
  "CRM_ENDPOINT_PAUSE_MS=600000"
  "CRM_RECOVERY_BATCH=2"
  "CRM_RECOVERY_INTERVAL_MS=400"
  "RUST_LOG=${RUST_LOG:-warn}"
)

log "starting crm-api on 127.0.0.1:$API_PORT"
env "${service_env[@]}" CRM_API_ADDR="127.0.0.1:$API_PORT" CRM_ADMIN_TOKEN="$ADMIN_TOKEN" \
  "$BIN/crm-api" >"$WORK/crm-api.log" 2>&1 &
PIDS+=($!)
# Migrations run in crm-api; the worker starts once it is ready.
ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
wait_ready() {
  local port="$1" what="$2" deadline=$((SECONDS + 60))
  until ready "$port"; do
    ((SECONDS < deadline)) || die "$what did not become ready on port $port"
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "$what exited early"; done
    sleep 0.25
  done
}
wait_ready "$API_PORT" crm-api

log "starting delivery-worker on 127.0.0.1:$WORKER_PORT"
env "${service_env[@]}" WORKER_ADDR="127.0.0.1:$WORKER_PORT" \
  "$BIN/delivery-worker" >"$WORK/delivery-worker.log" 2>&1 &
PIDS+=($!)
wait_ready "$WORKER_PORT" delivery-worker

mkdir -p "$HERE/artifacts"
log "node --test (rows: ${BROWSER_TEST_ROWS:-1000})"
cd "$HERE"
CONSOLE_URL="http://127.0.0.1:$API_PORT" CRM_ADMIN_TOKEN="$ADMIN_TOKEN" CHROMIUM="$CHROMIUM" \
  node --test --test-reporter=spec --test-timeout=240000 console.test.mjs operations.test.mjs
