"""Collect (and fake-execute) the operations roles would run, offline, from fake facts.

Operations are ordered as the CLI orders them (by call site, deploy.py's
order), so a failing operation only one host gets lands before every other
role's operations, as it does in a real run.
"""

from __future__ import annotations

import hashlib
import re
import runpy
import shlex
from pathlib import Path

import pyinfra
import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FunctionCommand
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import Directory, File, FindInFile, Sha1File
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from roles.serving.facts import UnitState
from spark_cluster.account import Escalation, UserAccount
from spark_cluster.batch_fact import Batch
from spark_cluster.cluster_facts import read_ahead
from spark_cluster.file_state import PathLines
from spark_cluster.inventory import define_cluster

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = {k: v for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items() if not k.startswith("_")}


# What spark_cluster.host_ops.fail_command emits: an operation that always fails.
FAILS = re.compile(r"^\{ echo .* >&2; exit 1; \}$", re.S)

# The test cluster's rails use subnets of their own choosing, as an owner may
# (qsfp_subnets in group_data): 10.0.0.x on the first rail, 10.0.1.x on the second.
TEST_SUBNETS = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]


def cluster(count, **overrides):
    return define_cluster(
        [{"name": f"spark-{i}", "ssh_hostname": "127.0.0.1", "ssh_port": 2200 + i, "ssh_user": "spark",
          "qsfp_address": f"10.0.0.{i}/24"} for i in range(1, count + 1)],
        **{"qsfp_subnets": TEST_SUBNETS, **overrides},
    )


def command_text(command) -> str:
    if isinstance(command, FunctionCommand):  # python.call: the function, and the command it runs if any
        argv = command.kwargs.get("argv")
        return f"{command.function.__name__}: " + (shlex.join(argv) if argv else repr(command.kwargs))
    return command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)


def path_lines(answer, paths, lines=()):
    """What PathLines prints on a node whose Directory, File, Sha1File (and
    FindInFile, for line checks) facts are `answer(cls, kwargs)`: a fake node
    keeps one model of its files, and the batched fact follows it. Fakes
    model no symlinks."""
    out = []
    for path in paths:
        if (meta := answer(Directory, {"path": path})):
            out.append(f"directory {meta['mode']} {meta['user']} {meta['group']}")
        elif (meta := answer(File, {"path": path})):
            sha1 = answer(Sha1File, {"path": path}) or ""
            out.append(f"file {meta['mode']} {meta['user']} {meta['group']} {sha1}".rstrip())
        else:
            out.append("absent")
    for path, line in lines:
        found = answer(FindInFile, {"path": path, "pattern": f"^{re.escape(line)}$"})
        out.append("has" if found else "lacks")
    return out


def composite(answer):
    """`answer(cls, kwargs)` extended to the facts the roles batch (PathLines,
    UnitState, and Batch itself), computed from the fake's answers to pyinfra's
    own facts. pyinfra's global arguments (_sudo...) are not the fact's."""

    def answer_all(cls, kwargs):
        kwargs = {key: value for key, value in kwargs.items() if not key.startswith("_")}
        if cls is Batch:
            return {item.key: answer_all(item.fact, item.kwargs) for item in kwargs["wants"]}
        if cls is PathLines:
            return path_lines(answer, kwargs["paths"], kwargs.get("lines", ()))
        if cls is Escalation:
            return 0  # sudo works (test_preflight_ops fakes a refusal)
        if cls is UnitState:
            unit = kwargs["unit"]
            running = answer(SystemdStatus, {"services": [unit]}) or {}
            enabled = answer(SystemdEnabled, {"services": [unit]}) or {}
            return {"active": bool(running.get(unit)), "enabled": bool(enabled.get(unit))}
        return answer(cls, kwargs)

    return answer_all


class Reads:
    """Host.get_fact as the fake answers it, noting what was read while the roles
    collected their operations (the facts a no-op run asks)."""

    def __init__(self, answer_for, refusing=()):
        self.answer_for, self.collecting, self.unplanned = answer_for, False, []
        self.refusing = set(refusing)  # nodes whose sudo refuses: their batch never runs

    def __call__(self, host, cls, *args, **kwargs):
        if self.collecting and not host.in_op and cls not in (Batch, UserAccount):
            self.unplanned.append((host.name, cls.__name__, kwargs))
        if cls is Batch and host.name in self.refusing:
            return {}
        return composite(self.answer_for(host.name))(cls, kwargs)

    def check_planned(self):
        # Every fact a role reads must be in its `wants`, or a real run pays a
        # round trip for it (see cluster_facts.read_ahead).
        assert self.unplanned == [], f"facts read that no role's wants named: {self.unplanned}"


def _read_ahead(state, inventory, roles):
    with ctx_state.use(state), ctx_host.use(next(iter(inventory))):
        read_ahead(*roles)


def _connected_state(hosts, limit):
    """An inventory with group_data, and a State whose hosts inside `limit` are connected."""
    inventory = Inventory((hosts, dict(GROUP_DATA)))
    state = State(inventory, Config(SUDO=True))
    for host in inventory:
        if limit is None or host.name in limit:
            host.connected = True
            state.activate_host(host)
    return inventory, state


