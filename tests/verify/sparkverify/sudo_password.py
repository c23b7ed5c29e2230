"""Where the suite's sudo password comes from, never a command line:
--ask-sudo-password (asked once, on the terminal), --sudo-password-file
(a file only its owner can read), SPARK_SUDO_PASSWORD (for automation that
exports it from such a file), or the inventory's sudo_password (the lab)."""

from __future__ import annotations

import getpass

from spark_cluster.inventory import SUDO_PASSWORD_ENV  # noqa: F401 (one name, shared with the deploy)
from spark_cluster import private_file

from .errors import VerifyEnvironmentError


def read_password_file(path: str) -> str:
    """The first line of `path`, which no one but its owner may read."""
    try:
        return private_file.read_password_file(path)
    except ValueError as error:
        raise VerifyEnvironmentError(str(error)) from None


def session_password(password_file: str | None, ask: bool, prompt=getpass.getpass) -> str | None:
    """The password given for this run (file or prompt), or None: then each
    node uses SPARK_SUDO_PASSWORD or its inventory's sudo_password."""
    if password_file:
        return read_password_file(password_file)
    if ask:
        return prompt("sudo password for the nodes: ")
    return None
