"""How every role and the verify suite read settings: one checked object, from
group_data, the inventory's cluster-wide values and --data, over the
defaults declared once in spark_cluster.schema."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from pyinfra.api.exceptions import InventoryError
from pyinfra.connectors.ssh import SSHConnector

from . import schema

# Keys of a host's data that are not settings: the inventory's per-node fields
# (its ssh_* ones are pyinfra's SSH connector data, as are the CLI's
# --user/--port/--key), and what spark_cluster.inventory derives from them.
NODE_FIELDS = ("qsfp_address",)
DERIVED_FIELDS = ("node_rank", "is_head", "world_size", "head_name", "head_qsfp_ip", "qsfp_ip", "qsfp_prefixlen",
                  "cluster_members", "peers")


def _connector_keys() -> set[str]:
    return set(SSHConnector.data_meta)


class SettingError(InventoryError):
    """A one-line complaint about a group_data value, raised before anything changes."""


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise SettingError(f"group_data: '{key}' {message}")


def unknown_keys(keys: Iterable[str]) -> list[str]:
    """The keys that are neither settings nor node, derived or connector data."""
    known = set(schema.BY_KEY) | set(NODE_FIELDS) | set(DERIVED_FIELDS) | _connector_keys()
    return sorted(key for key in keys if key not in known and not key.startswith("_"))


def problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """[(key, one-line message)] for everything wrong with these merged values:
    unknown keys first (with the closest valid name), then values and rules."""
    found = [(key, schema.unknown_key_message(key, schema.BY_KEY)) for key in unknown_keys(data)]
    found += schema.value_problems({key: data.get(key) for key in schema.BY_KEY})
    return found


def _as_dict(host_data: Any) -> dict[str, Any]:
    if isinstance(host_data, Mapping):
        return dict(host_data)
    return dict(host_data.dict())  # pyinfra's HostData: every layer merged


def cluster_settings(host_data: Any) -> SimpleNamespace:
    """Every setting (the default where unset), checked; plus the node's admin
    user (`ssh_user`, an inventory field). A problem raises SettingError."""
    data = _as_dict(host_data)
    found = problems(data)
    if found:
        raise SettingError(f"group_data: {found[0][1]}")
    values = {key: (setting.default if data.get(key) is None else data[key]) for key, setting in schema.BY_KEY.items()}
    return SimpleNamespace(**values, ssh_user=data.get("ssh_user"))
