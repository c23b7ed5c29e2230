"""What makes a lab cluster differ from real Sparks, kept in one place."""

from lab import api_key_path, lab_nodes
from spark_cluster.inventory import define_cluster

# The lab VMs cannot pull images and have no GPU: the standin role builds a
# stand-in engine on the head (distribute copies it to the workers), and the
# model needs no real disk space.
LAB_OVERRIDES = {
    "serving_standin": True,
    "model_disk_gib": 1,
    # The lab VMs have no GPU and no NVIDIA driver: the verify suite's
    # gpu_memory check skips here, where on a Spark a missing driver fails it.
    "gpu_expected": False,
    # Soft-RoCE under TCG emulation moves a few hundred Mb/s: verify reports
    # each rail's bandwidth but cannot hold it to the link rate sysfs claims.
    "rdma_min_link_fraction": 0,
    # The stand-in holds no model: the memory check before each start runs
    # as on a Spark, against the share a 1.5 GiB VM can spare.
    "serving_memory_check": 0.25,
    # The stand-in answers in milliseconds and restarts in seconds: its
    # watcher may judge it faster than a real engine's (defaults: 30 s, 60 s).
    "serving_watch_probe_timeout_s": 10,
    "serving_watch_backoff_s": 20,
}


def lab_api_key() -> dict:
    """The API key `python -m lab up` made, once there is one: the lab serves
    with a key (verify and the watcher use it; a request without it gets 401)."""
    path = api_key_path()
    return {"serving_api_key_file": str(path)} if path.exists() else {}


def lab_cluster(count: int, **settings):
    """`settings`: cluster-wide values a lab variant changes (e.g. network_mode)."""
    nodes = lab_nodes(count)
    for index, node in enumerate(nodes, start=1):
        # NVIDIA's playbook numbering: .10, .11, ... on the first rail's subnet.
        node["qsfp_address"] = f"192.168.100.{9 + index}/24"
    return define_cluster(nodes, **LAB_OVERRIDES, **lab_api_key(), **settings)
