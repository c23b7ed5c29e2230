"""Inventories a new user could write by hand that define_cluster must refuse
before any connection, each with its whole one-line message: the file that
called define_cluster (this one), the node or field, and what to write instead.

Every case in REFUSED was accepted (or crashed with a traceback) before these
checks existed: a port of 70000 reached port 4464, "2222" slipped past the
duplicate-endpoint check, a QSFP subnet over the management LAN cut the
deploy's own SSH session when netplan applied."""

import pytest

from inventory.lab_common import lab_cluster
from spark_cluster.inventory import ClusterInventoryError, check_settings, define_cluster

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


# --- cluster-wide settings: group_data, the inventory's values, --data ------
# check_settings is what define_cluster runs under pyinfra's CLI, before it
# connects (test_cli_refuses_before_connecting runs the CLI itself).
GROUP_DATA_FILE = "group_data/all.py"
VLLM_IMAGE = {"serving_image": "vllm-ds4-sm121:latest", "serving_image_entrypoint_is_engine": True}


def check(group=None, data=None, hosts=None):
    """check_settings over `hosts` (cluster()'s, on 10.0.x subnets, by default)."""
    base = {**VLLM_IMAGE, **({} if hosts else {"qsfp_subnets": ["10.0.0.0/24", "10.0.1.0/24"]})}
    hosts = hosts or define_cluster(cluster())
    check_settings(hosts, HERE, [(GROUP_DATA_FILE, {**base, **(group or {})})], data or {})


SETTINGS_REFUSED = [
    ("typo in group_data", {"serving_engin": "sglang"}, None,
     f"{GROUP_DATA_FILE}: unknown setting 'serving_engin': did you mean serving_engine?"),
    ("typo in --data", None, {"mtuu": 1500}, "--data: unknown setting 'mtuu': did you mean mtu?"),
    ("a key like nothing we know", {"colour": "blue"}, None,
     f"{GROUP_DATA_FILE}: unknown setting 'colour': see docs/settings.md for every setting"),
    ("an engine we do not know", {"serving_engine": "tgi"}, None,
     f"{GROUP_DATA_FILE}: 'serving_engine' must be one of 'vllm', 'sglang', got 'tgi'"),
    ("sglang under the vLLM image", {"serving_engine": "sglang"}, None,
     f"{GROUP_DATA_FILE}: 'serving_image' 'vllm-ds4-sm121:latest' is a vLLM image but 'serving_engine' is 'sglang': "
     "set serving_image to a SGLang image (or None for lmsysorg/sglang:spark) and "
     "serving_image_entrypoint_is_engine to match it"),
    ("sglang from --data under the vLLM image", None, {"serving_engine": "sglang"},
     f"{GROUP_DATA_FILE}: 'serving_image' 'vllm-ds4-sm121:latest' is a vLLM image but 'serving_engine' is 'sglang': "
     "set serving_image to a SGLang image (or None for lmsysorg/sglang:spark) and "
     "serving_image_entrypoint_is_engine to match it"),
    ("an entrypoint flag for the default image", {"serving_image": None}, None,
     f"{GROUP_DATA_FILE}: 'serving_image_entrypoint_is_engine' is True but serving_image is None (vLLM's default "
     "nvcr.io/nvidia/vllm:26.04-py3, whose entrypoint is known): set serving_image to the image it describes, "
     "or remove serving_image_entrypoint_is_engine"),
    ("two settings on one port", {"master_port": 8000}, None,
     f"{GROUP_DATA_FILE}: 'master_port' 8000 is also 'api_port': the head serves both on one address; "
     "give each of api_port, master_port and serving_watch_port its own port"),
    ("a port from --data as text", None, {"api_port": "8000"},
     "--data: 'api_port' must be an integer from 1 to 65535, got '8000'"),
    ("a port above 65535", {"serving_watch_port": 70000}, None,
     f"{GROUP_DATA_FILE}: 'serving_watch_port' must be an integer from 1 to 65535, got 70000"),
    ("True as a timeout", {"serving_start_timeout_s": True}, None,
     f"{GROUP_DATA_FILE}: 'serving_start_timeout_s' must be an integer of at least 1, got True"),
    ("a network mode we do not know", {"network_mode": "bridge"}, None,
     f"{GROUP_DATA_FILE}: 'network_mode' must be one of 'dual_subnet', 'bond', got 'bridge'"),
    ("a yes/no as text", {"qsfp_takeover": "yes"}, None,
     f"{GROUP_DATA_FILE}: 'qsfp_takeover' must be True or False, got 'yes'"),
    ("a memory share above 1", {"serving_memory_check": 80}, None,
     f"{GROUP_DATA_FILE}: 'serving_memory_check' must be a number from 0 to 1 or None, got 80"),
    ("ports as one number", {"qsfp_ports": 1}, None,
     f"{GROUP_DATA_FILE}: 'qsfp_ports' must be a list of integers, got 1"),
    ("a subnet over the management LAN", {"qsfp_subnets": ["10.0.0.0/24", "192.168.1.0/24"]}, None,
     f"{HERE}: spark-1: group_data: 'qsfp_subnets' 192.168.1.0/24 holds this node's management address "
     "192.168.1.21: the QSFP route would cut the deploy's SSH session; give the rails subnets of their own"),
]


@pytest.mark.parametrize("group, data, message", [case[1:] for case in SETTINGS_REFUSED],
                         ids=[case[0] for case in SETTINGS_REFUSED])
def test_bad_settings_are_refused_in_one_line_naming_where_they_were_set(group, data, message):
    with pytest.raises(ClusterInventoryError) as error:
        check(group, data)
    assert str(error.value) == message


def test_the_inventory_file_is_named_for_the_values_it_sets():
    hosts = define_cluster(cluster(), serving_watch_interval_s=0)
    with pytest.raises(ClusterInventoryError) as error:
        check(hosts=hosts)
    assert str(error.value) == f"{HERE}: 'serving_watch_interval_s' must be an integer of at least 1, got 0"


def test_the_shipped_settings_and_the_labs_pass():
    check()
    check(hosts=lab_cluster(2))
    check(hosts=lab_cluster(2, network_mode="bond"))
    check({"serving_engine": "sglang", "serving_image": None, "serving_image_entrypoint_is_engine": None})
