"""GPU memory: the full unified memory pool is visible to CUDA.

Desired state:
- the DRM override that caps CUDA at ~62 GB is absent;
- the initramfs no longer carries it;
- the node was rebooted exactly once for it, and never again once it is gone.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.settings import cluster_settings



def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    return [snapshot_want([cluster_settings(host.data).drm_override_file])]


@deploy("gpu: full unified memory for CUDA")
def apply():
    s = cluster_settings(host.data)

    override = Snapshot([s.drm_override_file]).absent(
        name="Remove the DRM override that halves CUDA memory",
        path=s.drm_override_file,
    )
    server.shell(
        name="Refresh the initramfs without the override",
        commands=["if command -v update-initramfs >/dev/null; then update-initramfs -u; fi"],
        _if=override.did_change,
    )
    server.reboot(
        name="Reboot once so the driver loads without the override",
        reboot_timeout=s.reboot_timeout_s,
        _if=override.did_change,
    )
