"""What a converged node looks like, written down independently of the roles
(docs/design.md and what owners of these machines reported), so a role's mistake is not copied
into its own check. Only which netdevs, devices and addresses the node's QSFP side has is
taken from the deploy's own derivation (spark_cluster.fabric, through rails.py): those are
the inventory's facts, not a role's behaviour."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

CONFIG_DIR = "/etc/spark-cluster"
SERVING_ENV = f"{CONFIG_DIR}/serving.env"
ROCE_ENV = "/run/spark-cluster/roce.env"
LIMITS_FILE = "/etc/security/limits.d/90-spark-cluster-memlock.conf"
SERVING_UNIT = "spark-serving.service"
# The watcher that judges engines by generated tokens; its /state answers on
# the node's QSFP control address at serving_watch_port.
WATCH_UNIT = "spark-serving-watch.service"
CONTAINER = "spark-serving"
KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
CLUSTER_KEY = ".ssh/id_ed25519_spark_cluster"

# Host cache name -> where the engine (root in the container) looks for it
# (without them every engine restart recompiles for minutes and can wedge).
ENGINE_CACHES = {
    "vllm": "/root/.cache/vllm",
    "triton": "/root/.triton/cache",
    "flashinfer": "/root/.cache/flashinfer",
    "torch": "/root/.cache/torch",
    "tilelang": "/root/.tilelang/cache",
}

# Every tool that guesses an interface must be pinned to the QSFP side
# (else Gloo picks loopback, or the NIC of the default route, which may not exist in the container).
INTERFACE_VARIABLES = (
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",
    "TP_SOCKET_IFNAME",
    "MN_IF_NAME",
    "OMPI_MCA_btl_tcp_if_include",
)

REDEPLOY = "re-run `pyinfra INVENTORY deploy.py`"



def api_key(path: str | None) -> str | None:
    """The API key the cluster asks for (group_data serving_api_key_file, read
    on this controller as the deploy reads it), or None."""
    if not path:
        return None
    with open(os.path.expanduser(str(path))) as handle:
        return handle.read().strip() or None


def host_cache_dirs(home: str) -> dict[str, str]:
    root = f"{home.rstrip('/')}/.cache/spark-cluster"
    return {name: f"{root}/{name}" for name in ENGINE_CACHES}


def hf_cache_dir(home: str) -> str:
    return f"{home.rstrip('/')}/.cache/huggingface"


def shorten(value, limit: int = 120) -> str:
    text = str(value).strip().replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Problems:
    """Collects every mismatch of one check, then fails once with all of them:
    each line says what was expected, what was found, and the likely fix."""

    node: str
    lines: list[str] = field(default_factory=list)

    def add(self, what: str, expected, found, fix: str) -> None:
        self.lines.append(f"{what}: expected {expected}, found {shorten(found)}; fix: {fix}")

    def note(self, line: str) -> None:
        self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def check(self) -> None:
        if self.lines:
            pytest.fail(f"{self.node}: " + "\n  ".join(self.lines), pytrace=False)
