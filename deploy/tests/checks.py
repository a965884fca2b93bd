"""The deploy checks proper. Each `check_*` returns a list of problems (empty when all is well), so the tests can
assert both that the real files pass and that a deliberately broken copy is reported."""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema

from dockerfile import Dockerfile
from kustomize import pod_containers, pod_spec, split_image
from workspace import REPO, Workspace, parse_addr

SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The programs of the image, and how each is told where to listen.
LISTEN_ENV = {"crm-api": "CRM_API_ADDR", "delivery-worker": "WORKER_ADDR"}
LISTEN_FLAG = {"webhook-sink": "--listen"}
REQUIRED_BINARIES = {"crm-api", "delivery-worker", "webhook-sink"}
# Values that must come from a Secret in Kubernetes and never sit in a ConfigMap or a manifest.
SECRET_VARS = {"DATABASE_URL", "CRM_SECRET_KEY", "CRM_SECRET_KEY_PREVIOUS", "CRM_ADMIN_TOKEN", "WEBHOOK_SINK_SECRET"}
# Development-only switches that widen where webhooks may go (docs/contract.md §1).
EGRESS_DEV_VARS = {"CRM_EGRESS_ALLOW_HTTP", "CRM_EGRESS_ALLOW_CIDRS"}
ANY_HOST = {"0.0.0.0", "::"}


# ================================================================================================================
# Dockerfile and .dockerignore
# ================================================================================================================


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        pat = pat.strip().lstrip("/").rstrip("/")
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        out.append((negate, re.compile(rx + r"\Z")))
    return out


def dockerignored(rel: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether the build context leaves out `rel` (a path relative to the context), itself or through a parent."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def check_dockerfile(df: Dockerfile, ws: Workspace, dockerignore: str, root: Path = REPO) -> list[str]:
    problems: list[str] = []
    final = df.default_stage

    # --- the build ---
    builds = [(s, i) for s in df.stages for i in s.of("RUN") if re.search(r"\bcargo\s+build\b", i.args)]
    if not builds:
        return problems + ["no stage runs `cargo build`"]
    builder, run = builds[0]
    words = run.args.split()
    if "--release" not in words:
        problems.append(f"line {run.line}: cargo build without --release")
    if "--locked" not in words:
        problems.append(f"line {run.line}: cargo build without --locked (Cargo.lock would not be enforced)")
    packages = set(re.findall(r"(?:-p|--package)[ =]([\w-]+)", run.args))
    for p in packages:
        if p not in ws.crates:
            problems.append(f"line {run.line}: cargo build -p {p}: no such workspace package")
    mounts = re.findall(r"--mount=type=cache,[^\s]*target=([^\s,]+)", run.args)
    if not any(m.startswith("/usr/local/cargo/registry") for m in mounts):
        problems.append(f"line {run.line}: no BuildKit cache mount for /usr/local/cargo/registry")
    workdir = df.effective(builder, "WORKDIR")
    target_dir = (workdir.args.strip() if workdir else "/").rstrip("/") + "/target"
    if target_dir not in mounts:
        problems.append(f"line {run.line}: no BuildKit cache mount for the target directory {target_dir}")
    if not re.match(r"rust:\S*bookworm", df.image_base(builder)):
        problems.append(f"builder stage is FROM {df.image_base(builder)}, expected rust:1-bookworm")

    # --- the image every service runs ---
    base = df.image_base(final)
    if not base.startswith("debian:bookworm-slim"):
        problems.append(f"default stage is FROM {base}, expected debian:bookworm-slim")
    builder_release = re.search(r"(bookworm|bullseye|trixie|buster)", df.image_base(builder))
    if builder_release and builder_release.group(1) not in base:
        problems.append(f"builder ({df.image_base(builder)}) and runtime ({base}) are different Debian releases: glibc mismatch")
    installed = df.installed_binaries(final)
    for b in sorted(REQUIRED_BINARIES - set(installed)):
        problems.append(f"default stage does not install {b} in /usr/local/bin")
    for b, src in installed.items():
        crate = ws.binaries.get(b)
        if crate is None:
            problems.append(f"/usr/local/bin/{b}: no workspace binary of that name")
        elif crate.name not in packages:
            problems.append(f"/usr/local/bin/{b}: its package {crate.name} is not in `cargo build -p ...`")
        elif not re.search(rf"target/release/{re.escape(b)}\b", run.args):
            problems.append(f"/usr/local/bin/{b}: the build step does not copy target/release/{b} out of the cache mount")
    user = df.effective(final, "USER")
    uid = user.args.split(":")[0].strip() if user else "0"
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"default stage runs as {uid!r}: use a numeric non-root USER (Kubernetes runAsNonRoot needs a number)")
    if df.effective(final, "ENTRYPOINT") is not None:
        problems.append("default stage sets ENTRYPOINT; compose and Kubernetes name the program as the command")
    pkgs = df.apt_packages(final)
    for need in ("ca-certificates", "curl"):
        if need not in pkgs:
            problems.append(f"default stage does not install {need}")

    # --- migrations and other compile-time inputs are embedded, and the build context has them ---
    if not any("sqlx::migrate!" in p.read_text() for c in ws.crates.values() for p in c.sources()):
        problems.append("no crate embeds migrations with sqlx::migrate!: the image would need migrations/")
    patterns = dockerignore_patterns(dockerignore)
    for must in ("target", ".dev", ".git"):
        if not dockerignored(must, patterns):
            problems.append(f".dockerignore does not exclude {must}/")
    needed = [root / "Cargo.toml", root / "Cargo.lock"]
    for c in ws.crates.values():
        needed += [c.dir / "Cargo.toml", c.dir / "src"]
        if (c.dir / "build.rs").exists():
            needed.append(c.dir / "build.rs")
    needed += ws.compile_time_inputs()
    for p in needed:
        rel = p.resolve().relative_to(root.resolve()).as_posix()
        if dockerignored(rel, patterns):
            problems.append(f".dockerignore excludes {rel}, which the build needs")
    return problems


