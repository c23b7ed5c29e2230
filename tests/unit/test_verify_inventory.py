"""The verification suite reads the deploy's inventory and never connects on its own."""

import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

REPO = Path(__file__).resolve().parents[2]

from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.rails import min_link_fraction, network_setting, node_fabric  # noqa: E402
from sparkverify.remote import (Endpoint, Node, VerifyEnvironmentError, endpoint_of, host_key_policy,  # noqa: E402
                               ssh_config_lookup, sudo_command)

from spark_cluster.inventory import ClusterInventoryError, require_group_data  # noqa: E402


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")
    # No ~/.ssh/config of the person running the tests: endpoints are the inventory's.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


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


def test_data_overrides_reach_verify_as_pyinfra_parses_them(no_ssh):
    nodes = load_cluster("inventory/spark2.py", REPO, data=["mtu=1500", "serving_wait_ready=false",
                                                             'qsfp_ports=[0, 1]'])
    for node in nodes:
        assert node.get("mtu") == 1500 and node.get("serving_wait_ready") is False
        assert node.get("qsfp_ports") == [0, 1]
    assert len(node_fabric(nodes[-1]).rails) == 4  # both ports cabled, as the deploy would derive


def test_a_data_override_the_deploy_would_refuse_is_refused_by_name():
    with pytest.raises(ClusterInventoryError, match="mtuu.*mtu"):
        load_cluster("inventory/spark2.py", REPO, data=["mtuu=1500"])
    with pytest.raises(ClusterInventoryError, match="expected KEY=VALUE"):
        load_cluster("inventory/spark2.py", REPO, data=["mtu"])


def test_extra_group_data_is_read_from_where_the_user_typed_it(tmp_path, monkeypatch, no_ssh):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "all.py").write_text("mtu = 4000\n")
    monkeypatch.chdir(tmp_path)
    (node, _) = load_cluster("inventory/spark2.py", REPO, group_data=["site"])
    assert node.get("mtu") == 4000 and node.get("serving_engine") == "vllm"  # the checkout's group_data too
    with pytest.raises(ClusterInventoryError, match="--group-data nowhere: no such folder"):
        load_cluster("inventory/spark2.py", REPO, group_data=["nowhere"])


def test_a_run_that_would_read_no_group_data_is_refused(tmp_path):
    (tmp_path / "inventory").mkdir()
    with pytest.raises(ClusterInventoryError, match="found no group_data/all.py .* pass --group-data"):
        require_group_data([tmp_path / "group_data", tmp_path / "inventory" / "group_data"], tmp_path)
    require_group_data([REPO / "group_data"], tmp_path)  # the checkout's: fine from anywhere


def test_ssh_config_is_honoured_as_pyinfras_connector_does(tmp_path, no_ssh):
    config = tmp_path / "ssh_config"
    config.write_text("Host spark-a\n  HostName 10.9.8.7\n  Port 2222\n  User admin\n  IdentityFile ~/.ssh/spark\n"
                      "Host *\n  User fallback\n")
    lookup = ssh_config_lookup("spark-a", str(config))
    # The inventory's ssh_user and ssh_port win; HostName and IdentityFile fill in.
    assert endpoint_of("spark-a", "nvidia", None, None, lookup) == \
        Endpoint("10.9.8.7", 2222, "nvidia", str(Path("~/.ssh/spark").expanduser()))
    assert endpoint_of("spark-a", "nvidia", 22, "/keys/id", lookup) == Endpoint("10.9.8.7", 22, "nvidia", "/keys/id")
    assert endpoint_of("other", None, None, None, ssh_config_lookup("other", str(config))).user == "fallback"
    assert ssh_config_lookup("spark-a", str(tmp_path / "none")) == {}
    (head, _) = load_cluster("inventory/spark2.py", REPO, data=[f"ssh_config_file={config}"])
    assert Node(head, REPO).endpoint == "nvidia@192.0.2.11:22"  # no entry for the address: as written


def test_verify_help_works_without_an_inventory_and_a_run_without_one_says_so(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                        str(REPO / "tests" / "verify"), *args],
                                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    helped = run("--help")
    assert helped.returncode == 0 and "--group-data=DIR" in helped.stdout and "--data=KEY=VALUE" in helped.stdout
    refused = run()
    assert refused.returncode == 4 and "tests/verify needs --inventory" in refused.stderr
    bad = run("--inventory", "inventory/spark2.py", "--data", "mtuu=1")
    assert bad.returncode == 4, bad.stderr
    assert "cannot load inventory inventory/spark2.py: spark-1: unknown setting 'mtuu': did you mean mtu?" \
        in bad.stderr
