"""What the Rust workspace provides, read from its sources: binaries, the environment variables each binary reads,
the HTTP routes it serves, the literals its command line accepts, and a few defaults.

Everything here is derived from Cargo.toml files and .rs sources at test time, so the deploy checks follow the
code as others change it instead of a list that goes stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]

# Calls through which the services read a variable: service_common::Env's accessors and std::env.
_ENV_CALL = re.compile(
    r"""\.(?:get|required|or|parse_or|bool_or|millis_or)\(\s*"([A-Z][A-Z0-9_]*)"|"""
    r"""\benv::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)"""
)
# A constant holding a variable name, e.g. `const SECRET_ENV: &str = "WEBHOOK_SINK_SECRET";` ...
_STR_CONST = re.compile(r"""\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:'static\s+)?str\s*=\s*"([A-Z][A-Z0-9_]*)"\s*;""")
# ... counts when it is passed to env::var or to a helper whose name mentions env (`read_env(ALLOW_HTTP_VAR)`).
_CONST_USE = r"""(?:\benv::var(?:_os)?|\b\w*env\w*)\(\s*{name}\s*\)"""
# Variables that libraries read for us, and the call that proves it.
_IMPLICIT_ENV = {"RUST_LOG": re.compile(r"EnvFilter::(?:try_)?from_default_env")}
_ROUTE = re.compile(r"""\.route\(\s*"(/[^"]*)\"""")
# Routes registered through utoipa-axum's `routes!(handler)` name their path on the handler's attribute.
_UTOIPA_PATH = re.compile(r"""#\[utoipa::path\(\s*\w+\s*,\s*path\s*=\s*"(/[^"]*)\"""")
_STR_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_INCLUDE = re.compile(r"""\b(?:include_str|include_bytes)!\(\s*"([^"]+)"\s*\)|\bsqlx::migrate!\(\s*"([^"]+)"\s*\)""")
# sqlx's checked queries, which build from the offline query data in .sqlx/ at the workspace root.
_CHECKED_QUERY = re.compile(r"""\bsqlx::query(?:_as|_scalar)?!\(""")


def strip_test_code(source: str) -> str:
    """The source without its `#[cfg(test)] mod ... { }` blocks (a test's literals are not what the program reads)."""
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*(\{|;)")
    while True:
        m = pattern.search(source, i)
        if not m:
            out.append(source[i:])
            break
        out.append(source[i : m.start()])
        if m.group(1) == ";":
            i = m.end()
            continue
        depth, j = 1, m.end()
        while j < len(source) and depth:
            depth += {"{": 1, "}": -1}.get(source[j], 0)
            j += 1
        i = j
    return "".join(out)


@dataclass
class Crate:
    name: str
    dir: Path
    manifest: dict
    # binary name -> main source file
    bins: dict[str, Path] = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)  # workspace crates it depends on (not dev-dependencies)

    def sources(self) -> list[Path]:
        """Non-test Rust sources: src/**.rs minus `tests.rs` modules."""
        return sorted(p for p in (self.dir / "src").rglob("*.rs") if p.name != "tests.rs")


