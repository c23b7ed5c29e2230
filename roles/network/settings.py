"""The network role's settings, checked before any operation is built."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from spark_cluster.settings import SettingError, require, role_settings

from .defaults import DEFAULTS

BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
# Netplan only accepts a hash policy for the modes that hash.
HASHING_MODES = ("balance-xor", "802.3ad", "balance-tlb")
HASH_POLICIES = ("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4")
MTU_RANGE = (1280, 9216)
# Linux interface names: at most 15 bytes, no '/', no whitespace.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check_mode(mode: Any) -> None:
    if mode == "dual_subnet":
        raise SettingError(
            "group_data: 'network_mode' = 'dual_subnet' (an address per QSFP port, NVIDIA's "
            "playbook) is not implemented yet; use network_mode = 'bond'"
        )
    require(mode == "bond", "network_mode", f"must be 'bond', got {mode!r}")


def _check_interfaces(interfaces: Any, bond: Any) -> None:
    require(
        isinstance(interfaces, (list, tuple)) and len(interfaces) > 0,
        "qsfp_interfaces", f"must be a non-empty list of interface names, got {interfaces!r}",
    )
    for name in interfaces:
        require(isinstance(name, str) and bool(_IFNAME.match(name)), "qsfp_interfaces",
                f"holds {name!r}, which is not an interface name")
    require(len(set(interfaces)) == len(interfaces), "qsfp_interfaces", f"lists an interface twice: {interfaces!r}")
    require(isinstance(bond, str) and bool(_IFNAME.match(bond)), "bond_name", f"is not an interface name: {bond!r}")
    require(bond not in interfaces, "bond_name", f"{bond!r} is also listed in qsfp_interfaces")


def network_settings(host_data: Any) -> SimpleNamespace:
    s = role_settings(host_data, DEFAULTS)
    _check_mode(s.network_mode)
    _check_interfaces(s.qsfp_interfaces, s.bond_name)
    require(s.bond_mode in BOND_MODES, "bond_mode", f"must be one of {', '.join(BOND_MODES)}; got {s.bond_mode!r}")
    require(s.bond_transmit_hash_policy in HASH_POLICIES, "bond_transmit_hash_policy",
            f"must be one of {', '.join(HASH_POLICIES)}; got {s.bond_transmit_hash_policy!r}")
    low, high = MTU_RANGE
    require(isinstance(s.mtu, int) and not isinstance(s.mtu, bool) and low <= s.mtu <= high,
            "mtu", f"must be an integer from {low} to {high}, got {s.mtu!r}")
    require(s.qsfp_carrier_required in ("any", "all"), "qsfp_carrier_required",
            f"must be 'any' or 'all', got {s.qsfp_carrier_required!r}")
    require(isinstance(s.bond_up_timeout_s, int) and s.bond_up_timeout_s > 0, "bond_up_timeout_s",
            f"must be a positive integer, got {s.bond_up_timeout_s!r}")

    s.qsfp_interfaces = list(s.qsfp_interfaces)
    if not host_data.get("qsfp_ip") or not host_data.get("qsfp_prefixlen"):
        raise SettingError("inventory: this host has no derived qsfp_ip/qsfp_prefixlen (define it with define_cluster)")
    # Derived by spark_cluster.inventory; never set by hand.
    s.address = f"{host_data.get('qsfp_ip')}/{host_data.get('qsfp_prefixlen')}"
    s.peer_ips = [peer["qsfp_ip"] for peer in host_data.get("peers") or []]
    s.transmit_hash_policy = s.bond_transmit_hash_policy if s.bond_mode in HASHING_MODES else None
    return s
