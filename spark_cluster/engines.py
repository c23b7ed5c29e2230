"""The inference engines the cluster serves with: one record each, the only
place that names them.

Adding an engine is a record here and its flags in a serving profile
(group_data): the serving role builds the engine's command line and
environment from the record, and every role that names the engine image
(preflight, standin, distribute, serving) falls back to its default image.
The lab's stand-in engine (roles/standin/files/standin/server.py) runs inside
a container, without this package: it keeps its own table of each engine's
port and rendezvous flags, and a unit test holds it to this registry.
Pure: no pyinfra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping


@dataclass(frozen=True)
class ClusterPlace:
    """This node's place in the serving cluster."""

    world_size: int
    rank: int
    head_qsfp_ip: str
    master_port: int
    api_port: int
    model: str
    served_model_name: str
    entrypoint_is_engine: bool = False
    # Where the head's API listens (roles/serving api_listen): its QSFP
    # control address by default, 0.0.0.0 when asked for.
    api_host: str = "0.0.0.0"

    @property
    def is_head(self) -> bool:
        return self.rank == 0


def _no_env(qsfp_ip: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Engine:
    """What the cluster knows of one engine."""

    name: str  # serving_engine's value, and the key of each serving profile's flags
    label: str  # as the engine spells its own name, in messages
    # The command that starts the engine, for images whose ENTRYPOINT is not already it.
    launcher: tuple[str, ...]
    # The flags the cluster dictates (model, parallelism, rendezvous, API), after the launcher.
    cluster_flags: Callable[[ClusterPlace], list[str]]
    # Profile keys refused: cluster_flags derives them from the inventory.
    cluster_owned: frozenset[str]
    # Profile keys this engine no longer accepts -> the name that replaced each.
    renamed: Mapping[str, str] = field(default_factory=dict)
    renamed_in: str = ""  # the release that renamed them
    # (profile key, value) -> this engine's spelling of that value.
    respelled: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # Variables only this engine reads, from the node's QSFP address.
    env: Callable[[str], Mapping[str, str]] = _no_env
    # The image run when group_data sets no serving_image.
    default_image: str | None = None
    default_image_entrypoint_is_engine: bool = False
    # Where the engine serves its API when its command line names no port (the
    # cluster always passes api_port; the lab's stand-in imitates this default).
    default_port: int = 8000
    # The variable the engine takes its API key from (serving.env, 0600).
    api_key_variable: str = ""
    # Its generation counter on /metrics: the watcher's sign of life on a busy engine.
    tokens_metric: str = ""
    # The profile flag that claims a share of the node's memory, and the
    # engine's own default when the profile sets none (0 < x <= 1).
    memory_setting: str = ""
    default_memory_fraction: float = 0.9

    def entrypoint_is_engine(self, image: str | None, setting: bool | None) -> bool:
        """Whether `image` starts the engine by itself: group_data's word, else
        what is known of this engine's default image."""
        if setting is not None:
            return bool(setting)
        return image == self.default_image and self.default_image_entrypoint_is_engine


def _vllm_flags(place: ClusterPlace) -> list[str]:
    argv = [
        place.model,
        "--tensor-parallel-size", str(place.world_size),
        "--pipeline-parallel-size", "1",
        "--nnodes", str(place.world_size),
        "--node-rank", str(place.rank),
        "--master-addr", place.head_qsfp_ip,
        "--master-port", str(place.master_port),
        "--distributed-executor-backend", "mp",
    ]
    if place.is_head:
        return argv + ["--host", place.api_host, "--port", str(place.api_port),
                       "--served-model-name", place.served_model_name]
    return argv + ["--headless"]


def _sglang_flags(place: ClusterPlace) -> list[str]:
    # SGLang runs the same launch_server on every node; only --node-rank
    # differs. Ranks > 0 serve no API, but the flags are harmless there and
    # keep the command identical, as SGLang's multi-node docs show.
    return [
        "--model-path", place.model,
        "--tp-size", str(place.world_size),
        "--nnodes", str(place.world_size),
        "--node-rank", str(place.rank),
        "--dist-init-addr", f"{place.head_qsfp_ip}:{place.master_port}",
        "--host", place.api_host,
        "--port", str(place.api_port),
        "--served-model-name", place.served_model_name,
    ]


def _host_ip(qsfp_ip: str) -> dict[str, str]:
    # The address vLLM's workers announce: the QSFP one, never the management NIC's.
    return {"VLLM_HOST_IP": qsfp_ip}


VLLM = Engine(
    name="vllm",
    label="vLLM",
    # An image whose ENTRYPOINT is already `vllm serve` (group_data's
    # vllm-ds4-sm121) would otherwise run `vllm serve vllm serve MODEL`.
    launcher=("vllm", "serve"),
    cluster_flags=_vllm_flags,
    cluster_owned=frozenset({
        "tensor_parallel_size", "pipeline_parallel_size", "nnodes", "node_rank",
        "master_addr", "master_port", "distributed_executor_backend", "host", "port",
        "served_model_name", "headless", "model",
    }),
    env=_host_ip,
    # NVIDIA's NGC build for DGX Spark; its entrypoint runs the command it is given.
    default_image="nvcr.io/nvidia/vllm:26.04-py3",
    api_key_variable="VLLM_API_KEY",
    tokens_metric="vllm:generation_tokens_total",
    memory_setting="gpu_memory_utilization",
    default_memory_fraction=0.9,
)

SGLANG = Engine(
    name="sglang",
    label="SGLang",
    launcher=("python3", "-m", "sglang.launch_server"),
    cluster_flags=_sglang_flags,
    cluster_owned=frozenset({
        "tp", "tp_size", "tensor_parallel_size", "nnodes", "node_rank", "dist_init_addr",
        "host", "port", "served_model_name", "model_path", "model",
    }),
    # A profile copied from an older recipe fails here, not on the node.
    renamed={
        "num_nodes": "nnodes",
        "master_addr": "dist_init_addr",
        "master_port": "dist_init_addr",
        "gpu_memory_utilization": "mem_fraction_static",
        "max_model_len": "context_length",
        "fp8_gemm_runner_backend": "fp8_gemm_backend",
    },
    renamed_in="SGLang v0.5.12",
    respelled={("kv_cache_dtype", "fp8"): "fp8_e4m3"},
    default_port=30000,
    # SGLang's own DGX Spark build; no engine entrypoint: launch_server is appended.
    default_image="lmsysorg/sglang:spark",
    # SGLang reads no VLLM_HOST_IP, but serving.env has always carried it for
    # every engine and the verify suite's env-file check expects it there.
    env=_host_ip,
    # None: SGLang takes its key on the command line only (--api-key), which
    # every local user can read; serving refuses a key with SGLang.
    api_key_variable="",
    tokens_metric="sglang:generation_tokens_total",
    memory_setting="mem_fraction_static",
    default_memory_fraction=0.9,
)

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (VLLM, SGLANG)}
DEFAULT_ENGINE = VLLM.name


def default_image(name: str) -> str | None:
    """The image of engine `name` when group_data sets none (None for an unknown engine:
    the serving role reports that)."""
    engine = ENGINES.get(name)
    return engine.default_image if engine else None
