"""Host programs the lab needs, and where Debian ships them."""

from __future__ import annotations

import shutil

from .errors import LabError

APT_PACKAGE = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

# /sbin is often missing from a user's PATH, and mkfs.ext4 lives there.
_EXTRA_DIRS = "/usr/sbin:/sbin"


def require(program: str) -> str:
    """The absolute path of `program`, or a LabError naming the apt package to install."""
    found = shutil.which(program) or shutil.which(program, path=_EXTRA_DIRS)
    if found:
        return found
    package = APT_PACKAGE.get(program, program)
    raise LabError(f"{program} not found: install it with `apt-get install {package}`")
