"""Reading the Dockerfile and the .dockerignore the way the checks need them.

Not a full Dockerfile parser: enough for the instructions our Dockerfile
uses (FROM … AS, USER, EXPOSE, ENTRYPOINT, COPY), with line continuations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from tests.deploy.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

_BUILD_COMMAND = re.compile(r"docker build\s+--target\s+(\S+)\s+-t\s+([^\s:]+):(\S+)")


@dataclass
class Stage:
    """One build stage: its name and the instructions after its FROM."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    """(INSTRUCTION, arguments) in order."""

    def last(self, instruction: str) -> str | None:
        """Arguments of the stage's last such instruction."""
        found = [args for name, args in self.instructions if name == instruction]
        return found[-1] if found else None

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def stages(text: str) -> list[Stage]:
    """The build stages in order (the last one is what a plain `docker build` makes)."""
    found: list[Stage] = []
    for line in _logical_lines(text):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(found))
            found.append(Stage(name=name, base=words[0]))
        elif found:
            found[-1].instructions.append((instruction, args.strip()))
    return found


def effective(all_stages: list[Stage], name: str, instruction: str) -> str | None:
    """An instruction's value in a stage, following `FROM <earlier stage>`."""
    by_name = {s.name: s for s in all_stages}
    stage: Stage | None = by_name[name]
    while stage is not None:
        value = stage.last(instruction)
        if value is not None:
            return value
        stage = by_name.get(stage.base)
    return None


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD; a shell form is one string."""
    try:
        parsed = json.loads(args)
    except ValueError:
        return [args]
    return [str(word) for word in parsed] if isinstance(parsed, list) else [args]


def documented_images(text: str) -> dict[str, tuple[str, str]]:
    """Target → (image name, tag) of the build commands in the header comment."""
    return {target: (image, tag) for target, image, tag in _BUILD_COMMAND.findall(text)}


def copied_sources(text: str) -> list[str]:
    """Paths that COPY takes from the build context (not `--from` another stage)."""
    sources = []
    for stage in stages(text):
        for args in stage.all("COPY"):
            words = args.split()
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex on a path."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line of a .dockerignore, in order."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        patterns.append((not negated, _pattern_regex(cleaned)))
    return patterns


def ignored(patterns: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Whether the build context leaves `path` out: the last pattern that matches
    the path or one of its parent directories decides, as in Docker."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for excludes, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = excludes
    return verdict
