"""The caches and serving roles' operations, generated offline against a fake
node whose facts follow the commands it receives: a first run converges it,
a second run must yield no command at all."""

import hashlib
import re
import runpy
import shlex
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state

from roles import caches, serving, standin
from roles.serving.standin import standin_tag
from roles.serving.unit import unquote_exec_start
from spark_cluster.inventory import define_cluster

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = {k: v for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items() if not k.startswith("_")}
UNIT = "/etc/systemd/system/spark-serving.service"
ENV_FILE = "/etc/spark-cluster/serving.env"


class FakeNode:
    """Just enough of a node for the facts these roles read."""

    def __init__(self, images=None, runtimes=("io.containerd.runc.v2", "runc")):
        self.fs = {}  # path -> {"type", "mode", "user", "group", "sha1", "text"}
        self.images = dict(images or {})
        self.runtimes = list(runtimes)
        self.running, self.enabled = set(), set()

    def fact(self, cls, kwargs):
        name = cls.__name__
        if name == "UserAccount":
            return {"home": "/home/spark", "group": "spark"} if kwargs["user"] == "spark" else None
        if name == "DockerImageId":
            return self.images.get(kwargs["image"])
        if name == "DockerRuntimes":
            return list(self.runtimes)
        if name == "SystemdStatus":
            return {s: s in self.running for s in kwargs["services"]}
        if name == "SystemdEnabled":
            return {s: s in self.enabled for s in kwargs["services"]}
        if name == "TmpDir":
            return "/tmp"
        if name in ("File", "Directory"):
            entry = self.fs.get(kwargs["path"])
            wanted = "file" if name == "File" else "dir"
            if not entry or entry["type"] != wanted:
                return None
            return {key: entry[key] for key in ("mode", "user", "group")}
        if name == "Sha1File":
            entry = self.fs.get(kwargs["path"])
            return entry and entry.get("sha1")
        if name in ("Md5File", "Sha256File", "FileContents"):
            return None
        raise AssertionError(f"unexpected fact {name} {kwargs}")

    def run(self, command):
        if isinstance(command, FileUploadCommand):
            src = command.src
            data = src.getvalue().encode() if hasattr(src, "getvalue") else Path(src).read_bytes()
            entry = self.fs.setdefault(command.dest, {"mode": 644, "user": "root", "group": "root"})
            entry.update(type="file", sha1=hashlib.sha1(data).hexdigest(), text=data.decode())
            return
        words = shlex.split(str(command))
        if words[:2] == ["mkdir", "-p"]:
            path = words[2]
            while path not in ("/", ""):
                self.fs.setdefault(path, {"type": "dir", "mode": 755, "user": "root", "group": "root"})
                path = str(Path(path).parent)
        elif words[0] == "chmod":
            self.fs[words[-1]]["mode"] = int(words[1])
        elif words[0] == "chown":
            user, _, group = words[1].partition(":")
            self.fs[words[-1]].update(user=user, group=group or self.fs[words[-1]]["group"])
        elif words[0] == "systemctl":
            if words[1] in ("start", "restart"):
                self.running.add(words[2])
            elif words[1] == "enable":
                self.enabled.add(words[2])
        elif "build_standin.py" in " ".join(words):
            self.images[words[words.index("--tag") + 1]] = "sha256:standin"
        else:
            raise AssertionError(f"unexpected command {words}")


def cluster(count=2, **overrides):
    return define_cluster(
        [{"name": f"spark-{i}", "ssh_hostname": "127.0.0.1", "ssh_port": 2200 + i, "ssh_user": "spark",
          "qsfp_address": f"10.0.0.{i}/24"} for i in range(1, count + 1)],
        **overrides,
    )


def deploy(hosts, nodes, monkeypatch):
    """Prepare and 'execute' caches + serving; returns host name -> [(op name, [commands])]."""
    monkeypatch.setattr(Host, "get_fact", lambda self, cls, *a, **kw: nodes[self.name].fact(cls, kw))
    inventory = Inventory((hosts, dict(GROUP_DATA)))
    state = State(inventory, Config(SUDO=True))
    for host in inventory:
        state.activate_host(host)
    add_deploy(state, caches.apply)
    add_deploy(state, standin.apply)
    add_deploy(state, serving.apply)
    state.is_executing = True  # from here on, `_if` conditions are evaluated
    results = {}
    for host in inventory:
        results[host.name] = []
        for op_hash in state.get_op_order():
            if op_hash not in state.ops[host]:  # an op only other hosts run
                continue
            op_data = state.get_op_data_for_host(host, op_hash)
            with ctx_state.use(state), ctx_host.use(host):
                commands = list(op_data.command_generator())
            for command in commands:
                nodes[host.name].run(command)
            op_data.operation_meta.set_complete(True, commands, CommandOutput([]))
            results[host.name].append((sorted(state.op_meta[op_hash].names)[0], commands))
    return results


