"""SSH to lab nodes with the lab's key, checking host keys against the lab's own known_hosts."""

from __future__ import annotations

import subprocess

from . import state
from .tools import require


def ssh_argv(index: int, command: list[str] | None = None, batch: bool = True,
             connect_timeout: int = 5) -> list[str]:
    known_hosts = state.known_hosts_path()
    argv = [
        require("ssh"),
        # Ignore the user's own ssh config so the lab behaves the same for everyone.
        "-F", "none",
        "-i", str(state.ssh_key_path()),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        # accept-new only ever writes to the lab's own file; a changed key is still refused.
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "HashKnownHosts=no",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "LogLevel=ERROR",
        "-p", str(state.ssh_port(index)),
    ]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    argv.append(f"{state.ADMIN_USER}@{state.SSH_HOST}")
    if command:
        argv += command
    return argv


def reachable(index: int, timeout: float = 20.0) -> bool:
    try:
        result = subprocess.run(ssh_argv(index, ["true"]), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def forget_host_key(index: int) -> None:
    known_hosts = state.known_hosts_path()
    if known_hosts.exists():
        subprocess.run([require("ssh-keygen"), "-R", f"[{state.SSH_HOST}]:{state.ssh_port(index)}",
                        "-f", str(known_hosts)], capture_output=True)
        known_hosts.with_name(known_hosts.name + ".old").unlink(missing_ok=True)
