"""One lab node's VM: overlay, start, stop, and whether it runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import accel as accel_mod
from . import cx7, processes, qmp, state, topology
from .errors import LabError
from .image import Image
from .ports import require_free
from .qemu import node_files, qemu_argv
from .tools import require

CONSOLE_TAIL_LINES = 30


def running_pid(index: int) -> int | None:
    files = node_files(state.node_name(index))
    return processes.alive(files["pid"], str(files["overlay"]))


def ensure_overlay(index: int, image: Image) -> bool:
    """Creates the node's copy-on-write disk if it is missing; True when it did."""
    overlay = node_files(state.node_name(index))["overlay"]
    if overlay.exists():
        return False
    _qemu_img(["create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2", str(overlay)])
    return True


def delete_files(index: int) -> None:
    for path in node_files(state.node_name(index)).values():
        path.unlink(missing_ok=True)


def check_ports(index: int) -> None:
    name = state.node_name(index)
    require_free(state.ssh_port(index), f"ssh of {name}")
    for nic, port in enumerate(topology.udp_ports(index)):
        require_free(port, f"QSFP port {nic} of {name}", udp=True)


def start(index: int, count: int, image: Image, cables: str = cx7.DEFAULT_CABLES,
          accel: str = accel_mod.TCG) -> None:
    """Starts the node's VM paused, pulls the cables of the ports that have none, resumes it.

    qemu forgets a link set off when its process ends, so this runs at every start
    (up, up after down, rebuild); a reboot inside the guest keeps the qemu process and its links.
    """
    name = state.node_name(index)
    files = node_files(name)
    files["pid"].unlink(missing_ok=True)
    files["qmp"].unlink(missing_ok=True)
    argv = qemu_argv(index, count, image, binary=require("qemu-system-x86_64"), accel=accel) + ["-daemonize"]
    # Own session: the VM must outlive the shell (and the ssh session) that started it.
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            start_new_session=True, timeout=120)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"{name}: qemu failed to start: {detail}")
    commands = qmp.link_off_commands(cx7.unplugged(cables)) + [{"execute": "cont"}]
    replies: list[dict] = []
    try:
        replies = qmp.execute(files["qmp"], commands, timeout=30)
        failed = [str(r["error"].get("desc", r["error"])) for r in replies if "error" in r]
    except (OSError, ValueError) as error:
        failed = [str(error)]
    if failed or len(replies) != len(commands):
        pid = running_pid(index)
        if pid is not None:
            processes.terminate(pid)
        raise LabError(f"{name}: could not set the QSFP links over QMP ({'; '.join(failed) or 'no reply'}): "
                       "the VM was stopped")


def stop(index: int, graceful: bool = True, grace: float = 90.0) -> bool:
    """Stops the node's VM; True if one was running."""
    pid = running_pid(index)
    if pid is None:
        return False
    files = node_files(state.node_name(index))
    if graceful and qmp.powerdown(files["qmp"]) and processes.wait_gone(pid, grace):
        return True
    processes.terminate(pid)
    return True


def console_tail(index: int, lines: int = CONSOLE_TAIL_LINES) -> str:
    path = console_path(index)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no console log at {path})"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def _qemu_img(args: list[str]) -> None:
    result = subprocess.run([require("qemu-img"), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"qemu-img {args[0]} failed: {result.stderr.strip()}")


def console_path(index: int) -> Path:
    return node_files(state.node_name(index))["console"]
