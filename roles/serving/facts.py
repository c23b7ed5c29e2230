"""What docker on the node already has: images and registered runtimes."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class DockerImageId(FactBase):
    """The local image's id (sha256:...), or None when it is not on the node."""

    def command(self, image: str) -> str:
        return f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)} 2>/dev/null || true"

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else None


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
