"""spark_cluster/uninstall.py (pure): what our own netplan file configures,
read back from what the network role renders, and which of it a node still
carries."""

from collect_ops import GROUP_DATA, cluster

from roles.network.facts import parse_links
from roles.network.netplan import render_netplan
from roles.network.settings import network_settings
from spark_cluster.uninstall import (
    addresses_to_release,
    bonds_to_delete,
    netplan_links,
    parse_left_behind,
    release_args,
)

RAILS = ["enp1s0f1np1", "enP2p1s0f1np1"]


def settings(**overrides):
    name, data = cluster(2, **overrides)[0]
    return network_settings({**GROUP_DATA, **data})


def test_our_dual_subnet_file_reads_back_as_its_rails_and_addresses():
    configured = netplan_links(render_netplan(settings()).splitlines())
    assert configured == {"netdevs": RAILS, "addresses": [(RAILS[0], "10.0.0.1/24"), (RAILS[1], "10.0.1.1/24")],
                          "bonds": []}


def test_our_bond_file_reads_back_as_the_bond_over_the_rails():
    configured = netplan_links(render_netplan(settings(network_mode="bond")).splitlines())
    assert configured == {"netdevs": RAILS, "addresses": [("bond0", "10.0.0.1/24")], "bonds": ["bond0"]}


def test_an_absent_or_unreadable_file_configures_nothing():
    empty = {"netdevs": [], "addresses": [], "bonds": []}
    assert netplan_links(None) == empty
    assert netplan_links(["network: [unclosed"]) == empty
    assert netplan_links(["- a list"]) == empty


def test_an_address_with_options_is_read_by_its_address():
    lines = ["network:", "  ethernets:", "    enp1s0f1np1:", "      addresses:", "        - 10.0.0.1/24:",
             "            label: rail0"]
    assert netplan_links(lines)["addresses"] == [("enp1s0f1np1", "10.0.0.1/24")]


def test_only_addresses_a_netdev_still_carries_are_released():
    live = parse_links([f"link={RAILS[0]} present=1", f"address=10.0.0.1/24 on={RAILS[0]}",
                        f"link={RAILS[1]} present=1"])
    configured = [(RAILS[0], "10.0.0.1/24"), (RAILS[1], "10.0.1.1/24"), (RAILS[0], "10.0.0.1/24")]
    assert addresses_to_release(configured, live) == [(RAILS[0], "10.0.0.1/24")]
    assert addresses_to_release(configured, {"links": {}}) == []


def test_only_a_bond_that_exists_is_deleted_and_a_plain_netdev_of_that_name_never():
    live = parse_links(["link=bond0 present=1 mode=balance-xor", "link=bond1 present=1 mode=",
                        "link=bond2 present=0"])
    assert bonds_to_delete(["bond0", "bond1", "bond2", "bond3", "bond0"], live) == ["bond0"]


def test_release_arguments_name_each_kind():
    assert release_args([(RAILS[0], "10.0.0.1/24")], ["bond0"], RAILS) == [
        "bond=bond0", f"address={RAILS[0]}:10.0.0.1/24", f"port={RAILS[0]}", f"port={RAILS[1]}"]


def test_left_behind_output_keeps_only_its_own_lines():
    assert parse_left_behind(["unit spark-serving.service", "", "noise", "path /etc/x"]) == [
        "unit spark-serving.service", "path /etc/x"]
