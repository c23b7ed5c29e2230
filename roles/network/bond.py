"""network_mode = "bond": bond0 over every rail, holding the node's one address (pure).

The bond joins both PCIe halves of each cabled port (with one cable in port 1:
enp1s0f1np1 + enP2p1s0f1np1), never the first half of each port, of which one
has no cable. TCP flows hash over the halves; NCCL gets the bond's RDMA
device(s) from the detector.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from spark_cluster.templates import render_template

TEMPLATE = Path(__file__).parent / "templates" / "bond.yaml.j2"


def render(s: SimpleNamespace) -> str:
    fab = s.fabric
    return render_template(TEMPLATE, {
        "bond_name": fab.bond_name,
        "interfaces": fab.netdevs,
        "address": fab.control_address,
        "mtu": s.mtu,
        "bond_mode": s.bond_mode,
        "transmit_hash_policy": s.transmit_hash_policy,
    })


def drift(s: SimpleNamespace, fact: dict) -> list[str]:
    """How the live bond differs from the netplan file's intent (empty: in place)."""
    fab = s.fabric
    links = fact.get("links", {})
    bond = links.get(fab.bond_name, {})
    if not bond.get("present"):
        return [f"{fab.bond_name} does not exist"]
    found = []
    if sorted(bond.get("slaves") or []) != sorted(fab.netdevs):
        found.append(f"{fab.bond_name} slaves are {bond.get('slaves')}")
    if bond.get("mode") != s.bond_mode:
        found.append(f"{fab.bond_name} mode is {bond.get('mode')}")
    if fab.control_address not in bond.get("addresses", []):
        found.append(f"{fab.bond_name} lacks {fab.control_address}")
    for name in [fab.bond_name, *fab.netdevs]:
        if links.get(name, {}).get("mtu") != s.mtu:
            found.append(f"{name} MTU is {links.get(name, {}).get('mtu')}")
    return found


def before_apply(s: SimpleNamespace, fact: dict) -> list[str]:
    """networkd cannot change the mode of an existing bond: it is deleted first."""
    bond = fact.get("links", {}).get(s.fabric.bond_name, {})
    if bond.get("present") and bond.get("mode") not in (None, s.bond_mode):
        return [f"ip link delete {s.fabric.bond_name}"]
    return []
