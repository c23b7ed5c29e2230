"""roles/network: settings, the netplan file per mode, decisions from the
QsfpLinks fact, and the operations the role builds for a fresh, a converged
and a broken node in each mode (built offline against fake facts: nothing
connects anywhere)."""

import subprocess
import time

import pytest
from collect_ops import build_operations
import yaml
from pyinfra.api import Config, Inventory, State
from pyinfra.api.operation import add_op
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.deb import DebPackages

import roles.network as network
from roles.network import bond, dual_subnet
from roles.network.checks import LINK_UP_WAIT, NM_RELEASE, hardware_problem, link_up_commands, nm_drift, nm_release_command
from roles.network.facts import QsfpLinks, parse_links
from roles.network.netplan import render_netplan, render_sysctl
from roles.network.checks import render_nm_unmanaged
from spark_cluster.qsfp_owners import Claim, QsfpOwners
from roles.network.settings import network_settings
from spark_cluster.settings import SettingError

PORT0 = ["enp1s0f0np0", "enP2p1s0f0np0"]
RAILS = ["enp1s0f1np1", "enP2p1s0f1np1"]  # one cable in port 1: its two PCIe halves
HOST_DATA = {
    "qsfp_ip": "192.168.100.10",
    "qsfp_prefixlen": 24,
    "ssh_hostname": "192.0.2.11",
    "peers": [{"name": "spark-2", "qsfp_ip": "192.168.100.11", "rank": 1}],
}
BOND_DATA = {**HOST_DATA, "network_mode": "bond"}


def settings(**changes):
    return network_settings({**HOST_DATA, **changes})


def bond_settings(**changes):
    return network_settings({**BOND_DATA, **changes})


def link(name, carrier="1", mtu=9000, master="", slaves="", mode="", operstate="up", addresses=()):
    lines = [f"link={name} present=1 carrier={carrier} operstate={operstate} mtu={mtu} master={master} "
             f"slaves={slaves} mode={mode}"]
    return lines + [f"address={a} on={name}" for a in addresses]


def links(*groups):
    return parse_links([line for group in groups for line in group])


UNCABLED = [*link(PORT0[0], carrier="0", mtu=1500, operstate="down"),
            *link(PORT0[1], carrier="0", mtu=1500, operstate="down")]
FRESH = links(UNCABLED, link(RAILS[0], carrier="unknown", mtu=1500, operstate="down"),
              link(RAILS[1], carrier="unknown", mtu=1500, operstate="down"), ["link=bond0 present=0"])
DUAL = links(UNCABLED, link(RAILS[0], addresses=["192.168.100.10/24"]),
             link(RAILS[1], addresses=["192.168.101.10/24"]))
BONDED = links(UNCABLED, link(RAILS[0], master="bond0"), link(RAILS[1], master="bond0"),
               link("bond0", slaves=",".join(RAILS), mode="balance-xor", addresses=["192.168.100.10/24"]))
# The same bond in place, but created with another mode (bond_mode changed in
# group_data, or the bond made by hand): only the mode differs.
MODE_DRIFTED = links(UNCABLED, link(RAILS[0], master="bond0"), link(RAILS[1], master="bond0"),
                     link("bond0", slaves=",".join(RAILS), mode="active-backup", addresses=["192.168.100.10/24"]))


# --- settings -----------------------------------------------------------------

def test_defaults_are_dual_subnet_on_the_two_halves_of_port_1():
    s = settings()
    assert (s.fabric.mode, s.fabric.netdevs, s.mtu) == ("dual_subnet", RAILS, 9000)
    assert [(l.netdev, l.address, l.peer_ips) for l in s.fabric.links] == [
        ("enp1s0f1np1", "192.168.100.10/24", ("192.168.100.11",)),
        ("enP2p1s0f1np1", "192.168.101.10/24", ("192.168.101.11",)),
    ]
    assert s.watched == [*PORT0, *RAILS]


