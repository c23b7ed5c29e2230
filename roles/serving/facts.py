"""What docker on the node has registered (runtimes), and the unit's state.

The engine image's fact is spark_cluster.engine_image's: every role that names the image reads it."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class DockerRuntimes(FactBase):
    """Names of the runtimes docker has registered (e.g. runc, nvidia)."""

    default = list

    def command(self) -> str:
        return "docker info --format '{{json .Runtimes}}' 2>/dev/null || true"

    def process(self, output):
        text = "".join(output).strip()
        if not text:
            return []
        try:
            runtimes = json.loads(text)
        except ValueError:
            return []
        return sorted(runtimes) if isinstance(runtimes, dict) else []


class UnitState(FactBase):
    """{"active": bool, "enabled": bool} of a systemd unit, in one command.

    A unit systemd is bringing up ("activating": its ExecStartPre run, as
    after the watcher restarted it) counts as active: starting it again would
    change nothing but the run's report."""

    def command(self, unit: str) -> str:
        quoted = shlex.quote(unit)
        return f"systemctl is-active {quoted} || true; systemctl is-enabled {quoted} || true"

    def process(self, output):
        words = [line.strip() for line in output if line.strip()]
        return {
            "active": bool(words) and words[0] in ("active", "activating", "reloading"),
            "enabled": len(words) > 1 and words[1] == "enabled",
        }
