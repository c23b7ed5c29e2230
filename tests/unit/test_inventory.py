import subprocess
import sys
from pathlib import Path

import pytest

from spark_cluster.inventory import ClusterInventoryError, define_cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")


def nodes(n=2, **changes):
    base = [
        {"name": f"spark-{i}", "ssh_hostname": f"192.0.2.{10 + i}", "ssh_user": "nvidia", "qsfp_address": f"10.0.0.{i}/24"}
        for i in range(1, n + 1)
    ]
    for index, fields in changes.items():
        base[int(index.removeprefix("n"))].update(fields)
    return base


def test_derives_head_ranks_and_peers_once():
    hosts = dict(define_cluster(nodes(4)))
    assert [hosts[f"spark-{i}"]["node_rank"] for i in range(1, 5)] == [0, 1, 2, 3]
    assert hosts["spark-1"]["is_head"] and not hosts["spark-3"]["is_head"]
    assert {h["head_qsfp_ip"] for h in hosts.values()} == {"10.0.0.1"}
    assert {h["world_size"] for h in hosts.values()} == {4}
    assert [p["name"] for p in hosts["spark-2"]["peers"]] == ["spark-1", "spark-3", "spark-4"]
    assert hosts["spark-4"]["qsfp_ip"] == "10.0.0.4" and hosts["spark-4"]["qsfp_prefixlen"] == 24


def test_sudo_password_becomes_pyinfra_argument():
    data = dict(define_cluster(nodes(2, n0={"sudo_password": "pw"})))["spark-1"]
    assert data["_sudo_password"] == "pw" and "sudo_password" not in data


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n1": {"qsfp_address": "10.0.0.1/24"}}, "spark-2: field 'qsfp_address' duplicates spark-1"),
        ({"n1": {"name": "spark-1"}}, "spark-1: field 'name' duplicates spark-1"),
        ({"n1": {"ssh_hostname": "192.0.2.11"}}, "spark-2: field 'ssh_hostname' duplicates spark-1"),
        ({"n1": {"qsfp_address": None}}, "spark-2: missing field 'qsfp_address'"),
        ({"n0": {"ssh_hostname": ""}}, "spark-1: missing field 'ssh_hostname'"),
        ({"n1": {"qsfp_address": "10.0.0.2"}}, "spark-2: field 'qsfp_address' needs a prefix length"),
        ({"n1": {"qsfp_address": "10.0.1.2/24"}}, "spark-2: field 'qsfp_address' 10.0.1.2/24 is not in spark-1's QSFP subnet"),
        ({"n1": {"qsfp_address": "10.0.0.300/24"}}, "spark-2: field 'qsfp_address' is not an IPv4"),
        ({"n1": {"qsfp_address": "10.0.0.255/24"}},
         "spark-2: field 'qsfp_address' 10.0.0.255/24 is the network or broadcast address"),
        ({"n1": {"qsfp_address": "10.0.0.0/24"}},
         "spark-2: field 'qsfp_address' 10.0.0.0/24 is the network or broadcast address"),
        ({"n0": {"qsfp_address": "10.0.0.3/30"}, "n1": {"qsfp_address": "10.0.0.2/30"}},
         "spark-1: field 'qsfp_address' 10.0.0.3/30 is the network or broadcast address"),
        ({"n1": {"qsfp_adress": "10.0.0.2/24"}}, "spark-2: unknown field 'qsfp_adress'"),
        ({"n1": {"name": "Spark_2"}}, "field 'name' must be a lowercase host name"),
    ],
)
def test_bad_inventory_names_the_field(changes, message):
    with pytest.raises(ClusterInventoryError) as error:
        define_cluster(nodes(2, **changes))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_same_address_different_ports_is_fine_for_the_lab():
    lab = nodes(2, n0={"ssh_hostname": "127.0.0.1", "ssh_port": 2221}, n1={"ssh_hostname": "127.0.0.1", "ssh_port": 2222})
    assert len(define_cluster(lab)) == 2


@pytest.mark.parametrize("count", [1, 3, 5])
def test_only_two_or_four_nodes(count):
    with pytest.raises(ClusterInventoryError, match="2 or 4 nodes"):
        define_cluster(nodes(count))


def test_pyinfra_cli_reports_bad_inventory_in_one_line_before_connecting(tmp_path):
    inventory = tmp_path / "bad.py"
    inventory.write_text(
        "from spark_cluster.inventory import define_cluster\n"
        "spark = define_cluster([\n"
        "  {'name': 'spark-1', 'ssh_hostname': '192.0.2.11', 'ssh_user': 'nvidia', 'qsfp_address': '10.0.0.1/24'},\n"
        "  {'name': 'spark-9', 'ssh_hostname': '192.0.2.12', 'ssh_user': 'nvidia'},\n"
        "])\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", str(inventory), "deploy.py", "-y"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SPARK_CLUSTER_READ_ONLY_INVENTORY": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if "spark-9: missing field 'qsfp_address'" in line]
    # The line names the file the user wrote, never this package's own module.
    assert errors == [
        f"--> pyinfra error: {inventory}: spark-9: missing field 'qsfp_address': "
        "set it to this Spark's QSFP address with its prefix length, e.g. '10.0.0.1/24'"
    ], output
    assert "spark_cluster/inventory.py" not in output and "Traceback" not in output
    assert "Connecting" not in output and "Connected" not in output


def test_unedited_placeholder_address_is_refused(monkeypatch):
    monkeypatch.delenv("SPARK_CLUSTER_READ_ONLY_INVENTORY")
    with pytest.raises(ClusterInventoryError, match="spark-1: field 'ssh_hostname' is still the placeholder 192.0.2.11"):
        define_cluster(nodes(2))


@pytest.mark.parametrize("name", ["spark2", "spark4"])
def test_shipped_inventories_refuse_to_run_unedited(name, monkeypatch):
    monkeypatch.delenv("SPARK_CLUSTER_READ_ONLY_INVENTORY")
    source = (REPO / "inventory" / f"{name}.py").read_text()
    with pytest.raises(ClusterInventoryError, match="placeholder"):
        exec(compile(source, name, "exec"), {})