def test_bond_mode_bonds_the_cabled_ports_halves():
    s = bond_settings()
    assert s.fabric.netdevs == RAILS and s.fabric.control_interface == "bond0"
    assert [(l.netdev, l.address) for l in s.fabric.links] == [("bond0", "192.168.100.10/24")]
    assert "bond0" in s.watched


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"network_mode": "bridge"}, "'network_mode' must be one of 'dual_subnet', 'bond'"),
        ({"qsfp_ports": []}, "'qsfp_ports' must list the cabled QSFP port(s)"),
        ({"qsfp_ports": [2]}, "'qsfp_ports' holds 2; a DGX Spark's QSFP ports are [0, 1]"),
        ({"qsfp_ports": [1, 1]}, "'qsfp_ports' lists a port twice"),
        ({"qsfp_subnets": ["192.168.100.0/24"]}, "'qsfp_subnets' needs one IPv4 subnet per rail (2"),
        ({"qsfp_subnets": ["192.168.100.0/24", "nope"]}, "'qsfp_subnets' holds 'nope'"),
        ({"qsfp_subnets": ["192.168.100.0/24", "192.168.100.128/25"]}, "overlaps 192.168.100.0/24"),
        ({"qsfp_subnets": ["10.0.0.0/24", "10.0.1.0/24"]}, "the first rail's subnet 10.0.0.0/24 must hold"),
        ({"qsfp_subnets": ["192.168.100.0/24", "192.168.101.0/29"]}, "192.168.101.0/29 has no host number 10"),
        ({"ssh_hostname": "192.168.101.5"}, "192.168.101.0/24 holds this node's management address"),
        ({"bond_mode": "xor"}, "'bond_mode' must be one of"),
        ({"mtu": "9000"}, "'mtu' must be an integer from 1280 to 9216"),
        ({"mtu": 65000}, "'mtu' must be an integer"),
        ({"qsfp_carrier_required": "some"}, "'qsfp_carrier_required' must be one of 'all', 'any'"),
        ({"qsfp_takeover": "yes"}, "'qsfp_takeover' must be True or False"),
    ],
)
def test_bad_group_data_names_the_key(changes, message):
    with pytest.raises(SettingError) as error:
        settings(**changes)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_bond_name_is_refused_in_bond_mode():
    with pytest.raises(SettingError, match="'bond_name' must be an interface name other than the QSFP ports'"):
        bond_settings(bond_name="enp1s0f1np1")


# --- the netplan file ---------------------------------------------------------

def test_dual_subnet_netplan_gives_each_half_its_subnet_and_nothing_else():
    plan = yaml.safe_load(render_netplan(settings()))["network"]
    assert set(plan) == {"version", "ethernets"} and plan["version"] == 2
    assert plan["ethernets"] == {
        "enp1s0f1np1": {"renderer": "networkd", "dhcp4": False, "dhcp6": False, "link-local": [],
                        "addresses": ["192.168.100.10/24"], "mtu": 9000},
        "enP2p1s0f1np1": {"renderer": "networkd", "dhcp4": False, "dhcp6": False, "link-local": [],
                          "addresses": ["192.168.101.10/24"], "mtu": 9000},
    }


def test_both_ports_cabled_give_four_rails_on_four_subnets():
    plan = yaml.safe_load(render_netplan(settings(qsfp_ports=[0, 1])))["network"]["ethernets"]
    assert {name: entry["addresses"] for name, entry in plan.items()} == {
        "enp1s0f0np0": ["192.168.100.10/24"], "enP2p1s0f0np0": ["192.168.101.10/24"],
        "enp1s0f1np1": ["192.168.102.10/24"], "enP2p1s0f1np1": ["192.168.103.10/24"],
    }


def test_bond_netplan_describes_the_bond_over_the_rails():
    plan = yaml.safe_load(render_netplan(bond_settings()))["network"]
    assert set(plan) == {"version", "ethernets", "bonds"}
    # renderer per device: DGX OS's NetworkManager keeps every other interface
    assert "renderer" not in plan
    for rail in RAILS:
        assert plan["ethernets"][rail] == {"renderer": "networkd", "dhcp4": False, "dhcp6": False, "mtu": 9000}
    entry = plan["bonds"]["bond0"]
    assert entry["interfaces"] == RAILS and entry["addresses"] == ["192.168.100.10/24"]
    assert entry["renderer"] == "networkd" and entry["mtu"] == 9000
    assert entry["parameters"]["mode"] == "balance-xor"
    # the management NIC keeps the default route
    assert not {"routes", "gateway4", "nameservers"} & set(entry)


def test_bond_netplan_follows_group_data():
    s = bond_settings(bond_name="qsfp0", mtu=1500, bond_mode="active-backup", qsfp_ip="192.168.100.12")
    entry = yaml.safe_load(render_netplan(s))["network"]["bonds"]["qsfp0"]
    assert entry["mtu"] == 1500 and entry["addresses"] == ["192.168.100.12/24"]
    # netplan refuses a hash policy for modes that do not hash
    assert entry["parameters"] == {"mode": "active-backup", "mii-monitor-interval": 100}


def test_arp_is_answered_only_by_the_netdev_holding_the_address():
    lines = [line for line in render_sysctl().splitlines() if line and not line.startswith("#")]
    assert lines == ["net.ipv4.conf.all.arp_ignore = 1", "net.ipv4.conf.all.arp_announce = 2"]


# --- decisions from the fact --------------------------------------------------

def test_fact_parses_links_bond_and_addresses_per_netdev():
    assert BONDED["links"]["bond0"]["slaves"] == RAILS
    assert BONDED["links"]["bond0"]["addresses"] == ["192.168.100.10/24"]
    assert BONDED["links"][RAILS[0]]["master"] == "bond0" and BONDED["links"][RAILS[0]]["addresses"] == []
    assert DUAL["links"][RAILS[1]]["addresses"] == ["192.168.101.10/24"]
    assert FRESH["links"][RAILS[0]]["carrier"] is None and FRESH["links"][PORT0[0]]["carrier"] is False
    assert FRESH["links"]["bond0"]["present"] is False


