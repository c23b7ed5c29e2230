"""The caches and serving roles' operations, generated offline against a fake
node whose facts follow the commands it receives: a first run converges it,
a second run must yield no command at all."""

import hashlib
import re
import shlex
from types import SimpleNamespace
from pathlib import Path

import pytest
from collect_ops import GROUP_DATA, changed, cluster, collect, converge
from pyinfra.api.command import FileUploadCommand, FunctionCommand

from roles import caches, distribute, serving, standin
from roles.serving import control, restart
from roles.serving.facts import UnitState
from spark_cluster.engine_image import standin_tag
from roles.serving.unit import unquote_exec_start
UNIT = "/etc/systemd/system/spark-serving.service"
ENV_FILE = "/etc/spark-cluster/serving.env"
WATCH_CONFIG = "/etc/spark-cluster/watch.json"
WATCH_PATH = "/usr/local/lib/spark-cluster/serving_watch.py"


class FakeNode:
    """Just enough of a node for the facts these roles read."""

    def __init__(self, images=None, runtimes=("io.containerd.runc.v2", "runc")):
        self.fs = {}  # path -> {"type", "mode", "user", "group", "sha1", "text"}
        self.images = dict(images or {})
        self.runtimes = list(runtimes)
        self.running, self.enabled = set(), set()
        self.groups = ["spark", "sudo"]
        self.peers = {}  # name -> FakeNode, for images loaded from a peer
        self.waits = []  # the readiness waits the deploy asked for (callback name, kwargs)
        # Texts that must never be readable by another local user, and every
        # moment (command, path, mode) one was.
        self.secrets, self.exposed = [], []

    def fact(self, cls, kwargs):
        name = cls.__name__
        if name == "UserAccount":
            return {"home": "/home/spark", "group": "spark"} if kwargs["user"] == "spark" else None
        if name == "Users":
            return {"spark": {"home": "/home/spark", "group": "spark", "groups": list(self.groups)}}
        if name == "Groups":
            return {"docker", "spark", "sudo"}
        if name in ("Os", "Which"):
            return {"Os": "Linux", "Which": "/usr/sbin/usermod"}[name]
        if name == "DebPackages":
            return {"rsync": ["3.4.1"]}
        if name == "ModelManifest":
            return None
        if name == "ModelListing":
            return {}
        if name == "CacheDirs":  # cold engine caches everywhere: none travels
            return {path: {"empty": True, "bytes": 0} for path in kwargs["paths"]}
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

    def write(self, path, text, user="root"):
        """A file's new content; a new file gets the login user's umask (0644), an old one keeps its mode."""
        entry = self.fs.setdefault(path, {"mode": 644, "user": user, "group": user})
        entry.update(type="file", sha1=hashlib.sha1(text.encode()).hexdigest(), text=text)

    def readable_by_others(self, path):
        """Other users can read `path`: it is o+r and every directory above it
        that the fake knows is o+x (unknown ones, /tmp, /etc, are)."""
        if not self.fs[path]["mode"] % 10 & 4:
            return False
        parent = str(Path(path).parent)
        while parent not in ("/", ""):
            if parent in self.fs and not self.fs[parent]["mode"] % 10 & 1:
                return False
            parent = str(Path(parent).parent)
        return True

    def run(self, command):
        self.execute(command)
        for path, entry in self.fs.items():
            if any(secret in entry.get("text", "") for secret in self.secrets) and self.readable_by_others(path):
                self.exposed.append((str(command)[:80], path, entry["mode"]))

    def run_check_point(self):
        """A moment between two steps of one command, checked like the end of a command."""
        self.run("(between steps)")

    def image_relay(self, function, image, source, source_address, home, chain=()):
        """roles/distribute/image.py's callbacks: the chain's first receiver loads the
        source's image on every receiver (files/image_relay.py, tested on its own in
        test_distribute_image.py); each receiver's check finds the source's id."""
        name = next(name for name, node in self.peers.items() if node is self)
        if function == "relay_image":
            if chain and chain[0][0] == name:
                for receiver, _ in chain:
                    self.peers[receiver].images[image] = self.peers[source].images[image]
        else:
            assert self.images.get(image) == self.peers[source].images[image], (name, image)

    def execute(self, command):
        if command == "(between steps)":
            return
        if isinstance(command, FunctionCommand):
            if command.function.__name__ in ("relay_image", "check_image"):
                self.image_relay(command.function.__name__, **command.kwargs)
                return
            self.waits.append((command.function.__name__, command.kwargs))
            return
        if isinstance(command, FileUploadCommand):
            src = command.src
            text = (src.getvalue().encode() if hasattr(src, "getvalue") else Path(src).read_bytes()).decode()
            if command.connector_arguments.get("_sudo", True):
                # pyinfra under sudo: SFTP to /tmp/pyinfra-<sha1 of dest> as the
                # login user, `cp` over the destination, remove the temporary file.
                temp = f"/tmp/pyinfra-{hashlib.sha1(command.dest.encode()).hexdigest()}"
                self.write(temp, text, user="spark")
                self.run_check_point()
                self.write(command.dest, text)
                del self.fs[temp]
            else:
                self.write(command.dest, text, user="spark")
            return
        words = shlex.split(str(command))
        if words[:2] == ["sh", "-c"] and words[3] == "install_private.sh":
            # files/install_private.sh STAGE DEST OWNER GROUP MODE (tested on its own in test_private_file.py)
            stage, dest, owner, group, mode = words[4:]
            self.fs[dest] = {**self.fs[f"{stage}/upload"], "mode": int(mode), "user": owner, "group": group}
            for path in [path for path in self.fs if path == stage or path.startswith(stage + "/")]:
                del self.fs[path]
        elif words[:2] == ["mkdir", "-m"]:
            self.fs[words[3]] = {"type": "dir", "mode": int(words[2]), "user": "spark", "group": "spark"}
        elif words[:2] == ["mkdir", "-p"]:
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
            elif words[1] == "stop":
                self.running.discard(words[2])
            elif words[1] == "enable":
                self.enabled.add(words[2])
        elif words[:3] == ["usermod", "-a", "-G"]:
            self.groups += words[3].split(",")
        elif "build_standin.py" in " ".join(words):
            # docker import stamps a creation time: every build has its own id.
            self.images[words[words.index("--tag") + 1]] = f"sha256:built-{id(self):x}"
        else:
            raise AssertionError(f"unexpected command {words}")


