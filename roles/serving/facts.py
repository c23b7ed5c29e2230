"""What docker on the node already has (images, registered runtimes), and the unit's state."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

from spark_cluster.batch_fact import Want, want


class DockerImageId(FactBase):
    """The local image's id (sha256:...), or None when it is not on the node."""

    def command(self, image: str) -> str:
        return f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)} 2>/dev/null || true"

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else None


def image_id_of(image: str) -> Want:
    """Whether (and which) image `image` is on a node: standin, distribute and serving read it."""
    return want(DockerImageId, image=image)


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
    """{"active": bool, "enabled": bool} of a systemd unit, in one command."""

    def command(self, unit: str) -> str:
        quoted = shlex.quote(unit)
        return f"systemctl is-active {quoted} || true; systemctl is-enabled {quoted} || true"

    def process(self, output):
        words = [line.strip() for line in output if line.strip()]
        return {
            "active": bool(words) and words[0] == "active",
            "enabled": len(words) > 1 and words[1] == "enabled",
        }