def test_fact_command_reads_sysfs_and_never_fails():
    command = QsfpLinks().command(names=["enp9s9f9np9", "bond9"])
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    parsed = parse_links(result.stdout.splitlines())
    assert parsed["links"]["enp9s9f9np9"]["present"] is False and parsed["links"]["bond9"]["present"] is False


def test_fact_reads_the_loopback_address():
    command = QsfpLinks().command(names=["lo"])
    parsed = parse_links(subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines())
    assert "127.0.0.1/8" in parsed["links"]["lo"]["addresses"]


def test_missing_rail_is_named_in_one_line():
    fact = links(link(RAILS[0]), [f"link={RAILS[1]} present=0"])
    assert hardware_problem("spark-2", settings(), fact) == (
        "spark-2: QSFP interface enP2p1s0f1np1 not found; is this a DGX Spark / is the cable in?"
    )


def test_every_rail_needs_link_by_default_and_uncabled_ports_do_not_matter():
    one_half = links(UNCABLED, link(RAILS[0]), link(RAILS[1], carrier="0"))
    assert hardware_problem("spark-1", settings(), one_half) == (
        "spark-1: no QSFP link on enP2p1s0f1np1 (cable? qsfp_ports = [1] names the cabled port(s))")
    assert hardware_problem("spark-1", settings(qsfp_carrier_required="any"), one_half) is None
    none = links(link(RAILS[0], carrier="0"), link(RAILS[1], carrier="0"))
    assert hardware_problem("spark-1", settings(qsfp_carrier_required="any"), none).startswith(
        "spark-1: no QSFP link on enp1s0f1np1/enP2p1s0f1np1")
    # port 0 has no cable: not a rail, not a problem
    assert hardware_problem("spark-1", settings(), DUAL) is None


def test_carrier_required_all_given_on_the_command_line():
    """`--data qsfp_carrier_required=all` arrives as a string built at run time."""
    given = "".join(["al", "l"])
    one_half = links(link(RAILS[0]), link(RAILS[1], carrier="0"))
    assert hardware_problem("spark-1", settings(qsfp_carrier_required=given), one_half) is not None


def test_admin_down_ports_are_not_a_hardware_problem():
    # carrier is unreadable until netplan brings the ports up
    assert hardware_problem("spark-1", settings(), FRESH) is None
    # enslaved ports still report their own carrier
    assert hardware_problem("spark-1", bond_settings(), BONDED) is None


def test_dual_subnet_drift_is_empty_only_when_every_rail_is_in_place():
    s = settings()
    assert dual_subnet.drift(s, DUAL) == []
    assert dual_subnet.drift(s, FRESH) == [
        "enp1s0f1np1 addresses are [], not [192.168.100.10/24]", "enp1s0f1np1 MTU is 1500",
        "enP2p1s0f1np1 addresses are [], not [192.168.101.10/24]", "enP2p1s0f1np1 MTU is 1500",
    ]
    flushed = links(link(RAILS[0], addresses=["192.168.100.10/24"]), link(RAILS[1]))
    assert dual_subnet.drift(s, flushed) == ["enP2p1s0f1np1 addresses are [], not [192.168.101.10/24]"]
    extra = links(link(RAILS[0], addresses=["192.168.100.10/24", "192.168.100.99/24"]),
                  link(RAILS[1], addresses=["192.168.101.10/24"]))
    assert dual_subnet.drift(s, extra) == [
        "enp1s0f1np1 addresses are ['192.168.100.10/24', '192.168.100.99/24'], not [192.168.100.10/24]"]
    assert "enP2p1s0f1np1 MTU is 1500" in dual_subnet.drift(s, links(
        link(RAILS[0], addresses=["192.168.100.10/24"]), link(RAILS[1], mtu=1500, addresses=["192.168.101.10/24"])))


def test_dual_subnet_after_bond_mode_deletes_the_leftover_bond():
    s = settings()
    assert "enp1s0f1np1 is enslaved to bond0" in dual_subnet.drift(s, BONDED)
    assert dual_subnet.before_apply(s, BONDED) == ["ip link delete bond0"]
    assert dual_subnet.before_apply(s, DUAL) == []


def test_bond_drift_is_empty_only_when_the_bond_is_in_place():
    s = bond_settings()
    assert bond.drift(s, BONDED) == []
    assert bond.drift(s, FRESH) == ["bond0 does not exist"]
    flushed = links(link(RAILS[0], master="bond0"), link(RAILS[1], master="bond0"),
                    link("bond0", slaves=",".join(RAILS), mode="balance-xor"))
    assert bond.drift(s, flushed) == ["bond0 lacks 192.168.100.10/24"]
    assert "enp1s0f1np1 MTU is 9000" in bond.drift(bond_settings(mtu=1500), BONDED)
    # the dual_subnet layout is not a bond
    assert bond.drift(s, DUAL) == ["bond0 does not exist"]


