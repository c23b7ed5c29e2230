"""How a role reads its settings: group_data/inventory values over the role's defaults."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

from pyinfra.api.exceptions import InventoryError


class SettingError(InventoryError):
    """A one-line complaint about a group_data value, raised before anything changes."""


def role_settings(host_data: Any, defaults: Mapping[str, Any]) -> SimpleNamespace:
    """Only the keys a role declares in its defaults are read, so a typo in
    group_data cannot silently pass for a setting."""
    values = {}
    for key, default in defaults.items():
        value = host_data.get(key)
        values[key] = default if value is None else value
    return SimpleNamespace(**values)


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise SettingError(f"group_data: '{key}' {message}")
