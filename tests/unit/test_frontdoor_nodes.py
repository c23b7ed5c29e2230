"""spark-cluster status, logs and smoke (spark_cluster_cli/nodes.py, report.py):
the table a person reads, what each node is asked, and the cluster loaded as
the deploy loads it (--data, --group-data). No SSH: nodes are fakes that
answer as a node does (the watcher's JSON, `ip -j addr`, journalctl)."""

import json
import os
import signal
import threading
import time
from argparse import Namespace
from pathlib import Path

import paramiko
import pytest

REPO = Path(__file__).resolve().parents[2]

from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.remote import NodeUnreachable, sudo_command  # noqa: E402
from sparkverify.result import Result  # noqa: E402

from spark_cluster.engine_image import standin_tag  # noqa: E402
from spark_cluster.inventory import ClusterInventoryError  # noqa: E402
from spark_cluster_cli import nodes  # noqa: E402
from spark_cluster_cli.command import resolve  # noqa: E402
from spark_cluster_cli.report import (NodeStatus, RailAddress, is_standin, rails_text, short_image_id, smoke_text,  # noqa: E402
                                      status_exit, status_table, uptime_text)

IMAGE_ID = "sha256:3f9a1c2b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"
OTHER_ID = "sha256:77aa" + "0" * 60


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")


@pytest.fixture(autouse=True)
def no_ssh(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to connect")
    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse)


def watcher_report(node, role, state="serving", since_s=3725.0, image_id=IMAGE_ID, standin=True, **more):
    image = "spark-standin:0123456789ab" if standin else "vllm-ds4-sm121:latest"
    return dict({"node": node, "role": role, "engine": "vllm", "model": "deepseek-ai/DeepSeek-V4-Flash",
                 "served_model_name": "deepseek-v4-flash", "image": image, "unit": "active", "sub": "running", "restarts": "0", "since_s": since_s,
                 "image_id": image_id, "engine_running": True, "ready": state == "serving", "phase": "",
                 "detail": "", "health": "200" if role == "head" else None, "state": state}, **more)


RAILS_1 = (RailAddress("enp1s0f1np1", ("192.168.100.10/24",)), RailAddress("enP2p1s0f1np1", ("192.168.101.10/24",)))
RAILS_2 = (RailAddress("enp1s0f1np1", ("192.168.100.11/24",)), RailAddress("enP2p1s0f1np1", ("192.168.101.11/24",)))


# --- the table ------------------------------------------------------------------------

def test_a_serving_lab_cluster_reads_at_a_glance():
    table = status_table([NodeStatus("spark-1", watcher_report("spark-1", "head"), RAILS_1),
                          NodeStatus("spark-2", watcher_report("spark-2", "worker", since_s=3690.0), RAILS_2)])
    print(table)  # the README shows this table
    lines = table.splitlines()
    assert lines[0].split() == ["NODE", "ROLE", "STATE", "MODEL", "IMAGE", "ID", "RAILS", "UP"]
    assert lines[1].split() == ["spark-1", "head", "serving", "deepseek-ai/DeepSeek-V4-Flash", "3f9a1c2b7d4e*",
                                "enp1s0f1np1=192.168.100.10/24", "enP2p1s0f1np1=192.168.101.10/24", "1h02m"]
    assert lines[2].split()[:3] == ["spark-2", "worker", "serving"] and lines[2].endswith("1h01m")
    # Columns line up: every row's STATE starts under the header's.
    column = lines[0].index("STATE")
    assert all(line[column:].startswith(("STATE", "serving")) for line in lines[:3])
    assert "* spark-standin:0123456789ab is the lab's stand-in engine" in table
    assert lines[-1] == "2 of 2 node(s) serving"
    assert status_exit([NodeStatus("spark-1", watcher_report("spark-1", "head"), RAILS_1)]) == 0