@pytest.mark.parametrize("slaves, expected", [
    ("enp1s0f1np1,enP2p1s0f1np1,enp1s0f0np0", "bond0 slaves are ['enp1s0f1np1', 'enP2p1s0f1np1', 'enp1s0f0np0']"),
    ("enp1s0f1np1", "bond0 slaves are ['enp1s0f1np1']"),
    # today's old default: the first half of each port, one of them uncabled
    ("enp1s0f0np0,enp1s0f1np1", "bond0 slaves are ['enp1s0f0np0', 'enp1s0f1np1']"),
])
def test_a_bond_with_other_slaves_drifts(slaves, expected):
    fact = links(link(RAILS[0], master="bond0"), link(RAILS[1], master="bond0"),
                 link("bond0", slaves=slaves, mode="balance-xor", addresses=["192.168.100.10/24"]))
    assert bond.drift(bond_settings(), fact) == [expected]


def test_a_bond_in_another_mode_drifts_and_is_recreated():
    assert bond.drift(bond_settings(), MODE_DRIFTED) == ["bond0 mode is active-backup"]
    assert bond.before_apply(bond_settings(), MODE_DRIFTED) == ["ip link delete bond0"]
    assert bond.drift(bond_settings(bond_mode="active-backup"), MODE_DRIFTED) == []
    assert bond.before_apply(bond_settings(bond_mode="active-backup"), MODE_DRIFTED) == []
    assert bond.before_apply(bond_settings(), BONDED) == []
    assert bond.before_apply(bond_settings(), FRESH) == []  # nothing to delete yet


# --- the link wait (files/link_up_wait.sh), run against a fake sysfs, ip and ping

PEER_IPS = ["192.168.101.11", "192.168.101.12"]
IP_LINE = "7: {dev}    inet {addr} brd 192.168.101.255 scope global {dev}\\       valid_lft forever\n"
# `ip -o -4 address show dev LINK`: the lines in $STUBS/addresses, or none for another device.
FAKE_IP = """#!/bin/sh
echo "ip $*" >> "$STUBS/calls"
[ "$*" = "-o -4 address show dev $(cat "$STUBS/link")" ] && cat "$STUBS/addresses"
"""
# ping answers for the peers listed in $STUBS/answering, with at most $STUBS/max_payload bytes.
FAKE_PING = """#!/bin/sh
echo "ping $*" >> "$STUBS/calls"
size=0
while [ "$#" -gt 1 ]; do
    if [ "$1" = -s ]; then size=$2; fi
    shift
done
grep -qx "$1" "$STUBS/answering" && [ "$size" -le "$(cat "$STUBS/max_payload")" ]
"""


class FakeNode:
    """A temp sysfs with one link's operstate, plus ip and ping stubs first on PATH."""

    def __init__(self, root, name="enP2p1s0f1np1", operstate="up", addresses=("192.168.101.10/24",),
                 answering=PEER_IPS, max_payload=8972):
        self.stubs, self.sysfs = root / "stubs", root / "sys"
        (self.sysfs / "class/net" / name).mkdir(parents=True)
        if operstate is not None:
            (self.sysfs / "class/net" / name / "operstate").write_text(operstate + "\n")
        (self.stubs / "bin").mkdir(parents=True)
        for tool, text in (("ip", FAKE_IP), ("ping", FAKE_PING)):
            (self.stubs / "bin" / tool).write_text(text)
            (self.stubs / "bin" / tool).chmod(0o755)
        (self.stubs / "link").write_text(name)
        (self.stubs / "addresses").write_text("".join(IP_LINE.format(dev=name, addr=a) for a in addresses))
        (self.stubs / "answering").write_text("".join(f"{peer}\n" for peer in answering))
        (self.stubs / "max_payload").write_text(f"{max_payload}\n")
        (self.stubs / "calls").write_text("")

    def run(self, argv):
        env = {"PATH": f"{self.stubs / 'bin'}:/usr/bin:/bin", "STUBS": str(self.stubs), "SYSFS_ROOT": str(self.sysfs)}
        start = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
        return result, time.monotonic() - start

    def wait(self, timeout=1):
        return self.run(["sh", str(LINK_UP_WAIT), "enP2p1s0f1np1", "192.168.101.10/24", "9000", str(timeout),
                         *PEER_IPS])

    def calls(self):
        return (self.stubs / "calls").read_text().splitlines()


def test_link_wait_passes_when_the_link_is_up_and_every_peer_answers_full_mtu(tmp_path):
    node = FakeNode(tmp_path)
    result, _ = node.wait()
    assert (result.returncode, result.stderr) == (0, "")
    assert node.calls() == [
        "ip -o -4 address show dev enP2p1s0f1np1",
        "ping -c1 -W1 -I enP2p1s0f1np1 192.168.101.11",
        "ping -c1 -W2 -M do -s 8972 -I enP2p1s0f1np1 192.168.101.11",
        "ping -c1 -W1 -I enP2p1s0f1np1 192.168.101.12",
        "ping -c1 -W2 -M do -s 8972 -I enP2p1s0f1np1 192.168.101.12",
    ]


