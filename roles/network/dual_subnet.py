"""network_mode = "dual_subnet": each rail (PCIe half) with its own address on its own subnet (pure).

NVIDIA's layout: with one cable in port 1, enp1s0f1np1 on 192.168.100.0/24 and
enP2p1s0f1np1 on 192.168.101.0/24; NCCL gets both halves' HCAs, so the cable's
full 200 Gb/s. IPv6 link-local is off on the rails (`link-local: []`), as the
community recipes do: nothing here speaks IPv6 and it keeps the GID tables short.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

from spark_cluster.templates import render_template

TEMPLATE = Path(__file__).parent / "templates" / "dual_subnet.yaml.j2"


def render(s: SimpleNamespace) -> str:
    return render_template(TEMPLATE, {"rails": s.fabric.rails, "mtu": s.mtu})


def drift(s: SimpleNamespace, fact: dict) -> list[str]:
    """How the live rails differ from the netplan file's intent (empty: in place)."""
    links = fact.get("links", {})
    found = []
    for rail in s.fabric.rails:
        link = links.get(rail.netdev, {})
        if link.get("master"):
            found.append(f"{rail.netdev} is enslaved to {link['master']}")
        if link.get("addresses", []) != [rail.address]:
            found.append(f"{rail.netdev} addresses are {link.get('addresses', [])}, not [{rail.address}]")
        if link.get("mtu") != s.mtu:
            found.append(f"{rail.netdev} MTU is {link.get('mtu')}")
    return found


def before_apply(s: SimpleNamespace, fact: dict) -> list[str]:
    """netplan apply never deletes a virtual device it no longer defines: a
    bond left over from bond mode would keep the rails enslaved."""
    links = fact.get("links", {})
    masters = sorted({links[rail.netdev]["master"] for rail in s.fabric.rails
                      if links.get(rail.netdev, {}).get("master")})
    return [f"ip link delete {shlex.quote(master)}" for master in masters]
