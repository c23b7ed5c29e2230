"""The per-node checks against a simulated node: a converged node -- built
from what the roles render for the inventory, not from the constants the
checks read -- passes every check, and each breakage fails exactly the checks
named for it, with a message that says expected / found / fix."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from _pytest.outcomes import Failed, Skipped
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from testinfra.backend.base import BaseBackend
from testinfra.host import Host

from spark_cluster.schema import DEFAULTS as SETTING_DEFAULTS
from roles.network.netplan import render_netplan
from roles.network.settings import network_settings
from roles.rdma import DOCKER_MEMLOCK_DROPIN, FILES as RDMA_FILES, MEMLOCK_FILES
from roles.rdma.facts import DETECTOR_SOURCE
from roles.serving import defaults as serving_defaults
from roles.serving.desired import desired_serving, serving_settings
from roles.serving.unit import unquote_exec_start
from roles.ssh.render import known_hosts_text
from spark_cluster.caches import engine_cache_dirs, hf_home
from spark_cluster.cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS
from spark_cluster.engine_image import image_of
from spark_cluster.fabric import PORT_HALVES

# DGX OS's names: the RDMA device of each QSFP netdev (one per PCIe half).
QSFP_DEVICES = {netdev: device for halves in PORT_HALVES.values() for netdev, device in halves}

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "tests" / "verify"

from sparkverify import expect  # noqa: E402
from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.remote import Node, Result  # noqa: E402
from source_module import load_source


def _load(path: Path, name: str):
    return load_source(name, path)


checks = _load(VERIFY / "test_node.py", "verify_test_node")
roce_detect = _load(DETECTOR_SOURCE, "roce_detect_for_verify")

# The kernel's numbering of bonding modes (include/uapi/linux/if_bonding.h):
# sysfs prints "balance-xor 2".
KERNEL_BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
# A port's GID table as the hardware fills it: (what the entry holds, its type).
# "ll" is the netdev's IPv6 link-local GID, "ipv4" the IPv4-mapped GID of the
# address on the netdev the device's GIDs follow (the rail, or the bond over it).
CX7_GIDS = (("ll", "IB/RoCE v1"), ("ll", "RoCE v2"), ("ipv4", "IB/RoCE v1"), ("ipv4", "RoCE v2"))
RXE_GIDS = (("ll", "IB/RoCE v1"), ("ipv4", "RoCE v2"))
# Where each layout has its RoCE v2 IPv4 GID (what roce_detect writes to roce.env).
GID_INDEX = {CX7_GIDS: 3, RXE_GIDS: 1}
LINK_LOCAL_GID = "fe80:0000:0000:0000:0a5f:1aff:fe00:0001"
EMPTY_GID = ":".join(["0000"] * 8)
# The rails of inventory/spark2.py's worker (qsfp_ports [1]: both halves of port 1).
RAIL_1, RAIL_2 = "enp1s0f1np1", "enP2p1s0f1np1"
HCA_1, HCA_2 = "rocep1s0f1", "roceP2p1s0f1"
# cuDeviceTotalMem on a GB10 without the DRM override (~119.7 GiB), and with it.
GB10_CUDA_BYTES = int(119.7 * 2**30)
DRM_CAPPED_CUDA_BYTES = 62 * 2**30
DOCKERD_PID = "812"
UNLIMITED_PROC_LIMITS = "Max locked memory         unlimited            unlimited            bytes\n"


@dataclass
class FakeFile:
    content_string: str = ""
    mode: int = 0o644
    user: str = "root"
    is_directory: bool = False
    exists: bool = True


MISSING = FakeFile(exists=False)
# A Spark (DGX OS, systemd) as testinfra sees it when it picks its Linux
# modules: `uname`, and /run/systemd/system/ for its systemd Service.
PLATFORM = {"uname -s": "Linux\n", "uname -m": "aarch64\n"}
SYSTEMD_RUNTIME_DIR = "/run/systemd/system/"


@dataclass
class FakeLink:
    """What `ip -j addr show dev X` reports."""

    mtu: int
    addresses: list = field(default_factory=list)  # (ip, prefix)
    flags: list = field(default_factory=lambda: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])


def keypair(comment: str) -> tuple[str, str]:
    """(OpenSSH private key file, public key line) of a fresh ed25519 key."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    return private, public_line(key, comment)


def public_line(key, comment: str) -> str:
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{blob.decode()} {comment}\n"


