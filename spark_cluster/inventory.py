"""One inventory schema for every cluster, real or lab.

An inventory file lists its nodes once; everything that follows from that
list (ranks, the head, peers, world size) is derived here and nowhere else,
so no file ever holds a copy that can drift.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import click
from pyinfra.api.exceptions import InventoryError
from pyinfra.api import State
from pyinfra.context import ctx_state, state
# pyinfra's own group_data reader: the values it will merge, read the same way.
from pyinfra_cli.inventory import _get_group_data, make_inventory
from pyinfra_cli.exceptions import CliError
from pyinfra_cli.util import parse_cli_arg

from .fabric import fabric
from .settings import SettingError, problems

# A node's own facts; everything else about it is derived or cluster-wide.
# ssh_user is required: the ssh and distribute roles log in from node to node
# as the admin user, so every node must name it (and name the same one).
REQUIRED_FIELDS = ("name", "ssh_hostname", "ssh_user", "qsfp_address")
OPTIONAL_FIELDS = (
    "ssh_port",
    "ssh_key",
    "ssh_known_hosts_file",
    "ssh_strict_host_key_checking",
    "sudo_password",
)
# Fields that must be strings, each with what to write there: the second half
# of the message when the field is missing or of the wrong type.
FIELD_HINTS = {
    "name": "name the node like its host name, e.g. 'spark-1'",
    "ssh_hostname": "set it to this Spark's management address or DNS name, e.g. '192.168.1.21'",
    "ssh_user": "set it to the admin account created at first boot, the same on every node, e.g. 'nvidia'",
    "qsfp_address": "set it to this Spark's QSFP address with its prefix length, e.g. '10.0.0.1/24'",
}
STRING_FIELDS = ("ssh_hostname", "ssh_user")  # name: checked first, it labels the node
SUPPORTED_SIZES = (2, 4)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The shipped inventories use documentation addresses (RFC 5737) as
# placeholders: refusing them means an unedited inventory never sends a packet.
_PLACEHOLDER_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
# Set by tools that only read an inventory (unit tests, `--list`), never connect.
ALLOW_PLACEHOLDERS_ENV = "SPARK_CLUSTER_READ_ONLY_INVENTORY"
# Inventory files inside the checkout are named relative to it, as a user types them.
_REPO = Path(__file__).resolve().parents[1]
# The nodes' sudo password for one run, set by `spark-cluster` (asked once, or
# read from a mode-600 file) for every pyinfra and pytest it starts: an
# environment variable, never a command line. It wins over an inventory's
# sudo_password (the lab's), as the verify suite's --sudo-password-file does.
SUDO_PASSWORD_ENV = "SPARK_SUDO_PASSWORD"


class ClusterInventoryError(InventoryError, CliError):
    """A one-line complaint about the inventory, raised before any host is touched.

    It is a CliError too: pyinfra's CLI prints a plain PyinfraError with the
    innermost frame outside pyinfra as its place (this module, never the
    user's file), and prints a CliError as the message alone, which names
    the inventory file itself.
    """


class _Refusal(Exception):
    """One problem with the nodes, before the file it is in is known."""


def _fail(message: str) -> None:
    raise _Refusal(message)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_node_fields(index: int, node: Any) -> None:
    place = f"node #{index + 1}"
    if not isinstance(node, dict):
        _fail(f"{place}: must be a dict of fields, got {node!r}: write it as {{'name': 'spark-{index + 1}', ...}}")
    name = node.get("name")
    if not _blank(name) and not isinstance(name, str):
        _fail(f"{place}: field 'name' must be a string, got {name!r}: {FIELD_HINTS['name']}")
    label = place if _blank(name) else name
    for field in REQUIRED_FIELDS:
        if _blank(node.get(field)):
            _fail(f"{label}: missing field '{field}': {FIELD_HINTS[field]}")
    unknown = set(node) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        _fail(f"{label}: unknown field '{sorted(unknown, key=str)[0]}'")
    for field in STRING_FIELDS:
        if not isinstance(node[field], str):
            _fail(f"{label}: field '{field}' must be a string, got {node[field]!r}: {FIELD_HINTS[field]}")
    if not _NAME.match(name):
        _fail(f"{label}: field 'name' must be a lowercase host name, got {name!r}")
    if "ssh_port" in node:
        _check_port(label, node["ssh_port"])
    if _is_placeholder(node["ssh_hostname"]) and not os.environ.get(ALLOW_PLACEHOLDERS_ENV):
        _fail(
            f"{label}: field 'ssh_hostname' is still the placeholder {node['ssh_hostname']}: "
            "set it to this Spark's management address"
        )


def _check_port(label: str, port: Any) -> None:
    # bool is an int to Python and a float or "2222" is not a port to paramiko;
    # a port above 65535 wraps (70000 reaches 4464), so refuse it here.
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        _fail(
            f"{label}: field 'ssh_port' must be an integer from 1 to 65535, got {port!r}: "
            "write the port this Spark's sshd listens on as a plain number, or leave ssh_port out for 22"
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


def _endpoint(node: dict[str, Any]) -> tuple[str, int]:
    """Where SSH reaches a node, written one way: an address in its canonical
    form, a DNS name in lower case without the root dot, 22 when no port is given."""
    hostname = node["ssh_hostname"]
    try:
        hostname = str(ipaddress.ip_address(hostname))
    except ValueError:
        hostname = hostname.lower().rstrip(".")
    return hostname, node.get("ssh_port", 22)


def _check_endpoints_unique(nodes: list[dict[str, Any]]) -> None:
    # Lab nodes share 127.0.0.1 and differ by port; real nodes differ by address.
    seen: dict[tuple, str] = {}
    for node in nodes:
        endpoint = _endpoint(node)
        if endpoint in seen:
            _fail(
                f"{node['name']}: field 'ssh_hostname' duplicates {seen[endpoint]} "
                f"({endpoint[0]}:{endpoint[1]})"
            )
        seen[endpoint] = node["name"]


def _check_one_admin(nodes: list[dict[str, Any]]) -> None:
    if len({node["ssh_user"] for node in nodes}) > 1:
        users = ", ".join(f"{node['name']}: {node['ssh_user']!r}" for node in nodes)
        _fail(
            f"field 'ssh_user' differs between nodes ({users}): the ssh and distribute roles log in "
            "from one Spark to another as one admin user: use the same admin account on every node"
        )


def _check_management_outside_qsfp(nodes: list[dict[str, Any]], qsfp_subnet: ipaddress.IPv4Network) -> None:
    # The QSFP control link gets a connected route to the QSFP subnet (every
    # node's, by now the head's): a management address inside it would be routed over the QSFP link
    # once netplan applies, cutting the deploy's own SSH session. A DNS name
    # cannot be checked here (nothing is looked up before the deploy connects),
    # so only addresses are.
    for node in nodes:
        try:
            address = ipaddress.ip_address(node["ssh_hostname"])
        except ValueError:
            continue
        if address in qsfp_subnet:
            _fail(
                f"{node['name']}: field 'ssh_hostname' {address} is inside the QSFP subnet {qsfp_subnet}: "
                "the QSFP link would take the route to the management network and cut the deploy's SSH session; "
                "give the QSFP addresses a subnet of their own (e.g. 10.0.0.0/24)"
            )


def _validated(nodes: Iterable[Any]) -> list[dict[str, Any]]:
    nodes = list(nodes)
    if len(nodes) not in SUPPORTED_SIZES:
        _fail(f"a cluster has {' or '.join(map(str, SUPPORTED_SIZES))} nodes, got {len(nodes)}")
    for index, node in enumerate(nodes):
        _check_node_fields(index, node)
    nodes = [dict(node) for node in nodes]
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
    _check_one_admin(nodes)
    _check_management_outside_qsfp(nodes, interfaces[head].network)
    return nodes


def validate_nodes(nodes: Iterable[dict[str, Any]], source: str = "inventory") -> list[dict[str, Any]]:
    """The nodes, checked; a problem raises ClusterInventoryError naming `source` (the inventory file)."""
    try:
        return _validated(nodes)
    except _Refusal as refusal:
        raise ClusterInventoryError(f"{source}: {refusal}") from None


def _file_of(frame) -> str:
    """The file `frame` runs, relative to the checkout when inside it."""
    filename = frame.f_code.co_filename
    if filename.startswith("<"):  # <string>, <stdin>: no file to name
        return filename
    path = Path(os.path.abspath(filename)).resolve()
    try:
        return str(path.relative_to(_REPO))
    except ValueError:
        return str(path)


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
    password = os.environ.get(SUDO_PASSWORD_ENV) or node.get("sudo_password")
    if password:
        data["_sudo_password"] = password
    return data


def define_cluster(nodes: Iterable[dict[str, Any]], **overrides: Any) -> list[tuple[str, dict]]:
    """Validate an inventory and return pyinfra's host list with derived data.

    `overrides` are cluster-wide values that win over group_data (the lab uses
    them to select its stand-in engine image); keep real clusters' values in
    group_data/all.py. A refusal names the file that called this function
    (the inventory the user wrote) and the node.
    """
    source = _file_of(sys._getframe(1))
    nodes = validate_nodes(nodes, source)
    topology = derive_topology(nodes)
    hosts = [
        (node["name"], {**overrides, **_pyinfra_host_data(node), **topology[node["name"]]})
        for node in nodes
    ]
    layers = cli_layers(source)
    if layers is not None:
        check_settings(hosts, source, *layers)
    return hosts


def cli_layers(inventory_file: str) -> tuple[list[tuple[str, dict]], dict] | None:
    """([(group_data file, its values)], --data values) as pyinfra's CLI will
    merge them over this inventory, or None outside the CLI (unit tests, the
    verify suite: they check the merged data when they read it).

    pyinfra reads group_data and --data only after the inventory file, then
    connects: reading them here is what lets a typo stop the run before any
    host is touched. Only group_data/all.py and the group named after the
    inventory file (spark2.py for inventory/spark2.py) apply to our hosts."""
    context = click.get_current_context(silent=True)
    if context is None or "inventory" not in context.params:
        return None
    cwd = Path(context.params.get("chdir") or getattr(state, "cwd", None) or os.getcwd())
    inventory = Path(context.params["inventory"])
    folders = [cwd / "group_data", (cwd / inventory).resolve().parent / "group_data",
               *map(Path, context.params.get("group_data") or ())]
    require_group_data(folders, cwd)
    groups = []
    for folder in dict.fromkeys(folders):  # in order, once each
        found = _get_group_data(str(folder)) if folder.is_dir() else {}
        groups += [(_relative(folder / f"{group}.py"), found[group]) for group in ("all", inventory.stem)
                   if group in found]
    data = dict(arg.split("=", 1) for arg in context.params.get("data") or () if "=" in arg)
    return groups, {key: parse_cli_arg(value) for key, value in data.items()}


def require_group_data(folders: Iterable[Path], cwd: Path) -> None:
    """Refuse a run that would read no group_data/all.py: pyinfra looks only in
    the current directory, beside the inventory and in --group-data, and a
    missing folder silently means every setting's default (another image,
    another network mode) rather than an error."""
    folders = list(folders)
    if any((Path(folder) / "all.py").is_file() for folder in folders):
        return
    raise ClusterInventoryError(
        f"found no group_data/all.py in {', '.join(str(f) for f in dict.fromkeys(folders))} (run from {cwd}): "
        f"pyinfra reads group_data from the current directory and beside the inventory; "
        f"run from the checkout (cd {_REPO}) or pass --group-data {_REPO / 'group_data'}")


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_REPO))
    except ValueError:
        return str(path)


def check_settings(hosts: list[tuple[str, dict]], source: str, groups: list[tuple[str, dict]],
                   data: dict[str, Any]) -> None:
    """Every node's merged settings (group_data < inventory < --data, as pyinfra
    merges them) checked against spark_cluster.schema and its fabric derived,
    before pyinfra connects; a problem raises ClusterInventoryError naming
    where the offending key was set and, for a node's fabric, the node."""
    for name, host_data in hosts:
        merged: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for place, values in [*groups, (source, host_data), ("--data", data)]:
            merged.update(values)
            origin.update(dict.fromkeys(values, place))
        found = problems(merged)
        if found:
            key, message = found[0]
            raise ClusterInventoryError(f"{origin.get(key, 'group_data/all.py')}: {message}")
        try:
            fabric(merged)
        except SettingError as error:
            raise ClusterInventoryError(f"{source}: {name}: {error}") from None


