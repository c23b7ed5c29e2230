"""The engine's command line: what the cluster dictates (the engine's record in
spark_cluster.engines) plus the profile's flags.

Pure functions: no pyinfra, so every trap a profile can set is unit-tested.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from spark_cluster.engines import ENGINES, ClusterPlace, Engine


class EngineArgvError(ValueError):
    """A one-line complaint about the serving profile."""


def engine_named(name: str) -> Engine:
    engine = ENGINES.get(name)
    if engine is None:
        raise EngineArgvError(f"serving_engine must be one of {', '.join(ENGINES)}, got {name!r}")
    return engine


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


def check_profile(engine: Engine, profile: Mapping[str, Any]) -> None:
    owned = sorted(set(profile) & engine.cluster_owned)
    if owned:
        raise EngineArgvError(
            f"serving profile for {engine.name} sets {flag(owned[0])}, "
            "which the serving role derives from the inventory"
        )
    stale = sorted(set(profile) & set(engine.renamed))
    if stale:
        raise EngineArgvError(
            f"serving profile for {engine.name} uses {flag(stale[0])}, renamed to "
            f"{flag(engine.renamed[stale[0]])} in {engine.renamed_in}"
        )
    for (key, value), spelling in sorted(engine.respelled.items()):
        if profile.get(key) == value:
            raise EngineArgvError(
                f"serving profile for {engine.name}: {flag(key)} {value} is spelled {spelling} in {engine.label}"
            )


def render_engine_argv(engine: str, profile: Mapping[str, Any], cluster: ClusterPlace | Mapping[str, Any]) -> list[str]:
    """The argv that follows the image name in `docker run`."""
    record = engine_named(engine)
    place = cluster if isinstance(cluster, ClusterPlace) else ClusterPlace(**cluster)
    profile = dict(profile or {})
    check_profile(record, profile)
    launcher = [] if place.entrypoint_is_engine else list(record.launcher)
    return launcher + record.cluster_flags(place) + profile_flags(profile)
