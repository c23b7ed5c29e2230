"""The cluster to verify, read with pyinfra's own loader from the same
inventory file the deploy used (group_data and derived data included)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from spark_cluster.inventory import load_hosts
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


def load_cluster(inventory_file: str | os.PathLike, repo_root: str | os.PathLike, data=(),
                 group_data=()) -> list[NodeSpec]:
    """Nodes in inventory order (the head first), each with pyinfra's merged
    data, exactly as the deploy reads them with the same --data and
    --group-data (spark_cluster.inventory.load_hosts). Nothing connects here."""
    return [NodeSpec(name, data) for name, data in load_hosts(inventory_file, repo_root, data, group_data)]
