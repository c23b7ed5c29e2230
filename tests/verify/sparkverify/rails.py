"""The node's QSFP fabric as the deploy derived it (spark_cluster.fabric: its
rails, links and control address), its settings as the roles read them, and what the checks read per rail on a node.

The checks never ask which network mode is on: they walk the fabric's links
and rails, and check a bond only where the fabric has one."""

from __future__ import annotations

import shlex

from spark_cluster.fabric import Fabric, Rail, fabric
from spark_cluster.settings import SettingError

from .inventory import NodeSpec
from .parse import parse_gid_table, parse_hca_list, parse_link_rate
from .remote import VerifyEnvironmentError


def node_fabric(spec: NodeSpec) -> Fabric:
    """The same fabric every role derived for this node; an inventory the
    roles would refuse fails the check in one line."""
    try:
        return fabric(spec.data)
    except SettingError as error:
        raise VerifyEnvironmentError(f"{spec.name}: {error}; fix: correct the inventory or group_data") from None


def network_setting(spec: NodeSpec, key: str):
    """A network setting as the role reads it (spark_cluster.schema's default where unset)."""
    return getattr(spec.settings, key)


def min_link_fraction(spec: NodeSpec) -> float:
    """The share of the link rate each rail must reach (checked by the schema: 0 to 1)."""
    return float(spec.settings.rdma_min_link_fraction)


def rail_ip(fab: Fabric, rail: Rail) -> str:
    """The IPv4 address whose RoCE v2 GID this rail's device carries: its own
    address, or the control address where one link (a bond) holds it."""
    return rail.ip or fab.control_ip


def hca_ports(nccl_ib_hca: str) -> dict[str, int]:
    """device -> IB port as NCCL_IB_HCA names them (port 1 unless `dev:port`)."""
    return dict(parse_hca_list(nccl_ib_hca))


def port_dir(device: str, port: int) -> str:
    return f"/sys/class/infiniband/{device}/ports/{port}"


def gid_table(node, device: str, port: int) -> dict[int, tuple[str, str]]:
    """index -> (GID, type) of a device's port, {} when it has none."""
    base = shlex.quote(port_dir(device, port))
    # One read for the whole table; unset entries' types answer EINVAL (-s hides it).
    shown = node.run(f"grep -s -H . {base}/gids/* {base}/gid_attrs/types/*")
    return parse_gid_table(shown.stdout)


def link_rate(node, device: str, port: int) -> tuple[float | None, str]:
    """(Gb/s, what sysfs said) of a device's port."""
    read = node.run(f"cat {shlex.quote(port_dir(device, port) + '/rate')}")
    text = read.stdout.strip() if read.ok else f"unreadable ({read.brief})"
    return (parse_link_rate(text) if read.ok else None), text
