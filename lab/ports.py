"""Checks that the lab's host ports are free before anything is started."""

from __future__ import annotations

import socket

from .errors import LabError


def port_free(port: int, kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            # Without it a port in TIME_WAIT from the last run would read as taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def require_free(port: int, owner: str, udp: bool = False) -> None:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    if not port_free(port, kind):
        proto = "UDP" if udp else "TCP"
        raise LabError(
            f"port {port}/{proto} on 127.0.0.1 ({owner}) is already in use: stop what holds it, "
            "or move the lab with SPARK_LAB_SSH_BASE"
        )
