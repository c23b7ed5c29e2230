"""Where the lab keeps things and which ports it uses; pure functions, no side effects.

Inventories import `lab_nodes` to reach the VMs, so nothing here may touch the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADMIN_USER = "spark"
ADMIN_PASSWORD = "spark"
SSH_HOST = "127.0.0.1"
DEFAULT_SSH_BASE = 2220
# The QSFP "cables" live well clear of the SSH ports so both ranges can move together.
LINK_OFFSET = 2000
SUPPORTED_SIZES = (2, 4)
# QSFP netdevs per node: two ports, two PCIe halves each (lab/cx7.py).
QSFP_LANES = 4


def state_dir() -> Path:
    return Path(os.environ.get("SPARK_LAB_DIR") or REPO / ".lab").resolve()


def image_cache_dir() -> Path:
    default = Path.home() / ".cache" / "spark-cluster" / "lab"
    return Path(os.environ.get("SPARK_LAB_CACHE") or default).resolve()


def ssh_key_path() -> Path:
    # The public half is baked into the image, so the key lives beside the image cache.
    return image_cache_dir() / "ssh" / "id_ed25519"


def known_hosts_path() -> Path:
    return state_dir() / "known_hosts"


def api_key_path() -> Path:
    """The lab cluster's API key (0600), made by `lab up`: the lab serves with
    a key, as an owner whose API listens beyond the cable should."""
    return state_dir() / "api_key"


def ssh_base() -> int:
    return _int_env("SPARK_LAB_SSH_BASE", DEFAULT_SSH_BASE)


def link_base() -> int:
    return _int_env("SPARK_LAB_LINK_BASE", ssh_base() + LINK_OFFSET)


def boot_timeout() -> float | None:
    """SPARK_LAB_BOOT_TIMEOUT: seconds for one VM on an idle host (lab/bootwait.py scales it);
    None when unset: the accelerator's own default."""
    raw = _int_env("SPARK_LAB_BOOT_TIMEOUT", 0)
    return float(raw) if raw > 0 else None


def node_name(index: int) -> str:
    return f"spark-{index}"


def node_index(name: str) -> int:
    prefix = "spark-"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        raise ValueError(name)
    return int(name[len(prefix):])


def ssh_port(index: int) -> int:
    return ssh_base() + index


def nic_port(index: int, lane: int) -> int:
    """The UDP port on which node `index` receives frames for QSFP netdev `lane` (lab/cx7.py)."""
    return link_base() + 10 * index + lane


def switch_port() -> int:
    """The UDP port of the one switch (one L2 domain) that joins every cabled QSFP netdev."""
    return link_base()


def lab_nodes(count: int) -> list[dict]:
    """Per-node connection data for pyinfra inventories and tests."""
    if count < 1:
        raise ValueError(f"a lab needs at least one node, got {count}")
    return [
        {
            "name": node_name(index),
            "ssh_hostname": SSH_HOST,
            "ssh_port": ssh_port(index),
            "ssh_user": ADMIN_USER,
            "ssh_key": str(ssh_key_path()),
            "ssh_known_hosts_file": str(known_hosts_path()),
            "sudo_password": ADMIN_PASSWORD,
        }
        for index in range(1, count + 1)
    ]


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        from .errors import LabError

        raise LabError(f"{name} must be an integer, got {raw!r}") from None