def collect(hosts, get_fact, monkeypatch, roles, limit=None, refusing=(), yes=False):
    """{host name: [(op name, command text, op global arguments)]} after `roles` ran on every active host.

    `get_fact(host_name, fact_class, kwargs)` answers every fact; the nodes
    in `refusing` refuse sudo (their batch of facts gets no answer); `yes`:
    as `pyinfra -y`, no operation is asked whether it would change anything
    before the run.
    """
    reads = Reads(lambda name: lambda cls, kwargs: get_fact(name, cls, kwargs), refusing)
    monkeypatch.setattr(Host, "get_fact", lambda host, cls, *a, **kw: reads(host, cls, *a, **kw))
    inventory, state = _connected_state(hosts, limit)
    state.check_for_changes = not yes
    _read_ahead(state, inventory, roles)
    reads.collecting = True
    monkeypatch.setattr(pyinfra, "is_cli", True)
    state.set_stage(StateStage.Prepare)
    # The CLI orders operations by the call stack below deploy.py, where each role
    # has its own line. Called from here, every role would share one line and be
    # ordered by line numbers inside unrelated role files: give each its own place.
    for number, role in enumerate(roles):
        state.current_op_file_number = number
        for host in inventory.get_active_hosts():
            with ctx_state.use(state), ctx_host.use(host):
                role.apply()
    reads.collecting = False
    reads.check_planned()
    ops = {}
    for host in inventory.get_active_hosts():
        ops[host.name] = []
        for op_hash in state.get_op_order():
            if op_hash not in state.ops[host]:
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            with ctx_state.use(state), ctx_host.use(host):
                commands = list(op_data.command_generator())
            text = " ".join(command_text(c) for c in commands)
            ops[host.name].append((sorted(state.op_meta[op_hash].names)[0], text, op_data.global_arguments))
            if FAILS.match(text):
                break  # fail_host's operation: pyinfra drops the host there and runs nothing after it
    return ops


def converge(hosts, nodes, monkeypatch, roles, limit=None):
    """Prepare `roles` and 'execute' them: each command goes to `nodes[name].run`,
    and facts come from `nodes[name].fact(cls, kwargs)`, so a node's facts follow
    what it was told to do. Returns {host name: [(op name, [commands])]}."""
    reads = Reads(lambda name: nodes[name].fact)
    monkeypatch.setattr(Host, "get_fact", lambda host, cls, *a, **kw: reads(host, cls, *a, **kw))
    inventory, state = _connected_state(hosts, limit)
    _read_ahead(state, inventory, roles)
    reads.collecting = True
    for role in roles:
        add_deploy(state, role.apply)
    reads.collecting = False
    reads.check_planned()
    state.is_executing = True  # from here on, `_if` conditions are evaluated
    hosts_in_order = sorted(inventory.get_active_hosts(), key=lambda host: host.name)
    results = {host.name: [] for host in hosts_in_order}
    # As pyinfra executes: each operation on every host before the next one.
    for op_hash in state.get_op_order():
        for host in hosts_in_order:
            if op_hash not in state.ops[host]:  # an op only other hosts run
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            with ctx_state.use(state), ctx_host.use(host):
                commands = list(op_data.command_generator())
            for command in commands:
                nodes[host.name].run(command)
            op_data.operation_meta.set_complete(True, commands, CommandOutput([]))
            results[host.name].append((sorted(state.op_meta[op_hash].names)[0], commands))
    return results


def changed(result):
    """The operations of one host's result that ran a command."""
    return [(name, [str(c) for c in commands]) for name, commands in result if commands]


def build_operations(apply, data, facts, remote_files=None):
    """[(name, commands, _if)] as pyinfra would run `apply` on one host.

    `facts` maps fact classes to values; files in `remote_files`
    ({path: (text, mode)}) exist with that content, their parents as directories.
    """
    remote_files = remote_files or {}

    def answer(cls, kwargs):
        path = kwargs.get("path")
        if cls in facts:
            return facts[cls]
        if cls is File:
            return {"mode": remote_files[path][1], "user": "root", "group": "root"} if path in remote_files else None
        if cls is Directory:
            return {"mode": 755, "user": "root", "group": "root"} if any(
                p.startswith(path.rstrip("/") + "/") for p in remote_files) else None
        if cls is Sha1File:
            return hashlib.sha1(remote_files[path][0].encode()).hexdigest() if path in remote_files else None
        if cls.__name__ == "TmpDir":
            return "/tmp"
        return None

    def get_fact(self, cls, *args, **kwargs):
        return composite(answer)(cls, kwargs)

    inventory = Inventory(([("spark-1", data)], {}))
    state = State(inventory, Config())
    host = inventory.get_host("spark-1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Host, "get_fact", get_fact)
        with ctx_state.use(state), ctx_host.use(host):
            apply()
            operations = []
            for op_hash in state.get_op_order():
                op_data = state.get_op_data_for_host(host, op_hash)
                name = sorted(state.op_meta[op_hash].names)[0].split(" | ", 1)[-1]
                operations.append((name, [str(c) for c in op_data.command_generator()],
                                   op_data.global_arguments.get("_if")))
    return operations
