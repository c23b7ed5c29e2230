"""The netplan file for the bond, rendered from templates/ (pure: unit-tested)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from spark_cluster.templates import render_template

TEMPLATE = Path(__file__).parent / "templates" / "40-spark-cluster.yaml.j2"


def render_netplan(s: SimpleNamespace) -> str:
    return render_template(TEMPLATE, {
        "bond_name": s.bond_name,
        "interfaces": s.qsfp_interfaces,
        "address": s.address,
        "mtu": s.mtu,
        "bond_mode": s.bond_mode,
        "transmit_hash_policy": s.transmit_hash_policy,
    })
