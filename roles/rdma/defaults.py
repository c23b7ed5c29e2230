DEFAULTS = {
    # "auto": the detector picks them from sysfs on each node (and again at
    # every serving start); a pinned value (e.g. "rocep1s0f0", 3) wins.
    "nccl_ib_hca": "auto",
    "nccl_ib_gid_index": "auto",
    # The RoCE v2 IPv4 GID appears a moment after a link gets its address.
    "roce_gid_wait_s": 10,
    "rdma_packages": ["rdma-core", "ibverbs-utils", "perftest"],
}
