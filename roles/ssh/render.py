"""The text of the managed blocks (pure, unit-tested)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from spark_cluster.templates import render_template

TEMPLATES = Path(__file__).parent / "templates"


def known_hosts_text(members: Mapping[str, tuple[str, Iterable[str]]]) -> str:
    """known_hosts lines "<name>,<qsfp_ip> <type> <base64>" from
    {name: (qsfp_ip, [keys])}: sorted by name then key, duplicates dropped."""
    rows = [
        {"name": name, "qsfp_ip": ip, "host_keys": sorted(set(keys))}
        for name, (ip, keys) in sorted(members.items())
    ]
    return render_template(TEMPLATES / "ssh_known_hosts.j2", {"members": rows})


def ssh_config_text(peers: Iterable[Mapping[str, str]], user: str, identity_file: str) -> str:
    """A Host entry per peer, matched by its name or its QSFP address."""
    rows = sorted(({"name": p["name"], "qsfp_ip": p["qsfp_ip"]} for p in peers), key=lambda p: p["name"])
    return render_template(TEMPLATES / "ssh_config.j2", {"peers": rows, "user": user, "identity_file": identity_file})


def keys_by_name(block_lines: Iterable[str] | None) -> dict[str, list[str]]:
    """What a known_hosts block already says: {first host name of a line: [keys]}."""
    known: dict[str, set[str]] = {}
    for line in block_lines or []:
        parts = line.split()
        if len(parts) < 3 or line.lstrip().startswith("#"):
            continue
        name = parts[0].split(",")[0]
        known.setdefault(name, set()).add(f"{parts[1]} {parts[2]}")
    return {name: sorted(keys) for name, keys in known.items()}
