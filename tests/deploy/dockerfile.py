"""Just enough of a Dockerfile parser to check the image's essentials and replay its steps."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Instruction:
    command: str  # upper case: FROM, RUN, COPY, …
    text: str  # the rest of the instruction, continuation lines joined
    line: int

    def exec_form(self) -> list[str]:
        """The JSON-array form (ENTRYPOINT, CMD, HEALTHCHECK … CMD)."""
        body = self.text[self.text.index("["):] if "[" in self.text else self.text
        value = json.loads(body)
        assert isinstance(value, list), f"line {self.line}: not exec form: {self.text}"
        return [str(v) for v in value]


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]

    def last(self, command: str) -> Instruction | None:
        found = self.all(command)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with comments dropped and continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    assert not pending, "the last instruction ends with a line continuation"
    return out


def substitute(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, instruction in logical_lines(text):
        command, _, rest = instruction.partition(" ")
        command = command.upper()
        rest = rest.strip()
        if command == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
        elif command == "FROM":
            words = [w for w in shlex.split(rest) if not w.startswith("--platform")]
            image = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(image, name))
        else:
            assert stages, f"line {line}: {command} before FROM"
            stages[-1].instructions.append(Instruction(command, rest, line))
    return Dockerfile(global_args, stages)


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV, in the key=value form (values may refer to earlier ones)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.text):
            key, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: use ENV key=value"
            env[key] = value
    return env


def run_steps(instruction: Instruction) -> list[list[str]]:
    """A RUN's shell commands split on '&&', each as argv (--mount options dropped)."""
    words = [w for w in shlex.split(instruction.text) if not w.startswith("--mount=")]
    steps: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            steps.append([])
        else:
            steps[-1].append(word)
    return [s for s in steps if s]


def args_of(stage: Stage, global_args: dict[str, str]) -> dict[str, str]:
    """The build arguments a stage declares, with their defaults (a bare ARG takes the global
    ARG's default, as Docker does)."""
    args: dict[str, str] = {}
    for instruction in stage.all("ARG"):
        name, sep, default = instruction.text.partition("=")
        args[name] = default.strip('"') if sep else global_args.get(name, "")
    return args


def labels_of(stage: Stage) -> dict[str, str]:
    """The stage's LABELs (key="value" pairs), variables left as written."""
    labels: dict[str, str] = {}
    for instruction in stage.all("LABEL"):
        for word in shlex.split(instruction.text):
            key, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: use LABEL key=value"
            labels[key] = value
    return labels
