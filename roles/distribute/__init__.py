"""Model and engine image spread from the node that has them, over the QSFP link.

Desired state on every other node:
- the model files the engine reads are the source's (roles/distribute/model.py:
  rsync streams over every rail, receivers chained, as the admin user, so the
  files stay the admin's);
- the engine image is present with the source's image id (docker save | docker
  load over QSFP, relayed down a chain of receivers: image.py), so no node ever
  pulls from the internet again.
Nothing is copied when the trees or image ids already match. Each item has its
own source (spark_cluster/copy_source.py): the node group_data names
(distribute_source), else the first node in inventory order, head first, that
holds it (the model whole, the image at all); a rebuilt head receives both
from a worker. Preflight stops the run when no node holds an item.

Every node lets the admin run docker (as DGX OS does), before any copy: the
source's `docker save` runs as the admin over the cluster's SSH, never as root.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from spark_cluster.engine_image import image_id_of, image_of
from spark_cluster.host_ops import PACKAGES_WANT, admin_account, ensure_packages
from spark_cluster.settings import cluster_settings

from . import image as image_relay
from . import model
from . import warm_caches


def _copies_model(s):
    return bool(s.distribute_model and s.serving_model)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead). The
    source's are read too: receivers compare theirs with it."""
    s = cluster_settings(host.data)
    reads = []
    image = image_of(host.data)
    if s.distribute_image and image:
        reads.append(image_id_of(image))
    if _copies_model(s) or s.distribute_caches:
        reads.append(PACKAGES_WANT)
    if _copies_model(s):
        reads += model.wants(s, account)
    reads += warm_caches.wants(account)
    return reads


@deploy("distribute: model and engine image over QSFP")
def apply():
    s = cluster_settings(host.data)
    account = admin_account(s.ssh_user)
    if account is None:
        return  # the caches role already failed this host with the reason
    # An account read without its groups (None) is not known to be in docker.
    if s.distribute_image and "docker" not in (account.get("groups") or []):
        server.user(
            name="The admin may run docker: images travel node to node as the admin",
            user=s.ssh_user,
            groups=["docker"],
            append=True,
            ensure_home=False,  # the caches role owns what lies under the home
        )
    if _copies_model(s) or s.distribute_caches:
        # Both ends of a model or cache copy run rsync: the upstream serves it over SSH.
        ensure_packages("rsync for copies over QSFP", ["rsync"])
    if _copies_model(s):
        model.apply(s, account)

    # The image: relayed down a chain of receivers (roles/distribute/image.py).
    image_relay.apply(account)

    warm_caches.apply()  # last: a node receiving the image above counts as running it
