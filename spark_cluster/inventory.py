"""One inventory schema for every cluster, real or lab.

An inventory file lists its nodes once; everything that follows from that
list (ranks, the head, peers, world size) is derived here and nowhere else,
so no file ever holds a copy that can drift.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Iterable

from pyinfra.api.exceptions import InventoryError

# A node's own facts; everything else about it is derived or cluster-wide.
REQUIRED_FIELDS = ("name", "ssh_hostname", "qsfp_address")
OPTIONAL_FIELDS = (
    "ssh_port",
    "ssh_user",
    "ssh_key",
    "ssh_known_hosts_file",
    "ssh_strict_host_key_checking",
    "sudo_password",
)
SUPPORTED_SIZES = (2, 4)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The shipped inventories use documentation addresses (RFC 5737) as
# placeholders: refusing them means an unedited inventory never sends a packet.
_PLACEHOLDER_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
# Set by tools that only read an inventory (unit tests, `--list`), never connect.
ALLOW_PLACEHOLDERS_ENV = "SPARK_CLUSTER_READ_ONLY_INVENTORY"


class ClusterInventoryError(InventoryError):
    """A one-line complaint about the inventory, raised before any host is touched."""


def _fail(message: str) -> None:
    raise ClusterInventoryError(f"inventory: {message}")


def _check_node_fields(index: int, node: dict[str, Any]) -> None:
    label = node.get("name") or f"node #{index + 1}"
    for field in REQUIRED_FIELDS:
        if node.get(field) in (None, ""):
            _fail(f"{label}: missing field '{field}'")
    unknown = set(node) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        _fail(f"{label}: unknown field '{sorted(unknown)[0]}'")
    if not _NAME.match(node["name"]):
        _fail(f"{label}: field 'name' must be a lowercase host name, got {node['name']!r}")
    if _is_placeholder(node["ssh_hostname"]) and not os.environ.get(ALLOW_PLACEHOLDERS_ENV):
        _fail(
            f"{label}: field 'ssh_hostname' is still the placeholder {node['ssh_hostname']}: "
            "set it to this Spark's management address"
        )


def _is_placeholder(hostname: str) -> bool:
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return any(address in net for net in _PLACEHOLDER_NETS)


def _parse_qsfp(node: dict[str, Any]) -> ipaddress.IPv4Interface:
    raw = node["qsfp_address"]
    if "/" not in str(raw):
        _fail(f"{node['name']}: field 'qsfp_address' needs a prefix length (e.g. 10.0.0.1/24), got {raw!r}")
    try:
        iface = ipaddress.IPv4Interface(raw)
    except ValueError:
        _fail(f"{node['name']}: field 'qsfp_address' is not an IPv4 address/prefix: {raw!r}")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        _fail(f"{node['name']}: field 'qsfp_address' {raw} is the network or broadcast address")
    return iface


def _check_unique(nodes: list[dict[str, Any]], field: str, key=lambda value: value) -> None:
    seen: dict[Any, str] = {}
    for node in nodes:
        if field not in node:
            continue
        value = key(node[field])
        if value in seen:
            _fail(f"{node['name']}: field '{field}' duplicates {seen[value]} ({node[field]})")
        seen[value] = node["name"]


def _check_endpoints_unique(nodes: list[dict[str, Any]]) -> None:
    # Lab nodes share 127.0.0.1 and differ by port; real nodes differ by address.
    seen: dict[tuple, str] = {}
    for node in nodes:
        endpoint = (node["ssh_hostname"], node.get("ssh_port", 22))
        if endpoint in seen:
            _fail(
                f"{node['name']}: field 'ssh_hostname' duplicates {seen[endpoint]} "
                f"({endpoint[0]}:{endpoint[1]})"
            )
        seen[endpoint] = node["name"]


def validate_nodes(nodes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    nodes = [dict(node) for node in nodes]
    if len(nodes) not in SUPPORTED_SIZES:
        _fail(f"a cluster has {' or '.join(map(str, SUPPORTED_SIZES))} nodes, got {len(nodes)}")
    for index, node in enumerate(nodes):
        _check_node_fields(index, node)
    _check_unique(nodes, "name")
    _check_endpoints_unique(nodes)
    interfaces = {node["name"]: _parse_qsfp(node) for node in nodes}
    _check_unique(nodes, "qsfp_address", key=lambda raw: ipaddress.IPv4Interface(raw).ip)
    head = nodes[0]["name"]
    for node in nodes[1:]:
        if interfaces[node["name"]].network != interfaces[head].network:
            _fail(
                f"{node['name']}: field 'qsfp_address' {node['qsfp_address']} is not in "
                f"{head}'s QSFP subnet {interfaces[head].network}"
            )
    return nodes


def derive_topology(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-node derived data: the first node listed is the head (rank 0)."""
    members = [
        {
            "name": node["name"],
            "qsfp_ip": str(ipaddress.IPv4Interface(node["qsfp_address"]).ip),
            "rank": rank,
        }
        for rank, node in enumerate(nodes)
    ]
    head = members[0]
    prefix = ipaddress.IPv4Interface(nodes[0]["qsfp_address"]).network.prefixlen
    topology = {}
    for member in members:
        topology[member["name"]] = {
            "node_rank": member["rank"],
            "is_head": member["rank"] == 0,
            "world_size": len(members),
            "head_name": head["name"],
            "head_qsfp_ip": head["qsfp_ip"],
            "qsfp_ip": member["qsfp_ip"],
            "qsfp_prefixlen": prefix,
            "cluster_members": members,
            "peers": [peer for peer in members if peer["name"] != member["name"]],
        }
    return topology


def _pyinfra_host_data(node: dict[str, Any]) -> dict[str, Any]:
    data = {key: value for key, value in node.items() if key not in ("name", "sudo_password")}
    if "sudo_password" in node:
        data["_sudo_password"] = node["sudo_password"]
    return data


def define_cluster(nodes: Iterable[dict[str, Any]], **overrides: Any) -> list[tuple[str, dict]]:
    """Validate an inventory and return pyinfra's host list with derived data.

    `overrides` are cluster-wide values that win over group_data (the lab uses
    them to select its stand-in engine image); keep real clusters' values in
    group_data/all.py.
    """
    nodes = validate_nodes(nodes)
    topology = derive_topology(nodes)
    return [
        (node["name"], {**overrides, **_pyinfra_host_data(node), **topology[node["name"]]})
        for node in nodes
    ]
