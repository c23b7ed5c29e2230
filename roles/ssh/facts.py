"""The node's SSH host keys, as its peers must know them."""

from __future__ import annotations

from pyinfra.api import FactBase

KEY_TYPES = ("ssh-", "ecdsa-", "sk-")


def parse_public_keys(lines: list[str]) -> list[str]:
    """["<type> <base64>", ...] sorted, comments dropped (they name the
    installer's host name, not ours)."""
    keys = set()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(KEY_TYPES):
            keys.add(f"{parts[0]} {parts[1]}")
    return sorted(keys)


class HostPublicKeys(FactBase):
    """The public halves of /etc/ssh/ssh_host_*_key; [] when sshd has none."""

    default = list

    def command(self) -> str:
        return "cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null || true"

    def process(self, output):
        return parse_public_keys(output)
