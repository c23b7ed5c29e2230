"""The serving container's environment (/etc/spark-cluster/serving.env).

Every interface variable names the node's QSFP control interface (bond0, or
the first rail in dual_subnet mode: spark_cluster/fabric.py): tools that guess pick the
management NIC or loopback (field reports: Gloo on loopback with SGLang, vLLM
on the Wi-Fi NIC). NCCL_IB_HCA and NCCL_IB_GID_INDEX are not here: they are detected at each start into /run/spark-cluster/roce.env.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from spark_cluster.caches import cache_env
from spark_cluster.engines import Engine

INTERFACE_VARIABLES = (
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",  # SGLang cannot rendezvous without it (Gloo picks loopback)
    "TP_SOCKET_IFNAME",
    "MN_IF_NAME",
    "OMPI_MCA_btl_tcp_if_include",
)
# Computed at start by roce_detect.py, never pinned in this file.
RUNTIME_VARIABLES = ("NCCL_IB_HCA", "NCCL_IB_GID_INDEX")
# The engine the unit runs (serving_engine), for whatever runs in the container
# and needs to know: the lab's stand-in imitates that engine.
ENGINE_VARIABLE = "SPARK_ENGINE"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ServingEnvError(ValueError):
    """A one-line complaint about a serving variable."""


def serving_environment(
    *,
    engine: Engine,
    control_interface: str,
    qsfp_ip: str,
    head_qsfp_ip: str,
    home: str,
    profile_env: Mapping[str, Any] | None,
    api_key: tuple[str, str] | None = None,
) -> dict[str, str]:
    """`api_key`: (the engine's variable, the key), written here only: this
    file is 0600 and read by docker, never shown in an argv."""
    env: dict[str, str] = {"NCCL_IB_DISABLE": "0"}
    env.update({name: control_interface for name in INTERFACE_VARIABLES})
    env[ENGINE_VARIABLE] = engine.name
    env.update(engine.env(qsfp_ip))
    env["MASTER_ADDR"] = head_qsfp_ip
    env.update(cache_env(home))
    # Ray's memory monitor kills workers on unified memory it misreads.
    env["RAY_memory_monitor_refresh_ms"] = "0"
    for name, value in (profile_env or {}).items():
        if name in RUNTIME_VARIABLES:
            raise ServingEnvError(
                f"serving profile env sets {name}: pin it with group_data nccl_ib_hca / nccl_ib_gid_index instead"
            )
        env[name] = str(value)
    if api_key:
        env[api_key[0]] = api_key[1]
    for name, value in env.items():
        # docker --env-file takes each line literally: no quoting, no newlines.
        if not _NAME.match(name) or "\n" in value or "\r" in value:
            raise ServingEnvError(f"serving variable {name!r} cannot be written to a docker env file")
    return env
