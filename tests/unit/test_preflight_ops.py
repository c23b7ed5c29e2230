"""Preflight's operations, generated offline from fake facts: nothing when the
nodes agree, one failing operation (the first of the deploy) on a node at fault."""

import logging

import pytest

from collect_ops import GROUP_DATA, cluster, collect
from roles import caches, distribute, gpu, network, preflight, rdma, serving, ssh, standin
from spark_cluster.fabric import PORT_HALVES, QSFP_NETDEVS
from spark_cluster.host_ops import fail_command
from spark_cluster.qsfp_owners import Claim
from spark_cluster.settings import SettingError

P0A, P0B, P1A, P1B = QSFP_NETDEVS
# group_data's cable: one in port 1 (both its halves are rails).
CABLE_IN_PORT_1 = {P0A: "down", P0B: "down", P1A: "up", P1B: "up"}
DGX_RDMA = {netdev: device for halves in PORT_HALVES.values() for netdev, device in halves}


# The model and the image staged on every node unless a test says otherwise.
STAGED = "sha256:staged"
WHOLE = {"digest": "d", "files": 48, "bytes": 160 * 2**30, "incomplete": 0}
MODEL_DIR = "/home/spark/.cache/huggingface/hub/models--" + GROUP_DATA["serving_model"].replace("/", "--")


def inventory_fact(kernel="6.17.0-1014-nvidia", links=None, rdma=None, disk=500.0, image_id=STAGED):
    return {
        "kernel": kernel,
        "driver": "none",
        "image_id": image_id,
        "carriers": {**CABLE_IN_PORT_1, **(links or {})},
        "rdma": {**DGX_RDMA, **(rdma or {})},
        "disk_path": "/home/spark",
        "disk_free_gib": disk,
    }


def prepare(hosts, facts, monkeypatch, limit=None, roles=(preflight,), owners=None, refusing=(), models=None):
    """Ops per host after collection: {host name: [(op name, command text)]}, and the
    fact calls. `owners`: {host name: [Claim]}, other owners of its QSFP ports;
    `models`: {host name: its model manifest}, the model whole everywhere by default."""
    calls = []

    def get_fact(name, cls, kwargs):
        calls.append((name, cls.__name__))
        if cls.__name__ == "NodeInventory":
            # Every QSFP netdev is read, whatever qsfp_ports says.
            assert kwargs["interfaces"] == list(QSFP_NETDEVS) and kwargs["user"] == "spark"
            return facts[name]
        if cls.__name__ == "QsfpOwners":
            return (owners or {}).get(name, [])
        if cls.__name__ == "ModelManifest":
            assert kwargs["path"] == MODEL_DIR
            return WHOLE if models is None else models.get(name)
        if cls.__name__ == "UserAccount":  # asked without sudo, before the batch
            return {"home": "/home/spark", "group": "spark", "groups": ["spark"]}
        # Every node still has the DRM override: the gpu role has work on each.
        if cls.__name__ == "File":
            return {"mode": 644, "user": "root", "group": "root"}
        if cls.__name__ in ("Directory", "Sha1File"):
            return None
        raise AssertionError(f"unexpected fact {cls.__name__}")

    # A node that refuses sudo: as the lab and CI run it, with -y (without,
    # pyinfra's own operations' change check may ask a few facts more).
    ops = collect(hosts, get_fact, monkeypatch, roles, limit, refusing, yes=bool(refusing))
    return {name: [(op, text) for op, text, _ in entries] for name, entries in ops.items()}, calls


def test_consistent_cluster_emits_no_operation_and_reads_each_node_once(monkeypatch, caplog):
    hosts = cluster(4)
    facts = {name: inventory_fact() for name, _ in hosts}
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        ops, calls = prepare(hosts, facts, monkeypatch)
    assert all(op_list == [] for op_list in ops.values())
    assert sorted(calls) == sorted((name, fact) for name in facts
                                   for fact in ("UserAccount", "NodeInventory", "QsfpOwners", "ModelManifest"))
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


SUDO_FIX = ("spark-2: sudo as 'spark' did not answer (a wrong sudo password, or spark may not use sudo there): "
            "nothing more is asked or changed on this node; fix the password (spark-cluster --ask-sudo-password, "
            "pyinfra --use-sudo-password, or "
            "sudo_password in the inventory) or run `usermod -aG sudo spark` on it")


def test_a_node_that_refuses_sudo_fails_first_and_the_others_go_on(monkeypatch):
    hosts = cluster(2)
    facts = {name: inventory_fact() for name, _ in hosts}
    ops, calls = prepare(hosts, facts, monkeypatch, roles=(preflight, gpu), refusing={"spark-2"})
    (first, text), *_ = ops["spark-2"]
    assert first.startswith("preflight") and text == fail_command("preflight: " + SUDO_FIX)
    assert ops["spark-1"] and not ops["spark-1"][0][0].startswith("preflight")
    # Only the unprivileged account read that precedes the batch (no sudo: no failed login).
    assert [fact for name, fact in calls if name == "spark-2"] == ["UserAccount"], "nothing more is asked of spark-2"