@dataclass
class NodeState:
    """What one node shows; tests break one thing at a time."""

    name: str
    admin: str
    home: str
    files: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # netdev -> FakeLink
    # RDMA device -> the netdev whose address its IPv4 GIDs follow (its rail, or the bond over it).
    gids_follow: dict = field(default_factory=dict)
    gid_layout: tuple = CX7_GIDS
    gid_types: dict = field(default_factory=dict)  # (device, index) -> a type other than the layout's
    nm_states: dict | None = None  # `nmcli device` DEVICE -> STATE; None: NetworkManager not installed
    host_infiniband: list = field(default_factory=lambda: ["rdma_cm", "uverbs0", "uverbs1"])
    gpu_driver: bool = True
    cuda_total_bytes: int | None = GB10_CUDA_BYTES
    smi_memory_total: str = "[N/A]"  # GB10: unified memory has no dedicated total
    docker_show: dict = field(default_factory=dict)
    unit_name: str = ""
    unit_exec_start: list = field(default_factory=list)  # the unit's docker run argv
    unit_load: str = "loaded"  # systemd's LoadState: not-found when the unit file is gone
    unit_enabled: str = "enabled"  # UnitFileState, the word `systemctl is-enabled` prints
    unit_active: str = "active"
    systemd_bus: bool = True  # False: systemctl cannot reach systemd ("Failed to connect to bus")
    container_name: str = ""
    container_running: bool = True
    container_env: dict = field(default_factory=dict)
    container_mounts: list = field(default_factory=list)  # (source, destination, rw)
    container_memlock: str = ""
    container_infiniband: list | None = None  # None: no /dev/infiniband inside
    # spark-serving-watch.service: its unit, and what its /state answers (None: nothing listens).
    watch_unit_name: str = ""
    watch_enabled: str = "enabled"
    watch_active: str = "active"
    watch_state: dict | None = None

    def readable(self, file: FakeFile, root: bool) -> bool:
        return root or bool(file.mode & 0o004) or (file.user == self.admin and bool(file.mode & 0o400))

    def answer(self, command: str, root: bool) -> Result:
        def ok(out=""):
            return Result(command, 0, out, "")

        def fail(err="", rc=1):
            return Result(command, rc, "", err)

        if " && " in command:  # a chain stops at its first failure, as in sh
            result = ok()
            for part in command.split(" && "):
                result = self.answer(part, root)
                if not result.ok:
                    break
            return Result(command, result.rc, result.stdout, result.stderr)
        argv = shlex.split(command)
        if argv[0] in ("cat", "head", "test"):
            file = self.files.get(argv[-1], MISSING)
            if not file.exists:
                return fail(f"{argv[0]}: {argv[-1]}: No such file or directory")
            if argv[0] == "test":
                return ok() if argv[1] != "-d" or file.is_directory else fail()
            if not self.readable(file, root):
                return fail(f"{argv[0]}: {argv[-1]}: Permission denied")
            if argv[0] == "head":
                return ok(file.content_string[: int(argv[2])])
            return ok(file.content_string)
        if argv[:2] == ["stat", "-Lc"]:  # testinfra's File: owner (%U) and octal mode (%a)
            file = self.files.get(argv[3], MISSING)
            if not file.exists:
                return fail(f"stat: cannot statx '{argv[3]}': No such file or directory")
            return ok({"%U": file.user, "%a": f"{file.mode:o}"}[argv[2]] + "\n")
        if command in PLATFORM:  # what testinfra asks to pick its Linux modules
            return ok(PLATFORM[command])
        if argv[:4] == ["ip", "-j", "addr", "show"]:
            link = self.links.get(argv[-1])
            if link is None:
                return fail(f'Device "{argv[-1]}" does not exist.')
            return ok(json.dumps([{"ifname": argv[-1], "flags": link.flags,
                                   "operstate": "UP" if "LOWER_UP" in link.flags else "DOWN",
                                   "mtu": link.mtu,
                                   "addr_info": [{"family": "inet", "local": a, "prefixlen": p}
                                                 for a, p in link.addresses]}]))
        if argv[:4] == ["grep", "-s", "-H", "."]:  # a port's whole GID table
            return ok(self.gid_listing(argv[4].removesuffix("/gids/*")))
        if command == "command -v nmcli":
            return ok("/usr/bin/nmcli\n") if self.nm_states is not None else fail()
        if command == "nmcli -t -f DEVICE,STATE device" and self.nm_states is not None:
            return ok("".join(f"{device}:{state}\n" for device, state in self.nm_states.items()))
        if command == "ls /dev/infiniband":
            return ok("\n".join(self.host_infiniband) + "\n") if self.host_infiniband else fail(
                "ls: cannot access '/dev/infiniband': No such file or directory", rc=2)
        if command == "command -v nvidia-smi":
            return ok("/usr/bin/nvidia-smi\n") if self.gpu_driver else fail()
        if argv[0] == "nvidia-smi":
            return ok(self.smi_memory_total + "\n") if self.gpu_driver else fail("nvidia-smi: not found", rc=127)
        if argv[:2] == ["python3", "-c"] and "cuDeviceTotalMem" in argv[2]:
            if self.cuda_total_bytes is None:
                return fail("Traceback (most recent call last):\nAssertionError: cuInit failed")
            return ok(f"{self.cuda_total_bytes}\n")
        if argv[:2] == ["getent", "passwd"] and argv[2] == self.admin:
            return ok(f"{self.admin}:x:1000:1000::{self.home}:/bin/bash\n")
        if argv[:2] == ["systemctl", "show"] and len(argv) == 3:  # testinfra's systemd_properties
            if not self.systemd_bus:
                return fail("Failed to connect to bus: No such file or directory")
            return ok("".join(f"{k}={v}\n" for k, v in self.systemd_show(argv[2]).items()))
        if argv[:2] == ["python3", "-c"] and "/state" in argv[-1] and "urlopen" in argv[2]:
            if self.watch_state is None:
                return fail("urllib.error.URLError: <urlopen error [Errno 111] Connection refused>")
            return ok(json.dumps(self.watch_state) + "\n")
        if argv[:3] == ["ssh-keygen", "-y", "-f"]:
            return self.derive_public_key(argv[3], root, ok, fail)
        if argv[0] == "docker":
            return self.docker(command, argv, ok, fail)
        return fail(f"not simulated: {command}", rc=127)

    def gid_listing(self, port_dir: str) -> str:
        """What `grep -s -H . PORT/gids/* PORT/gid_attrs/types/*` prints: the
        IPv4 entries follow the address on the netdev the device's GIDs follow
        (flushed, they read as zeros and their type as EINVAL, which -s hides)."""
        device = port_dir.split("/")[4]
        if device not in self.gids_follow:
            return ""  # the glob matched nothing
        link = self.links.get(self.gids_follow[device])
        ip = link.addresses[0][0] if link and link.addresses else None
        gids, types = [], []
        for index, (holds, gid_type) in enumerate(self.gid_layout):
            gid = LINK_LOCAL_GID if holds == "ll" else ipv4_gid(ip) if ip else None
            gids.append(f"{port_dir}/gids/{index}:{gid or EMPTY_GID}\n")
            if gid:
                types.append(f"{port_dir}/gid_attrs/types/{index}:{self.gid_types.get((device, index), gid_type)}\n")
        return "".join(gids + types)

    def systemd_show(self, unit: str) -> dict[str, str]:
        """What `systemctl show UNIT` prints for the units the checks read;
        systemd leaves out empty values."""
        if unit == "docker.service":
            shown = {"Id": unit, "LoadState": "loaded", "ActiveState": "active", **self.docker_show}
        elif unit == self.watch_unit_name:
            shown = {"Id": unit, "LoadState": "loaded", "UnitFileState": self.watch_enabled,
                     "ActiveState": self.watch_active}
        elif unit == self.unit_name:
            argv = " ".join(self.unit_exec_start)
            shown = {"Id": unit, "LoadState": self.unit_load, "UnitFileState": self.unit_enabled,
                     "ActiveState": self.unit_active,
                     "ExecStart": f"{{ path={self.unit_exec_start[0]} ; argv[]={argv} ; ignore_errors=no }}"}
        else:
            shown = {"Id": unit, "LoadState": "not-found", "ActiveState": "inactive"}
        return {key: value for key, value in shown.items() if value != ""}

    def derive_public_key(self, path, root, ok, fail):
        """ssh-keygen -y: the public half computed from the private key file."""
        file = self.files.get(path, MISSING)
        if not file.exists or not self.readable(file, root):
            return fail(f"{path}: No such file or directory" if not file.exists else f"Load key \"{path}\": Permission denied")
        try:
            key = serialization.load_ssh_private_key(file.content_string.encode(), password=None)
        except ValueError:
            return fail(f"Load key \"{path}\": invalid format", rc=255)
        return ok(public_line(key, "derived"))

    def docker(self, command, argv, ok, fail):
        name = argv[-1] if argv[1] == "inspect" else argv[2]
        if name != self.container_name or not self.container_running:
            return fail(f"Error response from daemon: No such container: {name}")
        if argv[1] == "inspect":
            template = argv[3]
            if template == "{{.State.Status}}":
                return ok("running\n")
            if template == "{{.State.Running}}":
                return ok("true\n")
            if template == "{{json .Mounts}}":
                return ok(json.dumps([{"Type": "bind", "Source": s, "Destination": d, "RW": rw}
                                      for s, d, rw in self.container_mounts]))
        code = argv[-1] if argv[1] == "exec" and argv[3:5] == ["python3", "-c"] else ""
        if "/proc/self/mountinfo" in code:
            return ok("".join(f"40 30 8:1 {s} {d} {'rw' if rw else 'ro'} - ext4 /dev/nvme0n1p2 rw\n"
                              for s, d, rw in self.container_mounts))
        if "os.environ" in code:
            return ok(json.dumps(self.container_env))
        if "RLIMIT_MEMLOCK" in code:
            return ok(self.container_memlock + "\n")
        if "listdir('/dev/infiniband')" in code:
            if self.container_infiniband is None:
                return fail("FileNotFoundError: [Errno 2] No such file or directory: '/dev/infiniband'")
            return ok(json.dumps(sorted(self.container_infiniband)))
        return fail(f"not simulated: {command}", rc=127)


