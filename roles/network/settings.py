"""The network role's settings, checked before any operation is built."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from spark_cluster.fabric import QSFP_NETDEVS, fabric
from spark_cluster.qsfp_owners import OWN_NETPLAN_FILE
from spark_cluster.settings import cluster_settings


# Netplan only accepts a hash policy for the modes that hash.
HASHING_MODES = ("balance-xor", "802.3ad", "balance-tlb")
# dual_subnet on a switch puts every half on one L2 domain: answer ARP only on
# the half that holds the address, or a peer may learn one half's MAC for the
# other half's address and send that rail's traffic to it.
SYSCTL_FILE = "/etc/sysctl.d/90-spark-cluster-rails.conf"


def network_settings(host_data: Any) -> SimpleNamespace:
    """The settings (types and choices checked by spark_cluster.schema), the
    fabric, and the fixed paths the role writes."""
    s = cluster_settings(host_data)
    s.fabric = fabric(host_data)
    # Fixed, not settings: other owners of the ports are everything but this file.
    s.netplan_file = OWN_NETPLAN_FILE
    s.sysctl_file = SYSCTL_FILE
    s.transmit_hash_policy = s.bond_transmit_hash_policy if s.bond_mode in HASHING_MODES else None
    # Every QSFP netdev is read, not only the rails: a leftover address or
    # bond on a half that is no longer a rail is drift too.
    s.watched = list(QSFP_NETDEVS) + ([s.fabric.bond_name] if s.fabric.bond_name else [])
    return s
