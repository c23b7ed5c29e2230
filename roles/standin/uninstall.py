"""The lab's stand-in engine, undone: its sources and builder are gone from
the node (its image is the engine image: roles/distribute/uninstall.py
removes it only with uninstall_remove_images)."""

from pyinfra.api import deploy
from pyinfra.operations import files

from spark_cluster.file_state import Snapshot, snapshot_want

from . import defaults

OWNED_PATHS = [defaults.STANDIN_BUILDER, defaults.STANDIN_DIR]


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    return [snapshot_want(OWNED_PATHS)]


@deploy("standin (lab only): uninstall the stand-in's sources")
def apply():
    paths = Snapshot(OWNED_PATHS)
    paths.absent(name=f"Remove {defaults.STANDIN_BUILDER}", path=defaults.STANDIN_BUILDER)
    if paths.get(defaults.STANDIN_DIR):
        files.directory(name=f"Remove {defaults.STANDIN_DIR}", path=defaults.STANDIN_DIR, present=False)
