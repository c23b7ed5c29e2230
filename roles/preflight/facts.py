"""What a node is made of, in one command: kernel, driver, engine image, links, disk."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

# key=value lines; values may hold spaces (the driver's banner line).
_SCRIPT = r"""
echo "kernel=$(uname -r)"
if [ -r /proc/driver/nvidia/version ]; then echo "driver_proc=$(head -n1 /proc/driver/nvidia/version)"; fi
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "driver_smi=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
fi
__IMAGE__
for name in __INTERFACES__; do
  d=/sys/class/net/$name
  if [ ! -e "$d" ]; then echo "carrier.$name=absent"; continue; fi
  echo "carrier.$name=$(cat "$d/carrier" 2>/dev/null || echo unknown)"
done
home=$(getent passwd __USER__ | cut -d: -f6)
[ -d "$home" ] || home=/
echo "disk_path=$home"
echo "disk_avail_kib=$(df -Pk "$home" 2>/dev/null | awk 'NR==2 {print $4}')"
true
"""
# NGC-based engine images (vLLM, SGLang) declare their NCCL in the image's environment.
# One docker call for both (each costs a docker CLI start): the id, then one line per variable.
_IMAGE = (
    "if command -v docker >/dev/null 2>&1; then "
    "docker image inspect --format 'image_id={{.Id}}{{range .Config.Env}}{{println}}env.{{.}}{{end}}' __NAME__ "
    "2>/dev/null | sed -n -e '/^image_id=/p' -e 's/^env\\.NCCL_VERSION=/nccl=/p'; fi"
)
_DRIVER_VERSION = re.compile(r"\b(\d{3,}\.\d+(?:\.\d+)?)\b")
NO_DRIVER = "none"


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
    carriers = {}
    for key, value in raw.items():
        if key.startswith("carrier."):
            carriers[key[len("carrier."):]] = {"1": "up", "0": "down"}.get(value, value or "unknown")
    avail = raw.get("disk_avail_kib", "")
    return {
        "kernel": raw.get("kernel") or None,
        "driver": driver_version(raw.get("driver_proc"), raw.get("driver_smi")),
        # Absent (no docker, no image) is None: it is not compared.
        "image_id": raw.get("image_id") or None,
        "nccl": raw.get("nccl") or None,
        "carriers": carriers,
        "disk_path": raw.get("disk_path") or None,
        "disk_free_gib": round(int(avail) / 1024**2, 1) if avail.isdigit() else None,
    }


def node_inventory_command(interfaces, image, user) -> str:
    image_line = _IMAGE.replace("__NAME__", shlex.quote(image)) if image else ""
    return (
        _SCRIPT.replace("__IMAGE__", image_line)
        .replace("__INTERFACES__", " ".join(shlex.quote(name) for name in interfaces) or "''")
        .replace("__USER__", shlex.quote(user or "root"))
        .strip()
    )


class NodeInventory(FactBase):
    """{"kernel", "driver", "image_id", "nccl", "carriers": {iface: up|down|unknown|absent},
    "disk_path", "disk_free_gib"}. Carrier is "unknown" while a port is
    administratively down (a fresh node before the network role): not a fault."""

    def command(self, interfaces, image, user):
        return node_inventory_command(interfaces, image, user)

    def process(self, output):
        return parse_node_inventory(output)
