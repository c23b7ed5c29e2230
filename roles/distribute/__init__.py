"""Model and engine image spread from the node that has them, over the QSFP link.

Desired state on every other node:
- the model's Hugging Face cache tree is identical to the source's (rsync over
  QSFP as the admin user, so the files stay the admin's);
- the engine image is present with the source's image id (docker save | docker
  load over QSFP), so no node ever pulls from the internet again.
Nothing is copied when the trees or image ids already match. Each item has its
own source (spark_cluster/copy_source.py): the node group_data names
(distribute_source), else the first node in inventory order, head first, that
holds it (the model whole, the image at all); a rebuilt head receives both
from a worker. Preflight stops the run when no node holds an item.

Every node lets the admin run docker (as DGX OS does), before any copy: the
source's `docker save` runs as the admin over the cluster's SSH, never as root.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from spark_cluster.cluster_facts import member_fact
from spark_cluster.cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS
from spark_cluster.copy_source import choose_source
from spark_cluster.engine_image import (
    explicit_source,
    image_id_of,
    image_of,
    image_source,
    image_to_receive,
    member_order,
    needs_copy,
)
from spark_cluster.host_ops import PACKAGES_WANT, admin_account, ensure_packages
from spark_cluster.model_cache import model_manifest_want, model_whole
from spark_cluster.settings import cluster_settings

from . import warm_caches


def _copies_model(s):
    return bool(s.distribute_model and s.serving_model)


def model_source(host_data, manifests) -> str | None:
    """The node the model is copied from: distribute_source, else the first node
    (head first) that holds it whole; None when none does."""
    whole = {name: manifest for name, manifest in manifests.items() if model_whole(manifest)}
    return choose_source(whole, member_order(host_data), explicit_source(host_data))


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead). The
    source's are read too: receivers compare theirs with it."""
    s = cluster_settings(host.data)
    reads = []
    image = image_of(host.data)
    if s.distribute_image and image:
        reads.append(image_id_of(image))
    if _copies_model(s):
        reads.append(PACKAGES_WANT)
        admin = account()
        if admin:
            reads.append(model_manifest_want(admin["home"], s.serving_model))
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
    copies_model = _copies_model(s)
    if copies_model:
        # Both ends of a copy run rsync: the source serves it over SSH.
        ensure_packages("rsync for model copies", ["rsync"])
        manifest_fact = model_manifest_want(account["home"], s.serving_model)
        model_dir = manifest_fact.kwargs["path"]
        manifests = member_fact(manifest_fact)
        source = model_source(host.data, manifests)
        # Never from a partial tree: rsync --delete would spread it (a
        # distribute_source without the model whole is preflight's to report).
        if (source not in (None, host.name) and model_whole(manifests.get(source))
                and needs_copy(manifests.get(source), manifests.get(host.name))):
            files.directory(
                name="Hugging Face hub directory",
                path=model_dir.rsplit("/", 1)[0],
                user=s.ssh_user, group=account["group"], mode="755",
            )
            manifest = manifests[source]
            server.shell(
                name=f"Copy {s.serving_model} from {source} over QSFP "
                f"({manifest['files']} files, {manifest['bytes'] / 2**30:.1f} GiB)",
                # As the admin: the node-to-node SSH setup (ssh role) is the admin's,
                # and copied files must stay the admin's.
                commands=[shlex.join([
                    "rsync", "-a", "--delete", "--partial",
                    f"{source}:{model_dir}/", f"{model_dir}/",
                ])],
                _sudo=False,
            )

    receive = image_to_receive(host.data)
    if receive:
        image, source_id = receive
        source = image_source(host.data)
        key = f"{account['home']}/.ssh/{KEY_NAME}"
        # docker load needs root here; the remote docker save runs as the admin
        # (a member of the docker group: the first operation of this role).
        ssh = shlex.join([
            "ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={SYSTEM_KNOWN_HOSTS}",
            f"{s.ssh_user}@{source['qsfp_ip']}", shlex.join(["docker", "save", image]),
        ])
        server.shell(
            name=f"Load {image} from {source['name']} over QSFP (docker save | docker load)",
            # docker load fails on a truncated stream, so a broken copy is an error.
            commands=[f"{ssh} | docker load"],
        )

    warm_caches.apply()  # last: a node receiving the image above counts as running it
