"""Inventories a new user could write by hand that define_cluster must refuse
before any connection, each with its whole one-line message: the file that
called define_cluster (this one), the node or field, and what to write instead.

Every case in REFUSED was accepted (or crashed with a traceback) before these
checks existed: a port of 70000 reached port 4464, "2222" slipped past the
duplicate-endpoint check, a QSFP subnet over the management LAN cut the
deploy's own SSH session when netplan applied."""

import pytest

from inventory.lab_common import lab_cluster
from spark_cluster.inventory import ClusterInventoryError, define_cluster

HERE = "tests/unit/test_bad_input.py"

PORT_FIX = "write the port this Spark's sshd listens on as a plain number, or leave ssh_port out for 22"
USER_FIX = "set it to the admin account created at first boot, the same on every node, e.g. 'nvidia'"
HOSTNAME_FIX = "set it to this Spark's management address or DNS name, e.g. '192.168.1.21'"
NAME_FIX = "name the node like its host name, e.g. 'spark-1'"
BOND_FIX = (
    "the QSFP link would take the route to the management network and cut the deploy's SSH session; "
    "give the QSFP addresses a subnet of their own (e.g. 10.0.0.0/24)"
)


def cluster(first=None, second=None, drop=()):
    """Two nodes that define_cluster accepts, then `first`/`second` merged into
    them and the (node index, field) pairs in `drop` removed."""
    nodes = [
        {"name": "spark-1", "ssh_hostname": "192.168.1.21", "ssh_user": "nvidia", "qsfp_address": "10.0.0.1/24"},
        {"name": "spark-2", "ssh_hostname": "192.168.1.22", "ssh_user": "nvidia", "qsfp_address": "10.0.0.2/24"},
    ]
    nodes[0].update(first or {})
    nodes[1].update(second or {})
    for index, field in drop:
        del nodes[index][field]
    return nodes


def port_message(node, shown):
    return f"{HERE}: {node}: field 'ssh_port' must be an integer from 1 to 65535, got {shown}: {PORT_FIX}"


# (id, nodes, the exact message)
REFUSED = [
    ("port above 65535", cluster(second={"ssh_port": 70000}), port_message("spark-2", "70000")),
    ("port 0", cluster(second={"ssh_port": 0}), port_message("spark-2", "0")),
    ("port True", cluster(second={"ssh_port": True}), port_message("spark-2", "True")),
    ("port as a string", cluster(second={"ssh_port": "2222"}), port_message("spark-2", "'2222'")),
    ("port as a float", cluster(second={"ssh_port": 22.5}), port_message("spark-2", "22.5")),
    ("port None", cluster(first={"ssh_port": None}), port_message("spark-1", "None")),
    ("same endpoint, port 2222 and '2222'",
     cluster(first={"ssh_hostname": "127.0.0.1", "ssh_port": 2222},
             second={"ssh_hostname": "127.0.0.1", "ssh_port": "2222"}),
     port_message("spark-2", "'2222'")),
    ("same DNS name in other case and with the root dot",
     cluster(first={"ssh_hostname": "Spark-1.LAN"}, second={"ssh_hostname": "spark-1.lan."}),
     f"{HERE}: spark-2: field 'ssh_hostname' duplicates spark-1 (spark-1.lan:22)"),
    ("same IPv6 address written two ways",
     cluster(first={"ssh_hostname": "fd00::1"}, second={"ssh_hostname": "fd00:0:0::1"}),
     f"{HERE}: spark-2: field 'ssh_hostname' duplicates spark-1 (fd00::1:22)"),
    ("name is a number", cluster(second={"name": 12}),
     f"{HERE}: node #2: field 'name' must be a string, got 12: {NAME_FIX}"),
    ("name is None", cluster(second={"name": None}), f"{HERE}: node #2: missing field 'name': {NAME_FIX}"),
    ("node is not a dict", [cluster()[0], "spark-2"],
     f"{HERE}: node #2: must be a dict of fields, got 'spark-2': write it as {{'name': 'spark-2', ...}}"),
    ("ssh_hostname is a number", cluster(second={"ssh_hostname": 12}),
     f"{HERE}: spark-2: field 'ssh_hostname' must be a string, got 12: {HOSTNAME_FIX}"),
    ("ssh_user empty", cluster(second={"ssh_user": ""}), f"{HERE}: spark-2: missing field 'ssh_user': {USER_FIX}"),
    ("ssh_user absent", cluster(drop=[(1, "ssh_user")]), f"{HERE}: spark-2: missing field 'ssh_user': {USER_FIX}"),
    ("ssh_user is a number", cluster(first={"ssh_user": 1000}),
     f"{HERE}: spark-1: field 'ssh_user' must be a string, got 1000: {USER_FIX}"),
    ("two admin users", cluster(second={"ssh_user": "admin"}),
     f"{HERE}: field 'ssh_user' differs between nodes (spark-1: 'nvidia', spark-2: 'admin'): the ssh and "
     "distribute roles log in from one Spark to another as one admin user: use the same admin account on every node"),
    ("QSFP subnet holds the management LAN",
     cluster(first={"ssh_hostname": "192.168.1.20", "qsfp_address": "192.168.1.11/24"},
             second={"ssh_hostname": "192.168.1.21", "qsfp_address": "192.168.1.12/24"}),
     f"{HERE}: spark-1: field 'ssh_hostname' 192.168.1.20 is inside the QSFP subnet 192.168.1.0/24: {BOND_FIX}"),
    ("one node's management address in the QSFP subnet",
     cluster(second={"ssh_hostname": "10.0.0.200"}),
     f"{HERE}: spark-2: field 'ssh_hostname' 10.0.0.200 is inside the QSFP subnet 10.0.0.0/24: {BOND_FIX}"),
]


