"""Serving: the engine container under systemd on every node, back after every boot.

Desired state (head = rank 0, the others are workers):
- the engine image is on the node, or arrives in this run from the source
  (roles/distribute);
- /etc/spark-cluster/serving.env, 0600 root: interface pins, addresses, caches, profile env;
- /etc/systemd/system/spark-serving.service runs `docker run` with RDMA devices,
  memlock, host network/IPC, both env files, the cache mounts and the engine argv;
- the unit is enabled and running, and restarted only when the unit, the env
  file or the image changed.

Nodes are not ordered against each other: after a boot every node starts its
unit on its own; a worker early for the head retries the rendezvous (and
systemd restarts the container if the engine gives up), so the cluster
assembles itself in any boot order.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.engine_image import image_id_of, image_identity, image_of
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.settings import require

from . import defaults
from .desired import desired_serving, serving_settings
from .facts import DockerRuntimes, UnitState

MANAGED_PATHS = [defaults.CONFIG_DIR, defaults.ENV_FILE, defaults.UNIT_FILE, defaults.IMAGE_MARKER]
UNIT_STATE = want(UnitState, unit=defaults.UNIT_NAME)
DOCKER_RUNTIMES = want(DockerRuntimes)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    reads = [DOCKER_RUNTIMES, snapshot_want(MANAGED_PATHS), UNIT_STATE]
    image = image_of(host.data)
    return [image_id_of(image), *reads] if image else reads


def _write_files(desired, image_identity_text):
    """The three files, each put only where it differs; returns their operations."""
    managed = Snapshot(MANAGED_PATHS)
    managed.directory(name="Config directory", path=defaults.CONFIG_DIR, user="root", group="root", mode="755")
    return [
        managed.put(name="Serving environment (0600: read by docker only)", src=StringIO(desired.env_text),
                    dest=defaults.ENV_FILE, user="root", group="root", mode="600"),
        managed.put(name=f"Unit {defaults.UNIT_NAME} (head and workers, rendered per rank)",
                    src=StringIO(desired.unit_text), dest=defaults.UNIT_FILE, user="root", group="root", mode="644"),
        managed.put(name="Record the engine image the unit runs", src=StringIO(image_identity_text + "\n"),
                    dest=defaults.IMAGE_MARKER, user="root", group="root", mode="644"),
    ]


@deploy("serving: engine container under systemd")
def apply():
    s = serving_settings(host.data)
    image = image_of(host.data)
    require(bool(image), "serving_image", "is not set")
    account = admin_account(s.ssh_user)
    if account is None:
        fail_host("Find the admin user's home", f"serving: admin user {s.ssh_user!r} not found on {host.name}")
        return
    identity = image_identity(host.data)
    if identity is None:
        fail_host(
            f"Engine image {image} is on the node",
            f"serving: image {image} is on no node of this cluster that the deploy can copy it from "
            f"(not on {host.name}); put it on the head once (docker pull {image}, or docker load) "
            "and re-run: the deploy copies it to the other nodes over QSFP",
        )
        return
    desired = desired_serving(s, host.data, image=image, home=account["home"],
                              docker_runtimes=host_fact(DOCKER_RUNTIMES))
    written = _write_files(desired, identity)
    # Only a real change restarts the engine: a restart costs 3-19 minutes.
    systemd.service(name="Reload and restart serving after a change", service=defaults.UNIT_NAME,
                    running=True, restarted=True, daemon_reload=True, _if=any_changed(*written))
    if host_fact(UNIT_STATE) != {"active": True, "enabled": True}:
        systemd.service(name="Serving enabled at boot and running", service=defaults.UNIT_NAME,
                        running=True, enabled=True)
