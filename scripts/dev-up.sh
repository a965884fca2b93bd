#!/usr/bin/env bash
# Bring the whole local stack up: PostgreSQL and NATS (reused when already running), the crm_dev database, the
# services (crm-api, and delivery-worker and webhook-sink when their crates exist), and a "Demo" workspace whose
# webhook points at the local sink. Safe to run again: it reuses the secrets, the database and the demo workspace,
# and restarts the services. `scripts/dev-down.sh` stops what this script started.
#
# Usage: scripts/dev-up.sh [--no-build] [--services-only]
#   --services-only  make sure PostgreSQL and NATS with JetStream answer, then stop (used by scripts/test.sh)
#
# State (secrets, logs, pids) lives in $STATE_DIR, default <repo>/.dev (gitignored as /.dev).
# Ports can be moved with DEV_API_PORT, DEV_WORKER_PORT, DEV_SINK_PORT, DEV_NATS_PORT, DEV_NATS_MONITOR_PORT, and
# the database with DEV_DB_NAME; the defaults are the ones in docs/contract.md and the README.
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

BUILD=true
SERVICES_ONLY=false
while (($# > 0)); do
  case "$1" in
    --no-build) BUILD=false ;;
    --services-only) SERVICES_ONLY=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "dev-up: unknown option '$1' (try --help)" >&2
      exit 2
      ;;
  esac
  shift
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

