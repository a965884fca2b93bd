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

# ==> deploy checks ------------------------------------------------------------------------------------------------
# Offline checks of Dockerfile, .dockerignore, docker-compose.yml and deploy/ (deploy/README.md, "Checks"): no Docker
# engine or cluster needed. They run in a venv of their own, .tmp/venv-deploy (gitignored), rebuilt when
# deploy/tests/requirements.txt changes. Debian's python3 may lack venv support: then python3-venv is installed.
step "deploy checks (pytest deploy/tests)"
deploy_venv=.tmp/venv-deploy
deploy_reqs=deploy/tests/requirements.txt
if [[ ! -x "$deploy_venv/bin/python" ]] || ! cmp -s "$deploy_reqs" "$deploy_venv/requirements.txt"; then
    rm -rf "$deploy_venv"
    mkdir -p .tmp
    if ! python3 -m venv "$deploy_venv" >/dev/null 2>&1; then
        rm -rf "$deploy_venv"
        echo "python3 -m venv failed; installing python3-venv" >&2
        as_root=()
        if [[ "$(id -u)" -ne 0 ]]; then as_root=(sudo); fi
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$deploy_venv"
    fi
    "$deploy_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$deploy_reqs"
    cp "$deploy_reqs" "$deploy_venv/requirements.txt"
fi
PYTHONDONTWRITEBYTECODE=1 "$deploy_venv/bin/python" -m pytest -q deploy/tests
# <== deploy checks ------------------------------------------------------------------------------------------------

# ==> browser tests -----------------------------------------------------------------------------------------------
# The console served by crm-api (issue 6), in headless Debian Chromium driven by playwright-core (node's test
# runner). browser-tests/run.sh installs chromium and the npm package when missing, starts its own crm-api and
# delivery-worker on a fresh database and stream, and writes screenshots to browser-tests/artifacts/.
step "browser tests"
browser-tests/run.sh
# <== browser tests -----------------------------------------------------------------------------------------------