def test_a_node_not_serving_or_unreachable_is_a_row_and_a_line_and_fails_the_exit():
    unreachable = ("spark-3: cannot reach its SSH endpoint nvidia@192.0.2.13:22 (TimeoutError: timed out); "
                   "fix: check the node is up")
    statuses = [
        NodeStatus("spark-1", watcher_report("spark-1", "head", state="starting", phase="loading weights",
                                             detail="HTTP 503", standin=False), RAILS_1),
        NodeStatus("spark-2", watcher_report("spark-2", "worker", state="stopped", unit="failed", since_s=None,
                                             standin=False, detail="no engine container running"),
                   (RailAddress("enp1s0f1np1", (), up=False), RailAddress("enP2p1s0f1np1", ("192.168.101.11/24",)))),
        NodeStatus("spark-3", error=unreachable),
    ]
    table = status_table(statuses)
    rows = table.splitlines()[1:4]
    assert rows[0].split()[2] == "starting" and "stand-in" not in table and "*" not in rows[0]
    assert rows[1].split()[2] == "stopped" and "enp1s0f1np1=no address (down)" in rows[1] and rows[1].endswith("-")
    assert rows[2].split() == ["spark-3", "-", "unreachable", "-", "-", "-", "-"]
    assert "spark-1: starting (loading weights; HTTP 503)" in table
    assert "spark-2: stopped (unit failed; no engine container running)" in table
    assert "spark-2: rail enp1s0f1np1 is down; fix: check the QSFP cable" in table
    assert unreachable in table and table.endswith("0 of 3 node(s) serving")
    assert status_exit(statuses) == 1 and status_exit([]) == 1


def test_nodes_running_different_images_are_named():
    table = status_table([NodeStatus("spark-1", watcher_report("spark-1", "head"), RAILS_1),
                          NodeStatus("spark-2", watcher_report("spark-2", "worker", image_id=OTHER_ID), RAILS_2)])
    assert "image ids differ (spark-1 3f9a1c2b7d4e, spark-2 77aa00000000)" in table


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"),
                                           (3600, "1h00m"), (86399, "23h59m"), (90061, "1d01h")])
def test_uptime_reads_short(seconds, text):
    assert uptime_text(seconds) == text


def test_image_ids_and_rails_read_short():
    assert short_image_id(IMAGE_ID) == "3f9a1c2b7d4e" and short_image_id("") == "-" and short_image_id(None) == "-"
    assert rails_text([]) == "-"
    assert rails_text([RailAddress("bond0", ("192.168.100.10/24", "10.0.0.1/24")),
                       RailAddress("enp1s0f0np0", error="ip addr: Device does not exist")]) == \
        "bond0=192.168.100.10/24,10.0.0.1/24 enp1s0f0np0=?"


# --- smoke's words ------------------------------------------------------------------------

def test_smoke_prints_the_answer_and_both_figures():
    result = {"ok": True, "model": "deepseek-v4-flash", "image": "vllm-ds4-sm121:latest", "concurrency": 4, "error": "",
              "answer": " ".join(f"w{i}" for i in range(30)),
              "single": {"requests": 1, "failed": 0, "tokens": 128, "seconds": 4.0, "tokens_per_s": 32.0},
              "concurrent": {"requests": 4, "failed": 0, "tokens": 512, "seconds": 5.12, "tokens_per_s": 100.0}}
    text, code = smoke_text("spark-1", result)
    assert code == 0
    assert text.splitlines() == [
        "spark-1 answered (deepseek-v4-flash): " + " ".join(f"w{i}" for i in range(24)) + " ...",
        "single stream: 32.0 tokens/s (128 tokens in 4.0 s, 1 request(s))",
        "at concurrency 4: 100.0 tokens/s (512 tokens in 5.12 s, 4 request(s))",
    ]


def test_a_failed_smoke_says_what_expected_found_and_fix():
    text, code = smoke_text("spark-1", {"ok": False, "model": "ds4", "error": "HTTP 401: Unauthorized"})
    assert code == 1
    assert ("smoke failed on spark-1: expected a chat completion from ds4 and tokens/s figures; "
            "found: HTTP 401: Unauthorized; fix: `spark-cluster status`") in text


# --- the cluster, loaded as the deploy loads it ------------------------------------------------

def test_data_pairs_parse_as_pyinfra_parses_them():
    specs = load_cluster("inventory/spark2.py", REPO, ["api_listen=all", "serving_watch_port=29521"])
    assert [(s.get("api_listen"), s.get("serving_watch_port")) for s in specs] == [("all", 29521)] * 2
    with pytest.raises(ClusterInventoryError, match="--data 'api_listen': expected KEY=VALUE"):
        load_cluster("inventory/spark2.py", REPO, ["api_listen"])


