"""Just enough QMP: power a guest off cleanly, pull cables, resume a paused VM."""

from __future__ import annotations

import json
import socket
from pathlib import Path


def execute(qmp_socket: Path, commands: list[dict], timeout: float = 5.0) -> list[dict]:
    """Runs `commands` ({"execute": ..., "arguments": ...}) in order; their replies.

    Stops at the first {"error": ...} reply (the last one returned): a VM whose cable could
    not be pulled must not be resumed. Raises OSError or ValueError when the socket fails.
    """
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(qmp_socket))
        stream = sock.makefile("rwb")
        stream.readline()  # greeting
        for command in [{"execute": "qmp_capabilities"}, *commands]:
            stream.write(json.dumps(command).encode() + b"\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline() or b"{}")
                if "return" in reply or "error" in reply or not reply:
                    break
            replies.append(reply)
            if "error" in reply:
                break
    return replies[1:]


def powerdown(qmp_socket: Path, timeout: float = 5.0) -> bool:
    try:
        execute(qmp_socket, [{"execute": "system_powerdown"}], timeout)
        return True
    except (OSError, ValueError):
        return False


def link_off_commands(netdev_ids: list[str]) -> list[dict]:
    """QMP `set_link ... off` for each qemu netdev: the guest NIC behind it loses carrier."""
    return [{"execute": "set_link", "arguments": {"name": name, "up": False}} for name in netdev_ids]
