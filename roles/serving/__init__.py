"""Serving: the engine container under systemd on every node, back after every boot.

Desired state (head = rank 0, the others are workers):
- the engine image is on the node, or arrives in this run from the source
  (roles/distribute);
- /etc/spark-cluster/serving.env, 0600 root: interface pins, addresses, caches, profile env;
- /etc/systemd/system/spark-serving.service runs `docker run` with RDMA devices,
  memlock, host network/IPC, both env files, the cache mounts and the engine argv;
- the unit is enabled and running, and restarted only when the unit, the env
  file or the image changed; before each start it drops the page cache and
  refuses an engine that would not find the memory its profile claims;
- the head's API listens where api_listen says (its QSFP address by
  default) and, with serving_api_key_file, asks for that key (in the 0600
  env file only);
- spark-serving-watch.service runs on every node (files/serving_watch.py,
  /etc/spark-cluster/watch.json): it judges the engine by generated tokens
  and restarts engines so a cluster whose head or worker died reassembles;
- a run that (re)started an engine on any node ends only once the head
  answers a chat completion (serving_wait_ready), every node showing its
  engine's phase meanwhile.

Nodes are not ordered against each other: after a boot every node starts its
unit on its own; a worker early for the head retries the rendezvous (and
systemd restarts the container if the engine gives up), so the cluster
assembles itself in any boot order. Once formed, members that lost each
other are the watcher's to restart.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact, run_cache
from spark_cluster.copy_source import image_fix
from spark_cluster.engine_image import image_id_of, image_identity, image_of
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.settings import require

from . import defaults
from .desired import desired_serving, serving_settings
from .facts import DockerRuntimes, UnitState
from .ready import wait_operation
from .watch import WATCH_SOURCE

# The watcher's directory is the rdma role's (its RoCE detector lives there).
MANAGED_PATHS = [defaults.CONFIG_DIR, defaults.ENV_FILE, defaults.UNIT_FILE, defaults.IMAGE_MARKER,
                 defaults.WATCH_PATH, defaults.WATCH_CONFIG, defaults.WATCH_UNIT_FILE]
UNIT_STATE = want(UnitState, unit=defaults.UNIT_NAME)
WATCH_STATE = want(UnitState, unit=defaults.WATCH_UNIT_NAME)
DOCKER_RUNTIMES = want(DockerRuntimes)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    reads = [DOCKER_RUNTIMES, snapshot_want(MANAGED_PATHS), UNIT_STATE, WATCH_STATE]
    image = image_of(host.data)
    return [image_id_of(image), *reads] if image else reads


def _write_watcher(managed, desired):
    """The watcher's program, settings and unit; returns their operations."""
    return [
        managed.put(name="Install the serving watcher (judges engines by generated tokens)", src=str(WATCH_SOURCE),
                    dest=defaults.WATCH_PATH, user="root", group="root", mode="755"),
        managed.put(name="Watcher settings (no secret: the API key stays in serving.env)",
                    src=StringIO(desired.watch_config_text), dest=defaults.WATCH_CONFIG,
                    user="root", group="root", mode="644"),
        managed.put(name=f"Unit {defaults.WATCH_UNIT_NAME}", src=StringIO(desired.watch_unit_text),
                    dest=defaults.WATCH_UNIT_FILE, user="root", group="root", mode="644"),
    ]


def _write_files(managed, desired, image_identity_text):
    """The three files, each put only where it differs; returns their operations."""
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
            f"(not on {host.name}); {image_fix(image, s.ssh_user)}; then run the deploy again",
        )
        return
    desired = desired_serving(s, host.data, image=image, home=account["home"],
                              docker_runtimes=host_fact(DOCKER_RUNTIMES), node=host.name)
    managed = Snapshot(MANAGED_PATHS)
    managed.directory(name="Config directory", path=defaults.CONFIG_DIR, user="root", group="root", mode="755")
    # The watcher first: the engine's unit runs its prestart check.
    watcher = _write_watcher(managed, desired)
    written = _write_files(managed, desired, identity)
    # Only a real change restarts the engine: a restart costs 3-19 minutes.
    # Once more on failure: a start the watcher asked for earlier in this run
    # (the network change made an engine miss its peer) may still be running
    # the old unit, and systemd fails this job with it.
    started = [systemd.service(name="Reload and restart serving after a change", service=defaults.UNIT_NAME,
                               running=True, restarted=True, daemon_reload=True, _if=any_changed(*written),
                               _retries=1, _retry_delay=10)]
    if host_fact(UNIT_STATE) != {"active": True, "enabled": True}:
        started.append(systemd.service(name="Serving enabled at boot and running", service=defaults.UNIT_NAME,
                                       running=True, enabled=True))
    systemd.service(name="Restart the watcher after a change", service=defaults.WATCH_UNIT_NAME,
                    running=True, restarted=True, daemon_reload=True, _if=any_changed(*watcher))
    if host_fact(WATCH_STATE) != {"active": True, "enabled": True}:
        systemd.service(name="Watcher enabled at boot and running", service=defaults.WATCH_UNIT_NAME,
                        running=True, enabled=True)
    # Engines (re)started on any node: every node waits (each shows its own
    # engine's phase, and its log if the cluster never answers). A run that
    # started nothing skips the wait everywhere.
    started_anywhere = run_cache().setdefault("serving: engines started", [])
    started_anywhere.extend(started)
    if s.serving_wait_ready:
        wait_operation("Wait until the head answers a chat completion (serving_wait_ready)",
                       s.serving_start_timeout_s, defaults.WATCH_PATH,
                       _if=lambda: any(op.is_complete() and op.did_change() for op in started_anywhere))
