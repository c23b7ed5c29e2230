"""Decisions from the QsfpLinks fact, and the shell checks the role runs (pure)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

from spark_cluster.shipped import shipped_command

# Shipped with the role and run by the unit tests against a fake sysfs, ip and ping.
LINK_UP_WAIT = Path(__file__).parent / "files" / "link_up_wait.sh"
NM_RELEASE = Path(__file__).parent / "files" / "nm_release.sh"


def our_netdevs(s: SimpleNamespace) -> list[str]:
    """Every netdev our netplan file renders: the rails, and a bond over them."""
    return list(dict.fromkeys([*s.fabric.netdevs, *(link.netdev for link in s.fabric.links)]))


def nm_drift(s: SimpleNamespace, fact: dict) -> list[str]:
    """Our netdevs that a running NetworkManager still manages (its default
    DHCP profile would flush their addresses)."""
    links = fact.get("links", {})
    return [f"{name} is managed by NetworkManager ({links[name]['nm']})" for name in our_netdevs(s)
            if links.get(name, {}).get("nm") not in (None, "unmanaged")]


# NetworkManager reads this at start, before it takes any device: at boot it
# cannot race udev's NM_UNMANAGED mark (the lab saw it take a rail's second
# half, "connected (externally)", and reset its MTU to 1500).
NM_UNMANAGED_FILE = "/etc/NetworkManager/conf.d/90-spark-cluster-qsfp.conf"


def nm_present(fact: dict) -> bool:
    """Whether NetworkManager answers for any QSFP netdev (DGX OS: yes)."""
    return any(link.get("nm") for link in fact.get("links", {}).values())


def render_nm_unmanaged(s: SimpleNamespace) -> str:
    """NetworkManager's own word that our netdevs are not its to manage (the
    list is appended to, as netplan itself does, never replaced)."""
    names = ",".join(f"interface-name:{name}" for name in our_netdevs(s))
    return ("# Managed by spark-cluster (roles/network): the QSFP links are networkd's (netplan).\n"
            "[keyfile]\n"
            f"unmanaged-devices+={names}\n")


def nm_release_command(s: SimpleNamespace) -> str:
    """files/nm_release.sh for our netdevs: NetworkManager lets go of them now."""
    return shipped_command(NM_RELEASE, *our_netdevs(s))


def hardware_problem(host_name: str, s: SimpleNamespace, fact: dict) -> str | None:
    """Why this node cannot carry its rails, or None."""
    links = fact.get("links", {})
    rails = s.fabric.netdevs
    for name in rails:
        if not links.get(name, {}).get("present"):
            return f"{host_name}: QSFP interface {name} not found; is this a DGX Spark / is the cable in?"
    # Carrier is unreadable (None) while a port is still administratively
    # down on a fresh node: netplan brings it up and the post-apply check
    # catches a missing cable then. Only a port that says "no carrier" counts.
    without = [name for name in rails if links[name]["carrier"] is False]
    if s.qsfp_carrier_required == "all":
        broken = without
    else:
        broken = without if len(without) == len(rails) else []
    if broken:
        return (f"{host_name}: no QSFP link on {'/'.join(broken)} (cable? qsfp_ports = {s.qsfp_ports} "
                "names the cabled port(s))")
    return None


def link_up_commands(s: SimpleNamespace, peers: list[dict], lost: Iterable[str]) -> list[str]:
    """For each link of ours (bond0, or each rail): wait (bounded) for it to
    carry its address and every peer to answer on that link's subnet, then
    prove jumbo frames pass end to end: files/link_up_wait.sh, sent inline
    with this node's values (nothing is installed on the node).

    `peers` are the inventory's (host data `peers`, in the order each link's
    peer_ips follow); a peer in `lost` (names: failed or lost earlier in this
    run) is not waited for, it will not answer. A link whose every peer is
    lost is not waited on at all: on a back-to-back cable its carrier went
    with the peer, and there is nobody to prove the path to; the next run,
    with the peer back, proves it from the peer's side."""
    timeout = str(int(s.qsfp_up_timeout_s))
    gone = {index for index, peer in enumerate(peers) if peer["name"] in set(lost)}
    commands = []
    for link in s.fabric.links:
        if len(peers) != len(link.peer_ips):
            raise ValueError(f"{link.netdev}: {len(link.peer_ips)} peer addresses for {len(peers)} peers")
        answering = [ip for index, ip in enumerate(link.peer_ips) if index not in gone]
        if link.peer_ips and not answering:
            continue
        commands.append(shipped_command(LINK_UP_WAIT, link.netdev, link.address, str(s.mtu), timeout, *answering))
    return commands
