"""Distribute, undone on request: the model and the engine image are data the
owner staged (or the deploy copied at length), so they stay unless asked.

Desired state after it:
- uninstall_remove_model: serving_model's directory in the admin's Hugging
  Face cache is gone on every node (the rest of the cache is the owner's);
- uninstall_remove_images: the engine image (serving_image, the engine's
  default, or the lab's stand-in) is gone on every node;
- otherwise both stay, as does the admin's docker group membership (DGX OS
  grants it; other tools rely on it).
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from spark_cluster.caches import hf_home
from spark_cluster.cluster_facts import host_fact
from spark_cluster.engine_image import image_id_of, image_of
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account
from spark_cluster.settings import cluster_settings

from spark_cluster.model_cache import model_cache_dir


def model_dir(s, home):
    """Where serving_model lies on a node, or None when no model is set."""
    return model_cache_dir(hf_home(home), s.serving_model) if s.serving_model else None


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    s = cluster_settings(host.data)
    reads = []
    if s.uninstall_remove_images and image_of(host.data):
        reads.append(image_id_of(image_of(host.data)))
    admin = account()
    if s.uninstall_remove_model and admin and model_dir(s, admin["home"]):
        reads.append(snapshot_want([model_dir(s, admin["home"])]))
    return reads


@deploy("distribute: uninstall the model and the image (only when asked)")
def apply():
    s = cluster_settings(host.data)
    image = image_of(host.data)
    if s.uninstall_remove_images and image and host_fact(image_id_of(image)):
        server.shell(name=f"Remove the engine image {image} (uninstall_remove_images)",
                     commands=[f"docker image rm {shlex.quote(image)}"])
    account = admin_account(s.ssh_user)
    path = model_dir(s, account["home"]) if account else None
    if s.uninstall_remove_model and path and Snapshot([path]).get(path):
        files.directory(name=f"Remove {s.serving_model} from the Hugging Face cache (uninstall_remove_model)",
                        path=path, present=False)