@pytest.mark.parametrize(
    "node_state, message",
    [
        ({"operstate": "down"}, "enP2p1s0f1np1 is not up after 1s (cable? peer?)"),
        ({"operstate": None}, "enP2p1s0f1np1 is not up after 1s (cable? peer?)"),
        ({"addresses": ()}, "enP2p1s0f1np1 has no address 192.168.101.10/24 after 1s"),
        ({"addresses": ("192.168.101.10/16", "192.168.101.110/24")},
         "enP2p1s0f1np1 has no address 192.168.101.10/24 after 1s"),
        ({"answering": ["192.168.101.11"]}, "peer 192.168.101.12 does not answer ping over enP2p1s0f1np1 after 1s"),
        ({"max_payload": 1472},
         "MTU 9000 does not pass to peer 192.168.101.11 over enP2p1s0f1np1 (peer or switch MTU?)"),
    ],
)
def test_link_wait_fails_in_one_line_within_its_timeout(tmp_path, node_state, message):
    result, elapsed = FakeNode(tmp_path, **node_state).wait(timeout=1)
    assert (result.returncode, result.stderr) == (1, message + "\n")
    assert elapsed < 5, "the wait is bounded by its timeout"


def test_link_wait_waits_for_the_link_to_come_up(tmp_path):
    node = FakeNode(tmp_path, operstate="down")
    operstate = node.sysfs / "class/net/enP2p1s0f1np1/operstate"
    flip = subprocess.Popen(["sh", "-c", f"sleep 1; echo up > {operstate}"])
    try:
        result, elapsed = node.wait(timeout=10)
    finally:
        flip.wait(timeout=10)
    assert (result.returncode, result.stderr) == (0, "")
    assert elapsed < 8


def test_link_wait_needs_its_arguments(tmp_path):
    result, _ = FakeNode(tmp_path).run(["sh", str(LINK_UP_WAIT), "bond0", "10.0.0.1/24"])
    assert result.returncode == 2 and result.stderr.startswith("usage: link_up_wait.sh LINK ADDRESS MTU TIMEOUT")


def test_role_waits_for_every_link_with_its_own_peers(tmp_path):
    peers = [{"name": "spark-2", "qsfp_ip": "192.168.100.11"}, {"name": "spark-3", "qsfp_ip": "192.168.100.12"}]
    commands = link_up_commands(settings(peers=peers, qsfp_up_timeout_s=1), peers, lost=[])
    assert len(commands) == 2 and all(command.startswith("sh -c ") for command in commands)
    assert commands[0].endswith(" link_up_wait.sh enp1s0f1np1 192.168.100.10/24 9000 1 192.168.100.11 192.168.100.12")
    assert commands[1].endswith(" link_up_wait.sh enP2p1s0f1np1 192.168.101.10/24 9000 1 192.168.101.11 192.168.101.12")
    node = FakeNode(tmp_path / "up")
    result, _ = node.run(["sh", "-c", commands[1]])
    assert (result.returncode, result.stderr) == (0, "")
    assert "ping -c1 -W2 -M do -s 8972 -I enP2p1s0f1np1 192.168.101.12" in node.calls()
    result, _ = FakeNode(tmp_path / "down", operstate="down").run(["sh", "-c", commands[1]])
    assert (result.returncode, result.stderr) == (1, "enP2p1s0f1np1 is not up after 1s (cable? peer?)\n")
    bonded = link_up_commands(bond_settings(), BOND_DATA["peers"], lost=[])
    assert len(bonded) == 1 and bonded[0].endswith(" link_up_wait.sh bond0 192.168.100.10/24 9000 60 192.168.100.11")


def test_a_peer_lost_earlier_in_the_run_is_not_waited_for():
    peers = [{"name": "spark-2", "qsfp_ip": "192.168.100.11"}, {"name": "spark-3", "qsfp_ip": "192.168.100.12"}]
    s = settings(peers=peers)
    commands = link_up_commands(s, peers, lost=["spark-2"])
    assert commands[0].endswith(" link_up_wait.sh enp1s0f1np1 192.168.100.10/24 9000 60 192.168.100.12")
    assert commands[1].endswith(" link_up_wait.sh enP2p1s0f1np1 192.168.101.10/24 9000 60 192.168.101.12")
    # Names not among the peers (this node's own, a node of another cluster) change nothing.
    assert link_up_commands(s, peers, lost=["spark-1", "spark-9"]) == link_up_commands(s, peers, lost=[])


def test_a_link_whose_every_peer_is_lost_is_not_waited_on():
    # Two nodes back to back: the lost worker took the head's carrier with it.
    assert link_up_commands(bond_settings(), BOND_DATA["peers"], lost=["spark-2"]) == []
    peers = HOST_DATA["peers"]
    assert link_up_commands(settings(), peers, lost=[peers[0]["name"]]) == []


