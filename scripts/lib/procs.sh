# shellcheck shell=bash
# Process helpers shared by scripts/dev-up.sh and scripts/dev-down.sh (sourced, not run). The caller defines
# `log` and STATE_DIR; a service's pid is recorded in $STATE_DIR/<name>.pid.

pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# pid_is PID NAME: is PID alive and running the program NAME (guards against a recycled pid)?
pid_is() {
  pid_alive "$1" || return 1
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || ps -o args= -p "$1" 2>/dev/null || true)"
  [[ "$cmd" == *"$2"* ]]
}

# stop_recorded NAME: stop the process recorded in $STATE_DIR/NAME.pid, if it is still ours: SIGTERM (services
# drain on it), then SIGKILL after 20 s.
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
