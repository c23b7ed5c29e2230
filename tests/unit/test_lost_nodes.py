"""A node lost mid-run fails alone (spark_cluster/lost_nodes.py), driven through
pyinfra's own API: an Inventory, a State, add_op and run_ops, with the SSH
connector's network calls replaced by a fake whose one node dies mid-run."""

from __future__ import annotations

import inspect
import socket
from io import StringIO

import pytest
from pyinfra.api import Config, FactBase, Inventory, State, operation
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.host import Host
from pyinfra.api.operation import add_op
from pyinfra.api import operations
from pyinfra.api.operations import run_ops
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_state

from spark_cluster import lost_nodes
from spark_cluster.lost_nodes import (DEAD_PEER_S, KEEPALIVE_S, LinkError, failed_this_run, isolate_lost_nodes,
                                      rerun_command, summary_lines)

SFTP_LOST = ("Unable to establish SFTP connection. Check that the SFTP subsystem for the SSH service at "
             "spark-2 is enabled.")


# --- pyinfra's internals this module patches: a pyinfra upgrade that moves them fails here


def test_pyinfra_has_no_handler_for_what_a_dead_link_raises():
    # The reason for the patches: it catches OSError around a command, not ConnectError or EOFError.
    source = inspect.getsource(operations._run_host_op)
    assert "ConnectError" not in source and "EOFError" not in source


def test_pyinfra_fails_one_host_for_an_oserror_which_link_error_is(monkeypatch):
    # What LinkError relies on, without any patch of ours: an OSError out of a
    # command fails that host alone (pyinfra 3.6: socket_error, 3.10: OSError).
    lab = Lab(monkeypatch, how="oserror")
    state = deploy()
    network_role(state)
    lab.kill("spark-2", "put /etc/netplan")
    run_ops(state)
    assert lab.ran["spark-1"][-1] == "echo serving"
    assert [host.name for host in state.failed_hosts] == ["spark-2"]


def test_the_patched_functions_keep_their_signatures():
    original = inspect.unwrap(operations._run_host_op_with_context)
    assert list(inspect.signature(original).parameters) == ["state", "host", "op_hash"]
    # Every run strategy calls it by its module global name (so the patch is on every path).
    for strategy in (operations._run_single_op, operations._run_host_ops):
        assert "_run_host_op_with_context(" in inspect.getsource(strategy)
    for name in lost_nodes.HOST_METHODS:
        assert list(inspect.signature(inspect.unwrap(getattr(Host, name))).parameters)[:1] == ["self"]
    # The SFTP message of the field report comes from here.
    assert "Unable to establish SFTP connection" in inspect.getsource(SSHConnector.get_file_transfer_connection)


# --- a fake network under pyinfra's SSH connector


class Sock:
    def __init__(self):
        self.options = {}

    def setsockopt(self, level, option, value):
        self.options[(level, option)] = value


class Transport:
    def __init__(self):
        self.active, self.keepalive, self.sock = True, None, Sock()

    def is_active(self):
        return self.active

    def set_keepalive(self, interval):
        self.keepalive = interval


class Client:
    def __init__(self):
        self.transport = Transport()

    def get_transport(self):
        return self.transport


class Lab:
    """Every node answers every command; `kill(name, at)` powers a node off
    just before the command containing `at` reaches it."""

    def __init__(self, monkeypatch, how="sftp"):
        self.ran: dict[str, list[str]] = {}
        self.kill_at: dict[str, str] = {}
        self.how = how
        lab = self

        def connect(connector):
            if connector.host.name in lab.kill_at and lab.kill_at[connector.host.name] == "connect":
                raise ConnectError("Could not connect ([Errno 113] No route to host)")
            connector.client = Client()

        def run_shell_command(connector, command, **_):
            text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
            lab.maybe_die(connector, text)
            if text != Hostname.command:  # a fact read: not a change the test follows
                lab.ran.setdefault(connector.host.name, []).append(text)
            return True, CommandOutput([OutputLine("stdout", "ok")])

        def put_file(connector, filename_or_io, remote_filename, **_):
            lab.maybe_die(connector, f"put {remote_filename}")
            lab.ran.setdefault(connector.host.name, []).append(f"put {remote_filename}")
            return True

        monkeypatch.setattr(SSHConnector, "connect", connect)
        monkeypatch.setattr(SSHConnector, "run_shell_command", run_shell_command)
        monkeypatch.setattr(SSHConnector, "put_file", put_file)

    def kill(self, name, at):
        self.kill_at[name] = at

    def maybe_die(self, connector, text):
        name = connector.host.name
        at = self.kill_at.get(name)
        dead = not connector.client.transport.active
        if not dead and at is not None and at in text:
            connector.client.transport.active, dead = False, True
        if dead:
            if self.how == "oserror":
                raise OSError("Socket is closed")
            if text.startswith("put ") and self.how == "sftp":
                raise ConnectError(SFTP_LOST)
            raise EOFError()