STATE_DIR="${STATE_DIR:-$REPO_ROOT/.dev}"
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
chmod 700 "$STATE_DIR"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
case "$TARGET_DIR" in
  /*) ;;
  *) TARGET_DIR="$REPO_ROOT/$TARGET_DIR" ;;
esac
BIN_DIR="$TARGET_DIR/release"

HOST=127.0.0.1
PG_PORT=5432
NATS_PORT="${DEV_NATS_PORT:-4222}"
NATS_MONITOR_PORT="${DEV_NATS_MONITOR_PORT:-8222}"
API_PORT="${DEV_API_PORT:-8080}"
WORKER_PORT="${DEV_WORKER_PORT:-9090}"
SINK_PORT="${DEV_SINK_PORT:-9100}"
DB_NAME="${DEV_DB_NAME:-crm_dev}"

DATABASE_URL="postgres://postgres@$HOST:$PG_PORT/$DB_NAME"
NATS_URL="nats://$HOST:$NATS_PORT"
API_URL="http://$HOST:$API_PORT"
SINK_URL="http://$HOST:$SINK_PORT/webhook"

ENV_FILE="$STATE_DIR/env"
DEMO_FILE="$STATE_DIR/demo.env"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'dev-up: warning: %s\n' "$*" >&2; }
die() {
  printf 'dev-up: error: %s\n' "$*" >&2
  exit 1
}

# --- helpers -------------------------------------------------------------------------------------------------

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $* (run as root or install sudo)"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself and run this again"
  log "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# port_open HOST PORT: does something accept TCP connections there?
port_open() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$PG_PORT"
  else
    port_open "$HOST" "$PG_PORT"
  fi
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every half second until it succeeds or time runs out.
wait_for() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      printf 'dev-up: error: %s not ready after %ss\n' "$what" "$seconds" >&2
      return 1
    fi
    sleep 0.5
  done
}

# JSON: jq when present, python3 otherwise. json_field KEY < JSON prints the top-level string/number KEY.
json_field() {
  if command -v jq >/dev/null 2>&1; then
    jq -er --arg k "$1" '.[$k] // empty | tostring'
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
if v is None:
    sys.exit(1)
print(v)' "$1"
  else
    die "need jq or python3 to read JSON"
  fi
}

# json_workspace_id NAME < {"workspaces":[...]} prints the id of the first workspace called NAME.
json_workspace_id() {
  if command -v jq >/dev/null 2>&1; then
    jq -er --arg n "$1" '[.workspaces[]? | select(.name == $n) | .id][0] // empty'
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
ids = [w["id"] for w in json.load(sys.stdin).get("workspaces", []) if w.get("name") == sys.argv[1]]
if not ids:
    sys.exit(1)
print(ids[0])' "$1"
  else
    die "need jq or python3 to read JSON"
  fi
}

# jetstream_state < varz JSON: prints "yes" or "no" (nothing when the JSON cannot be read).
jetstream_state() {
  if command -v jq >/dev/null 2>&1; then
    jq -r 'if .jetstream.config != null then "yes" else "no" end' 2>/dev/null || true
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
print("yes" if (json.load(sys.stdin).get("jetstream") or {}).get("config") else "no")' 2>/dev/null || true
  fi
}

# api METHOD PATH TOKEN [BODY]: calls crm-api. Sets API_STATUS and API_BODY. The token and the body go through
# file descriptors, not the command line, so they do not show up in `ps`.
API_STATUS=""
API_BODY=""
api() {
  local method="$1" path="$2" token="$3" body="${4-}" out
  if [[ -n "$body" ]]; then
    out="$(curl -sS -X "$method" -w '\n%{http_code}' \
      -K <(printf 'header = "Authorization: Bearer %s"\n' "$token") \
      -H 'content-type: application/json' --data-binary @<(printf '%s' "$body") \
      "$API_URL$path")" || die "$method $path: curl failed"
  else
    out="$(curl -sS -X "$method" -w '\n%{http_code}' \
      -K <(printf 'header = "Authorization: Bearer %s"\n' "$token") \
      "$API_URL$path")" || die "$method $path: curl failed"
  fi
  API_STATUS="${out##*$'\n'}"
  API_BODY="${out%$'\n'*}"
}

# env_get KEY FILE: the value of KEY=value in FILE (the file is never sourced).
env_get() {
  [[ -f "$2" ]] || return 0
  sed -n "s/^$1=//p" "$2" | tail -n 1
}

# ensure_secret KEY GENERATOR...: make sure KEY is in the env file, generating it once.
ensure_secret() {
  local key="$1" value
  shift
  value="$(env_get "$key" "$ENV_FILE")"
  if [[ -z "$value" ]]; then
    value="$("$@")"
    [[ -n "$value" ]] || die "could not generate $key"
    printf '%s=%s\n' "$key" "$value" >>"$ENV_FILE"
    log "generated $key in $ENV_FILE"
  fi
}

gen_secret_key() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
gen_admin_token() { printf 'adm_%s' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"; }
gen_webhook_secret() { printf 'whsec_%s' "$(head -c 24 /dev/urandom | base64 | tr -d '\n')"; }

# shellcheck source=scripts/lib/procs.sh
source "$REPO_ROOT/scripts/lib/procs.sh"

# start_bg NAME LOGFILE COMMAND...: start COMMAND detached, log to LOGFILE, record its pid in NAME.pid.
start_bg() {
  local name="$1" logfile="$2"
  shift 2
  : >"$logfile"
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
  else
    nohup "$@" >>"$logfile" 2>&1 </dev/null &
  fi
  local pid=$!
  printf '%s\n' "$pid" >"$STATE_DIR/$name.pid"
  log "started $name (pid $pid, log $logfile)"
}

log_tail() {
  echo "---- last lines of $1 ----" >&2
  tail -n 40 "$1" >&2 || true
  echo "----" >&2
}

# --- 1. PostgreSQL -----------------------------------------------------------------------------------------

pg_server_installed() {
  dpkg -s postgresql >/dev/null 2>&1 ||
    { command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
}

# newest_version DIR: the highest version-named subdirectory of DIR (e.g. 15 in /etc/postgresql), or nothing.
newest_version() {
  local d
  for d in "$1"/*/; do
    if [[ -d "$d" ]]; then basename "$d"; fi
  done | sort -V | tail -n 1
}

start_postgres() {
  if ! pg_server_installed; then
    apt_install postgresql
  fi
  command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster not found after installing postgresql"
  local version
  version="$(newest_version /etc/postgresql)"
  if [[ -z "$version" || ! -d "/etc/postgresql/$version/main" ]]; then
    if [[ -z "$version" ]]; then
      version="$(newest_version /usr/lib/postgresql)"
    fi
    [[ -n "$version" ]] || die "no PostgreSQL version found in /etc/postgresql or /usr/lib/postgresql"
    log "creating PostgreSQL cluster $version/main"
    as_root pg_createcluster "$version" main
  fi
  log "starting PostgreSQL cluster $version/main"
  # Exit code 2 means "already running" (e.g. started by the package's postinst but not on 127.0.0.1:5432 yet).
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || {
    local rc=$?
    ((rc == 2)) || die "pg_ctlcluster $version main start failed (exit $rc); see /var/log/postgresql/"
  }
  if ! wait_for 30 "PostgreSQL on $HOST:$PG_PORT" pg_ready; then
    command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters >&2
    die "PostgreSQL did not answer on $HOST:$PG_PORT; check the cluster's port and listen_addresses" \
      "in /etc/postgresql/$version/main/postgresql.conf and its log in /var/log/postgresql/"
  fi
}

if pg_ready; then
  log "PostgreSQL answers on $HOST:$PG_PORT; using it"
