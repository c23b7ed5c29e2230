"""A node lost mid-run fails alone: the other nodes finish their run, and the
run ends naming the lost node and the command to run again.

pyinfra (3.6.1 to 3.10, pinned by the unit tests in tests/unit/test_lost_nodes.py)
fails one host on TimeoutError, OSError or paramiko's SSHException raised by
a command (pyinfra/api/operations.py `_run_host_op`, pyinfra/api/facts.py
`_get_fact`). A link that died under the run raises other things too: the
SSH connector's file transfer turns the dead transport's SSHException into
`ConnectError: Unable to establish SFTP connection`
(pyinfra/connectors/ssh.py `get_file_transfer_connection`), and paramiko
raises EOFError from a transport that closed mid-read. Those escape the
host's greenlet, `_run_single_op`'s `greenlet.get()` re-raises them and the
CLI aborts every node. Two narrow patches, both installed by
`isolate_lost_nodes()` (the first line of every deploy file):

- `Host.run_shell_command` / `put_file` / `get_file` turn ConnectError and
  EOFError into `LinkError` (an OSError): pyinfra's own per-host failure
  path then takes it, with its usual bookkeeping and output;
- `pyinfra.api.operations._run_host_op_with_context` (what every run
  strategy spawns per host and operation) fails the host, instead of the
  run, for one of those raised while pyinfra builds the operation's
  commands (a fact read, a reconnect), where no pyinfra handler sits.

And a powered-off node is noticed within about a minute: every SSH link
sends a keepalive each KEEPALIVE_S, and TCP gives up on data unanswered
for DEAD_PEER_S (TCP_USER_TIMEOUT), instead of Linux's ~15 minutes of
retransmissions.
"""

from __future__ import annotations

import atexit
import functools
import os
import shlex
import socket
import sys
from typing import Any, Callable, Iterable

from paramiko import SSHException
from pyinfra import logger
from pyinfra.api import operations
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_state

KEEPALIVE_S = 15
DEAD_PEER_S = 60
# The command a summary tells to run again; the spark-cluster CLI sets it to
# its own command line (the run's argv is the default).
RERUN_ENV = "SPARK_CLUSTER_RERUN_COMMAND"
# What a dead link raises that pyinfra does not fail one host for.
ESCAPING = (ConnectError, EOFError)
HOST_METHODS = ("run_shell_command", "put_file", "get_file")
PATCHED = "__spark_cluster_isolates__"


class LinkError(OSError):
    """A ConnectError or EOFError from one host's link, as the OSError pyinfra fails that host for."""


# {id(state): (state, {host name: why})}: the nodes lost in this run (a State
# is one run; unit tests build many).
_LOST: dict[int, tuple[Any, dict[str, str]]] = {}


def _lost_of(state) -> dict[str, str]:
    entry = _LOST.get(id(state))
    if entry is None or entry[0] is not state:
        entry = _LOST[id(state)] = (state, {})
    return entry[1]


def link_alive(host: Host) -> bool:
    """Whether `host`'s SSH transport still runs (True when unknown: another
    connector, or not connected yet)."""
    client = getattr(host.connector, "client", None)
    get_transport = getattr(client, "get_transport", None)
    transport = get_transport() if get_transport else None
    return transport is None or bool(transport.is_active())


def _why(error: BaseException, limit: int = 80) -> str:
    # The first sentence: the SSH connector's SFTP error goes on to suggest a
    # disabled subsystem, which a lost node is not.
    text = str(error).strip().splitlines()[0].split(". ")[0].strip() if str(error).strip() else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _operation(host: Host) -> str:
    op_hash = host.executing_op_hash
    try:
        names = host.state.get_op_meta(op_hash).names if op_hash else ()
    except KeyError:
        names = ()
    return ", ".join(sorted(names))


def mark_lost(host: Host, error: str, operation: str | None = None) -> None:
    """Remember `host` as lost in its run (the first reason is kept); `operation`
    defaults to the one the host is executing."""
    lost = _lost_of(host.state)
    if host.name not in lost:
        operation = operation or _operation(host)
        why = f"its SSH connection dropped{f' during {operation!r}' if operation else ''}: {error}"
        lost[host.name] = why
        logger.error(f"{host.print_prefix}lost mid-run ({why}): this node stops here, the others carry on")


def lost_nodes(state) -> dict[str, str]:
    """{name: why} of the nodes lost in `state`'s run."""
    return dict(_lost_of(state))


def failed_this_run(state, other_than: str | None = None) -> list[str]:
    """The nodes that failed or were lost so far in this run (pyinfra drops a
    failed node from every later operation), except `other_than`; sorted."""
    names = {host.name for host in state.failed_hosts} | set(_lost_of(state))
    return sorted(names - {other_than})


