DEFAULTS = {
    # Only "bond" is implemented; "dual_subnet" (NVIDIA's per-port addresses)
    # is refused with a SettingError until the inventory carries its fields.
    "network_mode": "bond",
    # A DGX Spark's two QSFP ports as the first PCIe function sees them.
    "qsfp_interfaces": ["enp1s0f0np0", "enp1s0f1np1"],
    "bond_name": "bond0",
    "bond_mode": "balance-xor",
    # Spreads TCP flows over both ports; RDMA traffic bypasses the bond anyway.
    "bond_transmit_hash_policy": "layer3+4",
    "mtu": 9000,
    # "any": one cable is a supported setup (a field report bonds a single
    # link), so only a node with no QSFP link at all is refused; "all" demands
    # a carrier on every listed port.
    "qsfp_carrier_required": "any",
    # First run only: how long bond0 and the peers get to come up after apply.
    "bond_up_timeout_s": 60,
    "netplan_file": "/etc/netplan/40-spark-cluster.yaml",
}