def test_data_overrides_and_group_data_folders_reach_every_node(tmp_path):
    extra = tmp_path / "group_data"
    extra.mkdir()
    (extra / "all.py").write_text("mtu = 1500\nserving_watch_port = 29600\n")
    specs = load_cluster("inventory/spark2.py", REPO, ["serving_watch_port=29700"], [str(extra)])
    assert [spec.get("mtu") for spec in specs] == [1500, 1500]
    assert [spec.get("serving_watch_port") for spec in specs] == [29700, 29700]
    assert [spec.name for spec in load_cluster("inventory/spark2.py", REPO)] == ["spark-1", "spark-2"]


def test_the_cli_loads_the_inventory_relative_to_where_the_user_stands(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO / "inventory")
    cluster = nodes.cluster_nodes(Namespace(inventory=resolve("spark2.py", REPO), data=["ssh_user=admin"],
                                            group_data=[], sudo_password="pw", checkout=REPO))
    assert [node.name for node in cluster] == ["spark-1", "spark-2"]
    assert cluster[0].endpoint == "admin@192.0.2.11:22" and cluster[1].sudo_password() == "pw"


# --- each node asked, as a node answers ---------------------------------------------------------

def ip_addr_json(netdev, address, up=True):
    ip, prefix = address.split("/")
    return json.dumps([{"ifname": netdev, "flags": ["BROADCAST", "UP", "LOWER_UP"] if up else ["BROADCAST"],
                        "operstate": "UP" if up else "DOWN", "mtu": 9000,
                        "addr_info": [{"family": "inet", "local": ip, "prefixlen": int(prefix)}]}])


class FakeNode:
    """A node as verify's Node answers: run (admin), run_root (sudo)."""

    def __init__(self, spec, report=None, unreachable=False, journal=""):
        self.spec, self.name = spec, spec.name
        self.report, self.unreachable, self.journal = report, unreachable, journal
        self.asked = []
        self.closed = False

    def close(self):
        self.closed = True

    def _reach(self):
        if self.unreachable:
            raise NodeUnreachable(f"{self.name}: cannot reach its SSH endpoint; fix: check the node is up")

    def run(self, command, timeout=60, stdin=None):
        self._reach()
        self.asked.append(command)
        netdev = command.split()[-1]
        index = 10 + int(self.spec.get("node_rank"))
        subnet = 100 if netdev == "enp1s0f1np1" else 101
        return Result(command, 0, ip_addr_json(netdev, f"192.168.{subnet}.{index}/24"), "")

    def run_root(self, command, timeout=60):
        self._reach()
        self.asked.append("sudo " + command)
        if command.endswith("serving_watch.py report"):
            if self.report is None:
                return Result(command, 2, "", "python3: can't open file '/usr/local/lib/spark-cluster/serving_watch.py'")
            return Result(command, 0, "some warning line\n" + json.dumps(self.report) + "\n", "")
        if command.startswith("journalctl"):
            return Result(command, 0, self.journal, "")
        raise AssertionError(command)


@pytest.fixture
def spark2():
    return load_cluster("inventory/spark2.py", REPO)


def test_status_asks_every_node_for_its_report_and_rails(spark2, monkeypatch, capsys):
    fakes = [FakeNode(spark2[0], watcher_report("spark-1", "head")),
             FakeNode(spark2[1], watcher_report("spark-2", "worker"))]
    monkeypatch.setattr(nodes, "cluster_nodes", lambda args: fakes)
    assert nodes.status(Namespace()) == 0
    out = capsys.readouterr().out
    assert "enp1s0f1np1=192.168.100.11/24 enP2p1s0f1np1=192.168.101.11/24" in out
    assert fakes[1].asked == ["ip -j addr show dev enp1s0f1np1", "ip -j addr show dev enP2p1s0f1np1",
                              "sudo /usr/bin/python3 /usr/local/lib/spark-cluster/serving_watch.py report"]


