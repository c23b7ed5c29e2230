"""Who the admin user is on the node: home directory and primary group; and
whether it can become root there."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class UserAccount(FactBase):
    """{"home": str, "group": str, "groups": [str]} for a user, or None when it does not exist.

    getent (not /etc/passwd) so a directory-service account works too; the
    group is returned by name because pyinfra compares owners by name.
    """

    def command(self, user: str) -> str:
        quoted = shlex.quote(user)
        return (
            f"entry=$(getent passwd {quoted}) || exit 0; "
            f'printf "%s\\n" "$entry" | cut -d: -f6; id -gn {quoted}; id -Gn {quoted}'
        )

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        if len(lines) < 2:
            return None
        return {"home": lines[0], "group": lines[1], "groups": lines[2].split() if len(lines) > 2 else []}


class Escalation(FactBase):
    """0 when sudo (with the run's password, if any) makes the admin root; None when it is refused."""

    def command(self) -> str:
        return "id -u"

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return int(lines[0]) if lines and lines[0].isdigit() else None
