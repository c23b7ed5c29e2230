"""Just enough QMP to ask a guest to power off cleanly."""

from __future__ import annotations

import json
import socket
from pathlib import Path


def powerdown(qmp_socket: Path, timeout: float = 5.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(qmp_socket))
            stream = sock.makefile("rwb")
            stream.readline()  # greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                stream.write(json.dumps({"execute": command}).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline() or b"{}")
                    if "return" in reply or "error" in reply or not reply:
                        break
            return True
    except (OSError, ValueError):
        return False