def test_the_wait_is_built_when_it_runs_without_the_peers_failed_by_then():
    # Two nodes, as the CLI runs them: the operation is added for both, then
    # the worker fails (lost) before the wait runs; the head's wait skips it.
    worker = {**HOST_DATA, "qsfp_ip": "192.168.100.11", "peers": [{"name": "spark-1", "qsfp_ip": "192.168.100.10"}]}
    head = {**HOST_DATA, "peers": [{"name": "spark-2", "qsfp_ip": "192.168.100.11"}]}
    inventory = Inventory(([("spark-1", head), ("spark-2", worker)], {}))
    state = State(inventory, Config())
    for node in inventory:
        state.activate_host(node)
    spark1 = inventory.get_host("spark-1")
    for node in inventory:
        with ctx_state.use(state), ctx_host.use(node):
            add_op(state, network.wait_for_links, name=LINK_CHECK, s=network_settings(node.data),
                   peers=node.data.get("peers"))
    op_hash = state.get_op_order()[0]

    def commands():
        with ctx_state.use(state), ctx_host.use(spark1):
            return [str(c) for c in state.get_op_data_for_host(spark1, op_hash).command_generator()]

    assert commands() == link_up_commands(network_settings(head), head["peers"], lost=[])
    state.fail_hosts({inventory.get_host("spark-2")})
    assert commands() == []


def test_peers_that_do_not_match_the_links_are_refused():
    with pytest.raises(ValueError, match="1 peer addresses for 0 peers"):
        link_up_commands(settings(), [], lost=[])


# --- operations, built offline against fake facts -----------------------------

APPLY = "Apply netplan (validated first)"
LINK_CHECK = "Wait for the QSFP links and ping every peer on each"
DESCRIBE = "Describe the QSFP links in /etc/netplan/40-spark-cluster.yaml"
SYSCTL = "ARP per netdev: /etc/sysctl.d/90-spark-cluster-rails.conf"


def op(ops, name):
    return next(entry for entry in ops if entry[0] == name)


INSTALLED = {DebPackages: {"netplan.io": ["1"], "iputils-ping": ["3"]}, QsfpOwners: []}


def converged_files(s):
    return {"/etc/netplan/40-spark-cluster.yaml": (render_netplan(s), 600),
            "/etc/sysctl.d/90-spark-cluster-rails.conf": (render_sysctl(), 644)}


@pytest.mark.parametrize("data", [HOST_DATA, BOND_DATA], ids=["dual_subnet", "bond"])
def test_fresh_node_writes_applies_and_checks_once(data):
    ops = build_operations(network.apply, data, {QsfpLinks: FRESH, DebPackages: {}, QsfpOwners: []})
    assert [name for name, _, _ in ops] == [
        "Install netplan and ping", SYSCTL, "Load the ARP settings", DESCRIBE, APPLY, LINK_CHECK]
    # 0600 from its first byte (spark_cluster/private_file.py): staged in a
    # 0700 directory, installed with its owner and mode, never chmod-ed after.
    mkdir, upload, install = op(ops, DESCRIBE)[1]
    assert mkdir.startswith("mkdir -m 700 /tmp/") and "upload" in upload
    assert install.endswith("install_private.sh " + mkdir.split()[-1] + " /etc/netplan/40-spark-cluster.yaml root root 600")
    assert op(ops, APPLY)[1] == ["netplan generate", "netplan apply", nm_release_command(network_settings(data))]
    assert op(ops, LINK_CHECK)[1] == link_up_commands(network_settings(data), data["peers"], lost=[])
    assert op(ops, LINK_CHECK)[2], "the link check only runs when netplan was applied in this run"


@pytest.mark.parametrize("data, fact", [(HOST_DATA, DUAL), (BOND_DATA, BONDED)], ids=["dual_subnet", "bond"])
def test_converged_node_yields_no_command_at_all(data, fact):
    ops = build_operations(network.apply, data, {QsfpLinks: fact, **INSTALLED},
                           converged_files(network_settings(data)))
    for name, commands, condition in ops:
        # ops guarded by _if are skipped at run time: their guard depends on an op that yields nothing
        assert commands == [] or condition, (name, commands)
    assert [name for name, _, _ in ops] == ["Load the ARP settings", APPLY, LINK_CHECK]


def test_flushed_rail_address_is_repaired_without_a_file_change():
    flushed = links(link(RAILS[0], addresses=["192.168.100.10/24"]), link(RAILS[1]))
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: flushed, **INSTALLED}, converged_files(settings()))
    apply_op = op(ops, APPLY)
    assert apply_op[1] == ["netplan generate", "netplan apply", nm_release_command(settings())] and not apply_op[2]


def test_switching_bond_to_dual_subnet_deletes_the_bond_then_applies():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: BONDED, **INSTALLED})
    assert op(ops, APPLY)[1] == ["netplan generate", "ip link delete bond0", "netplan apply", nm_release_command(settings())]


def test_bond_mode_change_recreates_the_bond_without_a_file_change():
    # The netplan file already says balance-xor, so only the drift can make
    # the apply run: it must not wait for a file change that never comes.
    ops = build_operations(network.apply, BOND_DATA, {QsfpLinks: MODE_DRIFTED, **INSTALLED},
                           converged_files(bond_settings()))
    commands, condition = op(ops, APPLY)[1:]
    assert commands == ["netplan generate", "ip link delete bond0", "netplan apply", nm_release_command(bond_settings())]
    assert not condition, "the apply runs unconditionally when the live bond drifted"
    assert op(ops, LINK_CHECK)[2], "the link check follows the apply"