@operation()
def upload(dest):
    yield FileUploadCommand(StringIO("netplan"), dest)


class Hostname(FactBase):
    command = "hostname (a fact read while the operation runs)"

    def process(self, output):
        return output[0]


@operation()
def reads_a_fact_then_runs(marker):
    from pyinfra import host

    host.get_fact(Hostname)
    yield marker


def deploy(names=("spark-1", "spark-2")):
    """An Inventory and a connected State, as the CLI leaves them before the deploy file."""
    inventory = Inventory((list(names), {}))
    state = State(inventory, Config())
    state.check_for_changes = False
    connect_all(state)
    return state


def network_role(state):
    add_op(state, reads_a_fact_then_runs, "echo packages")
    add_op(state, upload, "/etc/netplan/40-spark-cluster.yaml")
    add_op(state, reads_a_fact_then_runs, "netplan apply")
    add_op(state, reads_a_fact_then_runs, "echo serving")


@pytest.fixture
def isolated(monkeypatch):
    """isolate_lost_nodes() with its patches undone after the test (monkeypatch restores them)."""
    for name in lost_nodes.HOST_METHODS:
        monkeypatch.setattr(Host, name, getattr(Host, name))
    monkeypatch.setattr(operations, "_run_host_op_with_context", operations._run_host_op_with_context)
    registered = []
    monkeypatch.setattr(lost_nodes.atexit, "register", lambda func, *args: registered.append((func, args)))

    def isolate(state):
        with ctx_state.use(state):
            isolate_lost_nodes()
            isolate_lost_nodes()  # once per host, as the CLI runs a deploy file
        return registered

    return isolate


def test_without_isolation_one_lost_node_aborts_every_node(monkeypatch):
    lab = Lab(monkeypatch)
    state = deploy()
    network_role(state)
    lab.kill("spark-2", "put /etc/netplan")
    with pytest.raises(ConnectError, match="Unable to establish SFTP connection"):
        run_ops(state)
    assert "netplan apply" not in " ".join(lab.ran["spark-1"])  # the healthy head stopped too


def test_with_isolation_the_head_finishes_and_the_summary_names_the_lost_worker(monkeypatch, isolated, capsys):
    lab = Lab(monkeypatch)
    state = deploy()
    registered = isolated(state)
    network_role(state)
    lab.kill("spark-2", "put /etc/netplan")
    run_ops(state)

    assert lab.ran["spark-1"][-2:] == ["netplan apply", "echo serving"]
    assert "netplan apply" not in " ".join(lab.ran["spark-2"])
    assert [host.name for host in state.failed_hosts] == ["spark-2"]
    assert list(lost_nodes.lost_nodes(state)) == ["spark-2"]
    assert "Unable to establish SFTP connection" in lost_nodes.lost_nodes(state)["spark-2"]
    # One summary for the run, however many hosts ran the deploy file.
    assert len(registered) == 1
    monkeypatch.setenv(lost_nodes.RERUN_ENV, "spark-cluster deploy inventory/spark2.py")
    func, args = registered[0]
    func(*args)
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == ("--> lost mid-run: spark-2 (its SSH connection dropped during 'test_lost_nodes.upload': "
                       "ConnectError: Unable to establish SFTP connection). The other nodes finished their run.")
    assert err[-1].endswith(": spark-cluster deploy inventory/spark2.py")


def test_a_link_dying_while_a_fact_is_read_fails_that_node_alone(monkeypatch, isolated):
    lab = Lab(monkeypatch, how="eof")
    state = deploy(("spark-1", "spark-2", "spark-3"))
    isolated(state)
    network_role(state)
    lab.kill("spark-3", "hostname")  # the first thing it is asked: a fact, while pyinfra builds an operation
    run_ops(state)
    assert lab.ran["spark-1"][-1] == lab.ran["spark-2"][-1] == "echo serving"
    assert "spark-3" not in lab.ran
    assert failed_this_run(state) == ["spark-3"]
    assert failed_this_run(state, other_than="spark-3") == []
    assert failed_this_run(state, other_than="spark-1") == ["spark-3"]