class Workspace:
    def __init__(self, root: Path = REPO):
        self.root = root
        self.manifest = tomllib.loads((root / "Cargo.toml").read_text())
        self.crates: dict[str, Crate] = {}
        members = self.manifest["workspace"]["members"]
        for pattern in members:
            for d in sorted(root.glob(pattern)):
                if (d / "Cargo.toml").is_file():
                    self._load_crate(d)
        ws_deps = self.manifest["workspace"].get("dependencies", {})
        for crate in self.crates.values():
            for name, spec in crate.manifest.get("dependencies", {}).items():
                path = None
                if isinstance(spec, dict) and spec.get("workspace"):
                    ws = ws_deps.get(name)
                    path = ws.get("path") if isinstance(ws, dict) else None
                    path = root / path if path else None
                elif isinstance(spec, dict) and "path" in spec:
                    path = (crate.dir / spec["path"]).resolve()
                if path is not None:
                    crate.deps.append(name)

    def _load_crate(self, d: Path) -> None:
        manifest = tomllib.loads((d / "Cargo.toml").read_text())
        package = manifest.get("package", {})
        name = package.get("name", d.name)
        crate = Crate(name=name, dir=d, manifest=manifest)
        explicit = manifest.get("bin", [])
        for b in explicit:
            crate.bins[b["name"]] = d / b.get("path", f"src/bin/{b['name']}.rs")
        if package.get("autobins", True):
            if (d / "src/main.rs").is_file() and name not in crate.bins:
                crate.bins[name] = d / "src/main.rs"
            for p in sorted((d / "src/bin").glob("*.rs")) if (d / "src/bin").is_dir() else []:
                if p.stem not in crate.bins and p not in crate.bins.values():
                    crate.bins[p.stem] = p
        self.crates[name] = crate

    # --- binaries ---------------------------------------------------------------------------------------------

    @cached_property
    def binaries(self) -> dict[str, Crate]:
        """Every binary of the workspace -> the crate that builds it."""
        return {b: c for c in self.crates.values() for b in c.bins}

    def bin_source(self, binary: str) -> str:
        return self.binaries[binary].bins[binary].read_text()

    def closure(self, crate_name: str) -> list[Crate]:
        """The crate and every workspace crate it depends on, transitively (not dev-dependencies)."""
        seen: dict[str, Crate] = {}
        stack = [crate_name]
        while stack:
            n = stack.pop()
            if n in seen or n not in self.crates:
                continue
            seen[n] = self.crates[n]
            stack.extend(self.crates[n].deps)
        return list(seen.values())

    def _closure_text(self, binary: str) -> str:
        crate = self.binaries[binary]
        texts = []
        for c in self.closure(crate.name):
            for p in c.sources():
                # Another binary's main file of the same crate is not part of this program.
                if p in c.bins.values() and c.bins.get(binary) != p:
                    continue
                texts.append(strip_test_code(p.read_text()))
        return "\n".join(texts)

    def env_vars(self, binary: str) -> set[str]:
        """The environment variables `binary` reads (its own crate and the workspace crates it links)."""
        text = self._closure_text(binary)
        found = {a or b for a, b in _ENV_CALL.findall(text)}
        for const, value in _STR_CONST.findall(text):
            if re.search(_CONST_USE.format(name=re.escape(const)), text):
                found.add(value)
        for var, proof in _IMPLICIT_ENV.items():
            if proof.search(text):
                found.add(var)
        return found

    def required_env_vars(self, binary: str) -> set[str]:
        text = self._closure_text(binary)
        return set(re.findall(r"""\.required\(\s*"([A-Z][A-Z0-9_]*)"\s*\)""", text))

    def env_default_ms(self, binary: str, var: str) -> int | None:
        """The default of a `millis_or("VAR", 20_000)` setting."""
        m = re.search(rf"""millis_or\(\s*"{re.escape(var)}"\s*,\s*([0-9_]+)\s*\)""", self._closure_text(binary))
        return int(m.group(1).replace("_", "")) if m else None

    def env_default_str(self, binary: str, var: str) -> str | None:
        """The default of an `env.or("VAR", <default>)` setting: a literal or a `const` of a workspace crate."""
        text = self._closure_text(binary)
        m = re.search(rf"""\.or\(\s*"{re.escape(var)}"\s*,\s*([^)]+?)\s*\)""", text)
        if not m:
            return None
        arg = m.group(1).strip()
        if arg.startswith('"'):
            return arg.strip('"')
        const = arg.split("::")[-1]
        c = re.search(rf"""\bconst\s+{re.escape(const)}\s*:\s*&(?:'static\s+)?str\s*=\s*"([^"]*)"\s*;""", text)
        return c.group(1) if c else None

    def routes(self, binary: str) -> set[str]:
        text = self._closure_text(binary)
        return set(_ROUTE.findall(text)) | set(_UTOIPA_PATH.findall(text))

    def cli_literals(self, binary: str) -> set[str]:
        """String literals of the binary's main source: its subcommands and flags are among them."""
        return set(_STR_LITERAL.findall(strip_test_code(self.bin_source(binary))))

    def const_str(self, crate: str, const: str) -> str | None:
        for p in self.crates[crate].sources():
            m = re.search(rf"""\bconst\s+{re.escape(const)}\s*:\s*&(?:'static\s+)?str\s*=\s*"([^"]*)"\s*;""", p.read_text())
            if m:
                return m.group(1)
        return None

    def compile_time_inputs(self) -> list[Path]:
        """Files and directories the build reads besides Cargo manifests and src/: include_str!/include_bytes!
        targets and sqlx::migrate! directories (relative to the including file or the crate, as Rust resolves them),
        and .sqlx/ when a crate uses sqlx's checked queries."""
        paths = []
        for c in self.crates.values():
            for p in c.dir.rglob("*.rs"):
                if "target" in p.parts:
                    continue
                text = p.read_text()
                if _CHECKED_QUERY.search(text) and (self.root / ".sqlx") not in paths:
                    paths.append(self.root / ".sqlx")
                for inc, mig in _INCLUDE.findall(text):
                    if inc:
                        paths.append((p.parent / inc).resolve())
                    if mig:
                        paths.append((c.dir / mig).resolve())
        return paths


def parse_addr(value: str) -> tuple[str, int]:
    """'0.0.0.0:8080' -> ('0.0.0.0', 8080); '[::]:8080' -> ('::', 8080)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