def ipv4_gid(ip: str) -> str:
    """The sysfs notation of a RoCE v2 IPv4 GID (::ffff:a.b.c.d)."""
    a, b, c, d = (int(part) for part in ip.split("."))
    return ":".join(["0000"] * 5 + ["ffff", f"{a:02x}{b:02x}", f"{c:02x}{d:02x}"])


# --- what the roles render, read back the way the node reads it -------------

def exec_start_argv(unit_text: str) -> list[str]:
    joined = unit_text.replace("\\\n", " ")
    (value,) = [line.split("=", 1)[1] for line in joined.splitlines() if line.startswith("ExecStart=")]
    return unquote_exec_start(value)


def option_values(argv: list[str], *names: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word in names]


def docker_env_file(text: str) -> dict[str, str]:
    """docker --env-file: KEY=VALUE taken literally, `#` lines and blanks skipped."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return dict(line.split("=", 1) for line in lines if "=" in line)


def rendered_serving(spec, home: str, nvidia_runtime: bool):
    """spark-serving.service and serving.env as roles/serving renders them for this node."""
    return desired_serving(serving_settings(spec.data), spec.data, image=image_of(spec.data), home=home,
                           docker_runtimes=["nvidia"] if nvidia_runtime else [])


def converged(spec, host_keys: dict[str, str], gpu: bool) -> NodeState:
    admin = spec.admin
    state = NodeState(spec.name, admin, f"/home/{admin}", gpu_driver=gpu,
                      cuda_total_bytes=GB10_CUDA_BYTES if gpu else None, gid_layout=CX7_GIDS if gpu else RXE_GIDS)
    files = state.files
    files[SYSTEMD_RUNTIME_DIR] = FakeFile(mode=0o755, is_directory=True)

    # roles/network: every device as its netplan file describes it (the mode's own template).
    plan = yaml.safe_load(render_netplan(network_settings(spec.data)))["network"]

    def addresses(device):
        return [(a.split("/")[0], int(a.split("/")[1])) for a in device.get("addresses", [])]

    for name, ethernet in plan["ethernets"].items():
        state.links[name] = FakeLink(ethernet["mtu"], addresses(ethernet))
        files[f"/sys/class/net/{name}/mtu"] = FakeFile(f"{ethernet['mtu']}\n")
        files[f"/sys/class/net/{name}/carrier"] = FakeFile("1\n")
        state.gids_follow[QSFP_DEVICES[name]] = name
    for name, bond in plan.get("bonds", {}).items():
        state.links[name] = FakeLink(bond["mtu"], addresses(bond), ["BROADCAST", "MULTICAST", "MASTER", "UP", "LOWER_UP"])
        mode = bond["parameters"]["mode"]
        files[f"/sys/class/net/{name}/bonding/mode"] = FakeFile(f"{mode} {KERNEL_BOND_MODES.index(mode)}\n")
        files[f"/sys/class/net/{name}/bonding/slaves"] = FakeFile(" ".join(bond["interfaces"]) + "\n")
        for slave in bond["interfaces"]:
            state.links[slave].flags.insert(2, "SLAVE")
            state.gids_follow[QSFP_DEVICES[slave]] = name  # the GID table holds the bond's address
    # DGX OS's NetworkManager: netplan marks every device it gives to networkd unmanaged.
    if gpu:
        state.nm_states = {"enP7s7": "connected", "docker0": "connected (externally)", "lo": "connected (externally)",
                           **{name: "unmanaged" if device.get("renderer") == "networkd" else "connected"
                              for kind in ("ethernets", "bonds") for name, device in plan.get(kind, {}).items()}}

    # roles/rdma: its memlock files as shipped; roce.env as its detector writes it.
    for dest, source in MEMLOCK_FILES.items():
        files[dest] = FakeFile((RDMA_FILES / source).read_text())
    files[DOCKER_MEMLOCK_DROPIN] = FakeFile((RDMA_FILES / "90-spark-cluster-memlock-docker.conf").read_text())
    state.docker_show = {"LimitMEMLOCK": "infinity", "DropInPaths": DOCKER_MEMLOCK_DROPIN, "MainPID": DOCKERD_PID}
    files[f"/proc/{DOCKERD_PID}/limits"] = FakeFile(UNLIMITED_PROC_LIMITS, 0o444)
    hcas = list(state.gids_follow)
    files[serving_defaults.ROCE_ENV_FILE] = FakeFile(
        roce_detect.env_lines({"hcas": hcas, "gid_index": GID_INDEX[state.gid_layout]}), 0o600)
    for hca in hcas:
        files[f"/sys/class/infiniband/{hca}/ports/1/state"] = FakeFile("4: ACTIVE\n")

    # roles/serving: the env file, and a container started from the unit's docker run.
    serving = rendered_serving(spec, state.home, nvidia_runtime=gpu)
    files[serving_defaults.ENV_FILE] = FakeFile(serving.env_text, 0o600)
    state.unit_name = Path(serving_defaults.UNIT_FILE).name
    # roles/serving's watcher: running, and watching this node's engine.
    state.watch_unit_name = serving_defaults.WATCH_UNIT_NAME
    state.watch_state = {"role": "head" if spec.data.get("node_rank") == 0 else "worker", "node": spec.name,
                         "engine_started_at": 1796077801.25, "answering": True, "reason": "answering"}
    argv = state.unit_exec_start = exec_start_argv(serving.unit_text)
    (state.container_name,) = option_values(argv, "--name")
    for path in option_values(argv, "--env-file"):
        state.container_env.update(docker_env_file(files[path].content_string))
    state.container_env.update(docker_env_file("\n".join(option_values(argv, "-e", "--env"))))
    for volume in option_values(argv, "-v", "--volume"):
        source, destination, *options = volume.split(":")
        state.container_mounts.append((source, destination, "ro" not in options))
    (ulimit,) = [value for value in option_values(argv, "--ulimit") if value.startswith("memlock=")]
    soft, hard = ulimit.removeprefix("memlock=").split(":")
    state.container_memlock = f"({soft}, {hard})"
    if "/dev/infiniband" in option_values(argv, "--device"):
        state.container_infiniband = list(state.host_infiniband)

    # roles/caches: the directories the mounts come from.
    for path in [*engine_cache_dirs(state.home).values(), hf_home(state.home)]:
        files[path] = FakeFile(mode=0o755, user=admin, is_directory=True)

    # roles/ssh: the cluster key pair and the known_hosts block.
    private, public = keypair("spark-cluster")
    key_path = f"{state.home}/.ssh/{KEY_NAME}"
    files[key_path] = FakeFile(private, 0o600, admin)
    files[f"{key_path}.pub"] = FakeFile(public, 0o644, admin)
    ip, host_key = host_keys[spec.name]
    files["/etc/ssh/ssh_host_ed25519_key.pub"] = FakeFile(host_key)
    files[SYSTEM_KNOWN_HOSTS] = FakeFile(known_hosts_text(
        {name: (ip, [" ".join(key.split()[:2])]) for name, (ip, key) in host_keys.items()}))
    return state


class FakeNode(Node):
    def __init__(self, spec, state):
        super().__init__(spec, REPO)
        self.state = state
        self.simulated_host = Host(SimulatedBackend(self))

    def client(self):
        raise AssertionError("a simulated node never connects")

    def run(self, command, timeout=60, stdin=None):
        return self.state.answer(command, root=False)

    def run_root(self, command, timeout=60):
        return self.state.answer(command, root=True)

    def testinfra_host(self):
        # testinfra's own modules (File, Service), over the simulated commands.
        return self.simulated_host


class SimulatedBackend(BaseBackend):
    """testinfra's commands, answered by the node's NodeState as the admin user."""

    NAME = "simulated"

    def __init__(self, node: FakeNode):
        super().__init__(node.name)
        self.node = node
        self.commands = []

    def run(self, command, *args, **kwargs):
        command = self.get_command(command, *args)
        self.commands.append(command)
        result = self.node.state.answer(command, root=False)
        return self.result(result.rc, self.encode(command), result.stdout, result.stderr)


class FakeCluster:
    def __init__(self, nodes):
        self._nodes = nodes
        self.specs = [n.spec for n in nodes.values()]

    def node(self, name):
        return self._nodes[name]

    @property
    def head(self):
        return self._nodes[self.specs[0].name]


def simulated(inventory: str, gpu: bool, **settings) -> FakeCluster:
    """The inventory's nodes, converged; `settings` change group_data (e.g. network_mode)."""
    specs = load_cluster(inventory, REPO)
    for spec in specs:
        spec.data.update(settings)
    host_keys = {s.name: (s.qsfp_ip, keypair(f"root@{s.name}")[1]) for s in specs}
    return FakeCluster({s.name: FakeNode(s, converged(s, host_keys, gpu)) for s in specs})


