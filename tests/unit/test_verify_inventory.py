"""The verification suite reads the deploy's inventory and never connects on its own."""

import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "verify"))

from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.rails import min_link_fraction, network_setting, node_fabric  # noqa: E402
from sparkverify.remote import Node, VerifyEnvironmentError, host_key_policy, sudo_command  # noqa: E402


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")


@pytest.fixture
def no_ssh(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the verify helpers tried to connect")
    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse)


@pytest.mark.parametrize("name, size", [("spark2", 2), ("spark4", 4)])
def test_shipped_inventories_load_with_group_and_derived_data(name, size, no_ssh):
    nodes = load_cluster(f"inventory/{name}.py", REPO)
    assert [n.name for n in nodes] == [f"spark-{i}" for i in range(1, size + 1)]
    head, last = nodes[0], nodes[-1]
    assert head.data["is_head"] and head.data["node_rank"] == 0
    assert last.qsfp_ip == f"192.168.100.{9 + size}" and last.data["qsfp_prefixlen"] == 24
    assert [p["name"] for p in last.data["peers"]] == [f"spark-{i}" for i in range(1, size)]
    # group_data/all.py merged in, as pyinfra itself would: the checks see the
    # same fabric the roles derive from it (one cable in port 1: two rails).
    assert last.get("mtu") == 9000
    fab = node_fabric(last)
    assert [(rail.netdev, rail.rdma_device, rail.address) for rail in fab.rails] == [
        ("enp1s0f1np1", "rocep1s0f1", f"192.168.100.{9 + size}/24"),
        ("enP2p1s0f1np1", "roceP2p1s0f1", f"192.168.101.{9 + size}/24")]
    assert (fab.control_interface, fab.control_ip, fab.bond_name) == ("enp1s0f1np1", last.qsfp_ip, None)
    assert fab.links[1].peer_ips == tuple(f"192.168.101.{9 + i}" for i in range(1, size))
    assert last.admin == "nvidia"
    node = Node(last, REPO)
    assert node.endpoint == f"nvidia@192.0.2.1{size}:22"


def test_unset_settings_fall_back_to_the_roles_defaults_and_the_verify_default(no_ssh):
    (head, _) = load_cluster("inventory/lab2_bond.py", REPO)
    assert node_fabric(head).bond_name == "bond0" and network_setting(head, "bond_mode") == "balance-xor"
    del head.data["mtu"]  # group_data/all.py sets it; the network role's default is the same
    assert network_setting(head, "mtu") == 9000
    assert min_link_fraction(head) == 0  # the lab inventory's
    del head.data["rdma_min_link_fraction"]
    assert min_link_fraction(head) == 0.5


def test_relative_inventory_is_found_from_any_working_directory(tmp_path, monkeypatch, no_ssh):
    monkeypatch.chdir(tmp_path)
    assert len(load_cluster("inventory/spark2.py", REPO)) == 2


def test_missing_inventory_is_named():
    with pytest.raises(FileNotFoundError, match="inventory/none.py"):
        load_cluster("inventory/none.py", REPO)


def test_sudo_password_never_on_the_command_line():
    command = sudo_command("cat /run/spark-cluster/roce.env", with_password=True)
    assert command.startswith("sudo -S -p '' -- sh -c ")
    assert "exec </dev/null; cat /run/spark-cluster/roce.env" in command
    assert sudo_command("true", with_password=False).startswith("sudo -n -- sh -c ")


@pytest.mark.parametrize("value, policy", [(None, "accept-new"), ("accept-new", "accept-new"), (True, "yes"),
                                           ("yes", "yes"), (False, "no"), ("no", "no")])
def test_host_key_policy_follows_pyinfra_values(value, policy):
    assert host_key_policy(value) == policy


def test_unreachable_nodes_fail_every_check_with_the_reason(tmp_path):
    """Nothing listens on 127.0.0.1 ports 1 and 2: refused at once, no traffic leaves the machine."""
    inventory = tmp_path / "down.py"
    inventory.write_text(
        "from spark_cluster.inventory import define_cluster\n"
        "spark = define_cluster([\n"
        "  {'name': 'spark-1', 'ssh_hostname': '127.0.0.1', 'ssh_port': 1, 'ssh_user': 'nobody', 'qsfp_address': '192.168.100.10/24'},\n"
        "  {'name': 'spark-2', 'ssh_hostname': '127.0.0.1', 'ssh_port': 2, 'ssh_user': 'nobody', 'qsfp_address': '192.168.100.11/24'},\n"
        "])\n"
    )
    report = tmp_path / "verify.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/verify", "-q", "-p", "no:cacheprovider",
         "--inventory", str(inventory), "--report-json", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    import json
    entries = json.loads(report.read_text())["results"]
    assert result.returncode != 0
    assert entries and {e["outcome"] for e in entries} == {"failed"}, entries
    assert all("cannot reach its SSH endpoint" in e["message"] for e in entries)
    checks = {e["check"] for e in entries}
    assert {"links", "network_manager", "roce_gid", "memlock", "infiniband", "drm_override", "gpu_memory", "caches", "hf_cache",
            "env_file", "container_env", "serving_unit", "serving_watch", "ssh_key", "known_hosts", "ping_mtu", "ssh_mesh",
            "rdma", "openai_endpoint"} == checks
    assert "spark-cluster verify" in result.stdout and "FAIL" in result.stdout


def test_an_inventory_the_roles_would_refuse_fails_a_check_in_one_line(no_ssh):
    (head, _) = load_cluster("inventory/spark2.py", REPO)
    head.data["qsfp_subnets"] = ["10.9.0.0/24", "10.9.1.0/24"]  # not where qsfp_address lies
    with pytest.raises(VerifyEnvironmentError) as caught:
        node_fabric(head)
    message = str(caught.value)
    assert message.startswith("spark-1: group_data: 'qsfp_subnets'") and "fix: correct the inventory" in message
    assert "\n" not in message