def parse_data_args(pairs: Iterable[str]) -> dict[str, Any]:
    """--data KEY=VALUE pairs as pyinfra's CLI reads them (parse_cli_arg:
    true/false, integers, JSON, else the string); later pairs win."""
    data = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key:
            raise ClusterInventoryError(f"--data {pair!r}: expected KEY=VALUE, e.g. --data serving_wait_ready=False")
        data[key] = parse_cli_arg(value)
    return data


def group_data_folders(group_data: Iterable[str], cwd: str | os.PathLike | None = None) -> list[str]:
    """--group-data folders as absolute paths (relative ones from `cwd`, where
    the user typed them); a folder that is not there is refused, not skipped."""
    base = Path(cwd or os.getcwd())
    folders = []
    for folder in group_data or ():
        path = Path(os.path.expanduser(str(folder)))
        path = path if path.is_absolute() else base / path
        if not path.is_dir():
            raise ClusterInventoryError(f"--group-data {folder}: no such folder ({path}); give a folder of group_data files")
        folders.append(str(path.resolve()))
    return folders


def load_hosts(inventory_file: str | os.PathLike, repo_root: str | os.PathLike, data: Iterable[str] = (),
               group_data: Iterable[str] = ()) -> list[tuple[str, dict[str, Any]]]:
    """[(node name, merged host data)] in rank order (the head first), read as
    `pyinfra INVENTORY ... --data K=V --group-data DIR` run from `repo_root`
    reads them (group_data < inventory < --data), with the deploy's settings
    check. Nothing connects: the inventory is only executed and merged."""
    repo_root = str(Path(repo_root).resolve())
    path = Path(os.path.expanduser(str(inventory_file)))
    if not path.is_absolute():
        path = Path(repo_root) / path
    if not path.is_file():
        raise FileNotFoundError(f"inventory file not found: {path}")
    override = parse_data_args(data)
    folders = group_data_folders(group_data)
    require_group_data([Path(repo_root) / "group_data", path.resolve().parent / "group_data", *map(Path, folders)],
                       Path(repo_root))
    # Inventories import spark_cluster / inventory.lab_common from the repo.
    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    # pyinfra's exec_file records the file on the current State.
    with ctx_state.use(State()):
        inventory = make_inventory(str(path), override_data=override, cwd=repo_root,
                                   group_data_directories=folders or None)
    hosts = [(host.name, dict(host.data.dict())) for host in inventory]
    hosts.sort(key=lambda item: item[1].get("node_rank", 0))
    for name, merged in hosts:
        found = problems(merged)
        if found:
            raise ClusterInventoryError(f"{name}: {found[0][1]}")
        try:
            fabric(merged)
        except SettingError as error:
            raise ClusterInventoryError(f"{name}: {error}") from None
    return hosts