else
  start_postgres
fi

# Our machines use trust auth for 127.0.0.1; check that rather than guessing a password or editing pg_hba.conf.
psql_postgres() {
  psql -X -w -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atc "$1"
}
if ! pg_err="$(psql_postgres 'SELECT 1' 2>&1 >/dev/null)"; then
  if [[ "$pg_err" == *password* || "$pg_err" == *pg_hba.conf* || "$pg_err" == *authentication* ]]; then
    hba="$(compgen -G '/etc/postgresql/*/main/pg_hba.conf' | head -n 1 || true)"
    cat >&2 <<EOF
dev-up: error: PostgreSQL on $HOST:$PG_PORT refused user 'postgres' without a password:
  $pg_err
The dev stack expects trust authentication on 127.0.0.1 (DATABASE_URL=$DATABASE_URL has no password).
This script does not edit pg_hba.conf for you. To fix it, put this line above the other 'host' lines in
${hba:-/etc/postgresql/<version>/main/pg_hba.conf}:
    host    all    all    127.0.0.1/32    trust
and reload:  sudo pg_ctlcluster <version> main reload   (or: sudo -u postgres psql -c 'SELECT pg_reload_conf()')
EOF
    exit 1
  fi
  die "cannot connect to PostgreSQL as postgres on $HOST:$PG_PORT: $pg_err"
fi

# --- 2. NATS ----------------------------------------------------------------------------------------------

nats_ready() { port_open "$HOST" "$NATS_PORT"; }

if nats_ready; then
  log "NATS answers on $HOST:$NATS_PORT; using it"
  if port_open "$HOST" "$NATS_MONITOR_PORT"; then
    if varz="$(curl -fsS --max-time 5 "http://$HOST:$NATS_MONITOR_PORT/varz" 2>/dev/null)"; then
      case "$(jetstream_state <<<"$varz")" in
        yes) ;;
        no) die "the NATS server on $HOST:$NATS_PORT runs without JetStream; restart it with -js" ;;
        *) warn "could not tell from $HOST:$NATS_MONITOR_PORT/varz whether JetStream is on; going ahead" ;;
      esac
    fi
  fi
else
  # Debian puts it in /usr/sbin, which is not on a normal user's PATH.
  nats_bin() { command -v nats-server 2>/dev/null || { [[ -x /usr/sbin/nats-server ]] && echo /usr/sbin/nats-server; }; }
  if ! nats_bin >/dev/null; then
    apt_install nats-server
  fi
  NATS_BIN="$(nats_bin)" || die "nats-server not found after installing it"
  stop_recorded nats-server
  mkdir -p "$STATE_DIR/nats"
  start_bg nats-server "$STATE_DIR/nats.log" \
    "$NATS_BIN" -a "$HOST" -p "$NATS_PORT" -js -sd "$STATE_DIR/nats" -m "$NATS_MONITOR_PORT"
  if ! wait_for 20 "NATS on $HOST:$NATS_PORT" nats_ready; then
    log_tail "$STATE_DIR/nats.log"
    exit 1
  fi
fi

if [[ "$SERVICES_ONLY" == true ]]; then
  log "PostgreSQL and NATS are up"
  exit 0
fi

# --- 3. Database ------------------------------------------------------------------------------------------

if [[ "$(psql_postgres "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]]; then
  log "creating database $DB_NAME"
  createdb -w -h "$HOST" -p "$PG_PORT" -U postgres "$DB_NAME"
else
  log "database $DB_NAME exists"
fi

# --- 4. Secrets -------------------------------------------------------------------------------------------
# Generated once and kept: CRM_SECRET_KEY encrypts the webhook secrets already stored in the database.

(
  umask 077
  touch "$ENV_FILE"
)
chmod 600 "$ENV_FILE"
ensure_secret CRM_SECRET_KEY gen_secret_key
ensure_secret CRM_ADMIN_TOKEN gen_admin_token
ensure_secret DEMO_WEBHOOK_SECRET gen_webhook_secret
CRM_SECRET_KEY="$(env_get CRM_SECRET_KEY "$ENV_FILE")"
CRM_ADMIN_TOKEN="$(env_get CRM_ADMIN_TOKEN "$ENV_FILE")"
DEMO_WEBHOOK_SECRET="$(env_get DEMO_WEBHOOK_SECRET "$ENV_FILE")"

# --- 5. Build ---------------------------------------------------------------------------------------------

packages=(-p crm-api)
for crate in delivery-worker crm-bench; do
  if [[ -f "crates/$crate/Cargo.toml" ]]; then
    packages+=(-p "$crate")
  fi
