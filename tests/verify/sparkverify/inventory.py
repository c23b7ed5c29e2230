"""The cluster to verify, read with pyinfra's own loader from the same
inventory file the deploy used (group_data and derived data included)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_cluster.inventory import ClusterInventoryError
from spark_cluster.settings import SettingError, cluster_settings

from .errors import VerifyEnvironmentError


@dataclass(frozen=True)
class NodeSpec:
    name: str
    data: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    @property
    def settings(self):
        """Every setting as the roles read it (spark_cluster.schema's defaults
        where unset); an inventory the deploy would refuse fails in one line."""
        try:
            return cluster_settings(self.data)
        except SettingError as error:
            raise VerifyEnvironmentError(f"{self.name}: {error}; fix: correct the inventory or group_data") from None

    @property
    def admin(self) -> str:
        return self.get("ssh_user") or os.environ.get("USER", "root")

    @property
    def qsfp_ip(self) -> str:
        return self.data["qsfp_ip"]


def _data_args(pairs) -> dict[str, Any]:
    """--data KEY=VALUE pairs as pyinfra's CLI reads them (its parse_cli_arg)."""
    from pyinfra_cli.util import parse_cli_arg

    data = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key:
            raise ClusterInventoryError(f"--data {pair!r}: expected KEY=VALUE, e.g. --data serving_wait_ready=False")
        data[key] = parse_cli_arg(value)
    return data


def load_cluster(inventory_file: str | os.PathLike, repo_root: str | os.PathLike, data=(),
                 group_data=()) -> list[NodeSpec]:
    """Nodes in inventory order (the head first), each with pyinfra's merged
    data, as the deploy reads them with the same --data and --group-data.

    Nothing connects here: the inventory is only executed and merged."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    repo_root = str(Path(repo_root).resolve())
    path = Path(inventory_file)
    if not path.is_absolute():
        path = Path(repo_root) / path
    if not path.is_file():
        raise FileNotFoundError(f"inventory file not found: {path}")
    # Inventories import spark_cluster / inventory.lab_common from the repo.
    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    # pyinfra's exec_file records the file on the current State.
    with ctx_state.use(State()):
        inventory = make_inventory(str(path), override_data=_data_args(data), cwd=repo_root,
                                   group_data_directories=[str(Path(f).resolve()) for f in group_data or ()] or None)
    nodes = [NodeSpec(host.name, dict(host.data.dict())) for host in inventory]
    nodes.sort(key=lambda node: node.data.get("node_rank", 0))
    return nodes
