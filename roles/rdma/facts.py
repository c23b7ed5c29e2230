"""RoCE state of a node, read by the same detector the node runs at serving start."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from pyinfra.api import FactBase

# Shipped to the node as-is and unit-tested on sysfs fixtures: the fact runs
# this very source, so detection logic exists once.
DETECTOR_SOURCE = Path(__file__).parent / "files" / "roce_detect.py"


class RoceState(FactBase):
    """The detector's JSON report: devices on the rails (or the bond), HCAs, GID index,
    and `problem` ("no_device", "no_ipv4_gid", "port_down" or None). Never fails."""

    def requires_command(self, args):
        return "python3"

    def command(self, args):
        source = DETECTOR_SOURCE.read_text()
        return " ".join(["python3", "-c", shlex.quote(source), "--report", *map(shlex.quote, args)])

    @staticmethod
    def default():
        return {"problem": "no_python3", "message": "python3 is not installed (the RoCE detector needs it)"}

    def process(self, output):
        return json.loads("\n".join(output))


class InfinibandNodes(FactBase):
    """Entries of /dev/infiniband (uverbsN, rdma_cm...), empty when absent."""

    def command(self):
        return "ls -1 /dev/infiniband 2>/dev/null; true"

    @staticmethod
    def default():
        return []

    def process(self, output):
        return [line.strip() for line in output if line.strip()]
