"""Files that can hold a secret, written so that nobody else can read them, even for a moment.

pyinfra's files.put under sudo uploads to a predictable /tmp/pyinfra-<sha1 of
the destination> (created by SFTP with the login user's umask: 0644), copies
it over the destination (a new destination is 0644 until the chmod that
follows) and then sets the mode. Every file whose final mode gives other
users nothing (serving.env, the netplan file) goes this way instead:

1. as the login user, without sudo: a new directory of a random name, mode
   0700 (mkdir fails rather than reuse one somebody planted);
2. SFTP into it, without sudo: whatever mode the upload gets, only the login
   user can reach it through that directory;
3. under sudo, files/install_private.sh: copy beside the destination under
   umask 077, owner and mode set, renamed over the destination, stage removed.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationValueError, StringCommand, operation

from .shipped import shipped_command

INSTALL_PRIVATE = Path(__file__).parent / "files" / "install_private.sh"


def read_owner_only(path: str, what: str) -> str:
    """The text of a file on the controller that holds `what` (a secret) and
    that nobody but its owner may read; ValueError with the second half of a
    one-line message otherwise."""
    file = Path(os.path.expanduser(str(path)))
    try:
        info, text = file.stat(), file.read_text()
    except OSError as error:
        raise ValueError(f"{str(file)!r} cannot be read: {error.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{str(file)!r} is mode {stat.S_IMODE(info.st_mode):04o}: others can read {what}; "
                         f"chmod 600 {file}")
    return text


def read_password_file(path: str) -> str:
    """The first line of `path` (--sudo-password-file), which no one but its
    owner may read; ValueError with a one-line message otherwise."""
    try:
        lines = read_owner_only(path, "the password").splitlines()
    except ValueError as error:
        raise ValueError(f"--sudo-password-file {error}") from None
    if not lines or not lines[0]:
        raise ValueError(f"--sudo-password-file {path!r}: empty; write the password on its first line")
    return lines[0]


def is_private(mode) -> bool:
    """Whether a file of this mode ("600", "0640", 0o600) hides its content from other users."""
    return mode is not None and int(str(mode), 8) & 0o007 == 0


@operation()
def private_put(src, dest: str, user: str = "root", group: str = "root", mode: str = "600"):
    """Like files.put (the caller decides whether it must run: spark_cluster.file_state's
    Snapshot.put does), for a file whose mode gives other users nothing."""
    if not is_private(mode):
        raise OperationValueError(f"private_put writes files other users cannot read; mode {mode} lets them")
    stage = host.get_temp_filename(secrets.token_hex(16))
    yield StringCommand("mkdir", "-m", "700", stage, _sudo=False)
    yield FileUploadCommand(src, f"{stage}/upload", _sudo=False)
    yield shipped_command(INSTALL_PRIVATE, stage, dest, user, group, str(mode))
