"""How the QSFP netdevs are wired: point-to-point lanes for 2 nodes, one switch for 4.

Each PCIe half of a port is its own "lane" (a UDP socket pair); the two halves of a port
share the cable, so a cable in port 1 joins two lanes. For 2 nodes, lane L of one node is
wired to lane L of the other; for 4 nodes, every cabled lane of every node is a member of one
switch (one L2 domain, as the "multi Sparks through a switch" playbook cables it). Uncabled
lanes are wired the same way but their link is set off over QMP at every start
(nodes.start), so the guest reads carrier 0 on them.
"""

from __future__ import annotations

from . import cx7, state

LOOPBACK = "127.0.0.1"


def uses_switch(count: int) -> bool:
    return count > 2


def qsfp_endpoints(index: int, lane: int, count: int) -> tuple[str, str]:
    """(local, remote) UDP endpoints of node `index`'s QSFP netdev `lane`.

    UDP sockets hold no connection, so either end of a cable can restart
    (reboot, rebuild) without the other noticing anything but lost frames.
    """
    local = f"{LOOPBACK}:{state.nic_port(index, lane)}"
    if uses_switch(count):
        remote = state.switch_port()
    else:
        peer = 2 if index == 1 else 1
        remote = state.nic_port(peer, lane)
    return local, f"{LOOPBACK}:{remote}"


def switch_specs(count: int, cables: str = cx7.DEFAULT_CABLES) -> list[tuple[int, list[int]]]:
    """The one switch, as [(switch port, member ports)]: every cabled lane of every node.

    An uncabled lane is no member: the switch drops what it would send (its link is off anyway).
    """
    members = [state.nic_port(index, lane)
               for index in range(1, count + 1)
               for lane in range(state.QSFP_LANES) if cx7.cabled(lane, cables)]
    return [(state.switch_port(), members)]


def udp_ports(index: int) -> list[int]:
    return [state.nic_port(index, lane) for lane in range(state.QSFP_LANES)]
