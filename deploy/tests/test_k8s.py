"""deploy/: the kustomize base and overlays, rendered offline, validated against the Kubernetes schemas (strict,
oldest and newest supported version) and cross-checked against the code and the image; the KEDA ScaledObject,
the NATS Helm values and the docs."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess

import pytest
import yaml

from checks import check_k8s, k8s_schema_problems, keda_schema_problems
from conftest import DEPLOY, OVERLAYS, SECRET_EXAMPLES
from kustomize import KustomizeError, kustomization_file, load_yaml_docs, pod_containers, render, split_image

# Oldest Kubernetes the manifests target (policy/v1 PDB and autoscaling/v2 HPA are GA there) and the newest the
# installed kubernetes-validate knows.
K8S_VERSIONS = ["1.27.0", "1.37.0"]
BUILTIN_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2")


def objects_named(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


@pytest.mark.parametrize("target", ["base"] + [f"overlays/{o.name}" for o in OVERLAYS])
def test_manifests_validate_against_kubernetes_schemas(rendered, target):
    problems = []
    for obj in rendered[target]:
        if obj["apiVersion"] in BUILTIN_GROUPS:
            problems += k8s_schema_problems(obj, K8S_VERSIONS)
        elif obj["kind"] == "ScaledObject":
            problems += keda_schema_problems(obj)
        else:
            problems.append(f"{obj['kind']}: no schema to validate {obj['apiVersion']} against")
    assert problems == []


@pytest.mark.parametrize("target", ["base"] + [f"overlays/{o.name}" for o in OVERLAYS])
def test_manifests_match_the_code(rendered, ws, df, secrets, target):
    assert check_k8s(rendered[target], ws, df, secrets) == []


@pytest.mark.parametrize("target", ["base"] + [f"overlays/{o.name}" for o in OVERLAYS])
def test_renderer_agrees_with_kubectl_kustomize(rendered, target):
    """Where kubectl is installed (it bundles kustomize; it needs no cluster for this), the minimal renderer must
    produce exactly what `kubectl kustomize` does, so the other checks see what a cluster would get."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed; the minimal renderer alone is used")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    real = [d for d in yaml.safe_load_all(out.stdout) if d]
    by_key = lambda objs: {(o["apiVersion"], o["kind"], o["metadata"]["name"]): o for o in objs}  # noqa: E731
    assert by_key(rendered[target]) == by_key(real)


def test_overlays_exist():
    assert {o.name for o in OVERLAYS} >= {"example", "hpa"}


def test_every_manifest_is_used_and_the_secret_example_is_not():
    referenced = set()
    for k in [DEPLOY / "base", *OVERLAYS]:
        kf = load_yaml_docs(kustomization_file(k))[0]
        for entry in kf.get("resources", []) + [p["path"] for p in kf.get("patches", [])]:
            referenced.add((k / entry).resolve())
    for directory in [DEPLOY / "base", *OVERLAYS]:
        for p in directory.glob("*.y*ml"):
            if p.name.startswith("kustomization"):
                continue
            if p in SECRET_EXAMPLES:
                assert p.resolve() not in referenced, f"{p} must not be applied by kustomize"
            else:
                assert p.resolve() in referenced, f"{p} is not listed in its kustomization.yaml"
    assert SECRET_EXAMPLES, "ship a secret.example.yaml"


def test_secret_example_has_only_placeholders(secrets):
    for p in SECRET_EXAMPLES:
        for doc in load_yaml_docs(p):
            for k, v in (doc.get("stringData") or {}).items():
                assert v == "" or "CHANGE_ME" in v, f"{p}: {k} looks like a real value"
            assert not doc.get("data"), f"{p}: use stringData placeholders, not data"
    assert secrets["crm-secrets"] >= {"DATABASE_URL", "CRM_SECRET_KEY", "CRM_SECRET_KEY_PREVIOUS", "CRM_ADMIN_TOKEN"}


def test_base_shape(rendered):
    objs = rendered["base"]
    deps = objects_named(objs, "Deployment")
    assert set(deps) == {"crm-api", "delivery-worker"}
    assert deps["delivery-worker"]["spec"]["replicas"] == 2
    assert deps["delivery-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    env = {e["name"]: e.get("value") for e in pod_containers(deps["delivery-worker"])[0]["env"]}
    assert env["WORKER_SHUTDOWN_GRACE_MS"] == "30000"
    assert objects_named(objs, "PodDisruptionBudget")["delivery-worker"]["spec"]["minAvailable"] == 1
    assert "delivery-worker-metrics" in objects_named(objs, "Service")
    assert not [o for o in objs if o["kind"] == "Secret"], "the base must not ship a Secret"


def test_example_overlay(rendered):
    objs = rendered["overlays/example"]
    assert all(o["metadata"].get("namespace") == "crm" for o in objs if o["kind"] != "Namespace")
    assert objects_named(objs, "Deployment")["crm-api"]["spec"]["replicas"] == 3
    assert "replicas" not in objects_named(objs, "Deployment")["delivery-worker"]["spec"], "KEDA owns the count"
    so = objects_named(objs, "ScaledObject")["delivery-worker"]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 20)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["account"] == "$G"
    for o in objs:
        for c in pod_containers(o):
            name, tag, digest = split_image(c["image"])
            assert name == "registry.example.com/crm-webhook-sync" and (digest or (tag and tag != "latest")), c["image"]


