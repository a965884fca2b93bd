"""Fixtures shared by the deploy checks: the workspace model, the Dockerfile, the compose file and the rendered
Kubernetes manifests, each loaded once."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from dockerfile import Dockerfile
from kustomize import load_yaml_docs, render
from workspace import REPO, Workspace

DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
SECRET_EXAMPLES = sorted(DEPLOY.rglob("secret.example.yaml"))


@pytest.fixture(scope="session")
def ws() -> Workspace:
    return Workspace(REPO)


@pytest.fixture(scope="session")
def df() -> Dockerfile:
    return Dockerfile(REPO / "Dockerfile")


@pytest.fixture(scope="session")
def dockerignore() -> str:
    return (REPO / ".dockerignore").read_text()


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def compose_env_file() -> dict[str, str]:
    """What deploy/compose-env.sh generates: the --env-file the compose file is documented with."""
    out = subprocess.run([str(DEPLOY / "compose-env.sh")], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="session")
def secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the shipped secret examples (the Secrets themselves are created by hand)."""
    out: dict[str, set[str]] = {}
    for p in SECRET_EXAMPLES:
        for doc in load_yaml_docs(p):
            if doc.get("kind") == "Secret":
                out[doc["metadata"]["name"]] = set(doc.get("stringData", {}) or {}) | set(doc.get("data", {}) or {})
    return out


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """'base' and each overlay -> its rendered objects."""
    out = {"base": render(DEPLOY / "base")}
    for o in OVERLAYS:
        out[f"overlays/{o.name}"] = render(o)
    return out
