"""Many facts in one SSH command.

pyinfra runs every fact as its own command over SSH, each under sudo (with
its password check when sudo asks for one). Batch sends the commands of many
facts as one shell script, splits the output at markers only this run knows,
and hands each fact's lines to that fact's own process(), exactly as pyinfra
would: the same value, for one round trip instead of one each.

A fact whose command fails, or whose required command is missing, is left
out of the answer: the caller asks it on its own, so pyinfra reports (or
tolerates) it the way it always does.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase


def fact_key(fact_cls, kwargs: dict) -> tuple:
    """What identifies one reading of a fact: its class and its arguments."""
    return (fact_cls.__module__, fact_cls.__qualname__, repr(sorted(kwargs.items())))


@dataclass(frozen=True)
class Want:
    """A fact a role will read, with the arguments it will read it with."""

    fact: type
    kwargs: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return fact_key(self.fact, self.kwargs)

    def __repr__(self) -> str:  # pyinfra logs fact arguments: keep the batch's line short
        return self.fact.__name__


def want(fact_cls, **kwargs) -> Want:
    return Want(fact_cls, kwargs)


def unique(wants) -> list[Want]:
    """`wants` without repeats (several roles may name the same fact), in order."""
    seen: dict[tuple, Want] = {}
    for item in wants:
        seen.setdefault(item.key, item)
    return list(seen.values())


def command_text(command) -> str:
    """A fact's command (str or pyinfra StringCommand) as shell text."""
    if command is None:
        return ""
    return command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)


def batch_script(marker: str, commands: list[tuple[str, str]]) -> str:
    """One script for [(command, required command or "")]: each command's output,
    then a line "<marker> <index> <exit status or 'missing'>".

    Each command runs in a subshell (its `exit` ends only itself) on its own
    lines (a trailing comment cannot swallow the parenthesis), stdin closed.
    The leading newline of the marker line ends a last line printed without
    one; the parser takes that newline back off."""
    parts = []
    for index, (command, requires) in enumerate(commands):
        run = f"(\n{command}\n) </dev/null; rc=$?"
        if requires:
            run = f"if command -v {requires} >/dev/null 2>&1; then {run}; else rc=missing; fi"
        parts.append(f"{run}\nprintf '\\n%s %s %s\\n' '{marker}' {index} \"$rc\"")
    return "\n".join(parts) or "true"


def split_output(marker: str, lines: list[str]) -> dict[int, tuple[str, list[str]]]:
    """{index: (status, lines)} from batch_script's output; a command whose
    marker line never came (the script was cut short) is absent."""
    ends = re.compile(rf"^{re.escape(marker)} (\d+) (\S+)$")
    segments: dict[int, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in lines:
        match = ends.match(line)
        if not match:
            current.append(line)
            continue
        if current and current[-1] == "":
            current.pop()
        segments[int(match.group(1))] = (match.group(2), current)
        current = []
    return segments


class Batch(FactBase):
    """{fact key: value} for each of `wants` whose command succeeded on the node."""

    default = dict

    def command(self, wants):
        # pyinfra calls process() on this same instance: facts that keep
        # state between command() and process() (files.Block does) still work.
        self.marker = f"spark-cluster-batch-{secrets.token_hex(8)}"
        self.wants = list(wants)
        self.facts = [item.fact() for item in self.wants]
        commands = [
            (command_text(fact.command(**item.kwargs)), command_text(fact.requires_command(**item.kwargs)))
            for fact, item in zip(self.facts, self.wants)
        ]
        return batch_script(self.marker, commands)

    def process(self, output):
        answers: dict[tuple, Any] = {}
        for index, (status, lines) in split_output(self.marker, list(output)).items():
            if status != "0" or index >= len(self.wants):
                continue
            fact = self.facts[index]
            try:
                # As pyinfra does: no output is the fact's default.
                answers[self.wants[index].key] = fact.process(lines) if lines else fact.default()
            except Exception:  # noqa: BLE001 - the caller asks this fact alone, and pyinfra reports it
                continue
        return answers
