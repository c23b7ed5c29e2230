"""Serving: the engine container under systemd on every node, back after every boot.

Desired state (head = rank 0, the others are workers):
- the engine image is on the node, or arrives in this run from the source
  (roles/distribute; in the lab the stand-in of roles/standin);
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

from roles.caches.mounts import cache_mounts
from roles.rdma import roce_env_command
from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact, member_fact
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.settings import SettingError, require, role_settings

from . import defaults as paths
from .argv import ClusterPlace, EngineArgvError, render_engine_argv
from .defaults import DEFAULTS
from .environment import ServingEnvError, serving_environment
from .facts import DockerRuntimes, UnitState, image_id_of
from .standin import effective_image
from .unit import (
    ENV_TEMPLATE,
    NVIDIA_RUNTIME,
    UNIT_TEMPLATE,
    Container,
    env_context,
    render,
    unit_context,
)


def _profile(s):
    profiles = s.serving_profiles or {}
    require(s.serving_profile in profiles, "serving_profile", f"{s.serving_profile!r} is not in serving_profiles")
    profile = profiles[s.serving_profile]
    require(s.serving_engine in profile, "serving_engine", f"{s.serving_engine!r} has no flags in profile {s.serving_profile!r}")
    return profile[s.serving_engine], profile.get("env", {})


MANAGED_PATHS = [paths.CONFIG_DIR, paths.ENV_FILE, paths.UNIT_FILE, paths.IMAGE_MARKER]
UNIT_STATE = want(UnitState, unit=paths.UNIT_NAME)
DOCKER_RUNTIMES = want(DockerRuntimes)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    s = role_settings(host.data, DEFAULTS)
    reads = [DOCKER_RUNTIMES, snapshot_want(MANAGED_PATHS), UNIT_STATE]
    image = effective_image(s.serving_image, s.serving_standin)
    return [image_id_of(image), *reads] if image else reads


@deploy("serving: engine container under systemd")
def apply():
    s = role_settings(host.data, DEFAULTS)
    engine_flags, profile_env = _profile(s)
    image = effective_image(s.serving_image, s.serving_standin)
    require(bool(image), "serving_image", "is not set")

    account = admin_account(s.ssh_user)
    if account is None:
        fail_host("Find the admin user's home", f"serving: admin user {s.ssh_user!r} not found on {host.name}")
        return
    image_id = member_fact(image_id_of(image)).get(host.name)
    if image_id is None:
        from roles.distribute import image_to_receive  # late: distribute reads serving's facts

        arriving = image_to_receive(host.data)
        image_id = arriving[1] if arriving else None
    if not s.serving_standin and image_id is None:
        fail_host(
            f"Engine image {image} is on the node",
            f"serving: image {image} is on no node of this cluster that the deploy can copy it from "
            f"(not on {host.name}); put it on the head once (docker pull {image}, or docker load) "
            "and re-run: the deploy copies it to the other nodes over QSFP",
        )
        return
    if s.serving_standin:
        # Built or received earlier in this run (roles/standin, roles/distribute);
        # the tag is a hash of the stand-in's content: the tag is its identity.
        image_identity = image
    else:
        image_identity = f"{image} {image_id}"

    home = account["home"]
    place = ClusterPlace(
        world_size=host.data.world_size,
        rank=host.data.node_rank,
        head_qsfp_ip=host.data.head_qsfp_ip,
        master_port=int(s.master_port),
        api_port=int(s.api_port),
        model=s.serving_model,
        served_model_name=s.serving_served_model_name or s.serving_model,
        entrypoint_is_engine=bool(s.serving_image_entrypoint_is_engine),
    )
    try:
        engine_argv = render_engine_argv(s.serving_engine, engine_flags, place)
        environment = serving_environment(
            bond_name=s.bond_name,
            qsfp_ip=host.data.qsfp_ip,
            head_qsfp_ip=host.data.head_qsfp_ip,
            home=home,
            profile_env=profile_env,
        )
    except (EngineArgvError, ServingEnvError) as error:
        raise SettingError(f"group_data: {error}") from None
    container = Container(
        image=image,
        engine_argv=engine_argv,
        mounts=cache_mounts(home),
        # --gpus needs the NVIDIA runtime; the lab has none and would refuse it.
        nvidia_runtime=NVIDIA_RUNTIME in host_fact(DOCKER_RUNTIMES),
    )

    unit_text = render(UNIT_TEMPLATE, unit_context(
        container=container,
        engine=s.serving_engine,
        rank=place.rank,
        world_size=place.world_size,
        head_qsfp_ip=place.head_qsfp_ip,
        master_port=place.master_port,
        roce_detect_command=roce_env_command(host.data),
        start_timeout_s=s.serving_start_timeout_s,
        stop_timeout_s=s.serving_stop_timeout_s,
    ))
    managed = Snapshot(MANAGED_PATHS)
    managed.directory(name="Config directory", path=paths.CONFIG_DIR, user="root", group="root", mode="755")
    env_file = managed.put(
        name="Serving environment (0600: read by docker only)",
        src=StringIO(render(ENV_TEMPLATE, env_context(environment))),
        dest=paths.ENV_FILE,
        user="root", group="root", mode="600",
    )
    unit = managed.put(
        name=f"Unit {paths.UNIT_NAME} (head and workers, rendered per rank)",
        src=StringIO(unit_text),
        dest=paths.UNIT_FILE,
        user="root", group="root", mode="644",
    )
    image_marker = managed.put(
        name="Record the engine image the unit runs",
        src=StringIO(image_identity + "\n"),
        dest=paths.IMAGE_MARKER,
        user="root", group="root", mode="644",
    )
    # Only a real change restarts the engine: a restart costs 3-19 minutes.
    systemd.service(
        name="Reload and restart serving after a change",
        service=paths.UNIT_NAME,
        running=True,
        restarted=True,
        daemon_reload=True,
        _if=any_changed(unit, env_file, image_marker),
    )
    if host_fact(UNIT_STATE) != {"active": True, "enabled": True}:
        systemd.service(
            name="Serving enabled at boot and running",
            service=paths.UNIT_NAME,
            running=True,
            enabled=True,
        )