@pytest.fixture(autouse=True)
def read_only_inventories(monkeypatch):
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")


@pytest.fixture
def spark(read_only_inventories):
    """Two converged Sparks (inventory/spark2.py, dual_subnet): GPU and driver present."""
    return simulated("inventory/spark2.py", gpu=True)


@pytest.fixture
def spark_bond(read_only_inventories):
    """The same two Sparks with network_mode = "bond" in group_data."""
    return simulated("inventory/spark2.py", gpu=True, network_mode="bond")


@pytest.fixture
def lab_vms(read_only_inventories):
    """The converged 2-node lab (inventory/lab2.py): VMs without a GPU."""
    return simulated("inventory/lab2.py", gpu=False)


@pytest.fixture
def lab_bond(read_only_inventories):
    """The 2-node lab in bond mode (inventory/lab2_bond.py)."""
    return simulated("inventory/lab2_bond.py", gpu=False)


NODE_CHECKS = ["links", "network_manager", "roce_gid", "memlock", "infiniband", "drm_override", "gpu_memory", "caches",
               "hf_cache", "env_file", "container_env", "serving_unit", "serving_watch", "ssh_key", "known_hosts"]


def run_check(name, cluster, node_name="spark-2") -> dict[str, str]:
    """Runs one check as pytest would; returns what it recorded (record_property)."""
    function = getattr(checks, f"test_{name}")
    node = cluster.node(node_name)
    recorded = {}
    args = {"node": node, "cluster": cluster, "record_property": recorded.__setitem__}
    wanted = function.__code__.co_varnames[: function.__code__.co_argcount]
    function(**{k: args[k] for k in wanted})
    return recorded


def failures(cluster, node_name="spark-2", names=NODE_CHECKS) -> dict[str, str]:
    """Check name -> message of every check that did not pass. A skip counts
    as not passing ("SKIPPED: reason"): a test that expects one says so with
    run_check and pytest.raises(Skipped)."""
    found = {}
    for name in names:
        try:
            run_check(name, cluster, node_name)
        except Failed as error:
            found[name] = str(error)
        except Skipped as skip:
            found[name] = f"SKIPPED: {skip}"
    return found


def worker(cluster) -> NodeState:
    return cluster.node("spark-2").state


