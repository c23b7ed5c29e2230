"""roles/network: settings, the netplan file, decisions from the QsfpLinks fact,
and the operations the role builds for a fresh, a converged and a broken node
(built offline against fake facts: nothing connects anywhere)."""

import subprocess
import time

import pytest
from collect_ops import build_operations
import yaml
from pyinfra.facts.deb import DebPackages

import roles.network as network
from roles.network.checks import BOND_UP_WAIT, bond_drift, bond_needs_recreate, bond_up_command, hardware_problem
from roles.network.facts import QsfpLinks, parse_links
from roles.network.netplan import render_netplan
from roles.network.settings import network_settings
from spark_cluster.settings import SettingError

SLAVES = ["enp1s0f0np0", "enp1s0f1np1"]
HOST_DATA = {
    "qsfp_ip": "10.0.0.1",
    "qsfp_prefixlen": 24,
    "peers": [{"name": "spark-2", "qsfp_ip": "10.0.0.2", "rank": 1}],
}


def settings(**changes):
    return network_settings({**HOST_DATA, **changes})


def links(*lines, addresses=()):
    return parse_links([*lines, *(f"address={a}" for a in addresses)])


FRESH = links(
    "link=enp1s0f0np0 present=1 carrier=unknown operstate=down mtu=1500 master= slaves= mode=",
    "link=enp1s0f1np1 present=1 carrier=unknown operstate=down mtu=1500 master= slaves= mode=",
    "link=bond0 present=0",
)
CONVERGED = links(
    "link=enp1s0f0np0 present=1 carrier=1 operstate=up mtu=9000 master=bond0 slaves= mode=",
    "link=enp1s0f1np1 present=1 carrier=1 operstate=up mtu=9000 master=bond0 slaves= mode=",
    f"link=bond0 present=1 carrier=1 operstate=up mtu=9000 master= slaves={','.join(SLAVES)} mode=balance-xor",
    addresses=["10.0.0.1/24"],
)
# The same bond in place, but created with another mode (bond_mode changed in
# group_data, or the bond made by hand): only the mode differs.
MODE_DRIFTED = links(
    "link=enp1s0f0np0 present=1 carrier=1 operstate=up mtu=9000 master=bond0 slaves= mode=",
    "link=enp1s0f1np1 present=1 carrier=1 operstate=up mtu=9000 master=bond0 slaves= mode=",
    f"link=bond0 present=1 carrier=1 operstate=up mtu=9000 master= slaves={','.join(SLAVES)} mode=active-backup",
    addresses=["10.0.0.1/24"],
)


# --- settings -----------------------------------------------------------------

def test_defaults_are_the_sparks_ports_and_bond():
    s = settings()
    assert (s.bond_name, s.qsfp_interfaces, s.bond_mode, s.mtu) == ("bond0", SLAVES, "balance-xor", 9000)
    assert s.address == "10.0.0.1/24" and s.peer_ips == ["10.0.0.2"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"network_mode": "dual_subnet"}, "'network_mode' = 'dual_subnet' (an address per QSFP port"),
        ({"network_mode": "bridge"}, "'network_mode' must be 'bond'"),
        ({"qsfp_interfaces": []}, "'qsfp_interfaces' must be a non-empty list"),
        ({"qsfp_interfaces": ["enp1s0f0np0", "bad name"]}, "'qsfp_interfaces' holds 'bad name'"),
        ({"qsfp_interfaces": ["a", "a"]}, "'qsfp_interfaces' lists an interface twice"),
        ({"bond_name": "enp1s0f0np0"}, "'bond_name' 'enp1s0f0np0' is also listed"),
        ({"bond_mode": "xor"}, "'bond_mode' must be one of"),
        ({"mtu": "9000"}, "'mtu' must be an integer from 1280 to 9216"),
        ({"mtu": 65000}, "'mtu' must be an integer"),
        ({"qsfp_carrier_required": "some"}, "'qsfp_carrier_required' must be 'any' or 'all'"),
    ],
)
def test_bad_group_data_names_the_key(changes, message):
    with pytest.raises(SettingError) as error:
        settings(**changes)
    assert message in str(error.value) and "\n" not in str(error.value)


# --- the netplan file ---------------------------------------------------------

def test_netplan_describes_the_bond_and_nothing_else():
    plan = yaml.safe_load(render_netplan(settings()))["network"]
    assert plan["renderer"] == "networkd" and plan["version"] == 2
    assert set(plan) == {"version", "renderer", "ethernets", "bonds"}
    assert set(plan["ethernets"]) == set(SLAVES)
    for slave in SLAVES:
        assert plan["ethernets"][slave] == {"dhcp4": False, "dhcp6": False, "mtu": 9000}
    bond = plan["bonds"]["bond0"]
    assert bond["interfaces"] == SLAVES
    assert bond["addresses"] == ["10.0.0.1/24"]
    assert bond["mtu"] == 9000 and bond["dhcp4"] is False and bond["dhcp6"] is False
    assert bond["parameters"]["mode"] == "balance-xor"
    # the management NIC keeps the default route
    assert not {"routes", "gateway4", "nameservers"} & set(bond)


