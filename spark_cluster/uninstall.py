"""What an uninstall takes away and how it proves nothing is left (pure: no
pyinfra operations, unit-tested).

The paths themselves are the roles' (each roles/<role>/uninstall.py names
what its role writes, from the role's own constants; roles/leftovers.py
gathers them): spark_cluster imports no role, so what lives here takes them
as arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml
from pyinfra.api import FactBase

from .shipped import shipped_command

# Shipped with the package and run by the unit tests against temporary trees and a stub systemctl.
LEFT_BEHIND = Path(__file__).parent / "files" / "left_behind.sh"


def left_behind_command(units: Iterable[str], paths: Iterable[str], check: bool) -> str:
    """One command that prints "unit NAME" for each installed unit file
    matching one of `units` (names or globs) and "path PATH" for each of
    `paths` still there; with `check` it also fails, naming them on stderr,
    when anything is."""
    return shipped_command(LEFT_BEHIND, "check" if check else "list", ",".join(units), *paths)


def parse_left_behind(lines: Iterable[str]) -> list[str]:
    """["unit spark-serving.service", "path /etc/...", ...] from left_behind.sh's output."""
    return [line.strip() for line in lines if line.strip().startswith(("unit ", "path "))]


class LeftBehind(FactBase):
    """What is left of spark-cluster on the node (see left_behind_command)."""

    default = list

    def command(self, units, paths):
        return left_behind_command(units, paths, check=False)

    def process(self, output):
        return parse_left_behind(output)


def netplan_links(lines: Iterable[str] | None) -> dict:
    """What a netplan file (its lines; None: absent) configures:
    {"netdevs": [ethernet], "addresses": [(netdev, address/prefix)], "bonds": [name]},
    in file order. Text that is not a netplan mapping configures nothing."""
    try:
        plan = yaml.safe_load("\n".join(lines or [])) if lines else None
    except yaml.YAMLError:
        plan = None
    network = plan.get("network") if isinstance(plan, dict) else None
    if not isinstance(network, dict):
        return {"netdevs": [], "addresses": [], "bonds": []}
    netdevs, addresses, bonds = [], [], []
    for kind in ("ethernets", "bonds"):
        section = network.get(kind)
        for name, definition in (section.items() if isinstance(section, dict) else []):
            (bonds if kind == "bonds" else netdevs).append(str(name))
            for entry in (definition or {}).get("addresses") or [] if isinstance(definition, dict) else []:
                # netplan also allows `- 10.0.0.1/24: {label: x}`
                text = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else entry
                addresses.append((str(name), str(text)))
    return {"netdevs": netdevs, "addresses": addresses, "bonds": bonds}


def addresses_to_release(configured: Iterable[tuple[str, str]], live_links: dict) -> list[tuple[str, str]]:
    """The (netdev, address) pairs of ours that a netdev still carries
    (QsfpLinks' fact): networkd forgets a link whose file is gone, it does not
    take its address away."""
    links = live_links.get("links", {})
    pairs = list(dict.fromkeys(configured))
    return [(dev, address) for dev, address in pairs if address in (links.get(dev) or {}).get("addresses", [])]


def bonds_to_delete(names: Iterable[str], live_links: dict) -> list[str]:
    """The bonds of ours that still exist (a bond has a mode; a plain netdev of that name is not ours)."""
    links = live_links.get("links", {})
    return [name for name in dict.fromkeys(names)
            if (links.get(name) or {}).get("present") and (links.get(name) or {}).get("mode")]


def release_args(addresses: Iterable[tuple[str, str]], bonds: Iterable[str], ports: Iterable[str]) -> list[str]:
    """The arguments of roles/network/files/qsfp_release.sh."""
    return [*(f"bond={name}" for name in bonds), *(f"address={dev}:{address}" for dev, address in addresses),
            *(f"port={port}" for port in ports)]
