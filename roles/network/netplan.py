"""The netplan file for the bond, rendered from templates/ (pure: unit-tested)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "40-spark-cluster.yaml.j2"


def render_netplan(s: SimpleNamespace) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(TEMPLATE).render(
        bond_name=s.bond_name,
        interfaces=s.qsfp_interfaces,
        address=s.address,
        mtu=s.mtu,
        bond_mode=s.bond_mode,
        transmit_hash_policy=s.transmit_hash_policy,
    )