def test_netplan_follows_group_data():
    s = settings(bond_name="qsfp0", qsfp_interfaces=["enp1s0f0np0"], mtu=1500, bond_mode="active-backup",
                 qsfp_ip="10.0.0.2")
    bond = yaml.safe_load(render_netplan(s))["network"]["bonds"]["qsfp0"]
    assert bond["interfaces"] == ["enp1s0f0np0"] and bond["mtu"] == 1500
    assert bond["addresses"] == ["10.0.0.2/24"]
    # netplan refuses a hash policy for modes that do not hash
    assert bond["parameters"] == {"mode": "active-backup", "mii-monitor-interval": 100}


# --- decisions from the fact --------------------------------------------------

def test_fact_parses_links_bond_and_addresses():
    assert CONVERGED["links"]["bond0"]["slaves"] == SLAVES
    assert CONVERGED["links"]["enp1s0f0np0"]["master"] == "bond0"
    assert CONVERGED["bond_addresses"] == ["10.0.0.1/24"]
    assert FRESH["links"]["enp1s0f0np0"]["carrier"] is None
    assert FRESH["links"]["bond0"]["present"] is False


def test_fact_command_reads_sysfs_and_never_fails():
    command = QsfpLinks().command(interfaces=["enp9s9f9np9"], bond="bond9")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    parsed = parse_links(result.stdout.splitlines())
    assert parsed["links"]["enp9s9f9np9"]["present"] is False and parsed["links"]["bond9"]["present"] is False


def test_missing_interface_is_named_in_one_line():
    fact = links("link=enp1s0f0np0 present=1 carrier=1 operstate=up mtu=1500", "link=enp1s0f1np1 present=0")
    assert hardware_problem("spark-2", settings(), fact) == (
        "spark-2: QSFP interface enp1s0f1np1 not found; is this a DGX Spark / is the cable in?"
    )


def test_no_link_on_any_port_fails_but_one_cable_is_enough():
    none = links("link=enp1s0f0np0 present=1 carrier=0", "link=enp1s0f1np1 present=1 carrier=0")
    assert hardware_problem("spark-1", settings(), none) == "spark-1: no QSFP link on enp1s0f0np0/enp1s0f1np1 (cable?)"
    one = links("link=enp1s0f0np0 present=1 carrier=1", "link=enp1s0f1np1 present=1 carrier=0")
    assert hardware_problem("spark-1", settings(), one) is None
    assert hardware_problem("spark-1", settings(qsfp_carrier_required="all"), one) == (
        "spark-1: no QSFP link on enp1s0f1np1 (cable?)"
    )


def test_admin_down_ports_are_not_a_hardware_problem():
    # carrier is unreadable until netplan brings the ports up
    assert hardware_problem("spark-1", settings(), FRESH) is None
    # enslaved ports still report their own carrier
    assert hardware_problem("spark-1", settings(), CONVERGED) is None


def test_drift_is_empty_only_when_the_bond_is_in_place():
    assert bond_drift(settings(), CONVERGED) == []
    assert bond_drift(settings(), FRESH) == ["bond0 does not exist"]
    flushed = {**CONVERGED, "bond_addresses": []}
    assert bond_drift(settings(), flushed) == ["bond0 lacks 10.0.0.1/24"]
    assert "enp1s0f0np0 MTU is 9000" in bond_drift(settings(mtu=1500), CONVERGED)


def test_a_bond_in_another_mode_drifts_and_must_be_recreated():
    assert bond_drift(settings(), MODE_DRIFTED) == ["bond0 mode is active-backup"]
    assert bond_needs_recreate(settings(), MODE_DRIFTED)
    # the same live bond is in place for a group_data that asks for its mode
    assert bond_drift(settings(bond_mode="active-backup"), MODE_DRIFTED) == []
    assert not bond_needs_recreate(settings(bond_mode="active-backup"), MODE_DRIFTED)
    assert bond_drift(settings(bond_mode="active-backup"), CONVERGED) == ["bond0 mode is balance-xor"]


def test_only_an_existing_bond_with_a_known_other_mode_is_deleted():
    assert not bond_needs_recreate(settings(), CONVERGED)
    assert not bond_needs_recreate(settings(), FRESH)  # nothing to delete yet
    unreadable = {**MODE_DRIFTED, "links": {**MODE_DRIFTED["links"],
                                            "bond0": {**MODE_DRIFTED["links"]["bond0"], "mode": None}}}
    assert not bond_needs_recreate(settings(), unreadable)