def test_status_of_an_unreachable_node_and_a_node_never_deployed(spark2, monkeypatch, capsys):
    fakes = [FakeNode(spark2[0], None), FakeNode(spark2[1], unreachable=True)]
    monkeypatch.setattr(nodes, "cluster_nodes", lambda args: fakes)
    assert nodes.status(Namespace()) == 1
    out = capsys.readouterr().out
    rows = out.splitlines()[1:3]
    assert rows[0].split()[:3] == ["spark-1", "-", "no"] and rows[1].split()[:3] == ["spark-2", "-", "unreachable"]
    assert "spark-1: no report from /usr/local/lib/spark-cluster/serving_watch.py (python3: can't open file" in out
    assert "fix: deploy" in out and "spark-2: cannot reach its SSH endpoint; fix: check the node is up" in out


def test_logs_prefix_every_node_and_name_the_one_that_could_not_be_read(spark2, monkeypatch, capsys):
    fakes = [FakeNode(spark2[0], journal="2026-12-01T10:00:00+0000 [standin] API on 192.168.100.10:8000\n"
                                         "2026-12-01T10:00:01+0000 [standin] vllm rank 0 of 2\n"),
             FakeNode(spark2[1], unreachable=True)]
    monkeypatch.setattr(nodes, "cluster_nodes", lambda args: fakes)
    assert nodes.logs(Namespace(lines=5, follow=False, watcher=False)) == 1
    assert capsys.readouterr().out.splitlines() == [
        "spark-1 | 2026-12-01T10:00:00+0000 [standin] API on 192.168.100.10:8000",
        "spark-1 | 2026-12-01T10:00:01+0000 [standin] vllm rank 0 of 2",
        "spark-2 | cannot read the journal: spark-2: cannot reach its SSH endpoint; fix: check the node is up",
    ]
    assert fakes[0].asked == [
        "sudo journalctl -u spark-serving.service --no-pager --no-hostname -o short-iso -n 5"]
    nodes.logs(Namespace(lines=3, follow=False, watcher=True))
    assert fakes[0].asked[-1].startswith("sudo journalctl -u spark-serving-watch.service")


def test_the_journal_is_read_through_sudo_with_the_password_on_stdin_only():
    command = nodes.journal_command("spark-serving.service", 40, follow=True)
    assert command.endswith("-n 40 -f")
    wrapped = sudo_command(command, with_password=True)
    assert wrapped.startswith("sudo -S -p '' -- sh -c ") and "spark" not in wrapped.split("journalctl")[0][8:]


def test_smoke_runs_on_the_head_only_prints_its_figures_and_keeps_them(spark2, monkeypatch, capsys, tmp_path):
    answer = {"ok": True, "model": "m", "image": "spark-standin:0123456789ab", "concurrency": 4, "answer": "[stand-in] echo: hi",
              "single": {"requests": 1, "failed": 0, "tokens": 6, "seconds": 0.01, "tokens_per_s": 600.0},
              "concurrent": {"requests": 4, "failed": 0, "tokens": 24, "seconds": 0.02, "tokens_per_s": 1200.0}}

    class Head(FakeNode):
        def run_root(self, command, timeout=60):
            self.asked.append(command)
            return Result(command, 0, json.dumps(answer) + "\n", "")

    head, worker = Head(spark2[0]), Head(spark2[1])
    monkeypatch.setattr(nodes, "cluster_nodes", lambda args: [head, worker])
    assert nodes.smoke(Namespace(checkout=tmp_path)) == 0
    out = capsys.readouterr().out
    assert head.asked == ["/usr/bin/python3 /usr/local/lib/spark-cluster/serving_watch.py smoke 4 128"]
    assert worker.asked == [] and "single stream: 600.0 tokens/s" in out and "at concurrency 4: 1200.0" in out
    assert "stand-in engine" in out
    # The figures stay in the report, beside verify's.
    report = tmp_path / "reports" / "smoke.json"
    assert f"report: {report} (JSON)" in out
    kept = json.loads(report.read_text())
    assert kept["head"] == "spark-1" and kept["single"]["tokens_per_s"] == 600.0
    assert kept["concurrent"]["tokens_per_s"] == 1200.0 and kept["ok"] is True and kept["at"]
    answer.update(ok=False, error="1 of 5 timed requests failed: HTTP 503")
    assert nodes.smoke(Namespace(checkout=tmp_path)) == 1
    assert json.loads(report.read_text())["error"] == "1 of 5 timed requests failed: HTTP 503"


