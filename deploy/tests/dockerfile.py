"""A small Dockerfile reader: stages, their instructions, what the default stage installs and runs as."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def words(self) -> list[str]:
        return shlex.split(self.args, comments=False, posix=True)


@dataclass
class Stage:
    index: int
    base: str  # image reference or the name of an earlier stage
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


class Dockerfile:
    def __init__(self, path: Path):
        self.path = path
        self.global_args: dict[str, str] = {}
        self.stages: list[Stage] = []
        for ins in _logical_lines(path.read_text()):
            if ins.keyword == "FROM":
                words = [w for w in ins.words() if not w.startswith("--platform")]
                base = _substitute(words[0], self.global_args)
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                self.stages.append(Stage(len(self.stages), base, name))
            elif not self.stages:
                if ins.keyword == "ARG":
                    k, _, v = ins.args.strip().partition("=")
                    self.global_args[k.strip()] = v.strip().strip('"')
            else:
                self.stages[-1].instructions.append(ins)

    def stage(self, name_or_index: str | int) -> Stage | None:
        for s in self.stages:
            if s.name == name_or_index or str(s.index) == str(name_or_index):
                return s
        return None

    @property
    def default_stage(self) -> Stage:
        return self.stages[-1]

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the earlier stages it is built FROM, nearest first."""
        out = [stage]
        while (parent := self.stage(out[-1].base)) is not None and parent.index < out[-1].index:
            out.append(parent)
        return out

    def image_base(self, stage: Stage) -> str:
        return self.chain(stage)[-1].base

    def effective(self, stage: Stage, keyword: str) -> Instruction | None:
        """The last `keyword` instruction in force for `stage` (inherited from the stages it builds on)."""
        for s in self.chain(stage):
            found = s.of(keyword)
            if found:
                return found[-1]
        return None

    def installed_binaries(self, stage: Stage, bindir: str = "/usr/local/bin") -> dict[str, str]:
        """Files COPY --from=<stage> puts in `bindir`: basename -> the source stage's name."""
        out: dict[str, str] = {}
        for s in self.chain(stage):
            for ins in s.of("COPY"):
                words = ins.words()
                src_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
                paths = [w for w in words if not w.startswith("--")]
                if src_stage is None or len(paths) < 2:
                    continue
                dest = paths[-1]
                if dest.rstrip("/") != bindir:
                    continue
                for src in paths[:-1]:
                    out[src.rstrip("/").rsplit("/", 1)[-1]] = src_stage
        return out

    def apt_packages(self, stage: Stage) -> set[str]:
        pkgs: set[str] = set()
        for s in self.chain(stage):
            for ins in s.of("RUN"):
                for m in re.finditer(r"apt-get\s+install\s+([^&;|]+)", ins.args):
                    pkgs.update(w for w in m.group(1).split() if not w.startswith("-"))
        return pkgs


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def _logical_lines(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined = " ".join(part.strip() for part in buf)
        buf = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out
