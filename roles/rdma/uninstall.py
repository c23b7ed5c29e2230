"""RDMA, undone: the RoCE detector, the memlock settings and the boot-time
module list are gone.

Desired state after it:
- /usr/local/lib/spark-cluster (the detector; the watcher and the stand-in
  lived there too) and /run/spark-cluster (the detected roce.env) are gone;
- the memlock files (limits.d, system.conf.d, dockerd's drop-in) are gone,
  and systemd reloaded;
- modules-load.d's ib_uverbs file is gone, and ib_uverbs, which the deploy
  loaded when it wrote that file, is unloaded: a later deploy then finds it
  absent and writes the file again (loaded, it would skip the file and the
  next boot would come up without /dev/infiniband/uverbs*). A module in use
  stays loaded until the next boot.
Not undone, on purpose: dockerd is not restarted (that would stop every
container on the node, the owner's too; its unlimited memlock ends at its
next restart or boot); the RDMA packages stay (DGX OS ships them; other
tools use them).
"""

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from spark_cluster.file_state import Snapshot, snapshot_want

from . import DETECTOR_DIR, DOCKER_MEMLOCK_DROPIN, MEMLOCK_FILES, MODULES_LOAD_FILE
from .settings import DETECTOR_PATH, ROCE_ENV_PATH

RUNTIME_DIR = ROCE_ENV_PATH.rsplit("/", 1)[0]
# Read by systemd: a reload follows their removal.
SYSTEMD_FILES = [*MEMLOCK_FILES, DOCKER_MEMLOCK_DROPIN]
OWNED_FILES = [*SYSTEMD_FILES, MODULES_LOAD_FILE, DETECTOR_PATH]
# Directories that are spark-cluster's alone: removed with whatever is in them.
OWNED_DIRS = [DETECTOR_DIR, RUNTIME_DIR]
OWNED_PATHS = [*OWNED_FILES, *OWNED_DIRS]


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    return [snapshot_want(OWNED_PATHS)]


@deploy("rdma: uninstall the RoCE detector and the memlock settings")
def apply():
    paths = Snapshot(OWNED_PATHS)
    removed = {path: paths.absent(name=f"Remove {path}", path=path) for path in OWNED_FILES}
    for path in OWNED_DIRS:
        if paths.get(path):
            files.directory(name=f"Remove {path}", path=path, present=False)
    systemd.daemon_reload(name="Reload systemd without the memlock settings",
                          _if=any_changed(*(removed[path] for path in SYSTEMD_FILES)))
    server.shell(name="Unload ib_uverbs, which the deploy loaded (kept while in use)",
                 commands=["modprobe -r ib_uverbs 2>/dev/null || true"],
                 _if=any_changed(removed[MODULES_LOAD_FILE]))
