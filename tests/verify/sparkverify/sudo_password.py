"""Where the suite's sudo password comes from, never a command line:
--ask-sudo-password (asked once, on the terminal), --sudo-password-file
(a file only its owner can read), SPARK_SUDO_PASSWORD (for automation that
exports it from such a file), or the inventory's sudo_password (the lab)."""

from __future__ import annotations

import getpass
import os
import stat
from pathlib import Path

from .errors import VerifyEnvironmentError

SUDO_PASSWORD_ENV = "SPARK_SUDO_PASSWORD"


def read_password_file(path: str) -> str:
    """The first line of `path`, which no one but its owner may read."""
    file = Path(os.path.expanduser(path))
    try:
        info, text = file.stat(), file.read_text()
    except OSError as error:
        raise VerifyEnvironmentError(f"--sudo-password-file {path}: cannot be read ({error.strerror})") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VerifyEnvironmentError(
            f"--sudo-password-file {path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the "
            f"password; chmod 600 {path}")
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise VerifyEnvironmentError(f"--sudo-password-file {path}: empty; write the password on its first line")
    return lines[0]


def session_password(password_file: str | None, ask: bool, prompt=getpass.getpass) -> str | None:
    """The password given for this run (file or prompt), or None: then each
    node uses SPARK_SUDO_PASSWORD or its inventory's sudo_password."""
    if password_file:
        return read_password_file(password_file)
    if ask:
        return prompt("sudo password for the nodes: ")
    return None
