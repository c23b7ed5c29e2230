"""What a node is made of, in one command: kernel, driver, engine image, QSFP
netdevs (carrier, RDMA device), disk."""

from __future__ import annotations

import re
from pathlib import Path

from pyinfra.api import FactBase

from spark_cluster.shipped import shipped_command

# Shipped with the role and run by the unit tests against a fake sysfs and stub tools.
NODE_INVENTORY = Path(__file__).parent / "files" / "node_inventory.sh"

_DRIVER_VERSION = re.compile(r"\b(\d{3,}\.\d+(?:\.\d+)?)\b")
NO_DRIVER = "none"
# What files/node_inventory.sh reports for a netdev that no RDMA device sits on.
NO_RDMA = "none"


def driver_version(proc_line: str | None, smi_line: str | None) -> str:
    """The NVIDIA driver version from /proc's banner or nvidia-smi; "none" without a driver."""
    for text in (proc_line, smi_line):
        match = _DRIVER_VERSION.search(text or "")
        if match:
            return match.group(1)
    return NO_DRIVER


def parse_node_inventory(lines: list[str]) -> dict:
    raw = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            raw[key.strip()] = value.strip()
    carriers, rdma = {}, {}
    for key, value in raw.items():
        if key.startswith("carrier."):
            carriers[key[len("carrier."):]] = {"1": "up", "0": "down"}.get(value, value or "unknown")
        elif key.startswith("rdma."):
            rdma[key[len("rdma."):]] = value or NO_RDMA
    avail = raw.get("disk_avail_kib", "")
    home, _, owner = raw.get("admin_home", "").partition(" ")
    admin = {"home": home, "owner": owner or None} if home else None
    return {
        # False: no such account; else its home and who owns it ("missing": no
        # such directory); None: the script said neither.
        "admin": False if raw.get("admin") == "missing" else admin,
        "kernel": raw.get("kernel") or None,
        "driver": driver_version(raw.get("driver_proc"), raw.get("driver_smi")),
        # Absent (no docker, no image) is None: it is not compared.
        "image_id": raw.get("image_id") or None,
        "nccl": raw.get("nccl") or None,
        "carriers": carriers,
        "rdma": rdma,
        "disk_path": raw.get("disk_path") or None,
        "disk_free_gib": round(int(avail) / 1024**2, 1) if avail.isdigit() else None,
    }


def node_inventory_command(interfaces, image, user) -> str:
    """files/node_inventory.sh with these inputs as its arguments ("" image: no docker call)."""
    return shipped_command(NODE_INVENTORY, user or "root", image or "", *interfaces)


class NodeInventory(FactBase):
    """{"kernel", "driver", "image_id", "nccl", "admin": False | {"home", "owner"},
    "carriers": {netdev: up|down|unknown|absent},
    "rdma": {netdev: RDMA device or "none"}, "disk_path", "disk_free_gib"}.
    Carrier is "unknown" while a port is administratively down (a fresh node
    before the network role): not a fault."""

    def command(self, interfaces, image, user):
        return node_inventory_command(interfaces, image, user)

    def process(self, output):
        return parse_node_inventory(output)
