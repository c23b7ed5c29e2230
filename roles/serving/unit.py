"""The systemd unit and env file, rendered from data (pure, unit-tested).

One template for head and workers: what differs is in the engine argv and the
context built here, never in a second template.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from spark_cluster.templates import render_template

from . import defaults

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENV_TEMPLATE = TEMPLATES / "serving.env.j2"
UNIT_TEMPLATE = TEMPLATES / "spark-serving.service.j2"
NVIDIA_RUNTIME = "nvidia"


_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./$-]+$")


def systemd_quote(arg: str) -> str:
    """One argv word for ExecStart=: systemd expands $VAR and %x specifiers,
    so both are doubled; words with spaces or quotes are double-quoted with
    C-style escapes."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and _SYSTEMD_PLAIN.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command(argv: Sequence[str], groups: Sequence[Sequence[str]] | None = None) -> str:
    """argv as an ExecStart value, one group of words per continued line."""
    if groups is None:
        return " ".join(systemd_quote(word) for word in argv)
    lines = [" ".join(systemd_quote(word) for word in group) for group in groups if group]
    return " \\\n    ".join(lines)


@dataclass(frozen=True)
class Container:
    image: str
    engine_argv: list[str]
    mounts: list[tuple[str, str]]
    nvidia_runtime: bool
    name: str = defaults.CONTAINER_NAME
    env_files: tuple[str, ...] = (defaults.ENV_FILE, defaults.ROCE_ENV_FILE)


def docker_run_groups(container: Container) -> list[list[str]]:
    """`docker run` split into readable groups; flattening gives the argv."""
    groups = [
        ["/usr/bin/docker", "run", "--rm", "--name", container.name],
        # Host network and IPC: NCCL and the engine's shared memory need both.
        ["--network", "host", "--ipc", "host"],
        # RDMA from inside: the verbs devices, and pinning memory without limit.
        ["--device", "/dev/infiniband", "--cap-add", "IPC_LOCK", "--ulimit", "memlock=-1:-1"],
    ]
    if container.nvidia_runtime:
        groups.append(["--gpus", "all"])
    groups.append([word for path in container.env_files for word in ("--env-file", path)])
    groups += [["-v", f"{host}:{inside}"] for host, inside in container.mounts]
    groups.append([container.image])
    groups += flag_groups(container.engine_argv)
    return groups


def flag_groups(argv: Sequence[str]) -> list[list[str]]:
    """Leading words together, then each --flag with its value, one per line."""
    groups: list[list[str]] = [[]]
    for word in argv:
        if word.startswith("--") and groups[-1]:
            groups.append([])
        groups[-1].append(word)
    return [group for group in groups if group]


def docker_run_argv(container: Container) -> list[str]:
    return [word for group in docker_run_groups(container) for word in group]


def unit_context(
    *,
    container: Container,
    engine: str,
    rank: int,
    world_size: int,
    head_qsfp_ip: str,
    master_port: int,
    roce_detect_command: str,
    prestart_command: str,
    start_timeout_s: int,
    stop_timeout_s: int,
) -> dict[str, Any]:
    role = "head" if rank == 0 else "worker"
    return {
        "engine": engine,
        "role": role,
        "rank": rank,
        "world_size": world_size,
        "role_line": (
            "Head: serves the API and hosts the rendezvous."
            if rank == 0
            else "Worker: joins the head's rendezvous, serves no API."
        ),
        "master_endpoint": f"{head_qsfp_ip}:{master_port}",
        "container_name": container.name,
        # Owned by roles/rdma (the detector, its pinned values, its wait for
        # the bond's address at boot); its words need no systemd escaping.
        "roce_detect_command": roce_detect_command,
        "roce_env_file": defaults.ROCE_ENV_FILE,
        "prestart_command": prestart_command,
        "exec_start": systemd_command(docker_run_argv(container), docker_run_groups(container)),
        "stop_timeout_s": int(stop_timeout_s),
        "start_timeout_s": int(start_timeout_s),
    }


def render_unit(context: Mapping[str, Any]) -> str:
    return render_template(UNIT_TEMPLATE, context)


def env_context(environment: Mapping[str, str]) -> dict[str, Any]:
    return {"environment": dict(environment), "roce_env_file": defaults.ROCE_ENV_FILE}


def render_env_file(environment: Mapping[str, str]) -> str:
    return render_template(ENV_TEMPLATE, env_context(environment))


def unquote_exec_start(value: str) -> list[str]:
    """Inverse of systemd_command for tests and diagnostics."""
    words = shlex.split(value.replace("\\\n", " "))
    return [word.replace("$$", "$").replace("%%", "%") for word in words]