def test_every_role_plans_without_error_on_a_node_that_refused_sudo(monkeypatch):
    """All of deploy.py's roles on nodes that answered nothing: they plan on
    empty facts without an exception, and each node's first operation is
    preflight's failure, so pyinfra runs none of the rest."""
    hosts = cluster(2, serving_standin=True)
    ops, calls = prepare(hosts, {}, monkeypatch, roles=(preflight, gpu, network, rdma, caches, ssh, standin,
                                                         distribute, serving), refusing={"spark-1", "spark-2"})
    assert {fact for _, fact in calls} == {"UserAccount"}, "only the unprivileged read before the batch"
    for name in ("spark-1", "spark-2"):
        assert ops[name][0] == (ops[name][0][0], fail_command("preflight: " + SUDO_FIX.replace("spark-2", name)))
        assert ops[name][0][0].startswith("preflight")


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
    assert calls == [("spark-1", "UserAccount"), ("spark-1", "NodeInventory"), ("spark-1", "QsfpOwners"),
                     ("spark-1", "ModelManifest")]
    assert ops == {"spark-1": []}


def test_a_differing_image_is_fatal_only_without_image_distribution(monkeypatch):
    facts = {"spark-1": inventory_fact(image_id="sha256:new"), "spark-2": inventory_fact(image_id="sha256:old")}
    ops, _ = prepare(cluster(2), facts, monkeypatch)
    assert ops == {"spark-1": [], "spark-2": []}  # distribute replaces spark-2's image in this run
    ops, _ = prepare(cluster(2, distribute_image=False), facts, monkeypatch)
    for name in facts:
        assert len(ops[name]) == 1 and "engine image id" in ops[name][0][1], ops[name]


def test_group_data_names_port_1():
    assert GROUP_DATA["qsfp_ports"] == [1], "inventory_fact's cable is where the shipped group_data says"


def test_a_cable_in_the_port_qsfp_ports_does_not_name_stops_that_node(monkeypatch):
    facts = {"spark-1": inventory_fact(), "spark-2": inventory_fact(links={P0A: "up", P1A: "down", P1B: "down"})}
    ops, _ = prepare(cluster(2), facts, monkeypatch)
    assert ops["spark-1"] == []
    assert len(ops["spark-2"]) == 1
    text = ops["spark-2"][0][1]
    assert "exit 1" in text and (
        "spark-2: carrier on enp1s0f0np0 is up, expected none: qsfp_ports [1] does not name port 0; "
        "is the cable in port 0? set qsfp_ports = [0] in group_data (or [0, 1] with both ports cabled)") in text


def test_the_rails_follow_qsfp_ports(monkeypatch):
    cable_in_port_0 = {P0A: "up", P0B: "up", P1A: "down", P1B: "down"}
    facts = {name: inventory_fact(links=cable_in_port_0) for name in ("spark-1", "spark-2")}
    ops, _ = prepare(cluster(2, qsfp_ports=[0]), facts, monkeypatch)
    assert ops == {"spark-1": [], "spark-2": []}


def test_one_half_down_stops_the_node_unless_any_carrier_will_do(monkeypatch):
    facts = {"spark-1": inventory_fact(links={P1B: "down"}), "spark-2": inventory_fact()}
    ops, _ = prepare(cluster(2), facts, monkeypatch)
    assert ops["spark-2"] == [] and len(ops["spark-1"]) == 1
    assert f"spark-1: QSFP link {P1B} is down, expected up" in ops["spark-1"][0][1]
    ops, _ = prepare(cluster(2, qsfp_carrier_required="any"), facts, monkeypatch)
    assert ops == {"spark-1": [], "spark-2": []}


def test_rdma_devices_named_otherwise_only_warn_even_when_strict(monkeypatch, caplog):
    facts = {"spark-1": inventory_fact(rdma={P1A: "mlx5_2"}), "spark-2": inventory_fact(rdma={P1B: "none"})}
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        ops, _ = prepare(cluster(2, preflight_strict=True), facts, monkeypatch)
    assert ops["spark-1"] == []
    assert any(r.getMessage().startswith(f"preflight: spark-1: RDMA device on rail {P1A} is mlx5_2")
               for r in caplog.records)
    # No RDMA device at all on a rail does stop the node.
    assert len(ops["spark-2"]) == 1 and f"RDMA device on rail {P1B} is none" in ops["spark-2"][0][1]