def test_every_per_node_check_of_the_suite_is_listed():
    defined = {name.removeprefix("test_") for name, value in vars(checks).items()
               if name.startswith("test_") and callable(value)}
    assert defined == set(NODE_CHECKS)


@pytest.mark.parametrize("node_name", ["spark-1", "spark-2"])
@pytest.mark.parametrize("fixture", ["spark", "spark_bond"])
def test_converged_sparks_run_and_pass_every_check_in_either_mode(request, fixture, node_name):
    cluster = request.getfixturevalue(fixture)
    # failures() records a skip too: an empty result means every check ran to the end and passed.
    assert failures(cluster, node_name) == {}
    recorded = run_check("network_manager", cluster, node_name)
    assert "NetworkManager leaves enp1s0f1np1, enP2p1s0f1np1" in recorded["detail"]


@pytest.mark.parametrize("node_name", ["spark-1", "spark-2"])
@pytest.mark.parametrize("fixture", ["lab_vms", "lab_bond"])
def test_converged_lab_passes_every_check_and_skips_gpu_memory_only(request, fixture, node_name):
    cluster = request.getfixturevalue(fixture)
    assert cluster.node(node_name).spec.get("gpu_expected") is False
    assert failures(cluster, node_name, [name for name in NODE_CHECKS if name != "gpu_memory"]) == {}
    with pytest.raises(Skipped, match="gpu_expected is False"):
        run_check("gpu_memory", cluster, node_name)
    # No NetworkManager on the lab's VMs: a pass, and the report says why.
    assert run_check("network_manager", cluster, node_name) == {
        "detail": "nmcli not installed: no NetworkManager to take the rails"}


def test_the_fake_nodes_are_the_two_layouts(spark, spark_bond):
    # What the checks walk: two rails with an address each, or one bond over both.
    assert {n: link.addresses for n, link in worker(spark).links.items()} == {
        RAIL_1: [("192.168.100.11", 24)], RAIL_2: [("192.168.101.11", 24)]}
    assert {n: link.addresses for n, link in worker(spark_bond).links.items()} == {
        RAIL_1: [], RAIL_2: [], "bond0": [("192.168.100.11", 24)]}
    for cluster in (spark, spark_bond):
        assert f"NCCL_IB_HCA={HCA_1},{HCA_2}\n" in worker(cluster).files[serving_defaults.ROCE_ENV_FILE].content_string


# --- breakages: each fails exactly the checks named, with its own message ----

def put(path, content, mode=0o644, user="root"):
    def breakage(n):
        n.state.files[path] = FakeFile(content, mode, user)
    return breakage


def remove(path):
    def breakage(n):
        del n.state.files[path]
    return breakage


def assign(**values):
    def breakage(n):
        for name, value in values.items():
            setattr(n.state, name, value)
    return breakage


def flush(netdev):
    def breakage(n):
        n.state.links[netdev].addresses.clear()
    return breakage


def link_down(netdev):
    def breakage(n):
        flags = n.state.links[netdev].flags
        flags[flags.index("LOWER_UP")] = "NO-CARRIER"
    return breakage


def link_mtu(netdev, mtu):
    def breakage(n):
        n.state.links[netdev].mtu = mtu
    return breakage


def link_gone(netdev):
    def breakage(n):
        del n.state.links[netdev]
    return breakage


def network_manager(netdev, state):
    def breakage(n):
        n.state.nm_states[netdev] = state
    return breakage


def engine_started_with_one_hca(n):
    # The detector left the second rail out at serving start, and the engine runs with it.
    roce = n.state.files[serving_defaults.ROCE_ENV_FILE]
    roce.content_string = roce.content_string.replace(f"NCCL_IB_HCA={HCA_1},{HCA_2}", f"NCCL_IB_HCA={HCA_1}")
    n.state.container_env["NCCL_IB_HCA"] = HCA_1


def no_carrier_while_any_suffices(n):
    n.spec.data["qsfp_carrier_required"] = "any"
    for rail in (RAIL_1, RAIL_2):
        n.state.files.pop(f"/sys/class/net/{rail}/carrier")  # sysfs: "Invalid argument" on a down port


def dropin_removed_as_the_lab_does(n):
    # systemd.conf.d's DefaultLimitMEMLOCK=infinity still applies: only the drop-in is gone.
    n.state.files.pop(DOCKER_MEMLOCK_DROPIN)
    n.state.docker_show["DropInPaths"] = ""


def dropin(text):
    return put(DOCKER_MEMLOCK_DROPIN, text)


def another_cluster_key_published(n):
    path = f"{n.state.home}/.ssh/{KEY_NAME}.pub"
    n.state.files[path] = FakeFile(keypair("spark-cluster")[1], 0o644, n.state.admin)


def corrupt_cluster_key(n):
    n.state.files[f"{n.state.home}/.ssh/{KEY_NAME}"] = FakeFile("not a key\n", 0o600, n.state.admin)


def revoke_the_heads_host_key(n, cluster):
    key_type, key = cluster.node("spark-1").state.files["/etc/ssh/ssh_host_ed25519_key.pub"].content_string.split()[:2]
    n.state.files[SYSTEM_KNOWN_HOSTS].content_string += f"@revoked * {key_type} {key}\n"


