"""Model and engine image spread from the node that has them, over the QSFP link.

Desired state on every other node:
- the model's Hugging Face cache tree is identical to the source's (rsync over
  bond0 as the admin user, so the files stay the admin's);
- the engine image is present with the source's image id (docker save | docker
  load over bond0), so no node ever pulls from the internet again.
Nothing is copied when the trees or image ids already match. The source is the
head unless group_data names another node (distribute_source).

Every node lets the admin run docker (as DGX OS does), before any copy: the
source's `docker save` runs as the admin over the cluster's SSH, never as root.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from spark_cluster.batch_fact import want
from spark_cluster.caches import hf_home
from spark_cluster.cluster_facts import member_fact
from spark_cluster.cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS
from spark_cluster.engine_image import distribution_source, image_id_of, image_of, image_to_receive, needs_copy
from spark_cluster.host_ops import PACKAGES_WANT, admin_account, ensure_packages
from spark_cluster.settings import cluster_settings

from .facts import ModelManifest
from .plan import model_cache_dir


def _model_manifest(s, home):
    return want(ModelManifest, path=model_cache_dir(hf_home(home), s.serving_model))


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
    if _copies_model(s):
        reads.append(PACKAGES_WANT)
        admin = account()
        if admin:
            reads.append(_model_manifest(s, admin["home"]))
    return reads


@deploy("distribute: model and engine image over QSFP")
def apply():
    s = cluster_settings(host.data)
    source = distribution_source(host.data)
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
    if source["name"] == host.name:
        return

    if copies_model:
        manifest_fact = _model_manifest(s, account["home"])
        model_dir = manifest_fact.kwargs["path"]
        manifests = member_fact(manifest_fact)
        if needs_copy(manifests.get(source["name"]), manifests.get(host.name)):
            files.directory(
                name="Hugging Face hub directory",
                path=model_dir.rsplit("/", 1)[0],
                user=s.ssh_user, group=account["group"], mode="755",
            )
            manifest = manifests[source["name"]]
            server.shell(
                name=f"Copy {s.serving_model} from {source['name']} over QSFP "
                f"({manifest['files']} files, {manifest['bytes'] / 2**30:.1f} GiB)",
                # As the admin: the node-to-node SSH setup (ssh role) is the admin's,
                # and copied files must stay the admin's.
                commands=[shlex.join([
                    "rsync", "-a", "--delete", "--partial",
                    f"{source['name']}:{model_dir}/", f"{model_dir}/",
                ])],
                _sudo=False,
            )

    receive = image_to_receive(host.data)
    if receive:
        image, source_id = receive
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
