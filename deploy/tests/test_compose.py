"""docker-compose.yml: schema, and cross-checks against the Dockerfile and the Rust sources. The negative tests
break a copy of the parsed file in one way each and expect that exact mistake to be reported."""

from __future__ import annotations

import copy

import pytest

from checks import check_compose, compose_schema_problems


def test_compose_passes(compose, ws, df, compose_env_file):
    assert check_compose(compose, ws, df, compose_env_file) == []


def test_compose_schema(compose):
    assert compose_schema_problems(compose) == []


def test_required_services_and_volumes(compose):
    services = compose["services"]
    assert {"postgres", "nats", "crm-api", "delivery-worker", "webhook-sink"} <= set(services)
    assert services["delivery-worker"]["deploy"]["replicas"] == 2
    assert services["nats"]["command"][:1] == ["-js"] and "-m" in services["nats"]["command"]
    assert set(compose["volumes"]) >= {"pgdata", "natsdata"}


def broken(compose, edit):
    c = copy.deepcopy(compose)
    edit(c)
    return c


def problems_after(compose, ws, df, env, edit):
    return check_compose(broken(compose, edit), ws, df, env)


@pytest.mark.parametrize(
    "edit, expected",
    [
        pytest.param(
            lambda c: c["services"]["delivery-worker"]["environment"].__setitem__("WORKER_CONCURENCY", "8"),
            "WORKER_CONCURENCY is not read by delivery-worker",
            id="misspelt-env-var",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["environment"].__setitem__("WORKER_ADDR", "0.0.0.0:9090"),
            "WORKER_ADDR is not read by crm-api",
            id="env-var-of-the-other-service",
        ),
        pytest.param(
            lambda c: c["services"]["delivery-worker"].__setitem__("command", ["crm-worker", "serve"]),
            "'crm-worker' is not installed",
            id="missing-binary",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"].__setitem__("command", ["crm-api", "server"]),
            "does not accept 'server'",
            id="unknown-subcommand",
        ),
        pytest.param(
            lambda c: c["services"]["webhook-sink"].__setitem__("command", ["webhook-sink", "--addr", "0.0.0.0:9100"]),
            "does not accept '--addr'",
            id="unknown-flag",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["environment"].pop("CRM_SECRET_KEY"),
            "required CRM_SECRET_KEY is not set",
            id="missing-required-var",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["environment"].__setitem__("CRM_API_ADDR", "0.0.0.0:8081"),
            "does not publish the listen port 8081",
            id="port-mismatch",
        ),
        pytest.param(
            lambda c: c["services"]["delivery-worker"]["environment"].__setitem__("WORKER_ADDR", "127.0.0.1:9090"),
            "unreachable from other containers",
            id="loopback-listener",
        ),
        pytest.param(
            lambda c: c["services"]["delivery-worker"]["healthcheck"].__setitem__(
                "test", ["CMD", "curl", "-fsS", "http://127.0.0.1:9090/ready"]
            ),
            "serves no route /ready",
            id="healthcheck-path",
        ),
        pytest.param(
            lambda c: c["services"]["webhook-sink"].pop("healthcheck"),
            "services.webhook-sink: no healthcheck",
            id="no-healthcheck",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["depends_on"].__setitem__("postgress", {"condition": "service_healthy"}),
            "no service 'postgress'",
            id="depends-on-unknown-service",
        ),
        pytest.param(
            lambda c: c["services"]["delivery-worker"].__setitem__("stop_grace_period", "20s"),
            "stop_grace_period 20s is not longer than WORKER_SHUTDOWN_GRACE_MS",
            id="stop-grace-too-short",
        ),
        pytest.param(
            lambda c: c["services"]["delivery-worker"]["environment"].__setitem__("CRM_EGRESS_ALLOW_CIDRS", "172.28.0.0/16"),
            "wider than one address",
            id="egress-exemption-too-wide",
        ),
        pytest.param(
            lambda c: c["services"]["nats"].__setitem__("image", "nats:latest"),
            "is not pinned",
            id="unpinned-image",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["environment"].__setitem__("DATABASE_URL", "postgres://crm:x@db:5432/crm"),
            "DATABASE_URL host 'db' is not a compose service",
            id="database-host",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"].__setitem__("healtcheck", {}),
            "'healtcheck' does not match",
            id="schema-typo",
        ),
        pytest.param(
            lambda c: c["services"]["crm-api"]["build"].__setitem__("target", "api"),
            "no stage 'api'",
            id="unknown-build-target",
        ),
    ],
)
def test_reports_mistake(compose, ws, df, compose_env_file, edit, expected):
    problems = problems_after(compose, ws, df, compose_env_file, edit)
    assert any(expected in p for p in problems), f"expected {expected!r} among {problems}"


def test_reports_a_variable_missing_from_the_env_file(compose, ws, df, compose_env_file):
    env = dict(compose_env_file)
    del env["CRM_ADMIN_TOKEN"]
    problems = check_compose(compose, ws, df, env)
    assert any("${CRM_ADMIN_TOKEN} is required" in p for p in problems), problems


def test_reports_a_bad_secret_key(compose, ws, df, compose_env_file):
    env = dict(compose_env_file, CRM_SECRET_KEY="c2hvcnQ=")
    problems = check_compose(compose, ws, df, env)
    assert any("CRM_SECRET_KEY is not base64 of 32 bytes" in p for p in problems), problems
