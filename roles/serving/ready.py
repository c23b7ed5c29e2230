"""The deploy's wait for a serving cluster: after a run that (re)started an
engine, the node's operation ends only once the head answers a chat
completion, and says meanwhile what each engine is doing.

When an engine (re)started on any node, every node waits: the head until it
answers a one-token completion itself, a worker until the head's watcher
has seen it answer with this worker in the cluster. Each asks the watcher's
`status` (files/serving_watch.py) every few seconds over its open SSH
connection, prints the engine's phase when it changes (and every minute),
and on timeout fails with the tail of its own engine's log: so a cluster
that never came up shows every node's log in one run's output.

A member that failed or was lost earlier in this run (or meanwhile: see
spark_cluster/lost_nodes.py) ends the wait at once on every other node, with
a warning naming it: a tensor-parallel engine cannot answer without every
member, and the run's summary says to run the deploy again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import gevent
from pyinfra import host, logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.operations import python

from spark_cluster.lost_nodes import failed_this_run

POLL_S = 10
PROGRESS_EVERY_S = 60
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Status:
    ready: bool
    phase: str
    detail: str
    memory: dict | None


def parse_status(stdout_lines: list[str]) -> Status | None:
    """The watcher's `status` line (its last JSON line), or None."""
    for line in reversed(stdout_lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                return None
            return Status(bool(data.get("ready")), str(data.get("phase") or ""), str(data.get("detail") or ""),
                          data.get("memory") if isinstance(data.get("memory"), dict) else None)
    return None


def memory_words(memory: dict | None) -> str:
    if not memory:
        return ""
    return f"free memory at launch {memory.get('free_gib')} of {memory.get('total_gib')} GiB"


def progress_line(node: str, elapsed: float, status: Status | None) -> str:
    if status is None:
        return f"serving {node}: {elapsed:.0f}s, no status from the watcher yet"
    parts = [status.phase or "phase unknown", status.detail, memory_words(status.memory)]
    return f"serving {node}: {elapsed:.0f}s, " + "; ".join(part for part in parts if part)


def timeout_message(node: str, timeout_s: int, status: Status | None, log_tail: str) -> str:
    last = progress_line(node, timeout_s, status)
    return (f"serving on {node}: no chat completion from the head within serving_start_timeout_s = {timeout_s}s "
            f"(last: {last}). Last lines of this node's engine log (docker logs spark-serving):\n{log_tail}")


def lost_member_message(node: str, gone: list[str]) -> str:
    return (f"serving {node}: not waiting for a completion: {', '.join(gone)} failed or was lost in this run, "
            "and the engine cannot serve without every member; run the deploy again once it is back "
            "(the run's last lines name the command)")


def lost_members() -> list[str]:
    """The other cluster members that failed or were lost so far in this run."""
    members = {member["name"] for member in host.data.get("cluster_members") or []}
    return [name for name in failed_this_run(host.state, other_than=host.name) if name in members]


def _sleep(seconds: float) -> None:
    # pyinfra runs every host's callback in a greenlet: gevent's sleep lets the others run.
    gevent.sleep(seconds)


def _run(command: list[str]) -> tuple[bool, list[str]]:
    ok, output = host.run_shell_command(StringCommand(*command), _sudo=True,
                                        _sudo_password=host.data.get("_sudo_password"), _timeout=120)
    return ok, list(output.stdout_lines)


def wait_until_serving(timeout_s: int, watch_path: str) -> None:
    """pyinfra callback (python.call): polls the watcher's status until ready or timeout."""
    started = time.monotonic()
    shown_phase, shown_at, status = None, 0.0, None
    while True:
        gone = lost_members()
        if gone:
            logger.warning(f"    [{host.name}] " + lost_member_message(host.name, gone))
            return
        _, lines = _run(["python3", watch_path, "status"])
        status = parse_status(lines)
        elapsed = time.monotonic() - started
        if status is not None and status.ready:
            logger.info(f"    [{host.name}] " + progress_line(host.name, elapsed, status).replace(
                f"{elapsed:.0f}s, ", f"ready after {elapsed:.0f}s: ", 1))
            return
        phase = status.phase if status else None
        if phase != shown_phase or elapsed - shown_at >= PROGRESS_EVERY_S:
            logger.info(f"    [{host.name}] " + progress_line(host.name, elapsed, status))
            shown_phase, shown_at = phase, elapsed
        if elapsed >= timeout_s:
            _, tail = _run(["python3", watch_path, "logtail", str(LOG_TAIL_LINES)])
            raise OperationError(timeout_message(host.name, timeout_s, status, "\n".join(tail)))
        _sleep(POLL_S)


def wait_operation(name: str, timeout_s: int, watch_path: str, **arguments):
    """The pyinfra operation that waits (wait_until_serving); `arguments` are
    pyinfra's global ones (_if...). Bounded a little past the wait's own timeout."""
    return python.call(name=name, function=wait_until_serving, timeout_s=int(timeout_s), watch_path=watch_path,
                       _timeout=int(timeout_s) + 120, **arguments)