def dockerfile_uid(df: Dockerfile) -> int | None:
    user = df.effective(df.default_stage, "USER")
    uid = user.args.split(":")[0].strip() if user else ""
    return int(uid) if uid.isdigit() else None


# ================================================================================================================
# docker-compose.yml
# ================================================================================================================

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$(\w+)")


def interpolate(obj, env: dict[str, str], problems: list[str], where: str = ""):
    """Compose's variable substitution (${X}, ${X:-d}, ${X-d}, ${X:?msg}, ${X?msg}, ${X:+v}, $$)."""
    if isinstance(obj, dict):
        return {k: interpolate(v, env, problems, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, env, problems, f"{where}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, str):
        return obj

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        unset = value is None
        empty = unset or value == ""
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else unset) else value
        if op in (":?", "?"):
            if empty if op == ":?" else unset:
                problems.append(f"{where}: ${{{name}}} is required ({arg.strip() or 'no message'}) but not provided")
                return ""
            return value
        if op in (":+", "+"):
            return arg if not (empty if op == ":+" else unset) else ""
        return value or ""

    return _VAR.sub(sub, obj)


def compose_env(svc: dict) -> dict[str, str | None]:
    env = svc.get("environment", {}) or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            k, eq, v = str(item).partition("=")
            out[k] = v if eq else None
        return out
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def as_argv(command) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def listen_addr(binary: str, argv: list[str], env: dict[str, str | None], ws: Workspace) -> str | None:
    if binary in LISTEN_ENV:
        return env.get(LISTEN_ENV[binary])
    flag = LISTEN_FLAG.get(binary)
    if flag:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return None


def check_cli(binary: str, argv: list[str], ws: Workspace, where: str) -> list[str]:
    """The subcommand and every flag must be literals the program's main source matches on."""
    problems = []
    literals = ws.cli_literals(binary)
    for i, a in enumerate(argv[1:], 1):
        token = a.split("=", 1)[0] if a.startswith("--") else a
        is_subcommand = i == 1 and not a.startswith("-")
        if (token.startswith("-") or is_subcommand) and token not in literals:
            problems.append(f"{where}: `{binary}` does not accept {token!r}")
    return problems


def healthcheck_argv(test) -> list[str]:
    if isinstance(test, str):
        return shlex.split(test)
    test = [str(t) for t in test]
    if test and test[0] == "CMD-SHELL":
        return shlex.split(" ".join(test[1:]))
    if test and test[0] == "CMD":
        return test[1:]
    return test


def container_port(spec) -> int | None:
    if isinstance(spec, dict):
        return int(spec["target"]) if "target" in spec else None
    s = str(spec).split("/")[0]
    return int(s.rsplit(":", 1)[-1]) if s.rsplit(":", 1)[-1].isdigit() else None


def duration_seconds(value) -> float | None:
    if value is None:
        return None
    total, found = 0.0, False
    for num, unit in re.findall(r"([0-9.]+)(us|ms|h|m|s)", str(value)):
        found = True
        total += float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else None


def compose_schema_problems(compose: dict) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"compose schema: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(compose), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check_compose(raw: dict, ws: Workspace, df: Dockerfile, env: dict[str, str], root: Path = REPO) -> list[str]:
    """`raw` is docker-compose.yml as parsed; `env` the variables compose would substitute (an --env-file)."""
    problems = compose_schema_problems(raw)
    compose = interpolate(copy.deepcopy(raw), env, problems)
    services: dict[str, dict] = compose.get("services") or {}
    if not services:
        return problems + ["no services"]

    # Fixed addresses, for the egress exemption check.
    fixed_ips: dict[str, str] = {}
    subnets = [
        ipaddress.ip_network(c["subnet"])
        for net in (compose.get("networks") or {}).values()
        for c in ((net or {}).get("ipam") or {}).get("config", [])
        if "subnet" in c
    ]
    for name, svc in services.items():
        nets = svc.get("networks")
        if isinstance(nets, dict):
            for n in nets.values():
                if n and n.get("ipv4_address"):
                    fixed_ips[name] = n["ipv4_address"]

    declared_volumes = set((compose.get("volumes") or {}).keys())
    programs_seen: set[str] = set()
    for name, svc in services.items():
        where = f"services.{name}"
        env_vars = compose_env(svc)

        # --- image ---
        stage = None
        if "build" in svc:
            build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
            ctx = (root / build.get("context", ".")).resolve()
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{where}.build: {dockerfile} does not exist")
            elif dockerfile.resolve() == df.path.resolve():
                target = build.get("target")
                stage = df.stage(target) if target else df.default_stage
                if stage is None:
                    problems.append(f"{where}.build.target: no stage {target!r} in the Dockerfile")
        elif "image" in svc:
            name_, tag, digest = split_image(svc["image"])
            if not digest and (not tag or tag == "latest" or not re.match(r"\d", tag)):
                problems.append(f"{where}.image: {svc['image']!r} is not pinned to a version tag or digest")
        else:
            problems.append(f"{where}: neither build nor image")

        # --- program, command line, environment ---
        argv = as_argv(svc.get("command"))
        if stage is not None:
            if df.effective(stage, "ENTRYPOINT") is None and not argv:
                problems.append(f"{where}: no command (the image has no ENTRYPOINT)")
        binary = argv[0] if argv else None
        if stage is not None and binary:
            installed = df.installed_binaries(stage)
            if binary not in installed:
                problems.append(f"{where}.command: {binary!r} is not installed in /usr/local/bin by the Dockerfile")
            if binary not in ws.binaries:
                problems.append(f"{where}.command: {binary!r} is not a binary of the workspace")
        if binary in ws.binaries:
            programs_seen.add(binary)
            problems += check_cli(binary, argv, ws, f"{where}.command")
            reads = ws.env_vars(binary)
            for var in sorted(env_vars):
                if var not in reads:
                    problems.append(f"{where}.environment: {var} is not read by {binary}")
            for var in sorted(ws.required_env_vars(binary)):
                if not env_vars.get(var):
                    problems.append(f"{where}.environment: required {var} is not set")
            problems += _check_compose_urls(where, env_vars, services)

            addr = listen_addr(binary, argv, env_vars, ws)
            if binary in LISTEN_ENV or binary in LISTEN_FLAG:
                if not addr:
                    problems.append(f"{where}: {binary} listens on its loopback default; set "
                                    f"{LISTEN_ENV.get(binary) or LISTEN_FLAG.get(binary)} to 0.0.0.0:<port>")
                else:
                    host, port = parse_addr(addr)
                    if host not in ANY_HOST:
                        problems.append(f"{where}: {binary} listens on {addr}, unreachable from other containers")
                    for p in svc.get("ports", []) or []:
                        if container_port(p) != port:
                            problems.append(f"{where}.ports: {p!r} does not publish the listen port {port}")
                    for p in svc.get("expose", []) or []:
                        if container_port(p) != port:
                            problems.append(f"{where}.expose: {p!r} is not the listen port {port}")
                    hc = (svc.get("healthcheck") or {}).get("test")
                    if hc:
                        problems += _check_compose_healthcheck(where, binary, hc, port, ws, df, stage)

        # --- health, dependencies, volumes ---
        hc = svc.get("healthcheck")
        if not hc or hc.get("disable") or not hc.get("test") or hc.get("test") == ["NONE"]:
            problems.append(f"{where}: no healthcheck")
        for dep, cond in _depends_on(svc).items():
            if dep not in services:
                problems.append(f"{where}.depends_on: no service {dep!r}")
            elif cond == "service_healthy" and not (services[dep].get("healthcheck") or {}).get("test"):
                problems.append(f"{where}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck")
        for v in svc.get("volumes", []) or []:
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            if src and not src.startswith((".", "/", "~")) and src not in declared_volumes:
                problems.append(f"{where}.volumes: named volume {src!r} is not declared under volumes:")

        # --- development egress exemptions: only for the sink, only its own address ---
        allow_cidrs = env_vars.get("CRM_EGRESS_ALLOW_CIDRS")
        if env_vars.get("CRM_EGRESS_ALLOW_HTTP") and not allow_cidrs:
            problems.append(f"{where}: CRM_EGRESS_ALLOW_HTTP without CRM_EGRESS_ALLOW_CIDRS reaches no compose service")
        for cidr in filter(None, (c.strip() for c in (allow_cidrs or "").split(","))):
            net = ipaddress.ip_network(cidr, strict=False)
            sinks = [s for s, ip in fixed_ips.items() if ipaddress.ip_address(ip) in net]
            if net.num_addresses != 1:
                problems.append(f"{where}: CRM_EGRESS_ALLOW_CIDRS entry {cidr} is wider than one address")
            if not sinks:
                problems.append(f"{where}: CRM_EGRESS_ALLOW_CIDRS entry {cidr} is no compose service's fixed address")
            for s in sinks:
                if as_argv(services[s].get("command"))[:1] != ["webhook-sink"]:
                    problems.append(f"{where}: CRM_EGRESS_ALLOW_CIDRS exempts {s}, which is not the webhook-sink")

        # --- graceful stop ---
        if binary == "delivery-worker":
            grace_ms = int(env_vars.get("WORKER_SHUTDOWN_GRACE_MS") or ws.env_default_ms(binary, "WORKER_SHUTDOWN_GRACE_MS") or 0)
            stop = duration_seconds(svc.get("stop_grace_period")) or 10.0
            if stop <= grace_ms / 1000:
                problems.append(f"{where}: stop_grace_period {stop:g}s is not longer than WORKER_SHUTDOWN_GRACE_MS "
                                f"{grace_ms} ms: Docker would SIGKILL a draining worker")

    for ip in fixed_ips.values():
        if subnets and not any(ipaddress.ip_address(ip) in n for n in subnets):
            problems.append(f"fixed address {ip} is outside the network's subnet {', '.join(map(str, subnets))}")
    for b in sorted(REQUIRED_BINARIES - programs_seen):
        problems.append(f"no service runs {b}")
    return problems


def _depends_on(svc: dict) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started") for k, v in dep.items()}


def _check_compose_healthcheck(where, binary, test, port, ws: Workspace, df: Dockerfile, stage) -> list[str]:
    problems = []
    argv = healthcheck_argv(test)
    if argv and stage is not None and argv[0] in {"curl", "wget"} and argv[0] not in df.apt_packages(stage):
        problems.append(f"{where}.healthcheck: uses {argv[0]}, which the image does not install")
    urls = [a for a in argv if re.match(r"https?://", a)]
    if not urls:
        return problems + [f"{where}.healthcheck: no http:// URL to check"]
    for u in urls:
        parts = urlsplit(u)
        if parts.port != port:
            problems.append(f"{where}.healthcheck: {u} is not the listen port {port}")
        routes = ws.routes(binary)
        if routes and parts.path not in routes:
            problems.append(f"{where}.healthcheck: {binary} serves no route {parts.path}")
        elif routes and parts.path != "/readyz":
            problems.append(f"{where}.healthcheck: checks {parts.path}; use /readyz (PostgreSQL and NATS reachable)")
    return problems


def _check_compose_urls(where: str, env: dict, services: dict) -> list[str]:
    problems = []
    db = env.get("DATABASE_URL")
    if db:
        u = urlsplit(db)
        if u.scheme not in ("postgres", "postgresql"):
            problems.append(f"{where}: DATABASE_URL must be a postgres:// URL")
        pg = services.get(u.hostname or "")
        if pg is None:
            problems.append(f"{where}: DATABASE_URL host {u.hostname!r} is not a compose service")
        else:
            pg_env = compose_env(pg)
            if (u.port or 5432) != 5432:
                problems.append(f"{where}: DATABASE_URL port {u.port} is not PostgreSQL's 5432")
            if pg_env.get("POSTGRES_USER") and u.username != pg_env["POSTGRES_USER"]:
                problems.append(f"{where}: DATABASE_URL user {u.username!r} is not POSTGRES_USER")
            if pg_env.get("POSTGRES_DB") and u.path.lstrip("/") != pg_env["POSTGRES_DB"]:
                problems.append(f"{where}: DATABASE_URL database {u.path!r} is not POSTGRES_DB")
            if pg_env.get("POSTGRES_PASSWORD") and u.password != pg_env["POSTGRES_PASSWORD"]:
                problems.append(f"{where}: DATABASE_URL password is not POSTGRES_PASSWORD")
    nats = env.get("NATS_URL")
    if nats:
        u = urlsplit(nats)
        svc = services.get(u.hostname or "")
        if svc is None:
            problems.append(f"{where}: NATS_URL host {u.hostname!r} is not a compose service")
        else:
            if not str(svc.get("image", "")).startswith("nats:"):
                problems.append(f"{where}: NATS_URL points at {u.hostname}, which is not a nats image")
            if "-js" not in as_argv(svc.get("command")) and "--jetstream" not in as_argv(svc.get("command")):
                problems.append(f"{where}: NATS_URL points at {u.hostname}, which runs without JetStream (-js)")
            if (u.port or 4222) != 4222:
                problems.append(f"{where}: NATS_URL port {u.port} is not the client port 4222")
    key = env.get("CRM_SECRET_KEY")
    if key:
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                problems.append(f"{where}: CRM_SECRET_KEY is not base64 of 32 bytes")
        except (binascii.Error, ValueError):
            problems.append(f"{where}: CRM_SECRET_KEY is not base64")
    token = env.get("CRM_ADMIN_TOKEN")
    if token is not None and token != "" and len(token) < 16:
        problems.append(f"{where}: CRM_ADMIN_TOKEN is shorter than 16 characters")
    return problems


# ================================================================================================================
# Kubernetes
# ================================================================================================================

KEDA_NATS_KEYS = {
    "natsServerMonitoringEndpoint",
    "account",
    "stream",
    "consumer",
    "lagThreshold",
    "activationLagThreshold",
    "useHttps",
}
KEDA_NATS_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer"}


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def resolve_env(container: dict, objects: list[dict], secrets: dict[str, dict], where: str, problems: list[str]):
    """container env -> {NAME: (source, value-or-None)}; source is 'value', 'configmap', 'secret' or 'field'."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) or {} for o in objects if o.get("kind") == "ConfigMap"}
    out: dict[str, tuple[str, str | None]] = {}
    for ref in container.get("envFrom", []) or []:
        if "configMapRef" in ref:
            n = ref["configMapRef"]["name"]
            if n not in configmaps:
                if not ref["configMapRef"].get("optional"):
                    problems.append(f"{where}.envFrom: ConfigMap {n!r} is not among the resources")
                continue
            for k, v in configmaps[n].items():
                out[ref.get("prefix", "") + k] = ("configmap", str(v))
        elif "secretRef" in ref:
            n = ref["secretRef"]["name"]
            if n not in secrets:
                problems.append(f"{where}.envFrom: Secret {n!r} is not documented by a secret example")
                continue
            for k in secrets[n]:
                out[ref.get("prefix", "") + k] = ("secret", None)
    for e in container.get("env", []) or []:
        name = e["name"]
        if "value" in e:
            out[name] = ("value", str(e["value"]))
            continue
        vf = e.get("valueFrom", {})
        if "secretKeyRef" in vf:
            r = vf["secretKeyRef"]
            if r["name"] not in secrets:
                problems.append(f"{where}.env.{name}: Secret {r['name']!r} is not documented by a secret example")
            elif r["key"] not in secrets[r["name"]] and not r.get("optional"):
                problems.append(f"{where}.env.{name}: key {r['key']!r} is not in the Secret example {r['name']!r}")
            out[name] = ("secret", None)
        elif "configMapKeyRef" in vf:
            r = vf["configMapKeyRef"]
            data = configmaps.get(r["name"])
            if data is None or r["key"] not in data:
                if not r.get("optional"):
                    problems.append(f"{where}.env.{name}: ConfigMap key {r['name']}/{r['key']} does not exist")
                out[name] = ("configmap", None)
            else:
                out[name] = ("configmap", str(data[r["key"]]))
        else:
            out[name] = ("field", None)
    return out


def _probe_port(probe: dict, container: dict) -> int | None:
    port = (probe.get("httpGet") or {}).get("port")
    if isinstance(port, int):
        return port
    for p in container.get("ports", []) or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_k8s(objects: list[dict], ws: Workspace, df: Dockerfile, secrets: dict[str, dict], where_: str = "") -> list[str]:
    """Cross-checks of rendered objects against the code and the image. `secrets`: Secret name -> data keys."""
    problems: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for o in objects:
        by_kind.setdefault(o.get("kind", ""), []).append(o)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    uid = dockerfile_uid(df)
    installed = df.installed_binaries(df.default_stage)
    effective_env: dict[str, dict] = {}

    for o in objects:
        cm_where = f"{where_}{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        if o.get("kind") == "ConfigMap":
            for k in (o.get("data") or {}):
                if k in SECRET_VARS:
                    problems.append(f"{cm_where}: {k} is a secret; keep it in a Secret, not a ConfigMap")
                if k in EGRESS_DEV_VARS:
                    problems.append(f"{cm_where}: {k} is for local development only, never a cluster")

    for dname, d in deployments.items():
        spec = pod_spec(d) or {}
        tmpl_labels = d["spec"]["template"]["metadata"].get("labels", {})
        if not labels_match(d["spec"]["selector"].get("matchLabels", {}), tmpl_labels):
            problems.append(f"{where_}Deployment/{dname}: selector does not match the pod template labels")
        psc = spec.get("securityContext", {}) or {}
        for c in pod_containers(d):
            where = f"{where_}Deployment/{dname}/{c['name']}"
            argv = as_argv(c.get("command")) + as_argv(c.get("args"))
            if not argv:
                problems.append(f"{where}: no command (the image has no ENTRYPOINT)")
                continue
            binary = argv[0]
            if binary not in installed:
                problems.append(f"{where}.command: {binary!r} is not installed in /usr/local/bin by the Dockerfile")
            if binary not in ws.binaries:
                problems.append(f"{where}.command: {binary!r} is not a binary of the workspace")
                continue
            problems += check_cli(binary, argv, ws, f"{where}.command")

            env = resolve_env(c, objects, secrets, where, problems)
            effective_env[dname] = env
            reads = ws.env_vars(binary)
            for var, (source, value) in sorted(env.items()):
                if var not in reads:
                    problems.append(f"{where}.env: {var} is not read by {binary}")
                if var in SECRET_VARS and source != "secret":
                    problems.append(f"{where}.env: {var} must come from a Secret, not a {source}")
                if var in EGRESS_DEV_VARS:
                    problems.append(f"{where}.env: {var} is for local development only, never a cluster")
            for var in sorted(ws.required_env_vars(binary)):
                if var not in env:
                    problems.append(f"{where}.env: required {var} is not set")

            # listening address, ports and probes
            ports = {p["containerPort"] for p in c.get("ports", []) or []}
            addr = listen_addr(binary, argv, {k: v for k, (_, v) in env.items()}, ws)
            listen_port = None
            if binary in LISTEN_ENV or binary in LISTEN_FLAG:
                if not addr:
                    problems.append(f"{where}: listens on its loopback default; set {LISTEN_ENV.get(binary) or LISTEN_FLAG.get(binary)}")
                else:
                    host, listen_port = parse_addr(addr)
                    if host not in ANY_HOST:
                        problems.append(f"{where}: listens on {addr}, unreachable by the kubelet and Services")
                    if listen_port not in ports:
                        problems.append(f"{where}.ports: listen port {listen_port} is not a containerPort")
            routes = ws.routes(binary)
            for kind, expect in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", None)):
                probe = c.get(kind)
                if probe is None:
                    if expect:
                        problems.append(f"{where}: no {kind}")
                    continue
                path = (probe.get("httpGet") or {}).get("path")
                if expect and path != expect:
                    problems.append(f"{where}.{kind}: path {path!r}, expected {expect}")
                if path not in routes:
                    problems.append(f"{where}.{kind}: {binary} serves no route {path!r}")
                pport = _probe_port(probe, c)
                if pport is None or pport not in ports or (listen_port and pport != listen_port):
                    problems.append(f"{where}.{kind}: port {(probe.get('httpGet') or {}).get('port')!r} is not the listen port {listen_port}")

            ann = d["spec"]["template"]["metadata"].get("annotations", {}) or {}
            if ann.get("prometheus.io/scrape") != "true":
                problems.append(f"{where_}Deployment/{dname}: no prometheus.io/scrape annotation")
            else:
                if listen_port and str(ann.get("prometheus.io/port")) != str(listen_port):
                    problems.append(f"{where_}Deployment/{dname}: prometheus.io/port is not the listen port {listen_port}")
                if ann.get("prometheus.io/path", "/metrics") not in routes:
                    problems.append(f"{where_}Deployment/{dname}: prometheus.io/path is not a route of {binary}")

            # security and resources
            csc = c.get("securityContext", {}) or {}
            if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
                problems.append(f"{where}: runAsNonRoot is not true")
            if not csc.get("readOnlyRootFilesystem"):
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if ((csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")) not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: no RuntimeDefault seccompProfile")
            run_as = csc.get("runAsUser", psc.get("runAsUser"))
            if uid is not None and run_as is not None and run_as != uid:
                problems.append(f"{where}: runAsUser {run_as} is not the image's USER {uid}")
            res = c.get("resources", {}) or {}
            for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
                for k in keys:
                    if k not in (res.get(part) or {}):
                        problems.append(f"{where}.resources.{part}.{k} is not set")

            # graceful termination
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if binary == "delivery-worker":
                if "WORKER_SHUTDOWN_GRACE_MS" not in env or env["WORKER_SHUTDOWN_GRACE_MS"][1] is None:
                    problems.append(f"{where}.env: set WORKER_SHUTDOWN_GRACE_MS explicitly, next to terminationGracePeriodSeconds")
                ms = env.get("WORKER_SHUTDOWN_GRACE_MS", (None, None))[1] or ws.env_default_ms(binary, "WORKER_SHUTDOWN_GRACE_MS")
                if ms is not None and grace <= int(ms) / 1000:
                    problems.append(f"{where_}Deployment/{dname}: terminationGracePeriodSeconds {grace} is not longer "
                                    f"than WORKER_SHUTDOWN_GRACE_MS {ms} ms: the kubelet would SIGKILL a draining worker")
            if binary == "crm-api":
                pre = ((c.get("lifecycle") or {}).get("preStop") or {})
                cmd = (pre.get("exec") or {}).get("command") or []
                secs = (pre.get("sleep") or {}).get("seconds")
                if secs is None and len(cmd) >= 2 and cmd[0] == "sleep":
                    secs = float(cmd[1])
                if secs is None:
                    problems.append(f"{where}: no preStop sleep (requests would reach a stopping pod while endpoints update)")
                elif secs >= grace:
                    problems.append(f"{where}: preStop sleep {secs}s leaves no time of terminationGracePeriodSeconds {grace}")

    # Services, PDBs
    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector", {})
        targets = [d for d in deployments.values() if labels_match(sel, d["spec"]["template"]["metadata"].get("labels", {}))]
        where = f"{where_}Service/{s['metadata']['name']}"
        if not targets:
            problems.append(f"{where}: selector matches no Deployment")
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p.get("port"))
            for d in targets:
                cports = [cp for c in pod_containers(d) for cp in c.get("ports", []) or []]
                if not any(cp.get("name") == tp or cp.get("containerPort") == tp for cp in cports):
                    problems.append(f"{where}: targetPort {tp!r} is not a port of Deployment/{d['metadata']['name']}")
    # Autoscaled Deployments: the autoscaler's minimum replaces spec.replicas, which they must not set.
    autoscaled_min: dict[str, int] = {}
    for a in by_kind.get("ScaledObject", []) + by_kind.get("HorizontalPodAutoscaler", []):
        ref = a.get("spec", {}).get("scaleTargetRef") or {}
        lo = a["spec"].get("minReplicaCount", 0) if a["kind"] == "ScaledObject" else a["spec"].get("minReplicas", 1)
        if ref.get("name") in deployments and isinstance(lo, int):
            autoscaled_min[ref["name"]] = lo
    for dname in autoscaled_min:
        if "replicas" in deployments[dname]["spec"]:
            problems.append(f"{where_}Deployment/{dname}: sets replicas although an autoscaler owns it: every apply "
                            "would reset the count (remove it with a `replicas: null` patch)")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        where = f"{where_}PodDisruptionBudget/{pdb['metadata']['name']}"
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        targets = [d for d in deployments.values() if labels_match(sel, d["spec"]["template"]["metadata"].get("labels", {}))]
        if not targets:
            problems.append(f"{where}: selector matches no Deployment")
        min_avail = pdb["spec"].get("minAvailable")
        for d in targets:
            name = d["metadata"]["name"]
            replicas = autoscaled_min.get(name, d["spec"].get("replicas", 1))
            if isinstance(min_avail, int) and min_avail >= replicas:
                problems.append(f"{where}: minAvailable {min_avail} >= replicas {replicas}: no voluntary eviction possible")

    # Autoscalers
    targets_scaled: dict[str, str] = {}
    pdb_min = {
        d: p["spec"].get("minAvailable")
        for p in by_kind.get("PodDisruptionBudget", [])
        for d, dep in deployments.items()
        if labels_match(p["spec"].get("selector", {}).get("matchLabels", {}), dep["spec"]["template"]["metadata"].get("labels", {}))
    }
    for so in by_kind.get("ScaledObject", []):
        where = f"{where_}ScaledObject/{so['metadata']['name']}"
        problems += [f"{where}: {p}" for p in keda_schema_problems(so)]
        spec = so.get("spec", {})
        tname = (spec.get("scaleTargetRef") or {}).get("name")
        if (spec.get("scaleTargetRef") or {}).get("kind", "Deployment") != "Deployment" or tname not in deployments:
            problems.append(f"{where}: scaleTargetRef {tname!r} is not a Deployment among the resources")
            continue
        if tname in targets_scaled:
            problems.append(f"{where}: Deployment/{tname} is already scaled by {targets_scaled[tname]}")
        targets_scaled[tname] = where
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            problems.append(f"{where}: replica range {lo}..{hi} is not 1 <= min <= max")
        if isinstance(pdb_min.get(tname), int) and isinstance(lo, int) and lo <= pdb_min[tname]:
            problems.append(f"{where}: minReplicaCount {lo} <= the PDB's minAvailable {pdb_min[tname]}")
        env = effective_env.get(tname, {})
        binary = as_argv(pod_containers(deployments[tname])[0].get("command"))[:1]
        stream = (env.get("CRM_STREAM") or (None, None))[1] or (ws.env_default_str(binary[0], "CRM_STREAM") if binary else None)
        consumer = ws.const_str("crm-events", "CONSUMER_NAME")
        for t in spec.get("triggers", []) or []:
            if t.get("type") != "nats-jetstream":
                continue
            md = t.get("metadata", {}) or {}
            for k in sorted(set(md) - KEDA_NATS_KEYS):
                problems.append(f"{where}: nats-jetstream trigger has no metadata key {k!r}")
            for k in sorted(KEDA_NATS_REQUIRED - set(md)):
                problems.append(f"{where}: nats-jetstream trigger needs metadata {k!r}")
            if md.get("stream") != stream:
                problems.append(f"{where}: stream {md.get('stream')!r} is not the workers' CRM_STREAM {stream!r}")
            if md.get("consumer") != consumer:
                problems.append(f"{where}: consumer {md.get('consumer')!r} is not the durable consumer {consumer!r} (crm-events)")
            for k in ("lagThreshold", "activationLagThreshold"):
                if k in md and not (str(md[k]).isdigit() and int(md[k]) > 0):
                    problems.append(f"{where}: {k} {md[k]!r} is not a positive integer")
            if "useHttps" in md and str(md["useHttps"]).lower() not in ("true", "false"):
                problems.append(f"{where}: useHttps {md['useHttps']!r} is not true or false")
            ep = md.get("natsServerMonitoringEndpoint", "")
            if "://" in ep or not re.match(r"^[\w.-]+:\d+$", ep):
                problems.append(f"{where}: natsServerMonitoringEndpoint {ep!r} must be host:port, without a scheme")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        where = f"{where_}HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        spec = hpa["spec"]
        tname = spec["scaleTargetRef"]["name"]
        if spec["scaleTargetRef"].get("kind") != "Deployment" or tname not in deployments:
            problems.append(f"{where}: scaleTargetRef {tname!r} is not a Deployment among the resources")
            continue
        if tname in targets_scaled:
            problems.append(f"{where}: Deployment/{tname} is already scaled by {targets_scaled[tname]}")
        targets_scaled[tname] = where
        lo, hi = spec.get("minReplicas", 1), spec["maxReplicas"]
        if not 1 <= lo <= hi:
            problems.append(f"{where}: replica range {lo}..{hi} is not 1 <= min <= max")
        if isinstance(pdb_min.get(tname), int) and lo <= pdb_min[tname]:
            problems.append(f"{where}: minReplicas {lo} <= the PDB's minAvailable {pdb_min[tname]}")
        for m in spec.get("metrics", []) or []:
            if m.get("type") == "Resource":
                r = m["resource"]["name"]
                for c in pod_containers(deployments[tname]):
                    if r not in ((c.get("resources") or {}).get("requests") or {}):
                        problems.append(f"{where}: scales on {r} utilisation but {c['name']} has no {r} request")

    # Namespaces
    namespaces = [n["metadata"]["name"] for n in by_kind.get("Namespace", [])]
    for o in objects:
        if o.get("kind") == "Namespace":
            continue
        ns = o.get("metadata", {}).get("namespace")
        if namespaces and ns not in namespaces:
            problems.append(f"{where_}{o['kind']}/{o['metadata']['name']}: namespace {ns!r} is not the overlay's Namespace")
    return problems


def keda_schema_problems(obj: dict) -> list[str]:
    schema = json.loads((SCHEMAS / "keda-scaledobject.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    return [f"schema: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in v.iter_errors(obj)]


def k8s_schema_problems(obj: dict, versions: list[str]) -> list[str]:
    """Strict validation of a built-in kind against the Kubernetes OpenAPI schemas bundled by kubernetes-validate."""
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, validate

    out = []
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    for version in versions:
        try:
            validate(obj, version, strict=True)
        except SchemaNotFoundError:
            out.append(f"{name}: no Kubernetes {version} schema for {obj.get('apiVersion')} {obj.get('kind')}")
        except ValidationError as e:
            path = "/".join(map(str, e.absolute_path)) or "<root>"
            out.append(f"{name}: Kubernetes {version}: {path}: {e.message}")
    return out
