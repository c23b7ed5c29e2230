"""Lab only: the stand-in engine image on the node that would have pulled the real one.

No image can be pulled in the lab, so the stand-in is built inside a node from
the node's own python3 (roles/standin/files/build_standin.py); it is not the
real engine. It is built where a user would `docker pull` the real image: on
the image's source, which is the first node this run reaches (the head) when
no node has this stand-in yet, and on any node that cannot receive it in this
run (image distribution off).
Every other node gets the very same image over QSFP (roles/distribute), so
all nodes run one image id, as they must on real Sparks.

Desired state (serving_standin = True, set by the lab inventories):
- the stand-in sources and builder in /usr/local/lib/spark-cluster/;
- the image spark-standin:<content hash> present where it is built.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from spark_cluster.cluster_facts import member_fact
from spark_cluster.engine_image import (
    STANDIN_BUILDER_SOURCE,
    image_id_of,
    image_to_receive,
    standin_sources,
    standin_tag,
)
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.settings import cluster_settings

from . import defaults


def _sources():
    return {f"{defaults.STANDIN_DIR}/{source.name}": source for source in standin_sources()}


def _managed_paths(sources):
    return [defaults.STANDIN_DIR, defaults.STANDIN_BUILDER, *sources]


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    if not cluster_settings(host.data).serving_standin:
        return []
    return [image_id_of(standin_tag()), snapshot_want(_managed_paths(_sources()))]


def builds_here(host_data) -> bool:
    """Absent here and not arriving from a peer: this node builds the image."""
    if member_fact(image_id_of(standin_tag())).get(host.name) is not None:
        return False
    return image_to_receive(host_data) is None


@deploy("standin (lab only): stand-in engine image where the real one would be pulled")
def apply():
    s = cluster_settings(host.data)
    if not s.serving_standin:
        return
    sources = _sources()
    managed = Snapshot(_managed_paths(sources))
    managed.directory(name="Stand-in engine sources", path=defaults.STANDIN_DIR, user="root", group="root", mode="755")
    for dest, source in sources.items():
        managed.put(
            name=f"Stand-in engine {source.name}",
            src=str(source),
            dest=dest,
            user="root", group="root", mode="644",
        )
    managed.put(name="Stand-in image builder", src=str(STANDIN_BUILDER_SOURCE), dest=defaults.STANDIN_BUILDER,
              user="root", group="root", mode="755")
    if builds_here(host.data):
        tag = standin_tag()
        command = ["/usr/bin/python3", defaults.STANDIN_BUILDER, "--tag", tag, "--source", defaults.STANDIN_DIR]
        server.shell(name=f"Build the stand-in engine image {tag}", commands=[shlex.join(command)])
