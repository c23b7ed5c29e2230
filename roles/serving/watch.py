"""The serving watcher's settings file and unit, and the API's listen address
and key (pure: no pyinfra, unit-tested).

The watcher itself is files/serving_watch.py (the policy, decide(), lives
there, next to the node-side code that acts on it); this module turns the
inventory and group_data into what it reads: /etc/spark-cluster/watch.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from spark_cluster.engines import Engine
from spark_cluster.private_file import read_owner_only
from spark_cluster.settings import SettingError
from spark_cluster.templates import render_template

from . import defaults

FILES = Path(__file__).resolve().parent / "files"
WATCH_SOURCE = FILES / "serving_watch.py"
WATCH_UNIT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "spark-serving-watch.service.j2"

# api_listen -> where the head's API listens.
LISTEN_CHOICES = ("qsfp", "all")
_KEY = re.compile(r"^[\x21-\x7e]{16,512}$")
# Words that make a profile flag a secret: its value would land in the 0644
# unit file and in `docker run`'s argv, which every local user can read.
SECRET_WORDS = {"token", "secret", "password", "passwd", "apikey", "credential", "credentials"}


def api_host(api_listen: str, control_ip: str) -> str:
    """The head's --host: its QSFP control address (the default: only the
    cluster's own cable reaches it) or every address ("all")."""
    if api_listen not in LISTEN_CHOICES:
        raise SettingError(f"group_data: 'api_listen' must be one of {', '.join(LISTEN_CHOICES)}, got {api_listen!r}")
    return control_ip if api_listen == "qsfp" else "0.0.0.0"


def secret_flag(key: str) -> bool:
    """Whether a profile key names a secret (api_key, hf_token, admin_password...)."""
    words = key.lower().replace("-", "_").split("_")
    pairs = {f"{a}{b}" for a, b in zip(words, words[1:])}
    return bool(SECRET_WORDS & (set(words) | pairs))


def refuse_secret_flags(engine_flags: Mapping[str, Any], profile: str) -> None:
    secrets = sorted(key for key in engine_flags if secret_flag(key))
    if secrets:
        raise SettingError(
            f"group_data: serving profile {profile!r} sets {secrets[0]!r}, a secret: its value would be "
            "readable by every user (unit file, docker argv). Put an API key in a file of its own (mode 0600) "
            "and name it in 'serving_api_key_file': the deploy writes it to the 0600 serving.env only")


def read_api_key(path: str | None) -> str | None:
    """The API key from the controller's file `path` (None: no key). The file
    must be readable by its owner only, and hold one word."""
    if not path:
        return None
    try:
        text = read_owner_only(path, "the API key")
    except ValueError as error:
        raise SettingError(f"group_data: 'serving_api_key_file' {error}") from None
    key = text.strip()
    if not _KEY.match(key):
        raise SettingError(
            f"group_data: 'serving_api_key_file' {str(path)!r} must hold one key of 16 to 512 printable "
            "characters without spaces")
    return key


def memory_claim(engine: Engine, engine_flags: Mapping[str, Any], override: Any = None) -> tuple[str, float]:
    """(setting, fraction): the share of the node's memory an engine must find
    free before it starts. The profile's own claim (gpu_memory_utilization,
    mem_fraction_static: the engine takes that share of the node's memory),
    unless group_data's serving_memory_check names another (0: report only)."""
    if override is not None:
        setting, value, low = "serving_memory_check", override, 0.0
    else:
        setting, value, low = engine.memory_setting, engine_flags.get(engine.memory_setting,
                                                                      engine.default_memory_fraction), None
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"group_data: {setting} must be a number, got {value!r}") from None
    if not (0 <= fraction <= 1 if low is not None else 0 < fraction <= 1):
        raise SettingError(f"group_data: {setting} must be in {'[0, 1]' if low is not None else '(0, 1]'}, got {value!r}")
    return setting, fraction


def watch_config(
    *, s: Any, engine: Engine, node: str, rank: int, control_ip: str, head_ip: str, api_host_ip: str,
    memory: tuple[str, float], image: str = "",
) -> dict[str, Any]:
    """/etc/spark-cluster/watch.json for one node (no secret: the key stays in serving.env).

    model and image are for `serving_watch.py report` (spark-cluster status):
    what this node was deployed to serve, read where it runs."""
    # Where this node reaches the head's API: the head itself asks its own
    # listen address; a worker never needs the API (it asks the head's watcher).
    api_ip = head_ip if api_host_ip == "0.0.0.0" else api_host_ip
    setting, fraction = memory
    return {
        "node": node,
        "role": "head" if rank == 0 else "worker",
        "engine": engine.name,
        "unit": defaults.UNIT_NAME,
        "container": defaults.CONTAINER_NAME,
        "env_file": defaults.ENV_FILE,
        "api_key_variable": engine.api_key_variable,
        "api_url": f"http://{api_ip}:{int(s.api_port)}",
        "served_model_name": s.serving_served_model_name or s.serving_model,
        "model": s.serving_model,
        "image": image,
        "tokens_metric": engine.tokens_metric,
        "listen": control_ip,
        "state_port": int(s.serving_watch_port),
        "head_state_url": f"http://{head_ip}:{int(s.serving_watch_port)}/state",
        "interval_s": int(s.serving_watch_interval_s),
        "probe_timeout_s": int(s.serving_watch_probe_timeout_s),
        "fail_after": int(s.serving_watch_fail_after),
        "start_timeout_s": int(s.serving_start_timeout_s),
        "rejoin_grace_s": int(s.serving_watch_rejoin_grace_s),
        "backoff_s": int(s.serving_watch_backoff_s),
        "backoff_max_s": int(s.serving_watch_backoff_max_s),
        "max_restarts_per_hour": int(s.serving_watch_max_restarts_per_hour),
        "memory_setting": setting,
        "memory_fraction": fraction,
    }


def render_watch_config(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_watch_unit(*, rank: int) -> str:
    return render_template(WATCH_UNIT_TEMPLATE, {
        "role": "head" if rank == 0 else "worker",
        "watch_path": defaults.WATCH_PATH,
        "serving_unit": defaults.UNIT_NAME,
    })
