"""The network mode's sub-role, picked by the fabric's mode (as kubespray picks
a network plugin), and the files every mode writes (pure: unit-tested)."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

from . import bond, dual_subnet

MODES: dict[str, ModuleType] = {"bond": bond, "dual_subnet": dual_subnet}


def mode_role(s: SimpleNamespace) -> ModuleType:
    return MODES[s.fabric.mode]


def render_netplan(s: SimpleNamespace) -> str:
    return mode_role(s).render(s)


def render_sysctl() -> str:
    return (
        "# Managed by spark-cluster (roles/network).\n"
        "# The QSFP halves may share one L2 domain (a switch): answer ARP only for an\n"
        "# address on the netdev asked, and announce from the netdev that holds it, so\n"
        "# a peer never learns one rail's MAC for another rail's address.\n"
        "net.ipv4.conf.all.arp_ignore = 1\n"
        "net.ipv4.conf.all.arp_announce = 2\n"
    )