def changed(result):
    return [(name, [str(c) for c in commands]) for name, commands in result if commands]


@pytest.mark.parametrize("count", [2, 4])
def test_lab_converges_then_a_second_run_changes_nothing(count, monkeypatch):
    hosts = cluster(count, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    first = deploy(hosts, nodes, monkeypatch)
    for name, node in nodes.items():
        assert changed(first[name])
        assert standin_tag() in node.images
        assert node.fs[ENV_FILE]["mode"] == 600 and node.fs[ENV_FILE]["user"] == "root"
        assert node.fs[UNIT]["mode"] == 644
        assert node.fs["/home/spark/.cache/huggingface"]["user"] == "spark"
        assert node.fs["/home/spark/.cache/spark-cluster/tilelang"]["mode"] == 755
        assert "spark-serving.service" in node.running and "spark-serving.service" in node.enabled
        assert "--gpus" not in node.fs[UNIT]["text"]
        assert standin_tag() in node.fs[UNIT]["text"]
    second = deploy(hosts, nodes, monkeypatch)
    for name in nodes:
        assert changed(second[name]) == [], name


def test_a_stopped_service_is_started_without_a_restart(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    deploy(hosts, nodes, monkeypatch)
    nodes["spark-2"].running.clear()
    result = deploy(hosts, nodes, monkeypatch)
    assert changed(result["spark-1"]) == []
    assert [c for _, cs in changed(result["spark-2"]) for c in cs] == ["systemctl start spark-serving.service"]


def test_a_changed_env_file_restarts_after_daemon_reload(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    deploy(hosts, nodes, monkeypatch)
    nodes["spark-1"].fs[ENV_FILE]["sha1"] = "edited-by-hand"
    commands = [c for _, cs in changed(deploy(hosts, nodes, monkeypatch)["spark-1"]) for c in cs]
    assert "systemctl daemon-reload" in commands and "systemctl restart spark-serving.service" in commands


def test_real_spark_without_the_image_fails_only_with_a_clear_message(monkeypatch):
    # Image distribution is off: a worker without the image cannot get it from the head.
    hosts = cluster(2, distribute_image=False)
    nodes = {"spark-1": FakeNode(images={"vllm-ds4-sm121:latest": "sha256:1"}), "spark-2": FakeNode()}
    monkeypatch.setattr(FakeNode, "run", lambda self, command: None)
    result = deploy(hosts, nodes, monkeypatch)
    serving_ops = [(name, cs) for name, cs in changed(result["spark-2"]) if name.startswith("serving")]
    assert len(serving_ops) == 1
    (command,) = serving_ops[0][1]
    assert "image vllm-ds4-sm121:latest is on no node of this cluster" in command
    assert command.endswith("exit 1; }")
    assert any(UNIT in " ".join(cs) for name, cs in changed(result["spark-1"]))


def test_real_spark_runs_the_group_data_image_with_gpus_when_nvidia_is_registered(monkeypatch):
    hosts = cluster(2)
    nodes = {name: FakeNode(images={"vllm-ds4-sm121:latest": "sha256:1"},
                            runtimes=("nvidia", "runc")) for name, _ in hosts}
    first = deploy(hosts, nodes, monkeypatch)
    assert not any("build_standin" in c for _, cs in changed(first["spark-1"]) for c in cs)
    unit_text = nodes["spark-2"].fs[UNIT]["text"]
    (exec_start,) = re.findall(r"^ExecStart=(.*?)(?=^\w+=)", unit_text, re.S | re.M)
    argv = unquote_exec_start(exec_start)
    assert argv[argv.index("--gpus") + 1] == "all"
    assert argv[argv.index("vllm-ds4-sm121:latest") + 1] == GROUP_DATA["serving_model"]
    assert "--headless" in argv
    assert nodes["spark-2"].fs["/etc/spark-cluster/serving-image"]["text"] == "vllm-ds4-sm121:latest sha256:1\n"
    # A new image loaded under the same tag restarts the engine.
    for node in nodes.values():
        node.images["vllm-ds4-sm121:latest"] = "sha256:2"
    commands = [c for _, cs in changed(deploy(hosts, nodes, monkeypatch)["spark-1"]) for c in cs]
    assert "systemctl restart spark-serving.service" in commands
