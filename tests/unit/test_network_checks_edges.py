"""roles/network/checks.py at its edges: a bond with one slave too many, a
port whose MTU fell back to 1500, and `qsfp_carrier_required` given on the
command line. Each once let a wrong line through the tests (mutation testing,
docs/benchmarks.md): the deploy would call a half-configured bond in place."""

from test_network import settings

from roles.network.checks import bond_drift, hardware_problem
from roles.network.facts import parse_links


def bond(slaves="enp1s0f0np0,enp1s0f1np1", port_mtu=9000):
    return parse_links([
        f"link=enp1s0f0np0 present=1 carrier=1 operstate=up mtu={port_mtu} master=bond0 slaves= mode=",
        "link=enp1s0f1np1 present=1 carrier=0 operstate=up mtu=9000 master=bond0 slaves= mode=",
        f"link=bond0 present=1 carrier=1 operstate=up mtu=9000 master= slaves={slaves} mode=balance-xor",
        "address=10.0.0.1/24",
    ])


def test_a_bond_with_an_extra_slave_drifts():
    """A port enslaved by hand (or left from an older layout) is drift, even
    though every wanted slave is there."""
    drift = bond_drift(settings(), bond("enp1s0f0np0,enp1s0f1np1,enp2s0"))
    assert drift == ["bond0 slaves are ['enp1s0f0np0', 'enp1s0f1np1', 'enp2s0']"]


def test_a_bond_that_lost_a_slave_drifts():
    """One port left the bond (unplugged from it by hand, or never enslaved):
    the bond still exists with its address, and that is not in place."""
    assert bond_drift(settings(), bond("enp1s0f0np0")) == ["bond0 slaves are ['enp1s0f0np0']"]


def test_a_port_mtu_below_the_wanted_one_drifts():
    """A port that fell back to 1500 breaks jumbo frames through the bond."""
    assert bond_drift(settings(), bond(port_mtu=1500)) == ["enp1s0f0np0 MTU is 1500"]


def test_carrier_required_all_given_on_the_command_line():
    """`--data qsfp_carrier_required=all` arrives as a string built at run time,
    not the literal in group_data: it must mean `all` just the same."""
    given = "".join(["al", "l"])
    assert hardware_problem("spark-1", settings(qsfp_carrier_required=given), bond()) == (
        "spark-1: no QSFP link on enp1s0f1np1 (cable?)")
