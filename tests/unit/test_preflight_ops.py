"""Preflight's operations, generated offline from fake facts: nothing when the
nodes agree, one failing operation (the first of the deploy) on a node at fault."""

import logging
import runpy
from pathlib import Path

import pyinfra
from pyinfra.api import Config, Inventory, State
from pyinfra.api.state import StateStage
from pyinfra.api.host import Host
from pyinfra.context import ctx_host, ctx_state

from roles import gpu, preflight
from spark_cluster.inventory import define_cluster

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = {k: v for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items() if not k.startswith("_")}
IFACES = GROUP_DATA["qsfp_interfaces"]


def inventory_fact(kernel="6.17.0-1014-nvidia", links=("up", "up"), disk=500.0):
    return {
        "kernel": kernel,
        "driver": "none",
        "image_id": None,
        "carriers": dict(zip(IFACES, links)),
        "disk_path": "/home/spark",
        "disk_free_gib": disk,
    }


def cluster(count, **overrides):
    return define_cluster(
        [{"name": f"spark-{i}", "ssh_hostname": "127.0.0.1", "ssh_port": 2200 + i, "ssh_user": "spark",
          "qsfp_address": f"10.0.0.{i}/24"} for i in range(1, count + 1)],
        **overrides,
    )


def prepare(hosts, facts, monkeypatch, limit=None, roles=(preflight,)):
    """Ops per host after collection: {host name: [op names in order]}, and the fact calls."""
    calls = []

    def get_fact(self, cls, *args, **kwargs):
        calls.append((self.name, cls.__name__))
        if cls.__name__ == "NodeInventory":
            assert kwargs["interfaces"] == IFACES and kwargs["user"] == "spark"
            return facts[self.name]
        if cls.__name__ == "File":
            return None
        raise AssertionError(f"unexpected fact {cls.__name__}")

    monkeypatch.setattr(Host, "get_fact", get_fact)
    inventory = Inventory((hosts, dict(GROUP_DATA)))
    state = State(inventory, Config(SUDO=True))
    for host in inventory:
        if limit is None or host.name in limit:
            host.connected = True
            state.activate_host(host)
    # Order operations as the CLI does (by call site, deploy.py's order), not
    # by per-host count as the API does: a failing op only one host gets must
    # land before every other role's operations, as it does in a real run.
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
            with ctx_state.use(state), ctx_host.use(host):
                commands = list(state.get_op_data_for_host(host, op_hash).command_generator())
            text = " ".join(c.get_raw_value() if hasattr(c, "get_raw_value") else str(c) for c in commands)
            ops[host.name].append((sorted(state.op_meta[op_hash].names)[0], text))
    return ops, calls


def test_consistent_cluster_emits_no_operation_and_reads_each_node_once(monkeypatch, caplog):
    hosts = cluster(4)
    facts = {name: inventory_fact() for name, _ in hosts}
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        ops, calls = prepare(hosts, facts, monkeypatch)
    assert all(op_list == [] for op_list in ops.values())
    assert sorted(calls) == sorted((name, "NodeInventory") for name in facts)
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preflight ")]
    assert len(summary) == 4 and all(line.endswith("-> OK") for line in summary)


def test_odd_kernel_fails_that_node_first_and_only_that_node(monkeypatch):
    hosts = cluster(4)
    facts = {name: inventory_fact() for name, _ in hosts}
    facts["spark-2"] = inventory_fact(kernel="6.17.0-1012-nvidia")
    ops, _ = prepare(hosts, facts, monkeypatch, roles=(preflight, gpu))
    assert ops["spark-2"][0][0].startswith("preflight")
    text = ops["spark-2"][0][1]
    assert "exit 1" in text and "spark-2: kernel is 6.17.0-1012-nvidia, expected 6.17.0-1014-nvidia" in text
    for name in ("spark-1", "spark-3", "spark-4"):
        assert not ops[name][0][0].startswith("preflight"), name


def test_two_nodes_that_disagree_both_fail(monkeypatch):
    hosts = cluster(2)
    facts = {"spark-1": inventory_fact(kernel="k1"), "spark-2": inventory_fact(kernel="k2")}
    ops, _ = prepare(hosts, facts, monkeypatch)
    for name in facts:
        assert len(ops[name]) == 1
        assert "spark-1=k1" in ops[name][0][1] and "spark-2=k2" in ops[name][0][1]


def test_not_strict_turns_mismatches_into_warnings_but_not_node_faults(monkeypatch, caplog):
    hosts = cluster(2, preflight_strict=False)
    facts = {"spark-1": inventory_fact(kernel="k1"), "spark-2": inventory_fact(kernel="k2", disk=10.0)}
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        ops, _ = prepare(hosts, facts, monkeypatch)
    assert ops["spark-1"] == []
    assert len(ops["spark-2"]) == 1
    text = ops["spark-2"][0][1]
    assert "free disk" in text and "kernel" not in text
    assert any("preflight_strict = False" in r.getMessage() for r in caplog.records)


def test_lab_disk_threshold_comes_from_the_inventory(monkeypatch):
    hosts = cluster(2, model_disk_gib=1)
    facts = {name: inventory_fact(disk=5.0) for name, _ in hosts}
    ops, _ = prepare(hosts, facts, monkeypatch)
    assert ops == {"spark-1": [], "spark-2": []}


def test_limited_run_never_reads_a_node_outside_the_limit(monkeypatch):
    hosts = cluster(2)
    facts = {"spark-1": inventory_fact(kernel="k1"), "spark-2": inventory_fact(kernel="k2")}
    ops, calls = prepare(hosts, facts, monkeypatch, limit={"spark-1"})
    assert calls == [("spark-1", "NodeInventory")]
    assert ops == {"spark-1": []}