# --- the bond wait (files/bond_up_wait.sh), run against a fake sysfs, ip and ping

PEERS = [{"name": "spark-2", "qsfp_ip": "10.0.0.2"}, {"name": "spark-3", "qsfp_ip": "10.0.0.3"}]
PEER_IPS = ["10.0.0.2", "10.0.0.3"]
IP_LINE = "7: bond0    inet {} brd 10.0.0.255 scope global bond0\\       valid_lft forever preferred_lft forever\n"
# `ip -o -4 address show dev BOND`: the lines in $STUBS/addresses, or none for another device.
FAKE_IP = """#!/bin/sh
echo "ip $*" >> "$STUBS/calls"
[ "$*" = "-o -4 address show dev bond0" ] && cat "$STUBS/addresses"
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
    """A temp sysfs with bond0's operstate, plus ip and ping stubs first on PATH."""

    def __init__(self, root, operstate="up", addresses=("10.0.0.1/24",), answering=PEER_IPS, max_payload=8972):
        self.stubs, self.sysfs = root / "stubs", root / "sys"
        (self.sysfs / "class/net/bond0").mkdir(parents=True)
        if operstate is not None:
            (self.sysfs / "class/net/bond0/operstate").write_text(operstate + "\n")
        (self.stubs / "bin").mkdir(parents=True)
        for name, text in (("ip", FAKE_IP), ("ping", FAKE_PING)):
            (self.stubs / "bin" / name).write_text(text)
            (self.stubs / "bin" / name).chmod(0o755)
        (self.stubs / "addresses").write_text("".join(IP_LINE.format(a) for a in addresses))
        (self.stubs / "answering").write_text("".join(f"{peer}\n" for peer in answering))
        (self.stubs / "max_payload").write_text(f"{max_payload}\n")
        (self.stubs / "calls").write_text("")

    def run(self, argv):
        env = {"PATH": f"{self.stubs / 'bin'}:/usr/bin:/bin", "STUBS": str(self.stubs), "SYSFS_ROOT": str(self.sysfs)}
        start = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
        return result, time.monotonic() - start

    def wait(self, timeout=1):
        return self.run(["sh", str(BOND_UP_WAIT), "bond0", "10.0.0.1/24", "9000", str(timeout), *PEER_IPS])

    def calls(self):
        return (self.stubs / "calls").read_text().splitlines()


def test_bond_wait_passes_when_the_bond_is_up_and_every_peer_answers_full_mtu(tmp_path):
    node = FakeNode(tmp_path)
    result, _ = node.wait()
    assert (result.returncode, result.stderr) == (0, "")
    assert node.calls() == [
        "ip -o -4 address show dev bond0",
        "ping -c1 -W1 -I bond0 10.0.0.2",
        "ping -c1 -W2 -M do -s 8972 -I bond0 10.0.0.2",
        "ping -c1 -W1 -I bond0 10.0.0.3",
        "ping -c1 -W2 -M do -s 8972 -I bond0 10.0.0.3",
    ]


@pytest.mark.parametrize(
    "node_state, message",
    [
        ({"operstate": "down"}, "bond0 is not up after 1s (cable? peer?)"),
        ({"operstate": None}, "bond0 is not up after 1s (cable? peer?)"),  # no bond at all
        ({"addresses": ()}, "bond0 has no address 10.0.0.1/24 after 1s"),
        ({"addresses": ("10.0.0.1/16", "10.0.0.11/24")}, "bond0 has no address 10.0.0.1/24 after 1s"),
        ({"answering": ["10.0.0.2"]}, "peer 10.0.0.3 does not answer ping over bond0 after 1s"),
        ({"max_payload": 1472}, "MTU 9000 does not pass to peer 10.0.0.2 over bond0 (peer or switch MTU?)"),
    ],
)
def test_bond_wait_fails_in_one_line_within_its_timeout(tmp_path, node_state, message):
    result, elapsed = FakeNode(tmp_path, **node_state).wait(timeout=1)
    assert (result.returncode, result.stderr) == (1, message + "\n")
    assert elapsed < 5, "the wait is bounded by its timeout"


def test_bond_wait_waits_for_the_bond_to_come_up(tmp_path):
    node = FakeNode(tmp_path, operstate="down")
    operstate = node.sysfs / "class/net/bond0/operstate"
    # The bond comes up a second after the wait starts.
    flip = subprocess.Popen(["sh", "-c", f"sleep 1; echo up > {operstate}"])
    try:
        result, elapsed = node.wait(timeout=10)
    finally:
        flip.wait(timeout=10)
    assert (result.returncode, result.stderr) == (0, "")
    assert elapsed < 8


