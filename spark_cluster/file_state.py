"""Managed files and directories, checked in one round trip per role.

pyinfra's files.put asks the node three times (file, parent directory,
checksum) and files.directory once, each a separate SSH command under sudo.
A role that manages twenty paths would spend sixty round trips finding that
nothing changed. Here a role asks once for the state of all its paths
(PathLines), and emits pyinfra's own operation only for a path that is not
already as desired; that operation then checks and changes it as usual.

A path skipped this way yields UNCHANGED, which reads like an operation that
did not change (`_if=...did_change`, `any_changed(...)` work on it).

The snapshot is the state the run started from: a path must have one writer
in the deploy. Where a second operation edits a path (files.block), the
permission check follows it with `_if=` instead (see `Snapshot.perms`).
"""

from __future__ import annotations

import hashlib
from io import StringIO
from pathlib import Path
from typing import Any, Iterable

from pyinfra.api import FactBase
from pyinfra.api.util import get_file_sha1
from pyinfra.operations import files
from pyinfra.operations.util import any_changed

from .batch_fact import Want, want
from .cluster_facts import host_fact
from .private_file import is_private, private_put
from .shipped import shipped_command

# Shipped with the package and run by the unit tests against temporary trees.
PATH_STATE = Path(__file__).parent / "files" / "path_state.sh"


def path_states_command(paths: Iterable[str], lines: Iterable[tuple[str, str]] = ()) -> str:
    """One output line per path (see parse_path_states), then "has" or "lacks" per (path, line):
    files/path_state.sh with the paths, then each (path, line) pair, as its arguments."""
    paths = list(paths)
    pairs = [arg for path, line in lines for arg in (path, line)]
    return shipped_command(PATH_STATE, str(len(paths)), *paths, *pairs)


def parse_path_states(paths: list[str], lines: list[str]) -> dict[str, dict | None]:
    """{path: {"kind", "mode", "user", "group", "sha1"} or None when absent}.

    One output line per path, in order; a missing line reads as unknown
    ("other"), which never matches a desired state."""
    states: dict[str, dict | None] = {}
    for index, path in enumerate(paths):
        words = lines[index].split() if index < len(lines) else ["other"]
        kind = words[0] if words else "other"
        if kind == "absent":
            states[path] = None
            continue
        state: dict[str, Any] = {"kind": kind, "mode": None, "user": None, "group": None, "sha1": None}
        if kind in ("file", "directory") and len(words) >= 4 and words[1].isdigit():
            state.update(mode=int(words[1]), user=words[2], group=words[3])
            if kind == "file" and len(words) >= 5:
                state["sha1"] = words[4]
        states[path] = state
    return states


class Unchanged:
    """Stands in for an operation that was not needed: it did not change anything."""

    def did_change(self) -> bool:
        return False

    def did_not_change(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


def snapshot_want(paths: Iterable[str], lines: dict[str, list[str]] | None = None) -> Want:
    """The fact a Snapshot of these paths reads (for a role's `wants`)."""
    return want(
        PathLines,
        paths=sorted(set(paths)),
        lines=sorted({(path, line) for path, wanted in (lines or {}).items() for line in wanted}),
    )


class Snapshot:
    """The state of a role's managed paths on this host, as the run found it;
    `lines` ({path: [line, ...]}) also asks whether those files hold those whole lines."""

    def __init__(self, paths: Iterable[str], lines: dict[str, list[str]] | None = None):
        asked = snapshot_want(paths, lines)
        self.paths, self.line_checks = asked.kwargs["paths"], asked.kwargs["lines"]
        output = host_fact(asked)
        self.states = parse_path_states(self.paths, output)
        answers = output[len(self.paths):]
        self.lines = {check: index < len(answers) and answers[index] == "has"
                      for index, check in enumerate(self.line_checks)}

    def get(self, path: str) -> dict | None:
        if path not in self.states:
            raise KeyError(f"{path} was not in this snapshot's paths")
        return self.states[path]

    def owned(self, path: str, kind: str, user=None, group=None, mode=None) -> bool:
        state = self.get(path)
        return bool(
            state
            and state["kind"] == kind
            and (user is None or state["user"] == user)
            and (group is None or state["group"] == group)
            and (mode is None or state["mode"] == int(str(mode)))  # "0644", "644" and 644 alike
        )

    def has_line(self, path: str, line: str) -> bool:
        return self.lines[(path, line)]

    def holds(self, path: str, sha1: str, **owner) -> bool:
        state = self.get(path)
        return self.owned(path, "file", **owner) and state["sha1"] == sha1

    def put(self, *, name: str, src, dest: str, user=None, group=None, mode=None, **kwargs):
        """files.put, only when `dest` differs from `src` in content, owner or mode;
        a file other users may not read is written by private_put (never staged readable)."""
        if self.holds(dest, local_sha1(src), user=user, group=group, mode=mode):
            return UNCHANGED
        if is_private(mode):
            return private_put(name=name, src=src, dest=dest, user=user or "root", group=group or "root",
                               mode=str(mode), **kwargs)
        return files.put(name=name, src=src, dest=dest, user=user, group=group, mode=mode, **kwargs)

    def directory(self, *, name: str, path: str, user=None, group=None, mode=None, **kwargs):
        """files.directory, only when `path` is not already that directory."""
        if self.owned(path, "directory", user=user, group=group, mode=mode):
            return UNCHANGED
        return files.directory(name=name, path=path, user=user, group=group, mode=mode, **kwargs)

    def absent(self, *, name: str, path: str, **kwargs):
        """files.file(present=False), only when something is at `path`."""
        if self.get(path) is None:
            return UNCHANGED
        return files.file(name=name, path=path, present=False, **kwargs)

    def perms(self, *, name: str, path: str, user=None, group=None, mode=None, after=(), **kwargs):
        """files.file for owner and mode of an existing file that other operations write.

        Checked now when the snapshot shows it wrong; otherwise only after one of
        the writing operations (`after`) changed it, since a rewrite may reset both."""
        if not self.owned(path, "file", user=user, group=group, mode=mode):
            return files.file(name=name, path=path, user=user, group=group, mode=mode, **kwargs)
        if not after:
            return UNCHANGED
        return files.file(name=name, path=path, user=user, group=group, mode=mode,
                          _if=any_changed(*after), **kwargs)


def local_sha1(src) -> str:
    if isinstance(src, StringIO):
        return hashlib.sha1(src.getvalue().encode()).hexdigest()
    return get_file_sha1(str(src))


class PathLines(FactBase):
    """The raw output of path_states_command: pyinfra gives process() the
    output alone, and parsing needs the paths asked (Snapshot does it)."""

    default = list

    def command(self, paths, lines=()):
        return path_states_command(paths, lines)

    def process(self, output):
        return list(output)
