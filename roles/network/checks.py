"""Decisions from the QsfpLinks fact, and the shell checks the role runs (pure)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from spark_cluster.shipped import shipped_command

# Shipped with the role and run by the unit tests against a fake sysfs, ip and ping.
BOND_UP_WAIT = Path(__file__).parent / "files" / "bond_up_wait.sh"


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
    over it, then prove jumbo frames pass end to end: files/bond_up_wait.sh,
    sent inline with this node's values (nothing is installed on the node)."""
    args = [s.bond_name, s.address, str(s.mtu), str(int(s.bond_up_timeout_s)), *s.peer_ips]
    return shipped_command(BOND_UP_WAIT, *args)