def test_hpa_overlay(rendered):
    objs = rendered["overlays/hpa"]
    hpa = objects_named(objs, "HorizontalPodAutoscaler")["delivery-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "ScaledObject" not in {o["kind"] for o in objs}
    assert "replicas" not in objects_named(objs, "Deployment")["delivery-worker"]["spec"], "the HPA owns the count"
    assert "jetstream_consumer_pending" in (DEPLOY / "overlays/hpa/hpa.yaml").read_text()


def test_nats_values_and_keda_agree(rendered):
    text = (DEPLOY / "nats/values.yaml").read_text()
    values = yaml.safe_load(text)
    cfg = values["config"]
    assert cfg["cluster"]["enabled"] is True and cfg["cluster"]["replicas"] == 3
    assert cfg["jetstream"]["enabled"] is True
    assert cfg["jetstream"]["fileStore"]["enabled"] is True
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", cfg["jetstream"]["fileStore"]["pvc"]["size"])
    assert cfg["monitor"]["enabled"] is True
    # Only keys of the chart's values (nats-io/k8s helm/charts/nats, 1.x) under the sections used here.
    known = {
        "config": {"cluster", "jetstream", "monitor", "nats", "leafnodes", "websocket", "mqtt", "gateway", "profiling",
                   "resolver", "serverNamePrefix", "merge", "patch"},
        "config.cluster": {"enabled", "port", "replicas", "noAdvertise", "routeURLs", "tls", "merge", "patch"},
        "config.jetstream": {"enabled", "fileStore", "memoryStore", "merge", "patch"},
        "config.jetstream.fileStore": {"enabled", "dir", "pvc", "maxSize"},
        "config.jetstream.fileStore.pvc": {"enabled", "size", "storageClassName", "merge", "patch", "name"},
        "config.monitor": {"enabled", "port", "tls"},
    }
    for path, keys in known.items():
        node = values
        for part in path.split("."):
            node = node[part]
        assert set(node) <= keys, f"{path}: unknown keys {set(node) - keys}"

    release, namespace = re.search(r"helm upgrade --install (\S+) \S+ --namespace (\S+)", text).groups()
    (so,) = [o for o in rendered["overlays/example"] if o["kind"] == "ScaledObject"]
    host, port = so["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert int(port) == cfg["monitor"]["port"]
    assert host == f"{release}-headless.{namespace}.svc.cluster.local"
    nats_url = objects_named(rendered["base"], "ConfigMap")["crm-common"]["data"]["NATS_URL"]
    assert nats_url == f"nats://{release}.{namespace}.svc.cluster.local:4222"


def test_readme_describes_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for p in sorted(DEPLOY.rglob("*")):
        if p.is_dir() or "tests" in p.relative_to(DEPLOY).parts or p.name == "README.md":
            continue
        rel = p.relative_to(DEPLOY).as_posix()
        assert rel in readme, f"deploy/README.md does not mention {rel}"
    for must in ("kubectl kustomize deploy/overlays/example", "create secret generic crm-secrets", "helm upgrade --install", "keda", "num_replicas"):
        assert must.lower() in readme.lower(), must


# ---- the checks catch real mistakes ---------------------------------------------------------------------------


def _deployment(objs, name):
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def _container(objs, name):
    return pod_containers(_deployment(objs, name))[0]


def _env(objs, deployment, var):
    return next(e for e in _container(objs, deployment)["env"] if e["name"] == var)


@pytest.mark.parametrize(
    "edit, expected",
    [
        pytest.param(
            lambda o: _container(o, "delivery-worker")["env"].append({"name": "WORKER_THREADS", "value": "4"}),
            "WORKER_THREADS is not read by delivery-worker",
            id="unknown-env-var",
        ),
        pytest.param(
            lambda o: _deployment(o, "delivery-worker")["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", 30),
            "terminationGracePeriodSeconds 30 is not longer than WORKER_SHUTDOWN_GRACE_MS 30000",
            id="grace-too-short",
        ),
        pytest.param(
            lambda o: _container(o, "delivery-worker")["env"].remove(_env(o, "delivery-worker", "WORKER_SHUTDOWN_GRACE_MS")),
            "set WORKER_SHUTDOWN_GRACE_MS explicitly",
            id="grace-implicit",
        ),
        pytest.param(
            lambda o: _container(o, "crm-api")["readinessProbe"]["httpGet"].__setitem__("path", "/ready"),
            "serves no route '/ready'",
            id="probe-path",
        ),
        pytest.param(
            lambda o: _container(o, "crm-api")["livenessProbe"]["httpGet"].__setitem__("port", 9090),
            "livenessProbe: port 9090 is not the listen port 8080",
            id="probe-port",
        ),
        pytest.param(
            lambda o: _container(o, "crm-api").__setitem__("command", ["crm-apiserver", "serve"]),
            "'crm-apiserver' is not installed",
            id="missing-binary",
        ),
        pytest.param(
            lambda o: _env(o, "crm-api", "DATABASE_URL").__setitem__("valueFrom", None)
            or _env(o, "crm-api", "DATABASE_URL").pop("valueFrom")
            or _env(o, "crm-api", "DATABASE_URL").__setitem__("value", "postgres://u:p@db/crm"),
            "DATABASE_URL must come from a Secret",
            id="secret-as-literal",
        ),
        pytest.param(
            lambda o: next(c for c in o if c["kind"] == "ConfigMap")["data"].__setitem__("CRM_EGRESS_ALLOW_HTTP", "true"),
            "for local development only",
            id="egress-dev-switch",
        ),
        pytest.param(
            lambda o: _env(o, "crm-api", "CRM_SECRET_KEY")["valueFrom"]["secretKeyRef"].__setitem__("key", "CRM_KEY"),
            "key 'CRM_KEY' is not in the Secret example",
            id="unknown-secret-key",
        ),
        pytest.param(
            lambda o: _container(o, "crm-api")["securityContext"].__setitem__("readOnlyRootFilesystem", False),
            "readOnlyRootFilesystem is not true",
            id="writable-root",
        ),
        pytest.param(
            lambda o: _container(o, "crm-api").pop("lifecycle"),
            "no preStop sleep",
            id="no-prestop",
        ),
        pytest.param(
            lambda o: next(s for s in o if s["kind"] == "Service")["spec"]["ports"][0].__setitem__("targetPort", "web"),
            "targetPort 'web' is not a port",
            id="service-target-port",
        ),
    ],
)
def test_reports_k8s_mistake(rendered, ws, df, secrets, edit, expected):
    objs = copy.deepcopy(rendered["base"])
    edit(objs)
    problems = check_k8s(objs, ws, df, secrets)
    assert any(expected in p for p in problems), f"expected {expected!r} among {problems}"


@pytest.mark.parametrize(
    "edit, expected",
    [
        pytest.param(lambda so: so["spec"]["triggers"][0]["metadata"].__setitem__("lagThreshold", 200),
                     "200 is not of type 'string'", id="unquoted-metadata"),
        pytest.param(lambda so: so["spec"]["triggers"][0]["metadata"].__setitem__("consumer", "worker"),
                     "is not the durable consumer 'delivery-worker'", id="wrong-consumer"),
        pytest.param(lambda so: so["spec"]["triggers"][0]["metadata"].__setitem__("stream", "EVENTS"),
                     "is not the workers' CRM_STREAM 'CRM_EVENTS'", id="wrong-stream"),
        pytest.param(lambda so: so["spec"]["triggers"][0]["metadata"].__setitem__("natsServerMonitoringEndpoint", "http://nats:8222"),
                     "without a scheme", id="endpoint-scheme"),
        pytest.param(lambda so: so["spec"].__setitem__("maxReplicas", 20), "'maxReplicas' was unexpected", id="hpa-field-name"),
        pytest.param(lambda so: so["spec"]["scaleTargetRef"].__setitem__("name", "worker"),
                     "scaleTargetRef 'worker' is not a Deployment", id="wrong-target"),
        pytest.param(lambda so: so["spec"].__setitem__("minReplicaCount", 1),
                     "minReplicaCount 1 <= the PDB's minAvailable 1", id="min-below-pdb"),
    ],
)
def test_reports_keda_mistake(rendered, ws, df, secrets, edit, expected):
    objs = copy.deepcopy(rendered["overlays/example"])
    edit(next(o for o in objs if o["kind"] == "ScaledObject"))
    problems = check_k8s(objs, ws, df, secrets)
    assert any(expected in p for p in problems), f"expected {expected!r} among {problems}"


def test_reports_replicas_on_an_autoscaled_deployment(rendered, ws, df, secrets):
    objs = copy.deepcopy(rendered["overlays/hpa"])
    _deployment(objs, "delivery-worker")["spec"]["replicas"] = 2
    problems = check_k8s(objs, ws, df, secrets)
    assert any("sets replicas although an autoscaler owns it" in p for p in problems), problems


def test_reports_two_autoscalers(rendered, ws, df, secrets):
    objs = copy.deepcopy(rendered["overlays/example"]) + [
        o for o in copy.deepcopy(rendered["overlays/hpa"]) if o["kind"] == "HorizontalPodAutoscaler"
    ]
    problems = check_k8s(objs, ws, df, secrets)
    assert any("already scaled by" in p for p in problems), problems


def test_schema_validation_reports_unknown_fields(rendered):
    dep = copy.deepcopy(_deployment(rendered["base"], "crm-api"))
    pod_containers(dep)[0]["readinessProbes"] = {}
    problems = k8s_schema_problems(dep, K8S_VERSIONS[:1])
    assert any("readinessProbes" in p for p in problems), problems


def test_renderer_refuses_unsupported_features(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tmp_path)