def test_missing_rail_fails_the_host_first_and_changes_nothing():
    fact = links(link(RAILS[0]), [f"link={RAILS[1]} present=0"])
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: fact, DebPackages: {}, QsfpOwners: []})
    assert len(ops) == 1
    name, commands, _ = ops[0]
    assert name == "Check the QSFP hardware"
    result = subprocess.run(["sh", "-c", commands[0]], capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert result.stderr == "spark-1: QSFP interface enP2p1s0f1np1 not found; is this a DGX Spark / is the cable in?\n"


# --- other owners of the QSFP ports ----------------------------------------------

NVIDIA_40_CX7 = """network:
  version: 2
  ethernets:
    enp1s0f1np1:
      dhcp4: no
      addresses: [192.168.100.10/24]
    enP2p1s0f1np1:
      dhcp4: no
      addresses: [192.168.101.10/24]
"""
NVIDIA_FILE = Claim("netplan", "/etc/netplan/40-cx7.yaml", tuple(RAILS), content=NVIDIA_40_CX7)
NM_PROFILE = Claim("networkmanager", "/etc/NetworkManager/system-connections/cx7.nmconnection", (RAILS[0],),
                   id="cx7")
TAKEOVER = "Move other QSFP configurations aside"


def test_other_owners_stop_the_host_before_any_change_naming_each():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: FRESH, DebPackages: {}, QsfpOwners: [
        NVIDIA_FILE, NM_PROFILE]})
    assert [name for name, _, _ in ops] == ["Check for other owners of the QSFP ports"]
    result = subprocess.run(["sh", "-c", ops[0][1][0]], capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "/etc/netplan/40-cx7.yaml" in result.stderr and "cx7.nmconnection" in result.stderr
    assert "qsfp_takeover = True" in result.stderr and result.stderr.count("\n") == 1


def test_takeover_moves_them_aside_before_netplan_is_written():
    ops = build_operations(network.apply, {**HOST_DATA, "qsfp_takeover": True},
                           {QsfpLinks: FRESH, DebPackages: {}, QsfpOwners: [NVIDIA_FILE, NM_PROFILE]})
    names = [name for name, _, _ in ops]
    takeover = next(name for name in names if name.startswith(TAKEOVER))
    assert "qsfp_takeover is on" in takeover
    assert names.index(takeover) < names.index(DESCRIBE) < names.index(APPLY)
    (command,) = op(ops, takeover)[1]
    assert f"{network.RUN_STAMP}" in command and "/etc/spark-cluster/takeover/" in command
    assert "/etc/netplan/40-cx7.yaml" in command and "cx7.nmconnection" in command


def test_nvidias_file_with_our_addresses_is_adopted_without_the_setting():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: DUAL, DebPackages: {}, QsfpOwners: [NVIDIA_FILE]})
    names = [name for name, _, _ in ops]
    assert any(name.startswith(TAKEOVER) and "adopted" in name for name in names), names
    # the live rails already match: netplan is applied because a file moved
    assert op(ops, APPLY)[1] == ["netplan generate", "netplan apply", nm_release_command(settings())] and op(ops, APPLY)[2]
    # other addresses, or bond mode, are a foreign layout: refused
    for data in ({**HOST_DATA, "qsfp_ip": "192.168.100.20"}, BOND_DATA):
        ops = build_operations(network.apply, data, {QsfpLinks: DUAL, DebPackages: {}, QsfpOwners: [NVIDIA_FILE]})
        assert [name for name, _, _ in ops] == ["Check for other owners of the QSFP ports"]


# --- NetworkManager lets go of our netdevs (files/nm_release.sh) ----------------

def test_a_rail_networkmanager_still_manages_is_drift():
    managed = links(link(RAILS[0], addresses=["192.168.100.10/24"]),
                    [*link(RAILS[1], addresses=["192.168.101.10/24"])[:1]])
    managed["links"][RAILS[1]]["nm"] = "connecting"
    assert nm_drift(settings(), managed) == ["enP2p1s0f1np1 is managed by NetworkManager (connecting)"]
    assert nm_drift(settings(), DUAL) == []  # no NM at all
    # port 0 is no rail: whatever NM does there is not ours
    DUAL_NM = links(link(RAILS[0], addresses=["192.168.100.10/24"]), link(RAILS[1], addresses=["192.168.101.10/24"]),
                    link(PORT0[0]))
    DUAL_NM["links"][PORT0[0]]["nm"] = "connecting"
    assert nm_drift(settings(), DUAL_NM) == []
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: managed, **INSTALLED}, converged_files(settings()))
    assert not op(ops, APPLY)[2], "netplan is applied (and NM told) although the file is unchanged"


def test_fact_parses_networkmanagers_state():
    parsed = parse_links(["link=enp1s0f1np1 present=1 carrier=1 operstate=up mtu=9000 master= slaves= mode= nm=unmanaged",
                          "link=enP2p1s0f1np1 present=1 carrier=1 operstate=up mtu=9000 master= slaves= mode= nm="])
    assert parsed["links"]["enp1s0f1np1"]["nm"] == "unmanaged" and parsed["links"]["enP2p1s0f1np1"]["nm"] is None


