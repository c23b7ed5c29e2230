"""Upload a secret file without ever showing its content."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.api.util import get_file_sha1
from pyinfra.facts.files import Sha1File


@operation()
def private_file(src: str, dest: str):
    """Like files.put, but never prints a diff (files.put does under --diff)
    and leaves ownership to a files.file that follows.

    Call it with _sudo=False: SFTP then writes straight into the login user's
    0700 ~/.ssh, where nobody else can read it, instead of through a temporary
    file under /tmp."""
    if host.get_fact(Sha1File, path=dest) == get_file_sha1(src):
        host.noop(f"{dest} is up to date")
        return
    yield FileUploadCommand(src, dest, remote_temp_filename=host.get_temp_filename(dest))
    yield StringCommand("chmod", "600", QuoteString(dest))
