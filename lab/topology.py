"""How the QSFP ports are wired: point-to-point cables for 2 nodes, two switches for more."""

from __future__ import annotations

from . import state

LOOPBACK = "127.0.0.1"


def uses_switch(count: int) -> bool:
    return count > 2


def qsfp_endpoints(index: int, nic: int, count: int) -> tuple[str, str]:
    """(local, remote) UDP endpoints of node `index`'s QSFP port `nic`.

    UDP sockets hold no connection, so either end of a cable can restart
    (reboot, rebuild) without the other noticing anything but lost frames.
    """
    local = f"{LOOPBACK}:{state.nic_port(index, nic)}"
    if uses_switch(count):
        remote = state.switch_port(nic)
    else:
        peer = 2 if index == 1 else 1
        remote = state.nic_port(peer, nic)
    return local, f"{LOOPBACK}:{remote}"


def switch_specs(count: int) -> list[tuple[int, list[int]]]:
    """One switch per QSFP port index, as (switch port, member node ports)."""
    return [
        (state.switch_port(nic), [state.nic_port(i, nic) for i in range(1, count + 1)])
        for nic in range(state.QSFP_PORTS)
    ]


def udp_ports(index: int) -> list[int]:
    return [state.nic_port(index, nic) for nic in range(state.QSFP_PORTS)]