def test_an_unknown_carrier_requirement_is_refused_before_anything_runs(monkeypatch):
    facts = {name: inventory_fact() for name in ("spark-1", "spark-2")}
    with pytest.raises(SettingError, match="'qsfp_carrier_required' must be one of 'all', 'any', got 'some'"):
        prepare(cluster(2, qsfp_carrier_required="some"), facts, monkeypatch)


NVIDIA_FILE = Claim("netplan", "/etc/netplan/40-cx7.yaml", ("enp1s0f1np1", "enP2p1s0f1np1"),
                    content="network:\n  version: 2\n  ethernets:\n    enp1s0f1np1:\n"
                            "      addresses: [192.168.100.10/24]\n")
NM_PROFILE = Claim("networkmanager", "/etc/NetworkManager/system-connections/cx7.nmconnection",
                   ("enp1s0f1np1",), id="cx7")


def test_other_owners_of_the_qsfp_ports_stop_that_node_before_the_gpu_roles_reboot(monkeypatch):
    hosts = cluster(2)
    facts = {name: inventory_fact() for name, _ in hosts}
    ops, _ = prepare(hosts, facts, monkeypatch, roles=(preflight, gpu),
                     owners={"spark-2": [NVIDIA_FILE, NM_PROFILE]})
    # The failing operation is the first of the deploy for this node: pyinfra
    # drops the host there, before the gpu role's change and reboot.
    (name, text), = ops["spark-2"][:1]
    assert name.endswith("Preflight: this node is unfit or disagrees with its peers")
    assert not any(op.endswith("Preflight: this node is unfit or disagrees with its peers") for op, _ in ops["spark-1"])
    assert "/etc/netplan/40-cx7.yaml" in text and "cx7.nmconnection" in text and "qsfp_takeover = True" in text


def test_with_takeover_on_preflight_leaves_the_owners_to_the_network_role(monkeypatch):
    hosts = cluster(2, qsfp_takeover=True)
    facts = {name: inventory_fact() for name, _ in hosts}
    ops, _ = prepare(hosts, facts, monkeypatch, owners={"spark-2": [NVIDIA_FILE, NM_PROFILE]})
    assert ops == {"spark-1": [], "spark-2": []}


def test_a_rebuilt_head_is_no_fault_a_worker_is_the_source(monkeypatch, caplog):
    """The head holds neither the model nor the image (reinstalled): a worker
    holds both, so the run goes on and says where each comes from."""
    hosts = cluster(2)
    facts = {"spark-1": inventory_fact(image_id=None), "spark-2": inventory_fact()}
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        ops, _ = prepare(hosts, facts, monkeypatch, models={"spark-2": WHOLE})
    assert ops == {"spark-1": [], "spark-2": []}
    lines = [r.getMessage() for r in caplog.records]
    image = GROUP_DATA["serving_image"]
    assert f"preflight: engine image {image} is copied from spark-2; spark-1 receives it over QSFP" in lines
    assert f"preflight: model {GROUP_DATA['serving_model']} is copied from spark-2; spark-1 receives it over QSFP" in lines


def test_a_model_and_an_image_on_no_node_stop_every_node_first_with_the_fix(monkeypatch):
    hosts = cluster(2)
    facts = {name: inventory_fact(image_id=None) for name, _ in hosts}
    ops, _ = prepare(hosts, facts, monkeypatch, roles=(preflight, gpu), models={})
    model, image = GROUP_DATA["serving_model"], GROUP_DATA["serving_image"]
    for name in ("spark-1", "spark-2"):
        (first, text), *_ = ops[name]
        assert first.startswith("preflight") and "exit 1" in text
        assert f"{name}: engine image {image} is on no node (spark-1 absent; spark-2 absent)" in text
        assert f"docker save {image} | ssh spark@NODE docker load" in text  # a local build: no pull
        assert f"{name}: model {model} is on no node (spark-1 absent; spark-2 absent)" in text
        assert "as spark, not with sudo and not with --local-dir" in text and f"`hf download {model}`" in text


def test_a_partial_download_on_the_only_holder_is_reported_with_resume(monkeypatch):
    hosts = cluster(2)
    facts = {name: inventory_fact() for name, _ in hosts}
    ops, _ = prepare(hosts, facts, monkeypatch, models={"spark-1": {**WHOLE, "incomplete": 3}})
    for name in ("spark-1", "spark-2"):
        text = ops[name][0][1]
        assert "spark-1 partial (48 files, 160.0 GiB, 3 still downloading or cut short); spark-2 absent" in text
        assert f"run `hf download {GROUP_DATA['serving_model']}` again as spark on spark-1 (it resumes)" in text
        assert "engine image" not in text


def test_the_lab_stand_in_needs_nothing_staged(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    facts = {name: inventory_fact(image_id=None) for name, _ in hosts}
    ops, calls = prepare(hosts, facts, monkeypatch, models={})
    assert ops == {"spark-1": [], "spark-2": []}
    assert "ModelManifest" not in {fact for _, fact in calls}
