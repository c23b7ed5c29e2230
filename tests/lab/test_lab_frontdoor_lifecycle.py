"""The spark-cluster command's stop and start on the 2-node lab: `stop` leaves
every node's engine and watcher inactive (and they stay so: no watcher brings
an engine back), `start` brings the cluster back until it answers a chat
completion. Runs the command as a user does, from the checkout, with the
sudo password in a mode-600 file (it reaches pyinfra through the environment).

Builds on a converged lab: the first test deploys through the command too (a
no-op when test_lab_cluster.py already converged it)."""

import sys
import time

import pytest

from labsupport import LAB_SUDO_PASSWORD, as_root, chat_works, run

pytestmark = pytest.mark.lab

NODES = ["spark-1", "spark-2"]
HEAD, WORKER = NODES
UNITS = ("spark-serving.service", "spark-serving-watch.service")
# Three of the lab watcher's probes (inventory/lab_common.py: 10 s each) and
# its backoff: time enough for a watcher left running to restart an engine.
STAY_STOPPED_S = 60


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "sudo_password"
    path.write_text(LAB_SUDO_PASSWORD + "\n")
    path.chmod(0o600)
    return str(path)


def spark_cluster(*args, timeout=2400):
    return run([sys.executable, "-m", "spark_cluster_cli", *args], timeout=timeout)


def unit_states(node: str) -> dict[str, str]:
    result = as_root(node, f"systemctl is-active {' '.join(UNITS)}", check=False)
    return dict(zip(UNITS, result.stdout.split()))


def engine_container(node: str) -> str:
    return as_root(node, "docker ps -q --filter name=^spark-serving$").stdout.strip()


def test_the_command_deploys_the_lab(lab2, password_file):
    result = spark_cluster("deploy", "-i", lab2, "-y", "--sudo-password-file", password_file)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert chat_works(WORKER)


def test_stop_leaves_every_engine_and_watcher_inactive(lab2, password_file):
    result = spark_cluster("stop", "-i", lab2, "-y", "--sudo-password-file", password_file)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for node in NODES:
        states = unit_states(node)
        assert all(state in ("inactive", "failed") for state in states.values()), (node, states)
    time.sleep(STAY_STOPPED_S)  # nothing may bring an engine back on its own
    for node in NODES:
        states = unit_states(node)
        assert all(state in ("inactive", "failed") for state in states.values()), (node, states)
        assert engine_container(node) == "", node
    assert not chat_works(WORKER)


def test_start_brings_the_cluster_back_until_it_answers(lab2, password_file):
    result = spark_cluster("start", "-i", lab2, "-y", "--sudo-password-file", password_file)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The start waited for the head's completion, on every node (roles/serving/ready.py).
    for node in NODES:
        progress = [line for line in output.splitlines() if f"[{node}]" in line and f"serving {node}:" in line]
        assert progress and "ready after" in progress[-1], output[-4000:]
    for node in NODES:
        assert unit_states(node) == dict.fromkeys(UNITS, "active"), node
        assert engine_container(node), node
    assert chat_works(WORKER)