@pytest.mark.parametrize("nodes, message", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_bad_input_is_refused_in_one_line_naming_file_node_and_fix(nodes, message):
    with pytest.raises(ClusterInventoryError) as error:
        define_cluster(nodes)
    assert str(error.value) == message


# What must keep passing: the lab's shape, the port's bounds, DNS names
# (their addresses are unknown before connecting, so the QSFP check skips them).
ACCEPTED = [
    ("lab: one address, two ports, QSFP 10.0.0.x/24",
     cluster(first={"ssh_hostname": "127.0.0.1", "ssh_port": 2221},
             second={"ssh_hostname": "127.0.0.1", "ssh_port": 2222})),
    ("ports 1 and 65535", cluster(first={"ssh_port": 1}, second={"ssh_port": 65535})),
    ("DNS names", cluster(first={"ssh_hostname": "spark-1.lan"}, second={"ssh_hostname": "spark-2"})),
    ("IPv6 management addresses", cluster(first={"ssh_hostname": "fd00::1"}, second={"ssh_hostname": "fd00::2"})),
    ("management LAN next to the QSFP subnet",
     cluster(first={"ssh_hostname": "10.0.1.1"}, second={"ssh_hostname": "10.0.1.2"})),
]


@pytest.mark.parametrize("nodes", [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_good_input_is_accepted(nodes):
    assert [name for name, _ in define_cluster(nodes)] == ["spark-1", "spark-2"]


@pytest.mark.parametrize("count", [2, 4])
def test_the_lab_inventories_pass(count):
    hosts = dict(lab_cluster(count))
    assert sorted(hosts) == [f"spark-{i}" for i in range(1, count + 1)]
    assert {data["ssh_hostname"] for data in hosts.values()} == {"127.0.0.1"}


def test_a_refusal_names_the_file_that_called_define_cluster():
    """The lab's nodes come through inventory/lab_common.py: that file is named, not this package's module."""
    with pytest.raises(ClusterInventoryError) as error:
        lab_cluster(3)
    assert str(error.value) == "inventory/lab_common.py: a cluster has 2 or 4 nodes, got 3"
