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

# Builds never ask a database: sqlx's checked queries compile against the committed offline data (.sqlx/), which
# the last cargo step below checks against the migrations.
export SQLX_OFFLINE=true

# Installs a cargo tool at a pinned version when it is missing (crates.io is reachable wherever this runs).
ensure_tool() {
    local bin=$1 crate=$2 version=$3; shift 3
    if ! "$bin" --version 2>/dev/null | grep -q "$version"; then
        echo "installing $crate $version" >&2
        cargo install -q --locked "$crate" --version "$version" "$@"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if ! port_open 127.0.0.1 5432 || ! port_open 127.0.0.1 4222; then
    step "starting PostgreSQL and NATS"
    scripts/dev-up.sh --services-only
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo machete (unused dependencies)"
ensure_tool cargo-machete cargo-machete 0.9.2
cargo machete

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi

# ==> sqlx offline data -----------------------------------------------------------------------------------------
# .sqlx/ must describe exactly the queries in the code, checked against a fresh database migrated from
# migrations/ (the database is created and dropped here; after changing a query or a migration, run
# `cargo sqlx prepare --workspace` with DATABASE_URL pointing at a migrated database and commit .sqlx/).
step "sqlx offline data (cargo sqlx prepare --check)"
ensure_tool sqlx sqlx-cli 0.8.6 --no-default-features --features postgres,rustls
sqlx_db="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
sqlx_db="${sqlx_db%/*}/crm_sqlx_check_$$"
sqlx database create --database-url "$sqlx_db"
trap 'sqlx database drop -y --database-url "$sqlx_db" >/dev/null 2>&1 || true' EXIT
sqlx migrate run --source migrations --database-url "$sqlx_db" >/dev/null
SQLX_OFFLINE=false DATABASE_URL="$sqlx_db" cargo sqlx prepare --workspace --check
sqlx database drop -y --database-url "$sqlx_db"
trap - EXIT
# <== sqlx offline data -----------------------------------------------------------------------------------------

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
