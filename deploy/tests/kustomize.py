"""A minimal, offline stand-in for `kubectl kustomize`, for the features deploy/ uses and nothing else.

Supported kustomization fields: resources (files and directories with their own kustomization), namespace,
images (name -> newName/newTag/digest), patches with `path` (strategic-merge patches that name their target by
apiVersion/kind/metadata.name). Anything else is an error, so a kustomization that starts using another feature
fails here until the renderer learns it, instead of being checked wrongly.

Strategic merge follows Kubernetes' rules for maps (`key: null` deletes the key) and its patch strategy for the
lists deploy/ patches: containers, initContainers, env, ports, volumes, volumeMounts are merged by `name` (ports by
containerPort); other lists are replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "name",
    "ports": "containerPort",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


class KustomizeError(Exception):
    pass


def kustomization_file(directory: Path) -> Path:
    for n in KUSTOMIZATION_NAMES:
        if (directory / n).is_file():
            return directory / n
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def key(obj: dict) -> tuple[str, str, str]:
    return (obj.get("apiVersion", ""), obj.get("kind", ""), obj.get("metadata", {}).get("name", ""))


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize directory` would print (for the supported subset)."""
    directory = directory.resolve()
    kfile = kustomization_file(directory)
    k = load_yaml_docs(kfile)[0]
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: fields not supported by deploy/tests/kustomize.py: {sorted(unknown)}")
    if k.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind must be Kustomization")

    objects: list[dict] = []
    for res in k.get("resources", []):
        p = (directory / res).resolve()
        if p.is_dir():
            objects.extend(render(p))
        elif p.is_file():
            objects.extend(load_yaml_docs(p))
        else:
            raise KustomizeError(f"{kfile}: resource {res!r} does not exist")

    seen: set[tuple[str, str, str]] = set()
    for o in objects:
        kk = key(o)
        if kk in seen:
            raise KustomizeError(f"{kfile}: resource {kk} appears twice")
        seen.add(kk)

    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{kfile}: only `patches: - path: <file>` is supported, got {patch}")
        p = directory / patch["path"]
        if not p.is_file():
            raise KustomizeError(f"{kfile}: patch {patch['path']!r} does not exist")
        for doc in load_yaml_docs(p):
            targets = [o for o in objects if key(o) == key(doc)]
            if len(targets) != 1:
                raise KustomizeError(f"{p}: patch target {key(doc)} not found among the resources")
            merged = strategic_merge(targets[0], doc)
            objects[objects.index(targets[0])] = merged

    if "namespace" in k:
        for o in objects:
            if o.get("kind") not in CLUSTER_SCOPED:
                o.setdefault("metadata", {})["namespace"] = k["namespace"]

    for image in k.get("images", []):
        for o in objects:
            for c in pod_containers(o):
                name, tag, digest = split_image(c.get("image", ""))
                if name != image["name"]:
                    continue
                new_name = image.get("newName", name)
                if "digest" in image:
                    c["image"] = f"{new_name}@{image['digest']}"
                elif "newTag" in image:
                    c["image"] = f"{new_name}:{image['newTag']}"
                else:
                    c["image"] = new_name + (f"@{digest}" if digest else f":{tag}" if tag else "")
    return objects


def strategic_merge(base, patch, field_name: str | None = None):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)  # `field: null` deletes the field
            else:
                out[k] = strategic_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field_name in MERGE_KEYS:
        mk = MERGE_KEYS[field_name]
        out = copy.deepcopy(base)
        for item in patch:
            idx = next((i for i, b in enumerate(out) if isinstance(b, dict) and b.get(mk) == item.get(mk)), None)
            if idx is None:
                out.append(copy.deepcopy(item))
            else:
                out[idx] = strategic_merge(out[idx], item)
        return out
    return copy.deepcopy(patch)


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if kind == "CronJob":
        return obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if kind == "Pod":
        return obj.get("spec")
    return None


def pod_containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    if not spec:
        return []
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """'reg:5000/a/b:1.2@sha256:..' -> ('reg:5000/a/b', '1.2', 'sha256:..')."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, tag = ref, None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    return name, tag, digest
