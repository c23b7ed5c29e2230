"""Starting and stopping the detached switch process of a lab with more than 2 nodes."""

from __future__ import annotations

import subprocess
import sys
import time

from . import cx7, processes, state, topology
from .errors import LabError
from .ports import require_free

MARKER = "lab.switch"


def pid_file():
    return state.state_dir() / "switch.pid"


def running_pid() -> int | None:
    return processes.alive(pid_file(), MARKER)


def ensure_running(count: int, cables: str = cx7.DEFAULT_CABLES) -> bool:
    """Starts the switch for `count` nodes unless it runs; True when it started it."""
    if running_pid() is not None:
        return False
    specs = topology.switch_specs(count, cables)
    for port, _ in specs:
        require_free(port, "the lab's QSFP switch", udp=True)
    argv = [sys.executable, "-m", MARKER, "--pid-file", str(pid_file())]
    for port, members in specs:
        argv += ["--switch", f"{port}=" + ",".join(map(str, members))]
    log = open(state.state_dir() / "switch.log", "ab")
    subprocess.Popen(argv, cwd=state.REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running_pid() is not None:
            return True
        time.sleep(0.1)
    raise LabError(f"the QSFP switch did not start: see {state.state_dir() / 'switch.log'}")


def stop() -> bool:
    pid = running_pid()
    if pid is None:
        return False
    processes.terminate(pid, grace=5)
    pid_file().unlink(missing_ok=True)
    return True
