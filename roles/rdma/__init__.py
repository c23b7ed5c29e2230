"""RDMA over the QSFP ports (RoCE) for NCCL.

Desired state:
- an RDMA device sits on every rail (else this host fails first);
- rdma-core, ibverbs-utils and perftest are installed;
- the RoCE detector is installed at /usr/local/lib/spark-cluster/roce_detect.py
  (the serving unit runs it at each start to write /run/spark-cluster/roce.env);
- /dev/infiniband/uverbs* exists (ib_uverbs loaded, and at boot);
- memlock is unlimited for logins, for services and for dockerd (restarted
  only when its drop-in changed);
- the RoCE v2 IPv4 GID of every rail's address (of the bond's, in bond mode)
  exists; on a first run it appears only once the network role has given the
  links their addresses, so it is checked again after the network role, and only then.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import PACKAGES_WANT, ensure_packages, fail_command, fail_host

from .facts import DETECTOR_SOURCE, InfinibandNodes, RoceState
from .settings import DETECTOR_PATH, detector_args, rdma_settings

FILES = DETECTOR_SOURCE.parent
MEMLOCK_FILES = {
    "/etc/security/limits.d/90-spark-cluster-memlock.conf": "90-spark-cluster-memlock-limits.conf",
    "/etc/systemd/system.conf.d/90-spark-cluster-memlock.conf": "90-spark-cluster-memlock-system.conf",
}
DETECTOR_DIR = DETECTOR_PATH.rsplit("/", 1)[0]
DOCKER_MEMLOCK_DROPIN = "/etc/systemd/system/docker.service.d/90-spark-cluster-memlock.conf"
MODULES_LOAD_FILE = "/etc/modules-load.d/spark-cluster-rdma.conf"
# Problems the network role may still fix in this run (the links get their addresses).
_GID_NOT_YET = ("no_ipv4_gid", "port_down")
def _ensure_memlock_unlimited(paths: Snapshot):
    changed = []
    for dest, name in MEMLOCK_FILES.items():
        changed.append(paths.put(
            name=f"Unlimited memlock: {dest}",
            src=str(FILES / name), dest=dest, user="root", group="root", mode="644",
        ))
    docker_dropin = paths.put(
        name="Unlimited memlock for dockerd",
        src=str(FILES / "90-spark-cluster-memlock-docker.conf"),
        dest=DOCKER_MEMLOCK_DROPIN, user="root", group="root", mode="644",
    )
    systemd.daemon_reload(
        name="Reload systemd for the memlock settings",
        _if=any_changed(*changed, docker_dropin),
    )
    server.shell(
        name="Restart docker with unlimited memlock",
        # A node without a running docker has nothing to restart yet.
        commands=["if systemctl is-active --quiet docker.service; then systemctl restart docker.service; fi"],
        _if=any_changed(docker_dropin),
    )


def _ensure_uverbs(present: list[str]):
    if any(name.startswith("uverbs") for name in present):
        return
    server.modprobe(name="Load ib_uverbs", module="ib_uverbs")
    files.put(
        name="Load ib_uverbs at boot",
        src=str(FILES / "spark-cluster-rdma.conf"), dest=MODULES_LOAD_FILE,
        user="root", group="root", mode="644",
    )
    server.shell(
        name="Check /dev/infiniband/uverbs*",
        commands=[
            "udevadm settle --timeout=10 || true",
            "ls /dev/infiniband/uverbs* >/dev/null 2>&1 || "
            + fail_command(f"{host.name}: /dev/infiniband/uverbs* missing after loading ib_uverbs"),
        ],
    )


MANAGED_PATHS = [DETECTOR_DIR, DETECTOR_PATH, *MEMLOCK_FILES, DOCKER_MEMLOCK_DROPIN]
UVERBS_NODES = want(InfinibandNodes)


def _roce(s):
    return want(RoceState, args=detector_args(s))


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    s = rdma_settings(host.data)
    return [_roce(s), PACKAGES_WANT, snapshot_want(MANAGED_PATHS), UVERBS_NODES]


@deploy("rdma: RoCE for NCCL")
def apply():
    s = rdma_settings(host.data)
    roce = host_fact(_roce(s))

    if roce.get("problem") in ("no_device", "no_python3"):
        fail_host("Check the RoCE devices", f"{host.name}: {roce['message']}")
        return

    ensure_packages("Install the RDMA tools", list(s.rdma_packages))
    paths = Snapshot(MANAGED_PATHS)
    paths.directory(
        name="Directory for the RoCE detector", path=DETECTOR_DIR,
        user="root", group="root", mode="755",
    )
    paths.put(
        name="Install the RoCE detector", src=str(DETECTOR_SOURCE), dest=DETECTOR_PATH,
        user="root", group="root", mode="755",
    )
    _ensure_uverbs(host_fact(UVERBS_NODES))
    _ensure_memlock_unlimited(paths)

    if s.pinned_gid_index is None and roce.get("problem") in _GID_NOT_YET:
        args = [*detector_args(s), "--wait", str(s.roce_gid_wait_s), "--json"]
        server.shell(
            name="Check the RoCE v2 IPv4 GIDs now that the QSFP links have their addresses",
            commands=[" ".join(["python3", DETECTOR_PATH, *map(shlex.quote, args), ">/dev/null"])],
        )
