"""Operations every role uses: failing one host clearly, finding the admin account,
installing packages."""

from __future__ import annotations

import shlex

from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, server

from .account import UserAccount
from .batch_fact import want
from .cluster_facts import host_fact
from .file_state import UNCHANGED


def fail_command(message: str) -> str:
    """A shell snippet that prints one line on stderr and fails."""
    return f"{{ echo {shlex.quote(message)} >&2; exit 1; }}"


def fail_host(name: str, message: str) -> None:
    """A failing operation: pyinfra drops this host and carries on with the others.
    Without sudo: printing a line needs no root, and a node whose sudo is the
    problem must still print it."""
    server.shell(name=name, commands=[fail_command(message)], _sudo=False)


def admin_account(user):
    """The admin user's account ({"home", "group", "groups"}), or None (the caller then fails the host)."""
    if not user:
        return None
    return host_fact(UserAccount, user=user)


# What ensure_packages reads, for the `wants` of a role that installs packages.
PACKAGES_WANT = want(DebPackages)


def ensure_packages(name: str, packages: list[str]):
    """apt.packages, only when one of `packages` is missing; the lists are
    refreshed then, and never on a run that installs nothing (that would be a change)."""
    installed = host_fact(PACKAGES_WANT) or {}
    if all(package in installed for package in packages):
        return UNCHANGED
    return apt.packages(name=name, packages=packages, update=True)
