"""Collect the operations roles would run, offline, from fake facts.

Operations are ordered as the CLI orders them (by call site, deploy.py's
order), so a failing operation only one host gets lands before every other
role's operations, as it does in a real run.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pyinfra
from pyinfra.api import Config, Inventory, State
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state

from spark_cluster.inventory import define_cluster

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = {k: v for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items() if not k.startswith("_")}


def cluster(count, **overrides):
    return define_cluster(
        [{"name": f"spark-{i}", "ssh_hostname": "127.0.0.1", "ssh_port": 2200 + i, "ssh_user": "spark",
          "qsfp_address": f"10.0.0.{i}/24"} for i in range(1, count + 1)],
        **overrides,
    )


def command_text(command) -> str:
    return command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)


def collect(hosts, get_fact, monkeypatch, roles, limit=None):
    """{host name: [(op name, command text, op global arguments)]} after `roles` ran on every active host.

    `get_fact(host_name, fact_class, kwargs)` answers every fact.
    """
    monkeypatch.setattr(Host, "get_fact", lambda self, cls, *a, **kw: get_fact(self.name, cls, kw))
    inventory = Inventory((hosts, dict(GROUP_DATA)))
    state = State(inventory, Config(SUDO=True))
    for host in inventory:
        if limit is None or host.name in limit:
            host.connected = True
            state.activate_host(host)
    monkeypatch.setattr(pyinfra, "is_cli", True)
    state.set_stage(StateStage.Prepare)
    for role in roles:
        for host in inventory.get_active_hosts():
            with ctx_state.use(state), ctx_host.use(host):
                role.apply()
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
    return ops