def test_bond_wait_needs_its_arguments(tmp_path):
    result, _ = FakeNode(tmp_path).run(["sh", str(BOND_UP_WAIT), "bond0", "10.0.0.1/24"])
    assert result.returncode == 2 and result.stderr.startswith("usage: bond_up_wait.sh BOND ADDRESS MTU TIMEOUT")


def test_role_sends_the_shipped_wait_with_this_nodes_values(tmp_path):
    s = settings(peers=PEERS, bond_up_timeout_s=1)
    command = bond_up_command(s)
    assert command.startswith("sh -c ") and command.endswith(" bond_up_wait.sh bond0 10.0.0.1/24 9000 1 10.0.0.2 10.0.0.3")
    node = FakeNode(tmp_path / "up")
    result, _ = node.run(["sh", "-c", command])
    assert (result.returncode, result.stderr) == (0, "")
    assert "ping -c1 -W2 -M do -s 8972 -I bond0 10.0.0.3" in node.calls()
    result, _ = FakeNode(tmp_path / "down", operstate="down").run(["sh", "-c", command])
    assert (result.returncode, result.stderr) == (1, "bond0 is not up after 1s (cable? peer?)\n")
    assert settings().bond_up_timeout_s == 60 and " 9000 60 10.0.0.2" in bond_up_command(settings())


# --- operations, built offline against fake facts -----------------------------

APPLY = "Apply netplan (validated first)"
BOND_CHECK = "Wait for bond0 and ping every peer over it"


def op(ops, name):
    return next(entry for entry in ops if entry[0] == name)


INSTALLED = {DebPackages: {"netplan.io": ["1"], "iputils-ping": ["3"]}}


def converged_files():
    return {"/etc/netplan/40-spark-cluster.yaml": (render_netplan(settings()), 600)}


def test_fresh_node_writes_applies_and_checks_once():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: FRESH, DebPackages: {}})
    names = [name for name, _, _ in ops]
    assert names == [
        "Install netplan and ping",
        "Describe bond0 in /etc/netplan/40-spark-cluster.yaml",
        "Apply netplan (validated first)",
        "Wait for bond0 and ping every peer over it",
    ]
    _, put, _ = ops[1]
    assert "chmod 600 /etc/netplan/40-spark-cluster.yaml" in put
    assert "chown root:root /etc/netplan/40-spark-cluster.yaml" in put
    assert ops[2][1] == ["netplan generate", "netplan apply"]
    assert ops[3][1] == [bond_up_command(settings())]
    assert ops[3][2], "the bond check only runs when netplan was applied in this run"


def test_converged_node_yields_no_command_at_all():
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: CONVERGED, **INSTALLED}, converged_files())
    for name, commands, condition in ops:
        # ops guarded by _if are skipped at run time: their guard depends on an op that yields nothing
        assert commands == [] or condition, (name, commands)
    # Packages and the file are in place: neither is even asked about again.
    assert [name for name, _, _ in ops] == [APPLY, BOND_CHECK]
    assert op(ops, APPLY)[2] and op(ops, BOND_CHECK)[2]


def test_flushed_bond_address_is_repaired_without_a_file_change():
    flushed = {**CONVERGED, "bond_addresses": []}
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: flushed, **INSTALLED}, converged_files())
    apply_op = op(ops, APPLY)
    assert apply_op[1] == ["netplan generate", "netplan apply"] and not apply_op[2]


def test_bond_mode_change_recreates_the_bond_without_a_file_change():
    # The netplan file already says balance-xor, so only the drift can make
    # the apply run: it must not wait for a file change that never comes.
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: MODE_DRIFTED, **INSTALLED}, converged_files())
    assert [name for name, _, _ in ops] == [APPLY, BOND_CHECK]
    commands, condition = op(ops, APPLY)[1:]
    assert commands == ["netplan generate", "ip link delete bond0", "netplan apply"]
    assert not condition, "the apply runs unconditionally when the live bond drifted"
    assert op(ops, BOND_CHECK)[2], "the bond check follows the apply"


def test_missing_port_fails_the_host_first_and_changes_nothing():
    fact = links("link=enp1s0f0np0 present=1 carrier=1", "link=enp1s0f1np1 present=0", "link=bond0 present=0")
    ops = build_operations(network.apply, {**HOST_DATA}, {QsfpLinks: fact, DebPackages: {}})
    assert len(ops) == 1
    name, commands, _ = ops[0]
    assert name == "Check the QSFP hardware"
    result = subprocess.run(["sh", "-c", commands[0]], capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert result.stderr == "spark-1: QSFP interface enp1s0f1np1 not found; is this a DGX Spark / is the cable in?\n"


def test_dual_subnet_is_refused_before_any_operation():
    with pytest.raises(SettingError, match="dual_subnet"):
        build_operations(network.apply, {**HOST_DATA, "network_mode": "dual_subnet"}, {QsfpLinks: FRESH})
