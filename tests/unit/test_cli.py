"""The spark-cluster command (spark_cluster_cli): which child it starts, with
what arguments and environment, and what it refuses before starting any."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from spark_cluster.inventory import SUDO_PASSWORD_ENV, define_cluster
from spark_cluster.lost_nodes import RERUN_ENV
import spark_cluster_cli
from spark_cluster_cli import checkout, command

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ["deploy", "verify", "status", "logs", "smoke", "stop", "start", "restart", "uninstall", "lab"]


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")
    monkeypatch.delenv(SUDO_PASSWORD_ENV, raising=False)


@pytest.fixture
def children(monkeypatch):
    """Every child the command would start: (argv, cwd, env), none started."""
    started = []

    def run(argv, cwd=None, env=None, **kwargs):
        started.append((list(argv), Path(cwd), dict(env or {})))
        return subprocess.CompletedProcess(argv, 0)
    monkeypatch.setattr(command.subprocess, "run", run)
    monkeypatch.setattr(command, "can_bind", lambda address: False)
    return started


def test_help_lists_every_subcommand_one_line_each():
    result = subprocess.run([sys.executable, "-m", "spark_cluster_cli", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert [line.split()[0] for line in lines] == SUBCOMMANDS
    # Its help beside it, on the same line (argparse wrapped the longest name onto a line of its own).
    assert [line for line in lines if len(line.split()) < 3] == [], result.stdout


def test_the_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'spark-cluster = "spark_cluster_cli:main"' in text and '"spark_cluster_cli*"' in text


# --- checkout ----------------------------------------------------------------

def _fake_checkout(root: Path) -> Path:
    (root / "tests" / "verify").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "group_data").mkdir()
    (root / "deploy.py").write_text("")
    return root


def test_the_checkout_is_found_beside_the_package_or_from_the_working_directory(tmp_path):
    assert checkout.find_checkout() == REPO  # this package, in its checkout
    root = _fake_checkout(tmp_path / "clone")
    (root / "inventory" / "deep").mkdir()
    elsewhere = tmp_path / "site-packages" / "spark_cluster_cli"
    elsewhere.mkdir(parents=True)
    assert checkout.find_checkout(elsewhere, root / "inventory" / "deep") == root


def test_without_a_checkout_it_says_how_to_get_one_and_exits_2(tmp_path, capsys):
    package = tmp_path / "site-packages" / "spark_cluster_cli"
    package.mkdir(parents=True)
    with pytest.raises(SystemExit) as exit:
        checkout.require_checkout(package, tmp_path)
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("spark-cluster runs from a checkout of the repository: git clone ")
    assert "scripts/setup" in line and f"found no deploy.py beside {tmp_path / 'site-packages'}" in line


# --- pyinfra children --------------------------------------------------------

def test_deploy_runs_pyinfra_on_deploy_py_in_the_checkout_with_the_overrides(children, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "all.py").write_text("mtu = 1500\n")
    monkeypatch.chdir(tmp_path)
    rc = command.main(["deploy", "--data", "serving_wait_ready=False", "--group-data", "mine", "-y",
                       "--limit", "spark-2"])
    assert rc == 0
    (argv, cwd, env), = children
    assert cwd == REPO and argv[:3] == [sys.executable, "-m", "pyinfra"]
    # A lost node's summary tells the user to run this command again, not the pyinfra line under it.
    assert env[RERUN_ENV] == ("spark-cluster deploy --data serving_wait_ready=False --group-data mine -y"
                              " --limit spark-2")
    assert argv[3:] == ["-y", "--limit", "spark-2", "--data", "serving_wait_ready=False",
                        "--group-data", str(tmp_path / "mine"), str(REPO / "inventory/spark2.py"), "deploy.py"]
    assert SUDO_PASSWORD_ENV not in env


@pytest.mark.parametrize("name", ["stop", "start", "restart"])
def test_lifecycle_subcommands_run_their_deploy_file(children, name):
    assert command.main([name, "-i", "inventory/lab2.py"]) == 0
    (argv, cwd, _), = children
    assert argv[-2:] == [str(REPO / "inventory/lab2.py"), f"{name}.py"] and (cwd / f"{name}.py").is_file()
    with pytest.raises(SystemExit):  # the whole cluster moves together: no --limit
        command.build_parser().parse_args([name, "--limit", "spark-2"])


def test_uninstall_turns_its_flags_into_settings(children, monkeypatch, tmp_path):
    root = _fake_checkout(tmp_path / "clone")
    (root / "uninstall.py").write_text("")
    monkeypatch.setattr(command, "require_checkout", lambda: root)
    monkeypatch.chdir(tmp_path)
    assert command.main(["uninstall", "--remove-model", "--remove-images"]) == 0
    (argv, _, _), = children
    assert argv[-6:] == ["--data", "uninstall_remove_model=True", "--data", "uninstall_remove_images=True",
                         str(root / "inventory/spark2.py"), "uninstall.py"]
    children.clear()
    command.main(["uninstall"])
    assert not [a for a in children[0][0] if a.startswith("uninstall_remove")]


def test_the_sudo_password_is_asked_once_and_travels_in_the_environment_only(children, monkeypatch):
    asked = []
    monkeypatch.setattr(command.getpass, "getpass", lambda prompt: asked.append(prompt) or "s3cret")
    assert command.main(["restart", "--ask-sudo-password"]) == 0
    assert command.main(["verify", "--sudo-password-file", "/nonexistent"]) == 2  # refused before any child
    (argv, _, env), = children
    assert len(asked) == 1 and env[SUDO_PASSWORD_ENV] == "s3cret"
    assert not any("s3cret" in arg for arg in argv)


def test_a_password_file_must_be_private(tmp_path, capsys, children):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    secret.chmod(0o644)
    assert command.main(["stop", "--sudo-password-file", str(secret)]) == 2
    assert "chmod 600" in capsys.readouterr().err and children == []
    secret.chmod(0o600)
    assert command.main(["stop", "--sudo-password-file", str(secret)]) == 0
    assert children[0][2][SUDO_PASSWORD_ENV] == "from-file"


def test_the_deploy_reads_the_password_from_the_environment_over_the_inventorys(monkeypatch):
    nodes = [{"name": f"spark-{i}", "ssh_hostname": f"10.1.0.{i}", "ssh_user": "nvidia",
              "qsfp_address": f"192.168.100.{i}/24"} for i in (1, 2)]
    nodes[0]["sudo_password"] = "lab"
    assert [data.get("_sudo_password") for _, data in define_cluster(nodes)] == ["lab", None]
    monkeypatch.setenv(SUDO_PASSWORD_ENV, "given")
    assert [data["_sudo_password"] for _, data in define_cluster(nodes)] == ["given", "given"]


# --- the controller is not a node --------------------------------------------

def test_the_controller_decision():
    hosts = [("spark-1", {"ssh_hostname": "10.1.0.1", "qsfp_ip": "192.168.100.10"}),
             ("spark-2", {"ssh_hostname": "10.1.0.2", "qsfp_ip": "192.168.100.11"}),
             ("lab-1", {"ssh_hostname": "127.0.0.1", "qsfp_ip": "192.168.100.12"})]
    mine = {"10.1.0.2", "127.0.0.1", "localhost"}
    asked = []
    is_local = lambda address: asked.append(address) or address in mine
    assert command.controller_nodes(hosts, is_local) == [("spark-2", "10.1.0.2")]
    assert "127.0.0.1" not in asked  # the lab's forwarded ports: never a node's own address
    assert command.controller_nodes([("n", {"ssh_hostname": "localhost"})], is_local) == []
    # A node known only by its QSFP address on this machine is this machine too.
    assert command.controller_nodes(hosts, lambda a: a == "192.168.100.11") == [("spark-2", "192.168.100.11")]


def test_binding_tells_a_local_address_from_another_machines():
    assert command.can_bind("127.0.0.1")
    assert not command.can_bind("192.0.2.1")  # TEST-NET: nobody's address, nothing is sent
    assert not command.can_bind("no-such-host.invalid")


def test_deploy_on_a_node_of_its_own_cluster_is_refused(children, monkeypatch, capsys):
    monkeypatch.setattr(command, "can_bind", lambda address: address == "192.0.2.12")
    assert command.main(["deploy"]) == 2
    assert children == []
    err = capsys.readouterr().err
    assert "this machine is a node of the cluster: spark-2 (192.0.2.12)" in err and "from another machine" in err
    assert command.main(["stop"]) == 0  # stopping from a node cuts nothing


def test_deploy_with_a_bad_override_is_refused_before_pyinfra(children, capsys):
    assert command.main(["deploy", "--data", "mtuu=1500"]) == 2
    assert children == [] and "unknown setting 'mtuu'" in capsys.readouterr().err


# --- verify, lab, node commands ----------------------------------------------

def test_verify_runs_the_suite_with_the_same_overrides_and_prints_the_table(children, monkeypatch, tmp_path, capsys):
    root = _fake_checkout(tmp_path / "clone")
    (root / "tests" / "verify" / "sparkverify").symlink_to(REPO / "tests" / "verify" / "sparkverify")
    monkeypatch.setattr(command, "require_checkout", lambda: root)
    monkeypatch.chdir(tmp_path)
    report = {"results": [{"node": "spark-1", "check": "links", "outcome": "passed", "message": "", "duration_s": 1,
                           "nodeid": "x"},
                          {"node": "spark-2", "check": "links", "outcome": "failed", "message": "no carrier",
                           "duration_s": 1, "nodeid": "y"}]}

    def pytest_run(argv, cwd=None, env=None, **kwargs):
        children.append((argv, cwd, env))
        (root / "reports").mkdir(exist_ok=True)
        (root / "reports" / "verify.json").write_text(json.dumps(report))
        return subprocess.CompletedProcess(argv, 1)
    monkeypatch.setattr(command.subprocess, "run", pytest_run)
    assert command.main(["verify", "-i", "inventory/lab2.py", "--data", "mtu=1500", "-k", "links"]) == 1
    (argv, cwd, _), = children
    assert argv[1:] == ["-m", "pytest", "tests/verify", "-p", "no:cacheprovider", "--inventory",
                        str(root / "inventory/lab2.py"), "--data", "mtu=1500", "--junitxml", "reports/verify.xml",
                        "--report-json", "reports/verify.json", "-k", "links"]
    out = capsys.readouterr().out.splitlines()
    assert out[-4].split() == ["check", "spark-1", "spark-2"] and out[-3].split() == ["links", "PASS", "FAIL"]
    assert out[-2] == "1 passed, 1 failed, 0 skipped" and "verify.xml" in out[-1]


def test_lab_passes_its_arguments_to_python_m_lab(children):
    assert command.main(["lab", "up", "--nodes", "2"]) == 0
    (argv, cwd, _), = children
    assert argv == [sys.executable, "-m", "lab", "up", "--nodes", "2"] and cwd == REPO


def test_status_logs_and_smoke_go_to_the_nodes_module_with_the_shared_options(monkeypatch):
    calls = []
    fake = types.ModuleType("spark_cluster_cli.nodes")
    for name in ("status", "logs", "smoke"):
        setattr(fake, name, lambda args, name=name: calls.append((name, args)) or 3)
    monkeypatch.setitem(sys.modules, "spark_cluster_cli.nodes", fake)
    # Another test may have imported the real module already: `from . import nodes` then reads the package attribute.
    monkeypatch.setattr(spark_cluster_cli, "nodes", fake, raising=False)
    monkeypatch.setenv(SUDO_PASSWORD_ENV, "exported")
    assert command.main(["logs", "-f", "--watcher", "-n", "20", "--data", "api_port=9000"]) == 3
    assert command.main(["status", "-i", "inventory/lab2.py"]) == 3
    (_, logs), (_, status) = calls
    assert (logs.follow, logs.watcher, logs.lines, logs.data, logs.sudo_password) == (True, True, 20, ["api_port=9000"],
                                                                                      "exported")
    assert status.inventory == str(REPO / "inventory/lab2.py") and status.group_data == []
    assert status.checkout == REPO and [c for c, _ in calls] == ["logs", "status"]
    assert command.build_parser().parse_args(["logs"]).lines == 50