done
if [[ "$BUILD" == true ]]; then
  log "cargo build --release ${packages[*]}"
  cargo build --release "${packages[@]}"
else
  log "--no-build: using the binaries in $BIN_DIR"
fi

API_BIN="$BIN_DIR/crm-api"
WORKER_BIN=""
SINK_BIN=""
[[ -x "$API_BIN" ]] || die "$API_BIN not found; run without --no-build"
if [[ -f crates/delivery-worker/Cargo.toml && -x "$BIN_DIR/delivery-worker" ]]; then
  WORKER_BIN="$BIN_DIR/delivery-worker"
fi
if [[ -f crates/crm-bench/Cargo.toml && -x "$BIN_DIR/webhook-sink" ]]; then
  SINK_BIN="$BIN_DIR/webhook-sink"
fi

# Environment shared by the services. CRM_EGRESS_ALLOW_HTTP and CRM_EGRESS_ALLOW_CIDRS=127.0.0.0/8 are set ONLY
# for this local demo, so the demo webhook may point at the plain-http sink on 127.0.0.1. Never set them in a
# real deployment: they switch off the https-only rule and the private-network deny list.
service_env=(
  "DATABASE_URL=$DATABASE_URL"
  "NATS_URL=$NATS_URL"
  "CRM_SECRET_KEY=$CRM_SECRET_KEY"
  "CRM_EGRESS_ALLOW_HTTP=true"
  "CRM_EGRESS_ALLOW_CIDRS=127.0.0.0/8"
)

# --- 6. Migrate -------------------------------------------------------------------------------------------

log "applying migrations"
env "${service_env[@]}" "$API_BIN" migrate

# --- 7. Services ------------------------------------------------------------------------------------------

stop_recorded webhook-sink
stop_recorded delivery-worker
stop_recorded crm-api

check_port_free() {
  if port_open "$HOST" "$1"; then
    die "$HOST:$1 is already in use by another process (not one recorded in $STATE_DIR); stop it or set $2"
  fi
}
check_port_free "$API_PORT" DEV_API_PORT
[[ -z "$WORKER_BIN" ]] || check_port_free "$WORKER_PORT" DEV_WORKER_PORT
[[ -z "$SINK_BIN" ]] || check_port_free "$SINK_PORT" DEV_SINK_PORT

# service_up NAME URL-or-empty PORT: the recorded process is alive and answers (readyz, or just the port).
service_up() {
  local pid
  pid="$(tr -dc '0-9' <"$STATE_DIR/$1.pid" 2>/dev/null || true)"
  pid_alive "$pid" || return 2
  if [[ -n "$2" ]]; then
    curl -fsS --max-time 2 "$2" >/dev/null 2>&1
  else
    port_open "$HOST" "$3"
  fi
}

# wait_service NAME URL-or-empty PORT SECONDS: fail fast if the process exits, print its log on failure.
wait_service() {
  local name="$1" url="$2" port="$3" deadline=$((SECONDS + $4)) rc
  while true; do
    rc=0
    service_up "$name" "$url" "$port" || rc=$?
    ((rc == 0)) && {
      log "$name is ready"
      return 0
    }
    if ((rc == 2)); then
      printf 'dev-up: error: %s exited during start-up\n' "$name" >&2
      log_tail "$STATE_DIR/$name.log"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      printf 'dev-up: error: %s not ready after %ss (%s)\n' "$name" "$4" "${url:-port $port}" >&2
      log_tail "$STATE_DIR/$name.log"
      return 1
    fi
    sleep 0.5
  done
}

start_bg crm-api "$STATE_DIR/crm-api.log" \
  env "${service_env[@]}" "CRM_ADMIN_TOKEN=$CRM_ADMIN_TOKEN" "CRM_API_ADDR=$HOST:$API_PORT" "$API_BIN" serve
wait_service crm-api "$API_URL/readyz" "$API_PORT" 60 || exit 1

if [[ -n "$WORKER_BIN" ]]; then
  start_bg delivery-worker "$STATE_DIR/delivery-worker.log" \
    env "${service_env[@]}" "WORKER_ADDR=$HOST:$WORKER_PORT" "$WORKER_BIN"
  wait_service delivery-worker "http://$HOST:$WORKER_PORT/readyz" "$WORKER_PORT" 60 || exit 1
else
  log "delivery-worker not built (no crates/delivery-worker yet); webhooks will queue but not be sent"
fi

