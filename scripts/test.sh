#!/usr/bin/env bash
# Runs every check and test of the project: the README's test command, and what CI runs (.ci/run calls it).
#
#   scripts/test.sh            fmt, clippy, then every test against real PostgreSQL and NATS
#
# PostgreSQL (127.0.0.1:5432, trust auth) and NATS with JetStream (127.0.0.1:4222) are used when they answer;
# otherwise scripts/dev-up.sh --services-only starts them (installing the Debian packages if missing).
# Tests create their own databases, streams and subject prefixes, and start their own nats-server where they
# need to stop one; they never stop or reconfigure the shared services.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if ! port_open 127.0.0.1 5432 || ! port_open 127.0.0.1 4222; then
    step "starting PostgreSQL and NATS"
    scripts/dev-up.sh --services-only
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi
