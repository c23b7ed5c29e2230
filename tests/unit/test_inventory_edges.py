"""spark_cluster/inventory.py at its edges: host names instead of addresses,
the default SSH port, a subnet that sorts below the head's, and the messages
for a node that has no name yet. Each once let a wrong line through the tests
(mutation testing, docs/benchmarks.md): an inventory that a user edits by hand
must be refused, or accepted, with a message that points at the right line."""

import pytest

from spark_cluster.inventory import ALLOW_PLACEHOLDERS_ENV, ClusterInventoryError, define_cluster


def cluster(*changes):
    """Two real-looking nodes (not placeholders), each updated by `changes`."""
    nodes = [
        {"name": "spark-1", "ssh_hostname": "10.1.1.11", "ssh_user": "nvidia", "qsfp_address": "10.0.0.1/24"},
        {"name": "spark-2", "ssh_hostname": "10.1.1.12", "ssh_user": "nvidia", "qsfp_address": "10.0.0.2/24"},
    ]
    for node, change in zip(nodes, changes):
        node.update(change)
    return nodes


# Refusals name the file that called define_cluster: here, this one.
HERE = "tests/unit/test_inventory_edges.py"


def refusal(nodes) -> str:
    with pytest.raises(ClusterInventoryError) as error:
        define_cluster(nodes)
    return str(error.value)


def test_dns_names_are_accepted_as_ssh_hostname(monkeypatch):
    """Most sites reach their Sparks by name: only an RFC 5737 address is a placeholder."""
    monkeypatch.delenv(ALLOW_PLACEHOLDERS_ENV, raising=False)
    hosts = dict(define_cluster(cluster({"ssh_hostname": "spark-1.lan"}, {"ssh_hostname": "spark-2"})))
    assert hosts["spark-1"]["ssh_hostname"] == "spark-1.lan" and hosts["spark-2"]["ssh_hostname"] == "spark-2"


@pytest.mark.parametrize("which, label", [(0, "node #1"), (1, "node #2")])
def test_a_node_without_a_name_is_counted_from_one(which, label):
    """The message points at the node by its place in the file, as a user counts."""
    changes = [{}, {}]
    changes[which] = {"name": ""}
    assert refusal(cluster(*changes)) == (
        f"{HERE}: {label}: missing field 'name': name the node like its host name, e.g. 'spark-1'"
    )


def test_unknown_fields_are_reported_in_a_stable_order():
    """Two typos: the message names the first in alphabetical order, so a
    rerun says the same thing (a set's order would change between runs)."""
    message = refusal(cluster({}, {"ssh_prot": 2222, "qsfp_adress": "10.0.0.2/24"}))
    assert message == f"{HERE}: spark-2: unknown field 'qsfp_adress'"


def test_port_22_written_out_is_the_same_endpoint_as_no_port():
    """`ssh_port: 22` and no ssh_port reach the same sshd: two nodes there are one machine."""
    message = refusal(cluster({"ssh_port": 22}, {"ssh_hostname": "10.1.1.11"}))
    assert message == f"{HERE}: spark-2: field 'ssh_hostname' duplicates spark-1 (10.1.1.11:22)"


def test_a_worker_in_a_lower_subnet_than_the_head_is_refused():
    """Every QSFP address must be in the head's subnet, whichever way the subnets sort."""
    message = refusal(cluster({"qsfp_address": "10.0.1.1/24"}, {"qsfp_address": "10.0.0.2/24"}))
    assert message == f"{HERE}: spark-2: field 'qsfp_address' 10.0.0.2/24 is not in spark-1's QSFP subnet 10.0.1.0/24"


def test_65535_is_the_last_ssh_port():
    """The port range ends at 65535; one more would wrap in the socket layer."""
    assert len(define_cluster(cluster({"ssh_port": 65535}, {}))) == 2
    assert "field 'ssh_port' must be an integer from 1 to 65535, got 65536" in refusal(cluster({"ssh_port": 65536}, {}))


def test_a_management_address_in_the_qsfp_subnet_after_a_dns_name_is_refused():
    """A DNS name cannot be checked before connecting, but it does not end the
    check: the next node's address inside the QSFP subnet is still refused."""
    message = refusal(cluster({"ssh_hostname": "spark-1.lan"}, {"ssh_hostname": "10.0.0.12"}))
    assert "spark-2: field 'ssh_hostname' 10.0.0.12 is inside the QSFP subnet 10.0.0.0/24" in message


def test_a_first_node_that_is_not_a_dict_is_shown_how_to_write_it():
    """The example in the message uses the node's own place: the first node is spark-1."""
    assert "write it as {'name': 'spark-1', ...}" in refusal(["spark-1", cluster()[1]])
