"""Decisions from the QsfpLinks fact, and the shell checks the role runs (pure)."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

from spark_cluster.host_ops import fail_command


def hardware_problem(host_name: str, s: SimpleNamespace, fact: dict) -> str | None:
    """Why this node cannot carry the bond, or None."""
    links = fact.get("links", {})
    for name in s.qsfp_interfaces:
        if not links.get(name, {}).get("present"):
            return f"{host_name}: QSFP interface {name} not found; is this a DGX Spark / is the cable in?"
    # Carrier is unreadable (None) while a port is still administratively
    # down on a fresh node: netplan brings it up and the post-apply check
    # catches a missing cable then. Only a port that says "no carrier" counts.
    carriers = {name: links[name]["carrier"] for name in s.qsfp_interfaces}
    without = [name for name, carrier in carriers.items() if carrier is False]
    if s.qsfp_carrier_required == "all":
        broken = without
    else:
        broken = without if len(without) == len(carriers) else []
    if broken:
        return f"{host_name}: no QSFP link on {'/'.join(broken)} (cable?)"
    return None


def bond_drift(s: SimpleNamespace, fact: dict) -> list[str]:
    """How the live bond differs from the netplan file's intent (empty: in place)."""
    links = fact.get("links", {})
    bond = links.get(s.bond_name, {})
    if not bond.get("present"):
        return [f"{s.bond_name} does not exist"]
    drift = []
    if sorted(bond.get("slaves") or []) != sorted(s.qsfp_interfaces):
        drift.append(f"{s.bond_name} slaves are {bond.get('slaves')}")
    if bond.get("mode") != s.bond_mode:
        drift.append(f"{s.bond_name} mode is {bond.get('mode')}")
    if s.address not in fact.get("bond_addresses", []):
        drift.append(f"{s.bond_name} lacks {s.address}")
    for name in [s.bond_name, *s.qsfp_interfaces]:
        if links.get(name, {}).get("mtu") != s.mtu:
            drift.append(f"{name} MTU is {links.get(name, {}).get('mtu')}")
    return drift


def bond_needs_recreate(s: SimpleNamespace, fact: dict) -> bool:
    """networkd cannot change the mode of an existing bond; it must be deleted first."""
    bond = fact.get("links", {}).get(s.bond_name, {})
    return bool(bond.get("present")) and bond.get("mode") not in (None, s.bond_mode)


def bond_up_command(s: SimpleNamespace) -> str:
    """Wait (bounded) for the bond to carry its address and every peer to answer
    over it, then prove jumbo frames pass end to end."""
    q = shlex.quote
    bond, timeout = s.bond_name, int(s.bond_up_timeout_s)
    lines = [
        f"deadline=$(( $(date +%s) + {timeout} ))",
        'wait_for() { message=$1; shift; until "$@" >/dev/null 2>&1; do '
        'if [ "$(date +%s)" -ge "$deadline" ]; then echo "$message" >&2; exit 1; fi; sleep 1; done; }',
        f"has_address() {{ ip -o -4 address show dev {q(bond)} | grep -qF {q(f'inet {s.address} ')}; }}",
        f"wait_for {q(f'{bond} is not up after {timeout}s (cable? peer?)')} "
        f"grep -qx up {q(f'/sys/class/net/{bond}/operstate')}",
        f"wait_for {q(f'{bond} has no address {s.address} after {timeout}s')} has_address",
    ]
    payload = s.mtu - 28  # IPv4 + ICMP headers
    for peer in s.peer_ips:
        lines.append(
            f"wait_for {q(f'peer {peer} does not answer ping over {bond} after {timeout}s')} "
            f"ping -c1 -W1 -I {q(bond)} {q(peer)}"
        )
        lines.append(
            f"ping -c1 -W2 -M do -s {payload} -I {q(bond)} {q(peer)} >/dev/null 2>&1 || "
            + fail_command(f"MTU {s.mtu} does not pass to peer {peer} over {bond} (peer or switch MTU?)")
        )
    return "\n".join(lines)