FAKE_NMCLI = """#!/bin/sh
echo "nmcli $*" >> "$STUBS/calls"
if [ "$1" = -g ]; then cat "$STUBS/state.$5" 2>/dev/null; exit 0; fi
[ ! -e "$STUBS/nmcli_fails" ]
"""
FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUBS/calls"
[ ! -e "$STUBS/$(basename "$0")_fails" ]
"""


def run_release(tmp_path, states, *, nm_active=True, with_nmcli=True, fails=()):
    stubs = tmp_path / "stubs"
    (stubs / "bin").mkdir(parents=True)
    tools = {"systemctl": FAKE_TOOL, "networkctl": FAKE_TOOL, **({"nmcli": FAKE_NMCLI} if with_nmcli else {})}
    for tool, text in tools.items():
        (stubs / "bin" / tool).write_text(text)
        (stubs / "bin" / tool).chmod(0o755)
    for dev, state in states.items():
        (stubs / f"state.{dev}").write_text(state + "\n")
    if not nm_active:
        (stubs / "systemctl_fails").write_text("")
    for tool in fails:
        (stubs / f"{tool}_fails").write_text("")
    (stubs / "calls").write_text("")
    env = {"PATH": f"{stubs / 'bin'}:/usr/bin:/bin", "STUBS": str(stubs)}
    command = nm_release_command(settings())
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10, env=env)
    return result, (stubs / "calls").read_text().splitlines()


def test_release_hands_only_the_managed_rails_to_networkd(tmp_path):
    result, calls = run_release(tmp_path, {"enp1s0f1np1": "10 (unmanaged)", "enP2p1s0f1np1": "70 (connecting)"})
    assert (result.returncode, result.stderr) == (0, "")
    assert [c for c in calls if not c.startswith("nmcli -g") and not c.startswith("systemctl")] == [
        "nmcli device set enP2p1s0f1np1 managed no", "networkctl reconfigure enP2p1s0f1np1"]


@pytest.mark.parametrize("case", ["no_nmcli", "nm_inactive"])
def test_release_does_nothing_without_a_running_networkmanager(tmp_path, case):
    result, calls = run_release(tmp_path, {"enP2p1s0f1np1": "100 (connected)"},
                                with_nmcli=case != "no_nmcli", nm_active=case != "nm_inactive")
    assert result.returncode == 0
    assert not any("managed no" in c or "networkctl" in c for c in calls)


@pytest.mark.parametrize("tool, message", [
    ("nmcli", "NetworkManager does not let go of enp1s0f1np1 (nmcli device set enp1s0f1np1 managed no failed)"),
    ("networkctl", "systemd-networkd could not configure enp1s0f1np1 again (networkctl reconfigure enp1s0f1np1)"),
])
def test_release_fails_in_one_line(tmp_path, tool, message):
    result, _ = run_release(tmp_path, {"enp1s0f1np1": "100 (connected)"}, fails=[tool])
    assert (result.returncode, result.stderr) == (1, message + "\n")


def test_release_needs_netdevs(tmp_path):
    result = subprocess.run(["sh", str(NM_RELEASE)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and result.stderr == "usage: nm_release.sh NETDEV...\n"


# --- NetworkManager told from boot on (DGX OS runs it) -------------------------

NM_FILE = "/etc/NetworkManager/conf.d/90-spark-cluster-qsfp.conf"
NM_OP = f"NetworkManager leaves the QSFP links alone from boot on: {NM_FILE}"


def with_nm(lines, state="unmanaged"):
    return [f"{line} nm={state}" if line.startswith("link=") and "present=1" in line else line for line in lines]


@pytest.mark.parametrize("data, names", [
    (HOST_DATA, "interface-name:enp1s0f1np1,interface-name:enP2p1s0f1np1"),
    (BOND_DATA, "interface-name:enp1s0f1np1,interface-name:enP2p1s0f1np1,interface-name:bond0"),
], ids=["dual_subnet", "bond"])
def test_networkmanager_gets_its_own_unmanaged_list_for_our_links(data, names):
    s = network_settings(data)
    assert render_nm_unmanaged(s).splitlines()[1:] == ["[keyfile]", f"unmanaged-devices+={names}"]
    dual = links(with_nm(UNCABLED), with_nm(link(RAILS[0], addresses=["192.168.100.10/24"])),
                 with_nm(link(RAILS[1], addresses=["192.168.101.10/24"])))
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: dual, **INSTALLED},
                           converged_files(settings()))
    put = op(ops, NM_OP)[1]
    assert any("90-spark-cluster-qsfp.conf" in command for command in put)
    converged = {**converged_files(settings()), NM_FILE: (render_nm_unmanaged(settings()), 644)}
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: dual, **INSTALLED}, converged)
    assert all(commands == [] or condition for _, commands, condition in ops)


def test_without_networkmanager_no_file_is_written():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: DUAL, **INSTALLED}, converged_files(settings()))
    assert NM_OP not in [name for name, _, _ in ops]