# Breakages land where the roles put things, so a check looking elsewhere misses them.
DRM_OVERRIDE = SETTING_DEFAULTS["drm_override_file"]
(LIMITS_FILE,) = [dest for dest, source in MEMLOCK_FILES.items() if "limits" in source]
ROOT_ONLY = 0o600
DRM_LINE = "options nvidia-drm modeset=1 fbdev=1\n"
# (case, breakage of spark-2, the checks it fails, words of the first one's message)
BREAKAGES = [
    # A flushed address also empties the RoCE v2 IPv4 GID entries, which follow it:
    # roce_gid rightly fails too (the lab's `ip address flush dev enP2p1s0f1np1`).
    ("rail_address_flushed", flush(RAIL_2), {"links", "roce_gid"},
     f"{RAIL_2} IPv4: expected 192.168.101.11/24, found no address"),
    ("rail_link_down", link_down(RAIL_1), {"links"}, f"{RAIL_1} state: expected UP,LOWER_UP, found operstate DOWN"),
    ("rail_mtu", link_mtu(RAIL_2, 1500), {"links"}, f"{RAIL_2} MTU: expected 9000, found 1500"),
    ("rail_netdev_gone", link_gone(RAIL_2), {"links", "roce_gid"},
     f'{RAIL_2}: expected present, found Device "{RAIL_2}" does not exist.'),
    ("network_manager_manages_a_rail", network_manager(RAIL_2, "connected"), {"network_manager"},
     f"NetworkManager on {RAIL_2}: expected unmanaged, found connected"),
    ("nccl_ib_hca_lists_one_hca_of_two", engine_started_with_one_hca, {"roce_gid"},
     f"NCCL_IB_HCA in {expect.ROCE_ENV}: expected {HCA_1},{HCA_2} (every rail's HCA), found {HCA_1}; fix: the detector"),
    ("rail_port_down", put(f"/sys/class/infiniband/{HCA_2}/ports/1/state", "1: DOWN\n"), {"roce_gid"},
     f"{HCA_2} port 1 state (rail {RAIL_2}): expected ACTIVE, found 1: DOWN"),
    ("drm_override_planted", put(DRM_OVERRIDE, DRM_LINE), {"drm_override"},
     f"{DRM_OVERRIDE}: expected absent, found present ('options nvidia-drm"),
    ("drm_override_readable_by_root_only", put(DRM_OVERRIDE, DRM_LINE, ROOT_ONLY), {"drm_override"},
     f"{DRM_OVERRIDE}: expected absent, found present ('options nvidia-drm"),
    ("env_file_world_readable", lambda n: setattr(n.state.files[serving_defaults.ENV_FILE], "mode", 0o644), {"env_file"},
     "expected mode 0600 owner root, found mode 0644 owner root"),
    ("docker_dropin_removed", dropin_removed_as_the_lab_does, {"memlock"},
     "docker.service drop-in: expected [Service] LimitMEMLOCK=infinity, found no drop-ins"),
    ("docker_limit_not_infinity", lambda n: n.state.docker_show.update(LimitMEMLOCK="8388608", DropInPaths=""),
     {"memlock"}, "docker.service LimitMEMLOCK: expected infinity, found 8388608"),
    ("dropin_line_commented_out", dropin("[Service]\n# LimitMEMLOCK=infinity\n"), {"memlock"},
     f"expected [Service] LimitMEMLOCK=infinity, found no LimitMEMLOCK in {DOCKER_MEMLOCK_DROPIN}"),
    ("dropin_outside_service", dropin("[Unit]\nLimitMEMLOCK=infinity\n"), {"memlock"},
     f"found no LimitMEMLOCK in {DOCKER_MEMLOCK_DROPIN}"),
    ("dropin_overridden_by_a_later_line", dropin("[Service]\nLimitMEMLOCK=infinity\nLimitMEMLOCK=65536\n"),
     {"memlock"}, f"found {DOCKER_MEMLOCK_DROPIN} sets LimitMEMLOCK=65536"),
    ("limits_for_another_user", put(LIMITS_FILE, "guest soft memlock unlimited\nguest hard memlock unlimited\n"),
     {"memlock"}, "expected soft and hard memlock unlimited for * or nvidia"),
    ("dockerd_limits_unreadable", remove(f"/proc/{DOCKERD_PID}/limits"), {"memlock"},
     f"running dockerd memlock: expected unlimited, found /proc/{DOCKERD_PID}/limits unreadable"),
    ("container_memlock_limited", assign(container_memlock="(8388608, 8388608)"), {"memlock"},
     "container RLIMIT_MEMLOCK: expected (-1, -1) unlimited, found (8388608, 8388608)"),
    ("host_without_uverbs", assign(host_infiniband=["rdma_cm"]), {"infiniband"},
     "/dev/infiniband on the host: expected uverbs* devices, found ['rdma_cm']"),
    ("container_without_uverbs", assign(container_infiniband=["rdma_cm"]), {"infiniband"},
     '/dev/infiniband in the container: expected uverbs* devices, found ["rdma_cm"]'),
    ("pub_of_another_key", another_cluster_key_published, {"ssh_key"},
     ".pub: expected the public half of the key, found a different key"),
    ("unreadable_private_key", corrupt_cluster_key, {"ssh_key"},
     "expected a private key ssh-keygen can read, found Load key"),
    ("cuda_capped_by_the_override", assign(cuda_total_bytes=DRM_CAPPED_CUDA_BYTES), {"gpu_memory"},
     "GPU memory (CUDA cuDeviceTotalMem): expected >= 100 GiB, found 62.0 GiB"),
    ("cuda_fails_and_smi_says_na", assign(cuda_total_bytes=None), {"gpu_memory"},
     "GPU memory: expected a total from CUDA or nvidia-smi, found neither (CUDA: AssertionError: cuInit failed; "
     "nvidia-smi: [N/A])"),
    ("driver_missing_on_a_spark", assign(gpu_driver=False, cuda_total_bytes=None), {"gpu_memory"},
     "NVIDIA driver: expected nvidia-smi on the PATH, found missing"),
]


# The same in bond mode, where the checks find a bond in the fabric.
BOND_BREAKAGES = [
    ("bond_address_flushed", flush("bond0"), {"links", "roce_gid"}, "bond0 IPv4: expected 192.168.100.11/24, found no address"),
    ("bond_link_down", link_down("bond0"), {"links"}, "bond0 state: expected UP,LOWER_UP, found operstate DOWN"),
    ("bond_mtu", link_mtu("bond0", 1500), {"links"}, "bond0 MTU: expected 9000, found 1500"),
    ("slave_mtu", put(f"/sys/class/net/{RAIL_2}/mtu", "1500\n"), {"links"}, f"{RAIL_2} MTU: expected 9000, found 1500"),
    ("bond_mode", put("/sys/class/net/bond0/bonding/mode", "active-backup 1\n"), {"links"},
     "bond0 mode: expected balance-xor, found active-backup"),
    ("bond_over_one_rail", put("/sys/class/net/bond0/bonding/slaves", f"{RAIL_1}\n"), {"links"},
     f"bond0 slaves: expected {RAIL_1} {RAIL_2}, found {RAIL_1}"),
    ("one_carrier_missing", put(f"/sys/class/net/{RAIL_2}/carrier", "0\n"), {"links"},
     f"{RAIL_2} carrier: expected 1 (qsfp_carrier_required = all), found 0"),
    ("no_carrier_while_any_suffices", no_carrier_while_any_suffices, {"links"},
     "QSFP carrier: expected 1 on at least one rail (qsfp_carrier_required = any)"),
    ("network_manager_manages_the_bond", network_manager("bond0", "connecting"), {"network_manager"},
     "NetworkManager on bond0: expected unmanaged, found connecting"),
    ("nccl_ib_hca_lists_one_hca_of_two", engine_started_with_one_hca, {"roce_gid"},
     f"NCCL_IB_HCA in {expect.ROCE_ENV}: expected {HCA_1},{HCA_2} (the bond's HCAs), found {HCA_1}"),
]


