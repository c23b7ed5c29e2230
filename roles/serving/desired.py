"""What the serving role wants on a node, computed from settings and facts.

Pure functions (no pyinfra call, no fact read here): apply() reads the facts,
calls desired_serving and writes what it returns, so a test of this module sees
exactly what a node gets. (Importing it loads roles.rdma, whose settings give
the RoCE command, and with that package pyinfra's operation modules.)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

from roles.rdma.settings import roce_env_command
from spark_cluster.caches import cache_mounts
from spark_cluster.fabric import fabric
from spark_cluster.settings import SettingError, cluster_settings, require

from .argv import ClusterPlace, EngineArgvError, engine_named, render_engine_argv
from . import defaults
from .environment import ServingEnvError, serving_environment
from .unit import NVIDIA_RUNTIME, Container, render_env_file, render_unit, unit_context
from .watch import (api_host, memory_claim, read_api_key, refuse_secret_flags, render_watch_config,
                    render_watch_unit, watch_config)


def serving_settings(host_data: Any) -> SimpleNamespace:
    """The role's settings, with the chosen profile's engine_flags and profile_env."""
    s = cluster_settings(host_data)
    profiles = s.serving_profiles or {}
    require(s.serving_profile in profiles, "serving_profile", f"{s.serving_profile!r} is not in serving_profiles")
    profile = profiles[s.serving_profile]
    require(s.serving_engine in profile, "serving_engine",
            f"{s.serving_engine!r} has no flags in profile {s.serving_profile!r}")
    s.engine_flags, s.profile_env = profile[s.serving_engine], profile.get("env", {})
    refuse_secret_flags(s.engine_flags, s.serving_profile)
    s.api_key = read_api_key(s.serving_api_key_file)
    return s


@dataclass(frozen=True)
class DesiredServing:
    container: Container  # image, engine argv, mounts
    unit_text: str  # /etc/systemd/system/spark-serving.service
    env_text: str  # /etc/spark-cluster/serving.env
    watch_config_text: str  # /etc/spark-cluster/watch.json
    watch_unit_text: str  # /etc/systemd/system/spark-serving-watch.service


def desired_serving(
    s: SimpleNamespace, host_data: Any, *, image: str, home: str, docker_runtimes: Sequence[str], node: str = "",
) -> DesiredServing:
    """The unit, env file and container for this node. `s` is serving_settings(host_data);
    home is the admin's; docker_runtimes are the node's registered docker runtimes."""
    control = fabric(host_data)
    try:
        engine = engine_named(s.serving_engine)
        if s.api_key and not engine.api_key_variable:
            raise SettingError(
                f"group_data: 'serving_api_key_file' is set, but {engine.label} takes an API key on its command "
                "line only, which every local user can read: leave it unset and keep api_listen = 'qsfp'")
        place = ClusterPlace(
            world_size=host_data.get("world_size"),
            rank=host_data.get("node_rank"),
            head_qsfp_ip=host_data.get("head_qsfp_ip"),
            master_port=int(s.master_port),
            api_port=int(s.api_port),
            model=s.serving_model,
            served_model_name=s.serving_served_model_name or s.serving_model,
            entrypoint_is_engine=engine.entrypoint_is_engine(image, s.serving_image_entrypoint_is_engine),
            api_host=api_host(s.api_listen, host_data.get("head_qsfp_ip")),
        )
        engine_argv = render_engine_argv(engine.name, s.engine_flags, place)
        environment = serving_environment(
            engine=engine,
            control_interface=control.control_interface,
            qsfp_ip=host_data.get("qsfp_ip"),
            head_qsfp_ip=place.head_qsfp_ip,
            home=home,
            profile_env=s.profile_env,
            api_key=(engine.api_key_variable, s.api_key) if s.api_key else None,
        )
    except (EngineArgvError, ServingEnvError) as error:
        raise SettingError(f"group_data: {error}") from None
    container = Container(
        image=image,
        engine_argv=engine_argv,
        mounts=cache_mounts(home),
        # --gpus needs the NVIDIA runtime; the lab has none and would refuse it.
        nvidia_runtime=NVIDIA_RUNTIME in docker_runtimes,
    )
    unit_text = render_unit(unit_context(
        container=container,
        engine=engine.name,
        rank=place.rank,
        world_size=place.world_size,
        head_qsfp_ip=place.head_qsfp_ip,
        master_port=place.master_port,
        roce_detect_command=roce_env_command(host_data),
        prestart_command=f"/usr/bin/python3 {defaults.WATCH_PATH} prestart",
        start_timeout_s=s.serving_start_timeout_s,
        stop_timeout_s=s.serving_stop_timeout_s,
    ))
    config = watch_config(
        s=s, engine=engine, node=node, rank=place.rank,
        control_ip=host_data.get("qsfp_ip"), head_ip=place.head_qsfp_ip, api_host_ip=place.api_host,
        memory=memory_claim(engine, s.engine_flags, s.serving_memory_check), image=image,
    )
    return DesiredServing(container=container, unit_text=unit_text, env_text=render_env_file(environment),
                          watch_config_text=render_watch_config(config),
                          watch_unit_text=render_watch_unit(rank=place.rank))