def test_a_reconnect_that_fails_while_an_operation_is_built_fails_that_node_alone(monkeypatch, isolated):
    lab = Lab(monkeypatch)
    state = deploy()
    isolated(state)
    network_role(state)
    spark2 = state.inventory.get_host("spark-2")
    spark2.connected = False  # as after a reboot: the next fact read connects, and that raises
    lab.kill("spark-2", "connect")
    run_ops(state)
    assert lab.ran["spark-1"][-1] == "echo serving"
    assert [host.name for host in state.failed_hosts] == ["spark-2"]
    assert state.get_results_for_host(spark2).error_ops == 1


def test_a_dead_link_found_while_an_operation_is_built_is_named_with_that_operation(monkeypatch, isolated):
    lab = Lab(monkeypatch, how="eof")
    state = deploy()
    isolated(state)
    network_role(state)
    spark2 = state.inventory.get_host("spark-2")
    spark2.connector.client.transport.active = False  # dead before the first operation reads its fact

    def read_dead(self, cls, *args, **kwargs):
        if self.name == "spark-2":
            raise EOFError()  # as paramiko raises it, straight out of a fact read that pyinfra does not guard
        return "ok"

    monkeypatch.setattr(Host, "get_fact", read_dead)
    run_ops(state)
    assert lab.ran["spark-1"][-1] == "echo serving"
    assert lost_nodes.lost_nodes(state) == {
        "spark-2": "its SSH connection dropped during 'test_lost_nodes.reads_a_fact_then_runs': EOFError"}


def test_an_error_of_a_live_link_fails_that_node_but_is_not_called_lost(monkeypatch, isolated):
    lab = Lab(monkeypatch)
    state = deploy()
    isolated(state)
    put_file = SSHConnector.put_file

    def sftp_off_on_spark2(connector, *args, **kwargs):
        if connector.host.name == "spark-2":
            raise ConnectError(SFTP_LOST)  # its sftp subsystem is off: the transport still runs
        return put_file(connector, *args, **kwargs)

    monkeypatch.setattr(SSHConnector, "put_file", sftp_off_on_spark2)
    network_role(state)
    run_ops(state)
    assert lab.ran["spark-1"][-1] == "echo serving"
    assert lost_nodes.lost_nodes(state) == {}
    assert failed_this_run(state) == ["spark-2"]
    lines = summary_lines(lost_nodes.lost_nodes(state), failed_this_run(state), "pyinfra inventory/spark2.py deploy.py")
    assert lines == ["--> failed: spark-2 (the errors are above).",
                     "--> Run again once the errors above are fixed (nodes that converged change nothing): "
                     "pyinfra inventory/spark2.py deploy.py"]


def test_every_link_gets_a_keepalive_and_a_dead_peer_timeout_also_after_a_reconnect(monkeypatch, isolated):
    Lab(monkeypatch)
    state = deploy()
    isolated(state)
    for host in state.inventory:
        transport = host.connector.client.transport
        assert transport.keepalive == KEEPALIVE_S
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert transport.sock.options == {(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT): DEAD_PEER_S * 1000}
    spark1 = state.inventory.get_host("spark-1")
    spark1.disconnect()
    spark1.connect()  # pyinfra's reconnect after a reboot
    assert spark1.connector.client.transport.keepalive == KEEPALIVE_S


def test_the_summary_names_lost_and_failed_nodes_and_nothing_when_all_went_well():
    assert summary_lines({}, [], "pyinfra x.py deploy.py") == []
    two = summary_lines({"spark-2": "EOFError", "spark-3": "EOFError"}, ["spark-2", "spark-3"], "x")
    assert two[-1] == "--> Run again once spark-2, spark-3 answer SSH (nodes that converged change nothing): x"
    lines = summary_lines({"spark-2": "EOFError"}, ["spark-2", "spark-4"], "pyinfra inventory/spark4.py deploy.py")
    assert lines == [
        "--> lost mid-run: spark-2 (EOFError). The other nodes finished their run.",
        "--> failed: spark-4 (the errors are above).",
        "--> Run again once spark-2 answers SSH and the errors above are fixed (nodes that converged change "
        "nothing): "
        "pyinfra inventory/spark4.py deploy.py",
    ]


