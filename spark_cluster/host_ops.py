"""Operations every role uses: failing one host clearly, finding the admin account."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.operations import server

from .account import UserAccount


def fail_command(message: str) -> str:
    """A shell snippet that prints one line on stderr and fails."""
    return f"{{ echo {shlex.quote(message)} >&2; exit 1; }}"


def fail_host(name: str, message: str) -> None:
    """A failing operation: pyinfra drops this host and carries on with the others."""
    server.shell(name=name, commands=[fail_command(message)])


def admin_account(user):
    """The admin user's account ({"home", "group"}), or None (the caller then fails the host)."""
    if not user:
        return None
    return host.get_fact(UserAccount, user=user)