class FakeChannel:
    def __init__(self, chunks, stderr=b""):
        self.chunks, self.stderr, self.closed = list(chunks), stderr, False

    def recv(self, size):
        return self.chunks.pop(0) if self.chunks else b""

    def recv_stderr_ready(self):
        return bool(self.stderr)

    def recv_stderr(self, size):
        return self.stderr

    def close(self):
        self.closed = True


def test_follow_streams_every_node_line_by_line_behind_its_name(spark2, capsys):
    class Streaming(FakeNode):
        def __init__(self, spec, chunks, stderr=b""):
            super().__init__(spec)
            self.channel = FakeChannel(chunks, stderr)

        def start_root(self, command):
            self.asked.append("sudo " + command)
            return Namespace(channel=self.channel)

    head = Streaming(spark2[0], [b"10:00 engine up\n10:01 par", b"tial line\n"])
    worker = Streaming(spark2[1], [], stderr=b"sudo: a password is required\n")
    assert nodes.follow_logs([head, worker], nodes.journal_command("spark-serving.service", 5, True), 7) == 0
    unreachable = FakeNode(spark2[1], unreachable=True)
    unreachable.start_root = lambda command: unreachable._reach()
    assert nodes.follow_logs([unreachable], "journalctl -f", 7) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("spark-1")] == [
        "spark-1 | 10:00 engine up", "spark-1 | 10:01 partial line",
        "spark-1 | (journal stream ended: the node went away or rebooted)"]
    assert "spark-2 | sudo: a password is required" in out
    assert head.asked == ["sudo journalctl -u spark-serving.service --no-pager --no-hostname -o short-iso -n 5 -f"]
    assert "spark-2 | cannot read the journal: spark-2: cannot reach its SSH endpoint; fix: check the node is up" in out
    assert head.closed and worker.closed  # no SSH transport is left for the interpreter's exit to wait on


def test_ctrl_c_ends_following_closes_every_stream_and_exits_0(spark2, capsys):
    """A stream that never ends (journalctl -f) ends on SIGINT, however the main thread waits."""
    class Endless(FakeChannel):
        def __init__(self):
            super().__init__([b"10:00 engine up\n"])
            self.gone = threading.Event()

        def recv(self, size):
            if self.chunks:
                return self.chunks.pop(0)
            self.gone.wait(30)
            return b""

        def close(self):
            super().close()
            self.gone.set()

    class Following(FakeNode):
        def start_root(self, command):
            self.channel = Endless()
            return Namespace(channel=self.channel)

    followed = [Following(spec) for spec in spark2]
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup or in a background job
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    assert nodes.follow_logs(followed, "journalctl -f", 7) == 0
    assert time.monotonic() - started < 10
    assert all(node.channel.closed and node.closed for node in followed)
    assert signal.getsignal(signal.SIGINT) == before  # Ctrl-C does again what it did before
    assert "spark-1 | 10:00 engine up" in capsys.readouterr().out


def test_a_node_whose_admin_cannot_sudo_says_so_in_its_row(spark2, monkeypatch, capsys):
    from sparkverify.remote import SudoRefused

    class NoSudo(FakeNode):
        def run_root(self, command, timeout=60):
            raise SudoRefused(f"{self.name}: sudo refused nvidia (sudo: a password is required); fix: give the "
                              "password with --ask-sudo-password")

    monkeypatch.setattr(nodes, "cluster_nodes", lambda args: [NoSudo(spark2[0])])
    assert nodes.status(Namespace()) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:4] == ["spark-1", "-", "sudo", "refused"]
    assert "spark-1: sudo refused nvidia (sudo: a password is required); fix:" in out


def test_an_inventory_that_does_not_load_is_one_line_and_exit_2(capsys):
    args = Namespace(inventory="inventory/spark2.py", data=["api_listen"], group_data=[], sudo_password=None)
    assert nodes.status(args) == 2 and nodes.smoke(args) == 2
    assert nodes.logs(Namespace(**vars(args), lines=5, follow=False, watcher=False)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("spark-cluster: cannot load inventory inventory/spark2.py: --data 'api_listen': "
                             "expected KEY=VALUE") and len(err) == 3
    assert err[0].endswith("; fix: the inventory file, its group_data or a --data KEY=VALUE")


def test_the_stand_in_is_known_by_the_tag_roles_standin_gives_it():
    assert is_standin(standin_tag()) and not is_standin("vllm-ds4-sm121:latest") and not is_standin(None)
