"""The rdma role's settings, and the paths the serving role shares with it."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from spark_cluster.settings import require, role_settings

from .defaults import DEFAULTS

DETECTOR_PATH = "/usr/local/lib/spark-cluster/roce_detect.py"
ROCE_ENV_PATH = "/run/spark-cluster/roce.env"
# NCCL_IB_HCA entries: a device name with an optional ":port".
_HCA = re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]+)?$")


def _pinned_hca(value: Any) -> str | None:
    if value == "auto":
        return None
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(name).strip() for name in names]
    require(bool(names) and all(_HCA.match(name) for name in names), "nccl_ib_hca",
            f"must be 'auto' or RDMA device names like 'rocep1s0f0,rocep1s0f1', got {value!r}")
    return ",".join(names)


def _pinned_gid_index(value: Any) -> int | None:
    if value == "auto":
        return None
    require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255,
            "nccl_ib_gid_index", f"must be 'auto' or a GID index from 0 to 255, got {value!r}")
    return value


def rdma_settings(host_data: Any) -> SimpleNamespace:
    s = role_settings(host_data, DEFAULTS)
    s.pinned_hca = _pinned_hca(s.nccl_ib_hca)
    s.pinned_gid_index = _pinned_gid_index(s.nccl_ib_gid_index)
    require(isinstance(s.roce_gid_wait_s, int) and s.roce_gid_wait_s >= 0, "roce_gid_wait_s",
            f"must be a whole number of seconds, got {s.roce_gid_wait_s!r}")
    s.qsfp_interfaces = list(s.qsfp_interfaces)
    s.qsfp_ip = host_data.get("qsfp_ip")
    return s


def detector_args(s: SimpleNamespace, ip: str | None = None) -> list[str]:
    """The detector's arguments for this node: the same for the fact, the
    post-network check and the serving unit, so all three agree."""
    args = ["--netdev", s.bond_name, "--slaves", ",".join(s.qsfp_interfaces)]
    if ip:
        args += ["--ip", ip]
    if s.pinned_hca:
        args += ["--hca", s.pinned_hca]
    if s.pinned_gid_index is not None:
        args += ["--gid-index", str(s.pinned_gid_index)]
    return args