def _guard(method: Callable) -> Callable:
    @functools.wraps(method)
    def guarded(self: Host, *args, **kwargs):
        try:
            result = method(self, *args, **kwargs)
        except ESCAPING as error:
            if not link_alive(self):
                mark_lost(self, _why(error))
            raise LinkError(f"{self.name}: {_why(error)}") from error
        except (OSError, SSHException) as error:
            if not link_alive(self):
                mark_lost(self, _why(error))
            raise
        if result is False or (isinstance(result, tuple) and result and result[0] is False):
            if not link_alive(self):
                mark_lost(self, "closed while a command ran")
        return result

    setattr(guarded, PATCHED, True)
    return guarded


def _isolating(run_host_op_with_context: Callable) -> Callable:
    @functools.wraps(run_host_op_with_context)
    def isolated(state, host: Host, op_hash: str):
        try:
            return run_host_op_with_context(state, host, op_hash)
        except (*ESCAPING, LinkError) as error:
            names = ", ".join(sorted(state.get_op_meta(op_hash).names)) or "an operation"
            if not link_alive(host):
                mark_lost(host, _why(error), operation=names)
            host.log_styled(f"Error: {_why(error)} (in {names})", fg="red", log_func=logger.error)
            results = state.get_results_for_host(host)
            results.ops += 1
            results.error_ops += 1
            meta = state.get_op_data_for_host(host, op_hash).operation_meta
            if not meta.is_complete():
                meta.set_complete(False, [], CommandOutput([]))
            state.trigger_callbacks("operation_host_error", host, op_hash, 0, 0)
            return False

    setattr(isolated, PATCHED, True)
    return isolated


def tune_link(host: Host) -> None:
    """Keepalive and a dead-peer timeout on `host`'s SSH connection, when it has one."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if hasattr(client, "get_transport") else None
    if transport is None:
        return
    transport.set_keepalive(KEEPALIVE_S)
    sock = getattr(transport, "sock", None)
    option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
    if option is not None and hasattr(sock, "setsockopt"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, DEAD_PEER_S * 1000)
        except OSError:
            pass  # a proxy's channel, not a TCP socket: keepalive alone


class _TuneOnConnect(BaseStateCallback):
    """A link made later in the run (the reconnect after a reboot) is tuned too."""

    @staticmethod
    def host_connect(state, host):
        tune_link(host)


def summary_lines(lost: dict[str, str], failed: Iterable[str], rerun: str) -> list[str]:
    """What the run ends with when a node was lost or failed; [] when none was."""
    others = sorted(set(failed) - set(lost))
    lines = []
    if lost:
        lines.append("--> lost mid-run: " + "; ".join(f"{name} ({why})" for name, why in sorted(lost.items()))
                     + ". The other nodes finished their run.")
    if others:
        lines.append(f"--> failed: {', '.join(others)} (the errors are above).")
    if lines:
        waits = []
        if lost:
            waits.append(f"{', '.join(sorted(lost))} {'answers' if len(lost) == 1 else 'answer'} SSH")
        if others:
            waits.append("the errors above are fixed")
        lines.append(f"--> Run again once {' and '.join(waits)} (nodes that converged change nothing): {rerun}")
    return lines


def rerun_command(argv: list[str] | None = None, environ=None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get(RERUN_ENV):
        return environ[RERUN_ENV]
    argv = list(sys.argv if argv is None else argv)
    if argv and os.path.basename(argv[0]) in ("pyinfra", "__main__.py"):
        argv[0] = "pyinfra"
    return shlex.join(argv)


def _print_summary(state) -> None:
    # After pyinfra's results and its "Disconnecting" line, on stderr as pyinfra logs.
    for line in summary_lines(lost_nodes(state), failed_this_run(state), rerun_command()):
        print(line, file=sys.stderr, flush=True)


def install_patches() -> None:
    """The two patches (idempotent); see the module docstring."""
    for name in HOST_METHODS:
        method = getattr(Host, name)
        if not getattr(method, PATCHED, False):
            setattr(Host, name, _guard(method))
    if not getattr(operations._run_host_op_with_context, PATCHED, False):
        operations._run_host_op_with_context = _isolating(operations._run_host_op_with_context)


def isolate_lost_nodes() -> None:
    """The first line of every deploy file: a node lost mid-run fails alone, its
    loss is noticed within a minute, and the run ends with a summary naming it.
    pyinfra runs a deploy file once per host: the second call does nothing."""
    install_patches()
    if not ctx_state.isset():
        return
    state = ctx_state.get()
    if any(isinstance(handler, _TuneOnConnect) for handler in state.callback_handlers):
        return
    state.add_callback_handler(_TuneOnConnect())
    for host in state.inventory:
        if host.connected:
            tune_link(host)
    atexit.register(_print_summary, state)
