"""spark-cluster status, smoke and logs on the converged 2-node lab, as a user
runs them after a deploy: one table with every node's serving state, model,
image id, rails and uptime; a real completion with tokens/s; every node's
engine log, still there after `docker kill` took the container (docker run
--rm) away."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labsupport import REPO, as_root, chat_works, deploy, group_data, image_id, run, wait_for

from spark_cluster.engine_image import standin_tag

pytestmark = pytest.mark.lab

NODES = ["spark-1", "spark-2"]
HEAD, WORKER = NODES
# One cable in port 1 (inventory/lab2.py): both halves carry an address.
RAILS = {"enp1s0f1np1": "192.168.100", "enP2p1s0f1np1": "192.168.101"}
UPTIME = re.compile(r"^\d+(s|m|h\d\dm|d\d\dh)$")
# The watchers' detection and both engines' restart, under emulation (test_lab_cluster.RECOVERY_BOUND_S).
RECOVERY_BOUND_S = 300


def spark_cluster(command, inventory, *args, timeout=300):
    return run([sys.executable, "-m", "spark_cluster_cli", command, "-i", inventory, *args], timeout=timeout)


@pytest.fixture(scope="module")
def serving(lab2):
    """The converged lab, answering: a deploy (nothing to change when an earlier test converged it)."""
    result = deploy(lab2)
    assert result.returncode == 0, result.output[-6000:]
    wait_for(lambda: chat_works(WORKER), RECOVERY_BOUND_S, interval=10, what="a completion from the lab")
    return lab2


def node_rows(output):
    """{node: its table row's cells}: the columns are two spaces apart, rails one."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in NODES:
            rows[cells[0]] = cells
    return rows


def test_status_shows_every_nodes_state_model_image_id_rails_and_uptime(serving):
    result = spark_cluster("status", serving)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    header = re.split(r"\s{2,}", result.stdout.splitlines()[0].strip())
    assert header == ["NODE", "ROLE", "STATE", "MODEL", "IMAGE ID", "RAILS", "UP"]
    rows = node_rows(result.stdout)
    assert set(rows) == set(NODES), result.stdout
    model = group_data()["serving_model"]
    for rank, node in enumerate(NODES):
        name, role, state, shown_model, shown_id, rails, uptime = rows[node]
        assert (role, state, shown_model) == ("head" if rank == 0 else "worker", "serving", model), rows[node]
        # The id of the image the engine runs, as docker shows it, marked as the stand-in.
        assert shown_id == image_id(node, standin_tag()).split(":", 1)[1][:12] + "*", (node, shown_id)
        assert rails.split() == [f"{netdev}={subnet}.{10 + rank}/24" for netdev, subnet in RAILS.items()], rails
        assert UPTIME.match(uptime), uptime
    assert "is the lab's stand-in engine" in result.stdout
    assert result.stdout.rstrip().endswith("2 of 2 node(s) serving")


def test_smoke_prints_a_completion_and_tokens_per_second(serving):
    result = spark_cluster("smoke", serving)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    assert f"{HEAD} answered (" in result.stdout and "echo:" in result.stdout  # the stand-in echoes the prompt
    assert re.search(r"^single stream: [\d.]+ tokens/s \(\d+ tokens in", result.stdout, re.M), result.stdout
    assert re.search(r"^at concurrency 4: [\d.]+ tokens/s \(\d+ tokens in [\d.]+ s, 4 request\(s\)\)$",
                     result.stdout, re.M), result.stdout
    # The figures are kept in the report, beside verify's.
    report = re.search(r"^report: (\S+) \(JSON\)$", result.stdout, re.M)
    assert report, result.stdout
    kept = json.loads(Path(report.group(1)).read_text())
    assert kept["head"] == HEAD and kept["single"]["tokens_per_s"] > 0 and kept["concurrent"]["requests"] == 4, kept


def prefixed(output, node):
    return [line.split(" | ", 1)[1] for line in output.splitlines() if line.startswith(f"{node} | ")]


def test_logs_show_every_nodes_last_lines_and_keep_a_killed_engines(serving):
    result = spark_cluster("logs", serving, "--lines", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    for node in NODES:
        lines = prefixed(result.stdout, node)
        assert 0 < len(lines) <= 30 and any("[standin]" in line for line in lines), (node, result.stdout)
    # The worker's engine, killed: `docker run --rm` takes the container and its
    # docker log away; journald kept what it printed, and systemd's word on its end.
    last = next(line for line in reversed(prefixed(result.stdout, WORKER)) if "[standin]" in line)
    as_root(WORKER, "docker kill spark-serving")

    def killed_engine_kept():
        worker_lines = prefixed(spark_cluster("logs", serving, "--lines", "200").stdout, WORKER)
        return last in worker_lines and any("status=137" in line for line in worker_lines[worker_lines.index(last):])

    wait_for(killed_engine_kept, 120, interval=5, what=f"{WORKER}'s killed engine's last lines and its exit (137)")
    # The watcher's journal, on request: the head's watcher names the worker's loss.
    wait_for(lambda: chat_works(WORKER), RECOVERY_BOUND_S, interval=10, what="the cluster back after the kill")
    watcher = spark_cluster("logs", serving, "--watcher", "--lines", "200").stdout
    assert any("spark-serving-watch on spark-1" in line for line in prefixed(watcher, HEAD)), watcher
    assert any("spark-serving-watch on spark-2" in line for line in prefixed(watcher, WORKER)), watcher


def test_logs_follow_streams_both_nodes_until_ctrl_c(serving):
    process = subprocess.Popen([sys.executable, "-m", "spark_cluster_cli", "logs", "-i", serving, "--follow",
                                "--lines", "3"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(30)  # SSH, sudo and journalctl on both nodes, under emulation
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    for node in NODES:
        assert len(prefixed(output, node)) >= 3, output
    assert "Traceback" not in output
