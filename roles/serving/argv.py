"""The engine's command line, from the profile plus what the cluster dictates.

Pure functions: no pyinfra, so every trap the field reports hit is unit-tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

ENGINES = ("vllm", "sglang")

# Flags the serving role derives from the inventory; a profile setting them
# would fight the cluster layout, so it is refused.
CLUSTER_OWNED = {
    "vllm": {
        "tensor_parallel_size", "pipeline_parallel_size", "nnodes", "node_rank",
        "master_addr", "master_port", "distributed_executor_backend", "host", "port",
        "served_model_name", "headless", "model",
    },
    "sglang": {
        "tp", "tp_size", "tensor_parallel_size", "nnodes", "node_rank", "dist_init_addr",
        "host", "port", "served_model_name", "model_path", "model",
    },
}

# Names SGLang v0.5.12 no longer accepts, with the name that replaced each
# (seed 000): a profile copied from an older recipe fails here, not on the node.
SGLANG_RENAMED = {
    "num_nodes": "nnodes",
    "master_addr": "dist_init_addr",
    "master_port": "dist_init_addr",
    "gpu_memory_utilization": "mem_fraction_static",
    "max_model_len": "context_length",
    "fp8_gemm_runner_backend": "fp8_gemm_backend",
}


class EngineArgvError(ValueError):
    """A one-line complaint about the serving profile."""


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

    @property
    def is_head(self) -> bool:
        return self.rank == 0


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def profile_flags(profile: Mapping[str, Any]) -> list[str]:
    """Profile keys as flags: True -> bare flag, False/None -> left out,
    dicts and lists -> compact JSON (vLLM's --speculative-config etc.).
    A `--no-X` flag is written as `no_x: True`."""
    argv: list[str] = []
    for key, value in profile.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag(key))
        elif isinstance(value, (dict, list)):
            argv += [flag(key), json.dumps(value, separators=(",", ":"))]
        else:
            argv += [flag(key), str(value)]
    return argv


def _check_profile(engine: str, profile: Mapping[str, Any]) -> None:
    owned = sorted(set(profile) & CLUSTER_OWNED[engine])
    if owned:
        raise EngineArgvError(
            f"serving profile for {engine} sets {flag(owned[0])}, which the serving role derives from the inventory"
        )
    if engine == "sglang":
        stale = sorted(set(profile) & set(SGLANG_RENAMED))
        if stale:
            raise EngineArgvError(
                f"serving profile for sglang uses {flag(stale[0])}, renamed to "
                f"{flag(SGLANG_RENAMED[stale[0]])} in SGLang v0.5.12"
            )
        if profile.get("kv_cache_dtype") == "fp8":
            raise EngineArgvError("serving profile for sglang: --kv-cache-dtype fp8 is spelled fp8_e4m3 in SGLang")


def vllm_argv(profile: Mapping[str, Any], place: ClusterPlace) -> list[str]:
    # Images whose ENTRYPOINT is already `vllm serve` would otherwise run
    # `vllm serve vllm serve MODEL` (seed 001).
    argv = [] if place.entrypoint_is_engine else ["vllm", "serve"]
    argv += [
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
        argv += ["--host", "0.0.0.0", "--port", str(place.api_port),
                 "--served-model-name", place.served_model_name]
    else:
        argv.append("--headless")
    return argv + profile_flags(profile)


def sglang_argv(profile: Mapping[str, Any], place: ClusterPlace) -> list[str]:
    # SGLang runs the same launch_server on every node; only --node-rank
    # differs. Ranks > 0 serve no API, but the flags are harmless there and
    # keep the command identical, as SGLang's multi-node docs show.
    argv = [] if place.entrypoint_is_engine else ["python3", "-m", "sglang.launch_server"]
    argv += [
        "--model-path", place.model,
        "--tp-size", str(place.world_size),
        "--nnodes", str(place.world_size),
        "--node-rank", str(place.rank),
        "--dist-init-addr", f"{place.head_qsfp_ip}:{place.master_port}",
        "--host", "0.0.0.0",
        "--port", str(place.api_port),
        "--served-model-name", place.served_model_name,
    ]
    return argv + profile_flags(profile)


def render_engine_argv(engine: str, profile: Mapping[str, Any], cluster: ClusterPlace | Mapping[str, Any]) -> list[str]:
    """The argv that follows the image name in `docker run`."""
    if engine not in ENGINES:
        raise EngineArgvError(f"serving_engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    place = cluster if isinstance(cluster, ClusterPlace) else ClusterPlace(**cluster)
    profile = dict(profile or {})
    _check_profile(engine, profile)
    return (vllm_argv if engine == "vllm" else sglang_argv)(profile, place)