if [[ -n "$SINK_BIN" ]]; then
  # The demo secret is on the sink's command line (visible in ps); it is a throwaway local secret.
  start_bg webhook-sink "$STATE_DIR/webhook-sink.log" \
    "$SINK_BIN" --listen "$HOST:$SINK_PORT" --secret "$DEMO_WEBHOOK_SECRET"
  wait_service webhook-sink "" "$SINK_PORT" 30 || exit 1
else
  log "webhook-sink not built (no crates/crm-bench yet); the demo webhook is left as it is"
fi

# --- 8. Demo data -----------------------------------------------------------------------------------------

WS="$(env_get DEMO_WORKSPACE_ID "$DEMO_FILE")"
TOKEN="$(env_get DEMO_TOKEN "$DEMO_FILE")"
if [[ -n "$WS" && -n "$TOKEN" ]]; then
  api GET "/v1/workspaces/$WS/crm/rows?limit=1" "$TOKEN"
  if [[ "$API_STATUS" == 200 ]]; then
    log "reusing demo workspace $WS"
  else
    log "saved demo workspace/token no longer work (HTTP $API_STATUS); setting them up again"
    WS=""
    TOKEN=""
  fi
fi
if [[ -z "$WS" || -z "$TOKEN" ]]; then
  WS=""
  api GET "/admin/workspaces?limit=200" "$CRM_ADMIN_TOKEN"
  [[ "$API_STATUS" == 200 ]] || die "GET /admin/workspaces: HTTP $API_STATUS: $API_BODY"
  if WS="$(json_workspace_id Demo <<<"$API_BODY")"; then
    log "found workspace Demo ($WS)"
  else
    api POST /admin/workspaces "$CRM_ADMIN_TOKEN" '{"name":"Demo"}'
    [[ "$API_STATUS" == 201 ]] || die "POST /admin/workspaces: HTTP $API_STATUS: $API_BODY"
    WS="$(json_field id <<<"$API_BODY")" || die "no id in the workspace response: $API_BODY"
    log "created workspace Demo ($WS)"
  fi
  api POST "/admin/workspaces/$WS/tokens" "$CRM_ADMIN_TOKEN" '{"role":"admin","name":"demo"}'
  [[ "$API_STATUS" == 201 ]] || die "POST /admin/workspaces/$WS/tokens: HTTP $API_STATUS: $API_BODY"
  TOKEN="$(json_field token <<<"$API_BODY")" || die "no token in the token response"
  log "created an admin token for workspace $WS"
  (
    umask 077
    printf 'DEMO_WORKSPACE_ID=%s\nDEMO_TOKEN=%s\n' "$WS" "$TOKEN" >"$DEMO_FILE"
  )
fi
chmod 600 "$DEMO_FILE"

if [[ -n "$SINK_BIN" ]]; then
  api PUT "/v1/workspaces/$WS/settings/crm-webhook" "$TOKEN" \
    "{\"enabled\":true,\"url\":\"$SINK_URL\",\"events\":[\"crm_row.created\",\"crm_row.updated\"],\"secret\":\"$DEMO_WEBHOOK_SECRET\"}"
  [[ "$API_STATUS" == 200 ]] || die "PUT /v1/workspaces/$WS/settings/crm-webhook: HTTP $API_STATUS: $API_BODY"
  log "demo webhook -> $SINK_URL"
fi

# --- 9. Summary -------------------------------------------------------------------------------------------

cat <<EOF

Local stack is up.
  crm-api          $API_URL   (readyz: $API_URL/readyz, OpenAPI: $API_URL/openapi.json)
  console          $API_URL/   (open it in a browser; sign in with the workspace id and token below)
EOF
if [[ -n "$WORKER_BIN" ]]; then
  echo "  delivery-worker  http://$HOST:$WORKER_PORT   (health and metrics)"
fi
if [[ -n "$SINK_BIN" ]]; then
  echo "  webhook-sink     $SINK_URL   (the Demo workspace's webhook target)"
fi
cat <<EOF
  PostgreSQL       $DATABASE_URL
  NATS             $NATS_URL
  logs and pids    $STATE_DIR/

  workspace id     $WS
  workspace token  $TOKEN   (role admin; also in $DEMO_FILE)
  admin token      CRM_ADMIN_TOKEN in $ENV_FILE

Record an interest:
  curl -sS -X POST $API_URL/v1/workspaces/$WS/crm/interest -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"lead":{"email":"ada@example.com","first_name":"Ada"},"interest":{"type":"positive_reply","channel":"email","message":"Sounds great"},"campaign":"autumn"}'

Stop it with: scripts/dev-down.sh
EOF
