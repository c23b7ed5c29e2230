"""The network role's settings, checked before any operation is built."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from spark_cluster.fabric import QSFP_NETDEVS, fabric
from spark_cluster.qsfp_owners import OWN_NETPLAN_FILE
from spark_cluster.settings import require, role_settings

from .defaults import DEFAULTS

BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
# Netplan only accepts a hash policy for the modes that hash.
HASHING_MODES = ("balance-xor", "802.3ad", "balance-tlb")
HASH_POLICIES = ("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4")
MTU_RANGE = (1280, 9216)


def network_settings(host_data: Any) -> SimpleNamespace:
    s = role_settings(host_data, DEFAULTS)
    s.fabric = fabric(host_data)
    require(s.bond_mode in BOND_MODES, "bond_mode", f"must be one of {', '.join(BOND_MODES)}; got {s.bond_mode!r}")
    require(s.bond_transmit_hash_policy in HASH_POLICIES, "bond_transmit_hash_policy",
            f"must be one of {', '.join(HASH_POLICIES)}; got {s.bond_transmit_hash_policy!r}")
    low, high = MTU_RANGE
    require(isinstance(s.mtu, int) and not isinstance(s.mtu, bool) and low <= s.mtu <= high,
            "mtu", f"must be an integer from {low} to {high}, got {s.mtu!r}")
    require(s.qsfp_carrier_required in ("any", "all"), "qsfp_carrier_required",
            f"must be 'any' or 'all', got {s.qsfp_carrier_required!r}")
    require(isinstance(s.qsfp_up_timeout_s, int) and s.qsfp_up_timeout_s > 0, "qsfp_up_timeout_s",
            f"must be a positive integer, got {s.qsfp_up_timeout_s!r}")
    require(isinstance(s.qsfp_takeover, bool), "qsfp_takeover", f"must be True or False, got {s.qsfp_takeover!r}")
    # Fixed, not a setting: other owners of the ports are everything but this file.
    s.netplan_file = OWN_NETPLAN_FILE
    s.transmit_hash_policy = s.bond_transmit_hash_policy if s.bond_mode in HASHING_MODES else None
    # Every QSFP netdev is read, not only the rails: a leftover address or
    # bond on a half that is no longer a rail is drift too.
    s.watched = list(QSFP_NETDEVS) + ([s.fabric.bond_name] if s.fabric.bond_name else [])
    return s
