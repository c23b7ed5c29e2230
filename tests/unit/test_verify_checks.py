"""The per-node checks against a simulated node: a converged node passes every
check, and each breakage the lab tier applies fails exactly the check named
for it, with a message that says expected / found / fix."""

from __future__ import annotations

import copy
import importlib.util
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _pytest.outcomes import Failed, Skipped

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "tests" / "verify"
sys.path.insert(0, str(VERIFY))

from sparkverify import expect  # noqa: E402
from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.parse import ipv4_mapped_gid  # noqa: E402
from sparkverify.remote import Node, Result  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(f"verify_{name}", VERIFY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _load("test_node")


@dataclass
class FakeFile:
    content_string: str = ""
    mode: int = 0o644
    user: str = "root"
    is_directory: bool = False
    exists: bool = True


MISSING = FakeFile(exists=False)


@dataclass
class NodeState:
    """What a converged node shows; tests break one thing at a time."""

    name: str
    ip: str
    admin: str = "nvidia"
    files: dict = field(default_factory=dict)
    bond_addresses: list = field(default_factory=list)
    docker_show: dict = field(default_factory=dict)
    unit_enabled: str = "enabled"
    unit_active: str = "active"
    container_running: bool = True
    container_env: dict = field(default_factory=dict)
    mounts: list = field(default_factory=list)

    @property
    def home(self):
        return f"/home/{self.admin}"

    def answer(self, command: str) -> Result:
        def ok(out=""):
            return Result(command, 0, out, "")

        def fail(err="", rc=1):
            return Result(command, rc, "", err)

        argv = shlex.split(command)
        if argv[0] == "cat":
            file = self.files.get(argv[1], MISSING)
            return ok(file.content_string) if file.exists else fail(f"cat: {argv[1]}: No such file or directory")
        if command == "ip -j addr show dev bond0":
            return ok(json.dumps([{"ifname": "bond0", "flags": ["UP", "LOWER_UP"], "operstate": "UP", "mtu": 9000,
                                   "addr_info": [{"family": "inet", "local": a, "prefixlen": p}
                                                 for a, p in self.bond_addresses]}]))
        if command == "ls /dev/infiniband":
            return ok("rdma_cm\nuverbs0\nuverbs1\n")
        if command.startswith("test -e "):
            file = self.files.get(argv[2], MISSING)
            return ok(file.content_string) if file.exists else fail()
        if command == "command -v nvidia-smi":
            return fail()
        if command.startswith("getent passwd"):
            return ok(f"{self.admin}:x:1000:1000::{self.home}:/bin/bash\n")
        if command.startswith("systemctl show docker"):
            return ok("".join(f"{k}={v}\n" for k, v in self.docker_show.items()))
        if command == f"systemctl is-enabled {expect.SERVING_UNIT}":
            return ok(self.unit_enabled + "\n") if self.unit_enabled == "enabled" else fail(self.unit_enabled)
        if command == f"systemctl is-active {expect.SERVING_UNIT}":
            return ok("active\n") if self.unit_active == "active" else Result(command, 3, self.unit_active + "\n", "")
        if command.startswith("ssh-keygen -y -f"):
            return ok(self.files[argv[3] + ".pub"].content_string)
        if command.startswith("docker "):
            return self.docker(command, argv, ok, fail)
        return fail(f"not simulated: {command}", rc=127)

    def docker(self, command, argv, ok, fail):
        if not self.container_running:
            return fail("Error response from daemon: No such container: spark-serving")
        if "{{.State.Status}}" in command:
            return ok("running\n")
        if "{{.State.Running}}" in command:
            return ok("true\n")
        if "{{json .Mounts}}" in command:
            return ok(json.dumps([{"Type": "bind", "Source": s, "Destination": d, "RW": True} for s, d in self.mounts]))
        code = argv[-1]
        if "/proc/self/mountinfo" in code:
            return ok("".join(f"40 30 8:1 {s} {d} rw - ext4 /dev/vda1 rw\n" for s, d in self.mounts))
        if "os.environ" in code:
            return ok(json.dumps(self.container_env))
        if "RLIMIT_MEMLOCK" in code:
            return ok("(-1, -1)\n")
        if "listdir" in code:
            return ok(json.dumps(["rdma_cm", "uverbs0"]))
        return fail(f"not simulated: {command}", rc=127)


def converged(name: str, ip: str, members: list[tuple[str, str]]) -> NodeState:
    state = NodeState(name, ip, bond_addresses=[(ip, 24)])
    home, gid = state.home, ipv4_mapped_gid(ip)
    roce = "NCCL_IB_HCA=rocep1s0f0\nNCCL_IB_GID_INDEX=1\n"
    env = {key: "bond0" for key in expect.INTERFACE_VARIABLES}
    env.update(VLLM_HOST_IP=ip, NCCL_IB_DISABLE="0", NCCL_IB_HCA="rocep1s0f0", NCCL_IB_GID_INDEX="1",
               HF_HOME=expect.hf_cache_dir(home))
    ib = "/sys/class/infiniband/rocep1s0f0/ports/1"
    dropin = "/etc/systemd/system/docker.service.d/90-spark-cluster-memlock.conf"
    hostkeys = {n: f"ssh-ed25519 HOSTKEY{n[-1]} root@{n}\n" for n, _ in members}
    state.files.update({
        "/sys/class/net/bond0/bonding/slaves": FakeFile("enp1s0f0np0 enp1s0f1np1\n"),
        "/sys/class/net/enp1s0f0np0/mtu": FakeFile("9000\n"),
        "/sys/class/net/enp1s0f1np1/mtu": FakeFile("9000\n"),
        expect.ROCE_ENV: FakeFile(roce, 0o600),
        f"{ib}/state": FakeFile("4: ACTIVE\n"),
        f"{ib}/gid_attrs/types/1": FakeFile("RoCE v2\n"),
        f"{ib}/gids/1": FakeFile(gid + "\n"),
        expect.LIMITS_FILE: FakeFile("* soft memlock unlimited\n* hard memlock unlimited\n"),
        dropin: FakeFile("[Service]\nLimitMEMLOCK=infinity\n"),
        "/proc/812/limits": FakeFile("Max locked memory         unlimited            unlimited            bytes\n"),
        expect.SERVING_ENV: FakeFile("".join(f"{k}={v}\n" for k, v in env.items() if "NCCL_IB_" not in k or k == "NCCL_IB_DISABLE"), 0o600),
        f"{home}/{expect.CLUSTER_KEY}": FakeFile("PRIVATE", 0o600, state.admin),
        f"{home}/{expect.CLUSTER_KEY}.pub": FakeFile("ssh-ed25519 CLUSTERKEY spark-cluster\n", 0o644, state.admin),
        "/etc/ssh/ssh_host_ed25519_key.pub": FakeFile(hostkeys[name]),
        expect.KNOWN_HOSTS: FakeFile("".join(f"{n},{a} {hostkeys[n].split()[0]} {hostkeys[n].split()[1]}\n" for n, a in members)),
    })
    for path in [*expect.host_cache_dirs(home).values(), expect.hf_cache_dir(home)]:
        state.files[path] = FakeFile(mode=0o755, user=state.admin, is_directory=True)
    state.docker_show = {"LimitMEMLOCK": "infinity", "DropInPaths": dropin, "MainPID": "812"}
    state.container_env = env
    state.mounts = [(expect.host_cache_dirs(home)[n], p) for n, p in expect.ENGINE_CACHES.items()]
    state.mounts.append((expect.hf_cache_dir(home), expect.hf_cache_dir(home)))
    return state


class FakeNode(Node):
    def __init__(self, spec, state):
        super().__init__(spec, REPO)
        self.state = state

    def client(self):
        raise AssertionError("a simulated node never connects")

    def run(self, command, timeout=60):
        return self.state.answer(command)

    run_root = run

    def file(self, path):
        return self.state.files.get(path, MISSING)


class FakeCluster:
    def __init__(self, nodes):
        self._nodes = nodes
        self.specs = [n.spec for n in nodes.values()]

    def node(self, name):
        return self._nodes[name]

    @property
    def head(self):
        return self._nodes[self.specs[0].name]


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")
    specs = load_cluster("inventory/spark2.py", REPO)
    members = [(s.name, s.qsfp_ip) for s in specs]
    nodes = {s.name: FakeNode(s, converged(s.name, s.qsfp_ip, members)) for s in specs}
    return FakeCluster(nodes)


NODE_CHECKS = ["bond", "roce_gid", "memlock", "infiniband", "drm_override", "caches", "hf_cache", "env_file",
               "container_env", "serving_unit", "ssh_key", "known_hosts"]


def run_check(name, cluster, node_name="spark-2"):
    function = getattr(checks, f"test_{name}")
    node = cluster.node(node_name)
    args = {"node": node, "cluster": cluster}
    wanted = function.__code__.co_varnames[: function.__code__.co_argcount]
    function(**{k: args[k] for k in wanted})


def failures(cluster, node_name="spark-2") -> dict[str, str]:
    found = {}
    for name in NODE_CHECKS:
        try:
            run_check(name, cluster, node_name)
        except Failed as error:
            found[name] = str(error)
    return found


def test_converged_node_passes_every_check(lab):
    assert failures(lab) == {}
    with pytest.raises(Skipped, match="no NVIDIA driver on this host"):
        run_check("gpu_memory", lab)


def worker(lab) -> NodeState:
    return lab.node("spark-2").state


BREAKAGES = {
    "bond": (lambda s: s.bond_addresses.clear(), "bond0 IPv4: expected 10.0.0.2/24, found no address"),
    "drm_override": (lambda s: s.files.__setitem__(expect.DRM_OVERRIDE, FakeFile("options nvidia-drm modeset=1")),
                     "CUDA will see ~62 GB"),
    "env_file": (lambda s: setattr(s.files[expect.SERVING_ENV], "mode", 0o644),
                 "expected mode 0600 owner root, found mode 0644 owner root"),
    "memlock": (lambda s: s.docker_show.update(LimitMEMLOCK="8388608", DropInPaths=""),
                "docker.service LimitMEMLOCK: expected infinity, found 8388608"),
}


@pytest.mark.parametrize("check", sorted(BREAKAGES))
def test_each_breakage_fails_its_check_with_expected_found_and_fix(lab, check):
    breakage, text = BREAKAGES[check]
    breakage(worker(lab))
    found = failures(lab)
    assert check in found, found
    assert text in found[check] and "fix:" in found[check] and found[check].startswith("spark-2: ")
    assert failures(lab, "spark-1") == {} or check in ("known_hosts",)


def test_stopped_serving_fails_the_unit_and_the_container_checks(lab):
    state = worker(lab)
    state.unit_active, state.container_running = "inactive", False
    found = failures(lab)
    assert {"serving_unit", "container_env", "memlock", "infiniband", "caches", "hf_cache", "roce_gid"} <= set(found)
    assert "expected active, found inactive" in found["serving_unit"]
    assert {"bond", "env_file", "drm_override"}.isdisjoint(found)


def test_a_gid_index_that_is_not_roce_v2_names_the_seed(lab):
    ib = "/sys/class/infiniband/rocep1s0f0/ports/1"
    worker(lab).files[f"{ib}/gid_attrs/types/1"] = FakeFile("IB/RoCE v1\n")
    assert "expected RoCE v2, found IB/RoCE v1" in failures(lab)["roce_gid"]


def test_stale_container_values_are_caught(lab):
    worker(lab).container_env["NCCL_IB_GID_INDEX"] = "3"
    assert "container NCCL_IB_GID_INDEX: expected 1" in failures(lab)["roce_gid"]


def test_hf_cache_mounted_elsewhere_says_invalid_repository_id(lab):
    state = worker(lab)
    hf = expect.hf_cache_dir(state.home)
    state.mounts = [(s, "/root/.cache/huggingface" if s == hf else d) for s, d in state.mounts]
    message = failures(lab)["hf_cache"]
    assert "found -> /root/.cache/huggingface" in message and "invalid repository ID" in message


def test_cache_dir_with_wrong_owner(lab):
    state = worker(lab)
    path = expect.host_cache_dirs(state.home)["triton"]
    state.files[path] = FakeFile(mode=0o700, user="root", is_directory=True)
    assert f"{path}: expected owner nvidia mode 0755, found owner root mode 0700" in failures(lab)["caches"]


def test_a_reinstalled_peer_makes_known_hosts_stale(lab):
    lab.node("spark-1").state.files["/etc/ssh/ssh_host_ed25519_key.pub"] = FakeFile("ssh-ed25519 NEWKEY root@spark-1\n")
    message = failures(lab)["known_hosts"]
    assert "entry for spark-1" in message and "entry for 10.0.0.1" in message and "stale key" in message


def test_interface_variables_pinned_in_the_env_file(lab):
    state = worker(lab)
    state.files[expect.SERVING_ENV] = FakeFile(
        copy.copy(state.files[expect.SERVING_ENV].content_string).replace("GLOO_SOCKET_IFNAME=bond0", "GLOO_SOCKET_IFNAME=lo"), 0o600)
    assert "GLOO_SOCKET_IFNAME: expected bond0, found lo" in failures(lab)["env_file"]


peers = _load("test_peers")


def test_endpoint_probe_verdicts():
    assert peers.endpoint_problems({"health": 200, "models": ["deepseek-v4-flash"]}, "deepseek-v4-flash") == []
    assert [p[0] for p in peers.endpoint_problems({"health": 503, "models": []}, None)] == ["/health", "/v1/models"]
    wrong = peers.endpoint_problems({"health": 200, "models": ["other"]}, "deepseek-v4-flash")
    assert wrong == [("/v1/models", "model id deepseek-v4-flash", ["other"])]
    refused = peers.endpoint_problems({"health_error": "URLError(ConnectionRefused)", "models_error": "URLError"}, None)
    assert refused[0][2].startswith("URLError")


@pytest.mark.parametrize("stderr, hint", [
    ("Host key verification failed.", "known_hosts"),
    ("spark@10.0.0.2: Permission denied (publickey).", "authorized_keys"),
    ("ssh: Could not resolve hostname spark-9: Name or service not known", "~/.ssh/config"),
    ("ssh: connect to host 10.0.0.2 port 22: Connection timed out", "QSFP link"),
])
def test_ssh_failures_point_at_the_cause(stderr, hint):
    assert hint in peers.ssh_diagnosis(stderr)