def deploy(hosts, nodes, monkeypatch):
    """Prepare and 'execute' every role from caches to serving on fake nodes."""
    for node in nodes.values():
        node.peers = nodes
    return converge(hosts, nodes, monkeypatch, (caches, standin, distribute, serving))


@pytest.mark.parametrize("count", [2, 4])
def test_lab_converges_then_a_second_run_changes_nothing(count, monkeypatch):
    hosts = cluster(count, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    first = deploy(hosts, nodes, monkeypatch)
    for name, node in nodes.items():
        assert changed(first[name])
        assert node.images[standin_tag()] == nodes["spark-1"].images[standin_tag()]  # the head's, loaded
        assert node.fs[ENV_FILE]["mode"] == 600 and node.fs[ENV_FILE]["user"] == "root"
        assert node.fs[UNIT]["mode"] == 644
        assert node.fs["/home/spark/.cache/huggingface"]["user"] == "spark"
        assert node.fs["/home/spark/.cache/spark-cluster/tilelang"]["mode"] == 755
        assert "spark-serving.service" in node.running and "spark-serving.service" in node.enabled
        assert "spark-serving-watch.service" in node.running and "spark-serving-watch.service" in node.enabled
        assert node.fs[WATCH_CONFIG]["mode"] == 644 and node.fs["/usr/local/lib/spark-cluster/serving_watch.py"]["mode"] == 755
        assert "--gpus" not in node.fs[UNIT]["text"]
        assert standin_tag() in node.fs[UNIT]["text"]
        # The run started the engine: it ends only once the cluster answers.
        assert node.waits == [("wait_until_serving", {"timeout_s": 1800, "watch_path": WATCH_PATH})]
    second = deploy(hosts, nodes, monkeypatch)
    for name, node in nodes.items():
        assert changed(second[name]) == [], name
        assert len(node.waits) == 1, name  # a run that changed nothing does not wait


def test_a_stopped_service_is_started_without_a_restart(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    deploy(hosts, nodes, monkeypatch)
    nodes["spark-2"].running.clear()
    result = deploy(hosts, nodes, monkeypatch)
    # Only the worker starts what stopped; then every node waits for the
    # cluster to answer (the head shows its phase too, and its log if the
    # cluster never answers).
    head_commands = [c for _, cs in changed(result["spark-1"]) for c in cs]
    assert len(head_commands) == 1 and "wait_until_serving" in head_commands[0]
    assert [c for _, cs in changed(result["spark-2"]) for c in cs][:2] == [
        "systemctl start spark-serving.service", "systemctl start spark-serving-watch.service"]
    assert len(nodes["spark-2"].waits) == 2 and len(nodes["spark-1"].waits) == 2


def test_the_wait_can_be_turned_off(monkeypatch):
    hosts = cluster(2, serving_standin=True, serving_wait_ready=False)
    nodes = {name: FakeNode() for name, _ in hosts}
    deploy(hosts, nodes, monkeypatch)
    assert all(node.waits == [] and "spark-serving.service" in node.running for node in nodes.values())


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


def _recorded(monkeypatch, count=4, running=("spark-serving.service", "spark-serving-watch.service")):
    """A cluster whose fake nodes record (node, command) in the order they ran them."""
    hosts = cluster(count, serving_standin=True)
    nodes = {name: FakeNode() for name, _ in hosts}
    sequence = []
    for name, node in nodes.items():
        node.running = set(running)
        node.name = name
    monkeypatch.setattr(FakeNode, "run", lambda self, command, run=FakeNode.run: (
        sequence.append((self.name, str(command))), run(self, command))[1])
    return hosts, nodes, sequence


def _unit_steps(sequence):
    """[(node, verb, unit)] of the systemctl start/stop commands, in run order."""
    steps = []
    for name, command in sequence:
        words = command.split()
        if words[:1] == ["systemctl"] and words[1] in ("start", "stop", "restart"):
            steps.append((name, words[1], words[2]))
    return steps


def test_a_clean_restart_stops_everywhere_then_starts_workers_before_the_head(monkeypatch):
    hosts, nodes, sequence = _recorded(monkeypatch)
    result = converge(hosts, nodes, monkeypatch, (restart,))
    for name, steps in result.items():
        commands = [str(c) for _, cs in steps for c in cs]
        assert commands[:4] == ["systemctl stop spark-serving-watch.service", "systemctl stop spark-serving.service",
                                "systemctl start spark-serving.service",
                                "systemctl start spark-serving-watch.service"], name
        assert nodes[name].waits == [("wait_until_serving", {"timeout_s": 1800, "watch_path": WATCH_PATH})]
        assert {"spark-serving.service", "spark-serving-watch.service"} <= nodes[name].running
    # Every node stops before any starts; the workers start before the head.
    serving = [(name, verb) for name, verb, unit in _unit_steps(sequence) if unit == "spark-serving.service"]
    assert [verb for _, verb in serving] == ["stop"] * 4 + ["start"] * 4
    assert [name for name, verb in serving if verb == "start"][-1] == "spark-1"


def test_stop_stops_every_watcher_before_any_engine_and_leaves_the_units_enabled(monkeypatch):
    hosts, nodes, sequence = _recorded(monkeypatch)
    for node in nodes.values():
        node.enabled = {"spark-serving.service", "spark-serving-watch.service"}
    converge(hosts, nodes, monkeypatch, (SimpleNamespace(apply=control.stop, wants=control.wants),))
    steps = _unit_steps(sequence)
    assert [(verb, unit) for _, verb, unit in steps] == \
        [("stop", "spark-serving-watch.service")] * 4 + [("stop", "spark-serving.service")] * 4
    assert {name for name, _, _ in steps} == set(nodes)
    for node in nodes.values():
        assert node.running == set() and node.waits == []
        assert node.enabled == {"spark-serving.service", "spark-serving-watch.service"}
    # A second stop changes nothing.
    sequence.clear()
    converge(hosts, nodes, monkeypatch, (SimpleNamespace(apply=control.stop, wants=control.wants),))
    assert _unit_steps(sequence) == []


def test_start_after_stop_starts_workers_then_the_head_then_the_watchers_and_waits(monkeypatch):
    hosts, nodes, sequence = _recorded(monkeypatch, running=())
    converge(hosts, nodes, monkeypatch, (SimpleNamespace(apply=control.start, wants=control.wants),))
    steps = _unit_steps(sequence)
    engines = [name for name, verb, unit in steps if unit == "spark-serving.service"]
    assert engines[-1] == "spark-1" and sorted(engines[:-1]) == ["spark-2", "spark-3", "spark-4"]
    last_engine = max(i for i, (_, _, unit) in enumerate(steps) if unit == "spark-serving.service")
    watchers = [i for i, (_, _, unit) in enumerate(steps) if unit == "spark-serving-watch.service"]
    assert len(watchers) == 4 and min(watchers) > last_engine
    assert all(verb == "start" for _, verb, _ in steps)
    for node in nodes.values():
        assert node.waits == [("wait_until_serving", {"timeout_s": 1800, "watch_path": WATCH_PATH})]


@pytest.mark.parametrize("nodes, head, worker", [("workers", False, True), ("head", True, False), ("all", True, True)])
def test_each_start_step_runs_on_the_nodes_it_names(nodes, head, worker):
    assert (control.applies(nodes, True), control.applies(nodes, False)) == (head, worker)


@pytest.mark.parametrize("words, state", [
    (["active", "enabled"], {"active": True, "enabled": True}),
    (["activating", "enabled"], {"active": True, "enabled": True}),  # the watcher just restarted it
    (["failed", "enabled"], {"active": False, "enabled": True}),
    (["inactive", "disabled"], {"active": False, "enabled": False}),
    ([], {"active": False, "enabled": False}),
])
def test_a_unit_systemd_is_bringing_up_is_not_started_again(words, state):
    assert UnitState().process(words) == state


API_KEY = "sk-spark-test-0123456789abcdef"


def converge_with_a_key(tmp_path, monkeypatch):
    key_file = tmp_path / "api_key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o600)
    hosts = cluster(2, serving_standin=True, serving_api_key_file=str(key_file))
    nodes = {name: FakeNode() for name, _ in hosts}
    for node in nodes.values():
        node.secrets = [API_KEY]
    deploy(hosts, nodes, monkeypatch)
    return nodes


def test_no_file_that_holds_a_secret_is_readable_by_others_even_for_a_moment(tmp_path, monkeypatch):
    """Every command the roles emit is applied to the fake node and, after it
    (and between the steps of an upload), every file holding the API key must
    be unreadable to other users: serving.env is staged in a 0700 directory
    and lands with mode 0600 from its first byte."""
    nodes = converge_with_a_key(tmp_path, monkeypatch)
    for node in nodes.values():
        assert API_KEY in node.fs[ENV_FILE]["text"] and node.fs[ENV_FILE]["mode"] == 600
        assert node.exposed == []
        assert not [path for path in node.fs if path.startswith("/tmp/")]  # no stage left behind


def test_the_exposure_check_catches_pyinfras_own_put(tmp_path, monkeypatch):
    """The same converge through files.put (staged 0644 under /tmp, 0644 at the
    destination until its chmod): the check above can fail."""
    monkeypatch.setattr("spark_cluster.file_state.is_private", lambda mode: False)
    nodes = converge_with_a_key(tmp_path, monkeypatch)
    exposed = {path for node in nodes.values() for _, path, _ in node.exposed}
    assert ENV_FILE in exposed and any(path.startswith("/tmp/pyinfra-") for path in exposed)
