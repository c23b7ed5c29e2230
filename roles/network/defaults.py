from spark_cluster.fabric import FABRIC_DEFAULTS
from spark_cluster.qsfp_owners import OWNER_DEFAULTS

DEFAULTS = {
    # network_mode, qsfp_ports, qsfp_subnets and bond_name: what the fabric is
    # (spark_cluster/fabric.py derives rails and the control address from them).
    **FABRIC_DEFAULTS,
    # bond mode only: balance-xor spreads TCP flows over the halves; RDMA
    # traffic bypasses the bond anyway.
    "bond_mode": "balance-xor",
    "bond_transmit_hash_policy": "layer3+4",
    "mtu": 9000,
    # "all": every rail (each PCIe half of each cabled port) needs a carrier;
    # "any": only a node with no QSFP link at all is refused (a cable that
    # brings up one half, bonded).
    "qsfp_carrier_required": "all",
    # First run only: how long the links and the peers get to come up after apply.
    "qsfp_up_timeout_s": 60,
    # qsfp_takeover: other configurations that claim a QSFP netdev (NVIDIA's
    # 40-cx7.yaml, NetworkManager profiles, networkd files) stop the run
    # unless it is True; then they are moved aside under
    # /etc/spark-cluster/takeover/, never deleted (spark_cluster/qsfp_owners.py).
    **OWNER_DEFAULTS,
    # dual_subnet on a switch puts every half on one L2 domain: answer ARP
    # only on the half that holds the address, or a peer may learn one half's
    # MAC for the other half's address and send that rail's traffic to it.
    "sysctl_file": "/etc/sysctl.d/90-spark-cluster-rails.conf",
}
