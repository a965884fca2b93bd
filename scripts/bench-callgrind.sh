#!/usr/bin/env bash
# Counts the instructions crm-api and delivery-worker execute over one crm-bench run, under valgrind's callgrind.
# An instruction count does not drift with the machine's load the way CPU seconds do, so two builds compared this
# way differ by their code alone (repeated runs of one build agree within 0.2%). Valgrind slows the services about
# fifty times: keep the rate low (50/s is comfortable on two cores) and compare builds at the same rate and length.
# Subtracting a run at --rate 1 of the same length leaves the instructions per event.
#
# Usage: scripts/bench-callgrind.sh [crm-bench options]     e.g. --rate 50 --duration 20 --warmup 5
#
# The binaries are taken from CRM_BIN_DIR (default <repo>/target/release; build them first with
# `cargo build --release -p crm-api -p delivery-worker -p crm-bench`), the profiles are written to OUT_DIR (default
# <repo>/target/callgrind/<time>), and each process's total is printed at the end. crm-bench's own options and
# environment (BENCH_DATABASE_URL, BENCH_NATS_URL) apply; --no-build is always passed. Note that under valgrind
# SHA-256 runs its portable code (valgrind does not offer the CPU's SHA instructions), so the worker's signing
# counts for more than it costs natively.
set -euo pipefail

case "${1-}" in
  -h | --help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$(cd "${CRM_BIN_DIR:-$REPO_ROOT/target/release}" && pwd)"
OUT_DIR="${OUT_DIR:-$REPO_ROOT/target/callgrind/$(date +%Y%m%d-%H%M%S)}"

command -v valgrind >/dev/null || { echo "bench-callgrind: valgrind is not installed (Debian: apt-get install valgrind)" >&2; exit 1; }
for bin in crm-api delivery-worker crm-bench; do
  [[ -x "$BIN_DIR/$bin" ]] || { echo "bench-callgrind: $BIN_DIR/$bin is missing; build it first" >&2; exit 1; }
done

# crm-bench starts the services from CRM_BIN_DIR: point it at wrappers that start each one under callgrind.
mkdir -p "$OUT_DIR/bin"
for bin in crm-api delivery-worker; do
  cat >"$OUT_DIR/bin/$bin" <<WRAPPER
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file='$OUT_DIR/$bin.%p.out' '$BIN_DIR/$bin' "\$@"
WRAPPER
  chmod +x "$OUT_DIR/bin/$bin"
done

CRM_BIN_DIR="$OUT_DIR/bin" "$BIN_DIR/crm-bench" --no-build "$@" | tee "$OUT_DIR/crm-bench.txt"

# crm-bench has stopped the services; callgrind writes each profile as its process exits, a moment later.
for _ in $(seq 600); do
  pgrep -f -- "--callgrind-out-file=$OUT_DIR/" >/dev/null || break
  sleep 0.1
done

echo "instructions executed (callgrind, whole process):"
for profile in "$OUT_DIR"/*.out; do
  [[ -e "$profile" ]] || continue
  total="$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { print $1; done = 1 }')"
  printf '  %-32s %s\n' "$(basename "$profile" .out)" "$total"
done
echo "profiles: $OUT_DIR (callgrind_annotate <file> shows where)"
