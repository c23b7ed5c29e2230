"""Preflight's operations, generated offline from fake facts: nothing when the
nodes agree, one failing operation (the first of the deploy) on a node at fault."""

import logging

from collect_ops import GROUP_DATA, cluster, collect
from roles import gpu, preflight

IFACES = GROUP_DATA["qsfp_interfaces"]


def inventory_fact(kernel="6.17.0-1014-nvidia", links=("up", "up"), disk=500.0, image_id=None):
    return {
        "kernel": kernel,
        "driver": "none",
        "image_id": image_id,
        "carriers": dict(zip(IFACES, links)),
        "disk_path": "/home/spark",
        "disk_free_gib": disk,
    }


def prepare(hosts, facts, monkeypatch, limit=None, roles=(preflight,)):
    """Ops per host after collection: {host name: [(op name, command text)]}, and the fact calls."""
    calls = []

    def get_fact(name, cls, kwargs):
        calls.append((name, cls.__name__))
        if cls.__name__ == "NodeInventory":
            assert kwargs["interfaces"] == IFACES and kwargs["user"] == "spark"
            return facts[name]
        # Every node still has the DRM override: the gpu role has work on each.
        if cls.__name__ == "File":
            return {"mode": 644, "user": "root", "group": "root"}
        if cls.__name__ in ("Directory", "Sha1File"):
            return None
        raise AssertionError(f"unexpected fact {cls.__name__}")

    ops = collect(hosts, get_fact, monkeypatch, roles, limit)
    return {name: [(op, text) for op, text, _ in entries] for name, entries in ops.items()}, calls


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


def test_a_differing_image_is_fatal_only_without_image_distribution(monkeypatch):
    facts = {"spark-1": inventory_fact(image_id="sha256:new"), "spark-2": inventory_fact(image_id="sha256:old")}
    ops, _ = prepare(cluster(2), facts, monkeypatch)
    assert ops == {"spark-1": [], "spark-2": []}  # distribute replaces spark-2's image in this run
    ops, _ = prepare(cluster(2, distribute_image=False), facts, monkeypatch)
    for name in facts:
        assert len(ops[name]) == 1 and "engine image id" in ops[name][0][1], ops[name]
