"""Serving, undone: no engine and no watcher left on the node.

Desired state after it:
- spark-serving-watch.service, then spark-serving.service, are stopped and
  disabled (the watcher first, or it would start the engine again), and their
  unit files are gone (systemd reloaded);
- serving.env, watch.json, the image marker and the watcher's program are gone;
- /etc/spark-cluster is gone once empty (the network role's takeover
  backups, if any, live there until the network uninstall puts them back).
The engine image stays (roles/distribute/uninstall.py removes it on request).
"""

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from spark_cluster.cluster_facts import host_fact
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.qsfp_owners import TAKEOVER_DIR

from . import MANAGED_PATHS, UNIT_STATE, WATCH_STATE, defaults

# The watcher first: it restarts an engine it finds stopped.
UNITS = [(defaults.WATCH_UNIT_NAME, defaults.WATCH_UNIT_FILE, WATCH_STATE),
         (defaults.UNIT_NAME, defaults.UNIT_FILE, UNIT_STATE)]
UNIT_NAMES = [name for name, _, _ in UNITS]
# Every file the role writes; its directory last, and only once empty.
OWNED_FILES = [path for path in MANAGED_PATHS if path != defaults.CONFIG_DIR]
OWNED_PATHS = [*OWNED_FILES, defaults.CONFIG_DIR]
_SNAPSHOT = [*OWNED_PATHS, TAKEOVER_DIR]


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    return [UNIT_STATE, WATCH_STATE, snapshot_want(_SNAPSHOT)]


@deploy("serving: uninstall the engine and its watcher")
def apply():
    paths = Snapshot(_SNAPSHOT)
    for name, unit_file, state in UNITS:
        if host_fact(state) != {"active": False, "enabled": False} or paths.get(unit_file):
            systemd.service(name=f"Stop and disable {name}", service=name, running=False, enabled=False)
    removed = {path: paths.absent(name=f"Remove {path}", path=path) for path in OWNED_FILES}
    systemd.daemon_reload(name="Reload systemd without the serving units",
                          _if=any_changed(*(removed[unit_file] for _, unit_file, _ in UNITS)))
    if paths.get(defaults.CONFIG_DIR) and not paths.get(TAKEOVER_DIR):
        server.shell(name=f"Remove {defaults.CONFIG_DIR} once empty",
                     commands=[f"rmdir --ignore-fail-on-non-empty {defaults.CONFIG_DIR}"])
