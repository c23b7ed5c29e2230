"""spark_cluster/fabric.py: a node's rails, control address and peers per link,
derived once from host data for every role and for the verify suite."""

import pytest

from collect_ops import GROUP_DATA
from spark_cluster.fabric import PORT_HALVES, QSFP_NETDEVS, fabric
from spark_cluster.inventory import define_cluster


def four_nodes(**overrides):
    nodes = [{"name": f"spark-{i}", "ssh_hostname": f"172.16.0.{10 + i}", "ssh_user": "nvidia",
              "qsfp_address": f"192.168.100.{9 + i}/24"} for i in range(1, 5)]
    return {name: {**GROUP_DATA, **data, **overrides} for name, data in define_cluster(nodes)}


def test_the_shipped_group_data_is_dual_subnet_on_port_1():
    fab = fabric(four_nodes()["spark-3"])
    assert fab.mode == "dual_subnet"
    assert [(r.port, r.half, r.netdev, r.rdma_device, r.address) for r in fab.rails] == [
        (1, 0, "enp1s0f1np1", "rocep1s0f1", "192.168.100.12/24"),
        (1, 1, "enP2p1s0f1np1", "roceP2p1s0f1", "192.168.101.12/24"),
    ]
    assert (fab.control_interface, fab.control_ip) == ("enp1s0f1np1", "192.168.100.12")
    assert fab.rdma_devices == ["rocep1s0f1", "roceP2p1s0f1"]


def test_every_link_lists_each_peer_on_that_links_subnet():
    fab = fabric(four_nodes()["spark-1"])
    assert {link.netdev: link.peer_ips for link in fab.links} == {
        "enp1s0f1np1": ("192.168.100.11", "192.168.100.12", "192.168.100.13"),
        "enP2p1s0f1np1": ("192.168.101.11", "192.168.101.12", "192.168.101.13"),
    }


def test_both_ports_cabled_make_four_rails_and_the_detector_sees_them_all():
    fab = fabric(four_nodes(qsfp_ports=[0, 1])["spark-2"])
    assert fab.netdevs == list(QSFP_NETDEVS)
    assert fab.detector_args() == ["--rails", "enp1s0f0np0=192.168.100.11,enP2p1s0f0np0=192.168.101.11,"
                                              "enp1s0f1np1=192.168.102.11,enP2p1s0f1np1=192.168.103.11"]


def test_the_port_order_given_is_the_rail_order():
    fab = fabric(four_nodes(qsfp_ports=[1, 0])["spark-1"])
    assert fab.netdevs == ["enp1s0f1np1", "enP2p1s0f1np1", "enp1s0f0np0", "enP2p1s0f0np0"]


def test_bond_mode_has_one_link_on_the_bond_and_rails_without_addresses():
    fab = fabric(four_nodes(network_mode="bond")["spark-4"])
    assert (fab.control_interface, fab.control_address, fab.bond_name) == ("bond0", "192.168.100.13/24", "bond0")
    assert [r.address for r in fab.rails] == [None, None]
    assert [(l.netdev, l.peer_ips) for l in fab.links] == [
        ("bond0", ("192.168.100.10", "192.168.100.11", "192.168.100.12"))]
    assert fab.detector_args() == ["--netdev", "bond0", "--slaves", "enp1s0f1np1,enP2p1s0f1np1",
                                   "--ip", "192.168.100.13"]


def test_subnets_of_other_sizes_keep_the_host_number():
    data = four_nodes(qsfp_subnets=["192.168.100.0/24", "10.20.0.0/16"])["spark-2"]
    assert [r.address for r in fabric(data).rails] == ["192.168.100.11/24", "10.20.0.11/16"]


@pytest.mark.parametrize("port", sorted(PORT_HALVES))
def test_each_port_has_two_halves_named_as_dgx_os_names_them(port):
    (first, first_rdma), (second, second_rdma) = PORT_HALVES[port]
    assert first == f"enp1s0f{port}np{port}" and second == f"enP2p1s0f{port}np{port}"
    assert first_rdma == f"rocep1s0f{port}" and second_rdma == f"roceP2p1s0f{port}"
