"""roles/network: settings, the netplan file, decisions from the QsfpLinks fact,
and the operations the role builds for a fresh, a converged and a broken node
(built offline against fake facts: nothing connects anywhere)."""

import subprocess

import pytest
from collect_ops import build_operations
import yaml
from pyinfra.facts.deb import DebPackages

import roles.network as network
from roles.network.checks import bond_drift, bond_up_command, hardware_problem
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


def test_bond_up_check_is_valid_sh_and_pings_every_peer_at_full_mtu():
    s = settings(peers=[{"name": "spark-2", "qsfp_ip": "10.0.0.2"}, {"name": "spark-3", "qsfp_ip": "10.0.0.3"}])
    command = bond_up_command(s)
    assert subprocess.run(["sh", "-n", "-c", command], timeout=10).returncode == 0
    assert "ping -c1 -W1 -I bond0 10.0.0.2" in command and "ping -c1 -W1 -I bond0 10.0.0.3" in command
    assert "-M do -s 8972 -I bond0 10.0.0.3" in command
    assert "deadline=$(( $(date +%s) + 60 ))" in command


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


def test_bond_mode_change_recreates_the_bond():
    other_mode = parse_links([line.replace("mode=balance-xor", "mode=active-backup") for line in [
        f"link=bond0 present=1 operstate=up mtu=9000 slaves={','.join(SLAVES)} mode=balance-xor",
    ]])
    fact = {"links": {**CONVERGED["links"], **other_mode["links"]}, "bond_addresses": ["10.0.0.1/24"]}
    ops = build_operations(network.apply, HOST_DATA, {QsfpLinks: fact, **INSTALLED}, converged_files())
    assert op(ops, APPLY)[1] == ["netplan generate", "ip link delete bond0", "netplan apply"]


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
