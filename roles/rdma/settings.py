"""The rdma role's settings, and what the serving unit runs of rdma's (the RoCE env command)."""

from __future__ import annotations

import re
import shlex
from types import SimpleNamespace
from typing import Any

from spark_cluster.fabric import fabric
from spark_cluster.settings import cluster_settings, require


DETECTOR_PATH = "/usr/local/lib/spark-cluster/roce_detect.py"
ROCE_ENV_PATH = "/run/spark-cluster/roce.env"
# At boot the QSFP links may get their addresses a little after the serving unit starts.
SERVING_START_WAIT_S = 60
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


def rdma_settings(host_data: Any) -> SimpleNamespace:
    s = cluster_settings(host_data)
    s.pinned_hca = _pinned_hca(s.nccl_ib_hca)
    # spark_cluster.schema checked it: "auto" or an index from 0 to 255.
    s.pinned_gid_index = None if s.nccl_ib_gid_index == "auto" else s.nccl_ib_gid_index
    s.fabric = fabric(host_data)
    return s


def detector_args(s: SimpleNamespace) -> list[str]:
    """The detector's arguments for this node: the same for the fact, the
    post-network check and the serving unit, so all three agree. Where it
    looks (a bond, or every rail with its address) is the fabric's to say."""
    args = s.fabric.detector_args()
    if s.pinned_hca:
        args += ["--hca", s.pinned_hca]
    if s.pinned_gid_index is not None:
        args += ["--gid-index", str(s.pinned_gid_index)]
    return args


def roce_env_argv(host_data: Any) -> list[str]:
    """The serving unit's ExecStartPre that writes /run/spark-cluster/roce.env
    (NCCL_IB_HCA, NCCL_IB_GID_INDEX; 0600, atomically), honouring pinned values.
    It waits for the GIDs because at boot the links may get their addresses
    after the unit starts."""
    s = rdma_settings(host_data)
    return [
        "/usr/bin/python3", DETECTOR_PATH, *detector_args(s),
        "--wait", str(SERVING_START_WAIT_S), "--env", "--output", ROCE_ENV_PATH,
    ]


def roce_env_command(host_data: Any) -> str:
    """roce_env_argv as one shell-quoted line."""
    return " ".join(shlex.quote(arg) for arg in roce_env_argv(host_data))