def assert_breakage_fails_exactly(cluster, breakage, failed, words):
    assert failures(cluster) == {}
    breakage(cluster.node("spark-2"))
    found = failures(cluster)
    assert set(found) == failed, found
    for message in found.values():
        assert message.startswith("spark-2: ") and "fix:" in message, message
    first = next(name for name in NODE_CHECKS if name in failed)
    assert words in found[first], found[first]
    assert failures(cluster, "spark-1") == {}


@pytest.mark.parametrize("case, breakage, failed, words", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_each_breakage_fails_exactly_its_checks_with_expected_found_and_fix(spark, case, breakage, failed, words):
    assert_breakage_fails_exactly(spark, breakage, failed, words)


@pytest.mark.parametrize("case, breakage, failed, words", BOND_BREAKAGES, ids=[b[0] for b in BOND_BREAKAGES])
def test_each_bond_breakage_fails_exactly_its_checks(spark_bond, case, breakage, failed, words):
    assert_breakage_fails_exactly(spark_bond, breakage, failed, words)


def test_a_revoked_current_host_key_fails_known_hosts(spark):
    revoke_the_heads_host_key(spark.node("spark-2"), spark)
    found = failures(spark)
    assert set(found) == {"known_hosts"}, found
    assert f"{expect.KNOWN_HOSTS} @revoked *: expected spark-1's current ssh-ed25519 key" in found["known_hosts"]
    assert "not revoked, found revoked; fix:" in found["known_hosts"]


def test_one_rail_without_carrier_is_fine_in_a_bond_when_any_suffices(spark_bond):
    worker(spark_bond).files[f"/sys/class/net/{RAIL_2}/carrier"] = FakeFile("0\n")
    assert "one_carrier_missing" in [b[0] for b in BOND_BREAKAGES]  # with the default, "all"
    spark_bond.node("spark-2").spec.data["qsfp_carrier_required"] = "any"
    assert failures(spark_bond) == {}


def test_network_manager_not_running_passes_and_says_so(spark):
    state = worker(spark)
    state.nm_states = None
    assert run_check("network_manager", spark) == {"detail": "nmcli not installed: no NetworkManager to take the rails"}
    original = state.answer

    def stopped(command, root):
        if command == "command -v nmcli":
            return Result(command, 0, "/usr/bin/nmcli\n", "")
        if command.startswith("nmcli "):
            return Result(command, 8, "", "Error: NetworkManager is not running.\n")
        return original(command, root)
    state.answer = stopped
    assert run_check("network_manager", spark) == {"detail": "NetworkManager is not running: it manages no device"}


def test_roce_gid_per_rail_holds_each_rails_own_address(spark):
    # Each rail's device must carry the GID of its own rail's address, not the control address.
    state = worker(spark)
    state.gids_follow[HCA_2] = RAIL_1
    found = failures(spark)
    assert set(found) == {"roce_gid"}, found
    assert (f"{HCA_2} GID 3 (rail {RAIL_2}): expected {ipv4_gid('192.168.101.11')} (192.168.101.11), "
            f"found {ipv4_gid('192.168.100.11')} (192.168.100.11)") in found["roce_gid"]


def test_roce_gid_without_a_common_index_accepts_each_rails_own(spark):
    # The detector leaves NCCL_IB_GID_INDEX out when the rails disagree; NCCL then picks per HCA.
    state = worker(spark)
    roce = state.files[serving_defaults.ROCE_ENV_FILE]
    roce.content_string = "".join(line + "\n" for line in roce.content_string.splitlines()
                                  if not line.startswith("NCCL_IB_GID_INDEX="))
    del state.container_env["NCCL_IB_GID_INDEX"]
    assert failures(spark) == {}
    state.links[RAIL_2].addresses.clear()
    found = failures(spark)
    assert f"{HCA_2} RoCE v2 GID of 192.168.101.11 (rail {RAIL_2}): expected " in found["roce_gid"]
    assert "at some index, found no entry holds it" in found["roce_gid"]


def test_gpu_memory_takes_a_number_from_nvidia_smi_when_cuda_fails(spark):
    state = worker(spark)
    state.cuda_total_bytes, state.smi_memory_total = None, "122572"
    assert failures(spark) == {}
    state.smi_memory_total = "63488"
    found = failures(spark)
    assert set(found) == {"gpu_memory"}
    assert "GPU memory (nvidia-smi): expected >= 100 GiB, found 62.0 GiB" in found["gpu_memory"]


def test_a_missing_driver_skips_only_where_the_inventory_expects_no_gpu(spark):
    state = worker(spark)
    state.gpu_driver, state.cuda_total_bytes = False, None
    assert "NVIDIA driver: expected nvidia-smi on the PATH" in failures(spark)["gpu_memory"]
    spark.node("spark-2").spec.data["gpu_expected"] = False
    with pytest.raises(Skipped, match="gpu_expected is False"):
        run_check("gpu_memory", spark)


def test_a_unit_enabled_only_until_the_next_boot_fails_serving_unit(spark):
    # `systemctl enable --runtime`: is-enabled exits 0 (testinfra's is_enabled
    # says True), yet the unit is gone after a power cut.
    worker(spark).unit_enabled = "enabled-runtime"
    found = failures(spark)
    assert set(found) == {"serving_unit"}, found
    assert "expected enabled (comes back after a power cut), found enabled-runtime" in found["serving_unit"]


def test_a_removed_unit_file_is_reported_as_not_found(spark):
    state = worker(spark)
    state.unit_load, state.unit_enabled, state.unit_active = "not-found", "", "inactive"
    found = failures(spark)
    assert set(found) == {"serving_unit"}, found
    assert "expected enabled (comes back after a power cut), found not-found" in found["serving_unit"]
    assert "expected active, found inactive" in found["serving_unit"]


def test_unit_properties_are_systemctl_show_read_by_testinfra_as_the_admin(spark):
    node = spark.node("spark-2")
    properties = node.unit_properties(expect.SERVING_UNIT)
    assert (properties["LoadState"], properties["UnitFileState"], properties["ActiveState"]) == (
        "loaded", "enabled", "active")
    # Split at the first "=" only: the docker run's own KEY=VALUE words stay in the value.
    assert "--ulimit memlock=-1:-1" in properties["ExecStart"]
    assert properties["ExecStart"].startswith("{ path=")
    commands = node.simulated_host.backend.commands
    assert f"systemctl show {expect.SERVING_UNIT}" in commands
    assert not [command for command in commands if "sudo" in command]


def test_a_systemctl_that_cannot_answer_reads_as_unknown_not_a_traceback(spark):
    worker(spark).systemd_bus = False
    assert spark.node("spark-2").unit_properties(expect.SERVING_UNIT) == {}
    found = failures(spark)
    assert set(found) == {"serving_unit", "serving_watch", "memlock"}, found
    assert "expected enabled (comes back after a power cut), found unknown" in found["serving_unit"]
    assert "expected enabled (watches after every boot), found unknown" in found["serving_watch"]
    assert "docker.service LimitMEMLOCK: expected infinity, found unknown" in found["memlock"]


def test_a_stopped_watcher_fails_its_check_with_the_unit_to_start(spark):
    state = worker(spark)
    state.watch_active, state.watch_state = "failed", None
    found = failures(spark)
    assert set(found) == {"serving_watch"}, found
    assert "spark-serving-watch.service: expected active, found failed" in found["serving_watch"]
    assert "journalctl -u spark-serving-watch.service" in found["serving_watch"]


def test_a_watcher_that_answers_wrongly_is_named(spark):
    state = worker(spark)
    state.watch_state = dict(state.watch_state, role="head", engine_started_at=None, reason="no engine container")
    message = failures(spark)["serving_watch"]
    assert "http://192.168.100.11:29520/state role: expected worker, found head" in message
    assert "engine: expected an engine container it watches, found none (no engine container)" in message
    state.watch_state = None
    assert "expected the watcher's state as JSON" in failures(spark)["serving_watch"]


def test_stopped_serving_fails_the_unit_and_the_container_checks(spark):
    state = worker(spark)
    state.unit_active, state.container_running = "inactive", False
    found = failures(spark)
    assert set(found) == {"serving_unit", "container_env", "memlock", "infiniband", "caches", "hf_cache", "roce_gid"}
    assert "expected active, found inactive" in found["serving_unit"]


def test_a_gid_index_that_is_not_roce_v2(spark):
    worker(spark).gid_types[(HCA_1, 3)] = "IB/RoCE v1"
    found = failures(spark)
    assert set(found) == {"roce_gid"}
    assert f"{HCA_1} GID 3 type (rail {RAIL_1}): expected RoCE v2, found IB/RoCE v1" in found["roce_gid"]


def test_stale_container_values_are_caught(spark):
    worker(spark).container_env["NCCL_IB_GID_INDEX"] = "1"
    found = failures(spark)
    assert set(found) == {"roce_gid"}
    assert f"container NCCL_IB_GID_INDEX: expected {GID_INDEX[CX7_GIDS]}" in found["roce_gid"]


def test_hf_cache_mounted_elsewhere_says_invalid_repository_id(spark):
    state = worker(spark)
    hf = hf_home(state.home)
    state.container_mounts = [(s, "/root/.cache/huggingface" if s == hf else d, rw) for s, d, rw in state.container_mounts]
    found = failures(spark)
    assert set(found) == {"hf_cache"}
    assert "found -> /root/.cache/huggingface" in found["hf_cache"] and "invalid repository ID" in found["hf_cache"]


def test_cache_dir_with_wrong_owner(spark):
    state = worker(spark)
    path = engine_cache_dirs(state.home)["triton"]
    state.files[path] = FakeFile(mode=0o700, user="root", is_directory=True)
    found = failures(spark)
    assert set(found) == {"caches"}
    assert f"{path}: expected owner nvidia mode 0755, found owner root mode 0700" in found["caches"]


def test_a_reinstalled_peer_makes_known_hosts_stale(spark):
    spark.node("spark-1").state.files["/etc/ssh/ssh_host_ed25519_key.pub"] = FakeFile(keypair("root@spark-1")[1])
    found = failures(spark)
    assert set(found) == {"known_hosts"}
    message = found["known_hosts"]
    assert "entry for spark-1" in message and "entry for 192.168.100.10" in message and "stale key" in message


@pytest.mark.parametrize("fixture, control", [("spark", RAIL_1), ("spark_bond", "bond0")])
def test_interface_variables_pinned_to_the_control_interface_in_the_env_file(request, fixture, control):
    cluster = request.getfixturevalue(fixture)
    env_file = worker(cluster).files[serving_defaults.ENV_FILE]
    assert f"GLOO_SOCKET_IFNAME={control}\n" in env_file.content_string
    env_file.content_string = env_file.content_string.replace(f"GLOO_SOCKET_IFNAME={control}", "GLOO_SOCKET_IFNAME=lo")
    found = failures(cluster)
    assert set(found) == {"env_file"}
    assert f"GLOO_SOCKET_IFNAME: expected {control}, found lo" in found["env_file"]


def test_vllm_host_ip_is_the_control_address_and_only_vllm_needs_it(spark):
    state = worker(spark)
    state.container_env["VLLM_HOST_IP"] = "192.168.101.11"  # the second rail's: not the control address
    found = failures(spark)
    assert set(found) == {"container_env"}, found
    assert "VLLM_HOST_IP: expected 192.168.100.11, found 192.168.101.11" in found["container_env"]
    spark.node("spark-2").spec.data.update(serving_engine="sglang", serving_image="lmsysorg/sglang:spark",
                                           serving_image_entrypoint_is_engine=False)
    assert "container_env" not in failures(spark)


# endpoint_problems is tested with the other cross-node checks, in test_verify_peers.py.
peers = _load(VERIFY / "test_peers.py", "verify_test_peers")


@pytest.mark.parametrize("stderr, hint", [
    ("Host key verification failed.", "known_hosts"),
    ("spark@10.0.0.2: Permission denied (publickey).", "authorized_keys"),
    ("ssh: Could not resolve hostname spark-9: Name or service not known", "~/.ssh/config"),
    ("ssh: connect to host 10.0.0.2 port 22: Connection timed out", "QSFP link"),
])
def test_ssh_failures_point_at_the_cause(stderr, hint):
    assert hint in peers.ssh_diagnosis(stderr)