def test_the_command_to_run_again_is_the_runs_own_or_the_clis():
    argv = ["/home/me/.venv/bin/pyinfra", "inventory/spark2.py", "deploy.py", "--data", "engine=sglang x"]
    assert rerun_command(argv, environ={}) == "pyinfra inventory/spark2.py deploy.py --data 'engine=sglang x'"
    assert rerun_command(argv, environ={lost_nodes.RERUN_ENV: "spark-cluster deploy"}) == "spark-cluster deploy"


def test_link_error_is_what_pyinfra_fails_one_host_for():
    assert issubclass(LinkError, OSError)


# --- the pyinfra CLI itself, in a subprocess, over the same kind of fake network

CLI_LAUNCHER = '''
import sys

import pyinfra_cli  # first, as `pyinfra` itself: older releases monkey-patch gevent there
from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import CommandOutput


class Transport:
    active, sock = True, None

    def is_active(self):
        return self.active

    def set_keepalive(self, interval):
        pass


class Client:
    def __init__(self):
        self.transport = Transport()

    def get_transport(self):
        return self.transport


def connect(self):
    self.client = Client()


def run_shell_command(self, command, **_):
    if not self.client.transport.active:
        raise EOFError()
    print("RAN", self.host.name, command.get_raw_value(), flush=True)
    return True, CommandOutput([])


def put_file(self, filename_or_io, remote_filename, **_):
    if self.host.name == "spark-2":  # powered off just now
        self.client.transport.active = False
        raise ConnectError("Unable to establish SFTP connection. Check that the SFTP subsystem for the SSH "
                           "service at spark-2 is enabled.")
    return True


SSHConnector.connect, SSHConnector.run_shell_command, SSHConnector.put_file = connect, run_shell_command, put_file
sys.argv = ["pyinfra", "-y", "inventory.py", "deploy.py"]
from pyinfra_cli.main import main
main()
'''

CLI_DEPLOY = '''
from io import StringIO

from pyinfra.api import FileUploadCommand, operation
from pyinfra.operations import server
{isolate}

@operation()
def upload(dest):
    yield FileUploadCommand(StringIO("links"), dest)


server.shell(name="Before", commands=["echo before"])
upload(name="Describe the links", dest="/etc/netplan/40-spark-cluster.yaml")
server.shell(name="After", commands=["echo after"])
'''

ISOLATE = "from spark_cluster.lost_nodes import isolate_lost_nodes\nisolate_lost_nodes()\n"


def run_cli(tmp_path, isolate: bool):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "inventory.py").write_text('nodes = ["spark-1", "spark-2"]\n')
    (tmp_path / "deploy.py").write_text(CLI_DEPLOY.format(isolate=ISOLATE if isolate else ""))
    (tmp_path / "launch.py").write_text(CLI_LAUNCHER)
    return subprocess.run([sys.executable, "launch.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})


def test_the_pyinfra_cli_aborts_every_node_without_isolation(tmp_path):
    result = run_cli(tmp_path, isolate=False)
    assert result.returncode != 0
    assert "Unable to establish SFTP connection" in result.stderr
    assert "RAN spark-1 echo after" not in result.stdout


def test_the_pyinfra_cli_finishes_the_head_and_ends_with_the_summary(tmp_path):
    result = run_cli(tmp_path, isolate=True)
    assert result.returncode == 1, result.stderr[-3000:]  # pyinfra's exit when a host failed
    assert "RAN spark-1 echo after" in result.stdout and "RAN spark-2 echo after" not in result.stdout
    assert "--> pyinfra error" not in result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "--> lost mid-run: spark-2 (its SSH connection dropped during 'Describe the links': ConnectError: "
        "Unable to establish SFTP connection). The other nodes finished their run.",
        "--> Run again once spark-2 answers SSH (nodes that converged change nothing): "
        "pyinfra -y inventory.py deploy.py",
    ]


def test_every_deploy_file_isolates_lost_nodes_before_anything_else():
    """A deploy file that forgot the line would let one dead node abort the others again."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("deploy.py", "stop.py", "start.py", "restart.py", "uninstall.py"):
        body = ast.parse((root / name).read_text()).body
        calls = [node for node in body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
        assert calls, name
        first = calls[0].value.func
        assert isinstance(first, ast.Name) and first.id == "isolate_lost_nodes", f"{name}: first call is not isolate_lost_nodes()"
