"""The cross-node checks (tests/verify/test_peers.py) against simulated nodes on
a simulated QSFP fabric, in both network layouts: every link's full-MTU ping
must come back, every rail must carry RDMA (ib_write_bw) in both directions
and all rails at once, at a bandwidth the link rate allows on real hardware,
and the API must generate, not only list its model. The endpoint probe itself
runs for real, against HTTP servers on 127.0.0.1."""

from __future__ import annotations

import inspect
import io
import ipaddress
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from _pytest.outcomes import Failed

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "tests" / "verify"
STANDIN = REPO / "roles" / "standin" / "files" / "standin" / "server.py"

from sparkverify.expect import ROCE_ENV  # noqa: E402
from spark_cluster.schema import DEFAULTS as SETTING_DEFAULTS  # noqa: E402

RDMA_MIN_LINK_FRACTION = SETTING_DEFAULTS["rdma_min_link_fraction"]
from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.parse import ipv4_mapped_gid, parse_write_bw  # noqa: E402
from sparkverify.rails import node_fabric  # noqa: E402
from sparkverify.remote import Result, VerifyEnvironmentError  # noqa: E402
from sparkverify.report import ResultBook, write_json  # noqa: E402
from source_module import load_source


def _load(name):
    return load_source(f"verify_{name}", VERIFY / f"{name}.py")


peers = _load("test_peers")
SERVED = "deepseek-v4-flash"
RAIL_1, RAIL_2 = "enp1s0f1np1", "enP2p1s0f1np1"
HCA_1, HCA_2 = "rocep1s0f1", "roceP2p1s0f1"
EMPTY_GID = ":".join(["0000"] * 8)
# One PCIe half of a CX-7 (ib_write_bw, field report), one hot-plugged after boot,
# and the link rate sysfs reports for a half.
HALF_GBITS, DEGRADED_GBITS, HALF_RATE = 111.7, 13.1, "100 Gb/sec (2X HDR)"


# --- a simulated cluster --------------------------------------------------------

@dataclass
class Server:
    """An ib_write_bw server one run started."""

    node: str
    hca: str
    gid: int
    port: int
    outcome: Result | None = None  # set once its client ran


@dataclass
class Wire:
    """The QSFP side as the checks see it through the nodes' commands."""

    nodes: dict = field(default_factory=dict)
    servers: dict = field(default_factory=dict)  # TCP port -> Server
    events: list = field(default_factory=list)  # ("server"|"client"|"waited", node, hca, TCP port) in order
    down_hcas: set = field(default_factory=set)  # (node, hca) whose RDMA fails
    # (client node, hca) -> how many runs still end 0 with no result line (soft-RoCE under TCG)
    blank_runs: dict = field(default_factory=dict)
    gbits: dict = field(default_factory=dict)  # (node, hca) -> Gb/s it moves (else HALF_GBITS)
    refuses_tcp: set = field(default_factory=set)  # nodes that drop incoming TCP (a firewall)
    ping_answers: dict = field(default_factory=dict)  # (source, netdev) -> replies out of each count
    ping_mode: dict = field(default_factory=dict)  # (source, netdev) -> "too_big"
    pinged: list = field(default_factory=list)  # (source, netdev, target ip, payload bytes, count)
    api: int | None = None  # the local port standing in for the head's API
    probe_commands: list = field(default_factory=list)  # the API probes' command lines, as a node saw them

    def holder(self, ip):
        """(node, netdev) that holds `ip` on the QSFP side, or (None, None)."""
        for peer in self.nodes.values():
            for link in node_fabric(peer.spec).links:
                if link.ip == ip:
                    return peer, link
        return None, None


class FakeBackground:
    def __init__(self, wire, command, result=None, server=None):
        self.wire, self.command, self.result, self.server = wire, command, result, server

    def wait(self, timeout):
        if self.server is None:
            self.wire.events.append(("waited", *self.result_key))
            return self.result
        if self.server.outcome is None:  # no client ever came: killed by its timeout
            return Result(self.command, 124, "", "")
        return self.server.outcome


WRITE_BW = re.compile(r"ib_write_bw -d (\S+) -i (\d+) -x (\d+) -p (\d+) -D (\d+) -F --report_gbits(?: (\S+))?")


def perftest_table(gbits):
    """A client's result table as perftest prints it with --report_gbits."""
    return ("-" * 87 + "\n"
            " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]\n"
            f" 65536      639123           0.00               {gbits:.2f}\t\t   0.213047\n" + "-" * 87 + "\n")


@dataclass
class FakePeer:
    spec: object
    wire: Wire
    gid_index: int = 3  # where its devices hold the RoCE v2 IPv4 GID (3 on a CX-7)
    roce_env: str | None = None
    rates: dict = field(default_factory=dict)  # device -> what sysfs says (default HALF_RATE)
    tools: set = field(default_factory=lambda: {"ib_write_bw", "ping", "python3"})

    @property
    def name(self):
        return self.spec.name

    def read_root_file(self, path):
        return self.roce_env if path == ROCE_ENV else None

    def device_ip(self, device):
        """The address this device's GIDs follow: its rail's, or the bond's over it."""
        fab = node_fabric(self.spec)
        rail = next((rail for rail in fab.rails if rail.rdma_device == device), None)
        return None if rail is None else rail.ip or fab.control_ip

    def run(self, command, timeout=60, stdin=None):
        argv = shlex.split(command)
        if command.startswith("command -v "):
            return Result(command, 0 if argv[-1] in self.tools else 1, "", "")
        if command.startswith("timeout 20 ping "):
            return self.ping(command, argv)
        if argv[:4] == ["grep", "-s", "-H", "."]:
            return Result(command, 0, self.gid_listing(argv[4].removesuffix("/gids/*")), "")
        if argv[0] == "cat" and argv[1].endswith("/rate"):
            device = argv[1].split("/")[4]
            if device in self.rates and self.rates[device] is None:
                return Result(command, 1, "", f"cat: {argv[1]}: No such file or directory")
            return Result(command, 0, self.rates.get(device, HALF_RATE) + "\n", "")
        if command.startswith("python3 -c "):
            return self.probe(command, timeout, stdin)
        return Result(command, 127, "", f"not simulated: {command}")

    run_root = run

    def gid_listing(self, port_dir):
        ip = self.device_ip(port_dir.split("/")[4])
        if ip is None:
            return ""
        return "".join([f"{port_dir}/gids/{i}:{ipv4_mapped_gid(ip) if i == self.gid_index else EMPTY_GID}\n"
                        for i in range(self.gid_index + 1)] + [f"{port_dir}/gid_attrs/types/{self.gid_index}:RoCE v2\n"])

    # ping -M do -s SIZE -c COUNT -W 2 -I NETDEV TARGET, as iputils prints it
    def ping(self, command, argv):
        count, size, netdev, target = (int(argv[argv.index("-c") + 1]), int(argv[argv.index("-s") + 1]),
                                       argv[argv.index("-I") + 1], argv[-1])
        self.wire.pinged.append((self.name, netdev, target, size, count))
        own = next(link for link in node_fabric(self.spec).links if link.netdev == netdev)
        peer, link = self.wire.holder(target)
        # Reached only over a link on the target's own subnet (one wire per rail).
        reachable = peer is not None and ipaddress.ip_interface(link.address).network == \
            ipaddress.ip_interface(own.address).network
        lines = [f"PING {target} ({target}) from {own.ip} {netdev}: {size}({size + 28}) bytes of data."]
        if self.wire.ping_mode.get((self.name, netdev)) == "too_big":
            lines += ["ping: local error: message too long, mtu=1500"] * count
            lines += ["", f"--- {target} ping statistics ---",
                      f"{count} packets transmitted, 0 received, +{count} errors, 100% packet loss, time 2046ms", ""]
            return Result(command, 1, "\n".join(lines), "")
        answered = min(count, self.wire.ping_answers.get((self.name, netdev), count)) if reachable else 0
        lines += [f"{size + 8} bytes from {target}: icmp_seq={seq} ttl=64 time=0.41{seq} ms"
                  for seq in range(1, answered + 1)]
        lines += ["", f"--- {target} ping statistics ---",
                  f"{count} packets transmitted, {answered} received, "
                  f"{round(100 * (count - answered) / count)}% packet loss, time 2003ms"]
        if answered:
            lines.append("rtt min/avg/max/mdev = 0.298/0.355/0.412/0.057 ms")
        # iputils: exit 0 when any reply came back
        return Result(command, 0 if answered else 1, "\n".join(lines) + "\n", "")

    def start(self, command):
        hca, _, gid, port, _, target = WRITE_BW.search(command).groups()
        if target is None:  # a server: it listens on -p
            server = self.wire.servers[int(port)] = Server(self.name, hca, int(gid), int(port))
            self.wire.events.append(("server", self.name, hca, int(port)))
            return FakeBackground(self.wire, command, server=server)
        self.wire.events.append(("client", self.name, hca, int(port)))
        background = FakeBackground(self.wire, command, result=self.write_bw_client(command, hca, int(gid), int(port), target))
        background.result_key = (self.name, hca, int(port))
        return background

    def rdma_ok(self, hca, gid):
        return self.device_ip(hca) is not None and gid == self.gid_index and (self.name, hca) not in self.wire.down_hcas

    def write_bw_client(self, command, hca, gid, port, target):
        if "ib_write_bw" not in self.tools:
            return Result(command, 127, "bash: ib_write_bw: command not found\n", "")
        server = self.wire.servers.get(port)
        peer, _ = self.wire.holder(target)
        if server is None or peer is None or server.node != peer.name or peer.name in self.wire.refuses_tcp:
            # the client's retry loop gave up: what it printed the last time
            return Result(command, 1, f" Couldn't connect to {target}:{port}\n"
                                      " Unable to open file descriptor for socket connection Unable to init the socket"
                                      " connection\n", "")
        if not (self.rdma_ok(hca, gid) and peer.rdma_ok(server.hca, server.gid)):
            server.outcome = Result(command, 1, "", " Failed to complete run\n")
            return Result(command, 1, " Completion with error at client\n Failed status 12: wr_id 0 syndrom 0x81\n"
                                      "scnt=128, ccnt=0\n", "")
        if self.wire.blank_runs.get((self.name, hca), 0) > 0:
            self.wire.blank_runs[(self.name, hca)] -= 1
            banner = " RDMA_Write BW Test\n Dual-port       : OFF\n"
            server.outcome = Result(command, 0, banner, "")
            return Result(command, 0, banner, "")
        gbits = min(self.wire.gbits.get((self.name, hca), HALF_GBITS), self.wire.gbits.get((peer.name, server.hca), HALF_GBITS))
        server.outcome = Result(command, 0, perftest_table(gbits), "")
        return Result(command, 0, perftest_table(gbits), "")

    def probe(self, command, timeout, stdin=None):
        """The real probe script, run here against the local stand-in of the head's API."""
        head = self.wire.nodes[next(iter(self.wire.nodes))]
        local = command.replace(f"http://{head.spec.qsfp_ip}:{head.spec.get('api_port')}",
                                f"http://127.0.0.1:{self.wire.api}")
        local = shlex.quote(sys.executable) + local[len("python3"):]
        done = subprocess.run(["bash", "-c", local], capture_output=True, text=True, timeout=timeout, input=stdin)
        # The key travels on stdin, never in the command line a node's users can read.
        self.wire.probe_commands.append(command)
        return Result(command, done.returncode, done.stdout, done.stderr)


class FakeCluster:
    def __init__(self, wire):
        self.wire = wire
        self._nodes = wire.nodes

    def node(self, name):
        return self._nodes[name]

    @property
    def head(self):
        return next(iter(self._nodes.values()))

    @property
    def workers(self):
        return list(self._nodes.values())[1:]

    def others(self, name):
        return [node for n, node in self._nodes.items() if n != name]


def roce_env(hcas, gid):
    return f"NCCL_IB_HCA={','.join(hcas)}\nNCCL_IB_GID_INDEX={gid}\n"


def converged(monkeypatch, inventory, **settings):
    """The inventory's nodes on a working QSFP wire; `settings` change group_data."""
    monkeypatch.setenv("SPARK_CLUSTER_READ_ONLY_INVENTORY", "1")
    monkeypatch.setattr(peers, "time", SimpleNamespace(sleep=lambda seconds: None))
    wire = Wire()
    for spec in load_cluster(inventory, REPO):
        spec.data.update(settings)
        hcas = node_fabric(spec).rdma_devices
        wire.nodes[spec.name] = FakePeer(spec, wire, roce_env=roce_env(hcas, 3))
    return FakeCluster(wire)


@pytest.fixture
def spark(monkeypatch):
    """Two converged Sparks (inventory/spark2.py): dual_subnet, one cable in port 1, two rails."""
    return converged(monkeypatch, "inventory/spark2.py")


@pytest.fixture
def spark_bond(monkeypatch):
    """The same Sparks with network_mode = "bond": one link (bond0) over both rails."""
    return converged(monkeypatch, "inventory/spark2.py", network_mode="bond")


@pytest.fixture
def lab(monkeypatch):
    """The 2-node lab (inventory/lab2.py): soft-RoCE, rdma_min_link_fraction = 0."""
    return converged(monkeypatch, "inventory/lab2.py")


def call(check, cluster, **given):
    """Call a check with the arguments its signature asks for (pytest's way)."""
    properties = given.pop("properties", [])
    available = {"cluster": cluster, "record_property": lambda key, value: properties.append((key, value)),
                 **given}
    return check(**{name: available[name] for name in inspect.signature(check).parameters})


def failure(check, cluster, **given) -> str:
    with pytest.raises(Failed) as caught:
        call(check, cluster, **given)
    return str(caught.value)


# --- ping_mtu ---------------------------------------------------------------------

def test_converged_rails_pass_ping_mtu_over_every_link(spark):
    for name in ("spark-1", "spark-2"):
        call(peers.test_ping_mtu, spark, node=spark.node(name))
    # Each node reached from its peer on every rail, at its address on that rail, with
    # full-size frames (9000 - 28 header bytes).
    assert spark.wire.pinged == [
        ("spark-2", RAIL_1, "192.168.100.10", 8972, peers.PING_COUNT),
        ("spark-2", RAIL_2, "192.168.101.10", 8972, peers.PING_COUNT),
        ("spark-1", RAIL_1, "192.168.100.11", 8972, peers.PING_COUNT),
        ("spark-1", RAIL_2, "192.168.101.11", 8972, peers.PING_COUNT)]


def test_a_bond_is_pinged_over_the_bond(spark_bond):
    call(peers.test_ping_mtu, spark_bond, node=spark_bond.node("spark-2"))
    assert spark_bond.wire.pinged == [("spark-1", "bond0", "192.168.100.11", 8972, peers.PING_COUNT)]


def test_a_peers_rail_that_drops_full_mtu_frames_fails_ping_mtu_for_that_rail(spark):
    spark.wire.ping_mode[("spark-1", RAIL_2)] = "too_big"
    message = failure(peers.test_ping_mtu, spark, node=spark.node("spark-2"))
    assert len(message.split("\n")) == 1, message  # the first rail is fine
    assert message.startswith(f"spark-2: ping from spark-1 over {RAIL_2} to 192.168.101.11 "
                              "(9000-byte frames, do-not-fragment): expected 3 of 3 answered, found too_big: 0 of 3 "
                              "answered (ping: local error: message too long, mtu=1500)")
    assert f"fix: a device on the path has MTU below 9000 ({RAIL_2} or a switch port)" in message


def test_one_lost_jumbo_frame_fails_ping_mtu_as_lossy(spark):
    # ping exits 0 here: one reply is enough for it, not for a link NCCL relies on.
    spark.wire.ping_answers[("spark-1", RAIL_1)] = 1
    message = failure(peers.test_ping_mtu, spark, node=spark.node("spark-2"))
    assert f"expected {peers.PING_COUNT} of {peers.PING_COUNT} answered, found lossy: 1 of 3 answered" in message
    assert f"ip -s link show {RAIL_1}" in message and "cable" in message
    call(peers.test_ping_mtu, spark, node=spark.node("spark-1"))  # the other direction is fine


def test_no_reply_fails_ping_mtu(spark):
    spark.wire.ping_answers[("spark-1", RAIL_2)] = 0
    message = failure(peers.test_ping_mtu, spark, node=spark.node("spark-2"))
    assert f"over {RAIL_2} to 192.168.101.11" in message and "found no_reply: 0 of 3 answered" in message
    assert f"no route or no link over {RAIL_2}" in message


# --- rdma: the plan -----------------------------------------------------------------

def end(node, hca, gid=3, ip="192.168.100.10"):
    return peers.RdmaEnd(node, hca, 1, gid, ip)


def test_rdma_plan_runs_each_rail_both_ways_then_all_rails_head_to_worker():
    head = [end("spark-1", HCA_1, 3, "192.168.100.10"), end("spark-1", HCA_2, 3, "192.168.101.10")]
    worker = [end("spark-2", HCA_1, 1, "192.168.100.11"), end("spark-2", HCA_2, 1, "192.168.101.11")]
    alone, together = peers.rdma_plan([RAIL_1, RAIL_2], head, worker, 18700)
    assert [[(r.rail, r.client.node, r.server.node) for r in runs] for runs in alone] == [
        [(RAIL_1, "spark-1", "spark-2")], [(RAIL_1, "spark-2", "spark-1")],
        [(RAIL_2, "spark-1", "spark-2")], [(RAIL_2, "spark-2", "spark-1")]]
    assert [(r.rail, r.client, r.server) for r in together] == [(RAIL_1, head[0], worker[0]), (RAIL_2, head[1], worker[1])]
    assert [r.tcp_port for runs in alone for r in runs] + [r.tcp_port for r in together] == list(range(18700, 18706))


def test_rdma_ports_never_collide_across_runs_or_workers():
    four = [end("n", f"hca{i}") for i in range(4)]
    ports = []
    for rank in (1, 2, 3):
        first = peers.RDMA_BASE_PORT + rank * peers.RDMA_PORTS_PER_WORKER
        alone, together = peers.rdma_plan([f"rail{i}" for i in range(4)], four, four, first)
        runs = [r.tcp_port for runs in alone for r in runs] + [r.tcp_port for r in together]
        ports += runs + [port + peers.RDMA_RETRY_PORT_OFFSET for port in runs]  # and each one's second run
    assert len(ports) == 72 and len(set(ports)) == 72


def test_both_sides_of_a_run_use_the_same_perftest_options_and_the_client_names_the_server():
    run = peers.RdmaRun(RAIL_2, end("spark-2", HCA_2, 3, "192.168.101.11"), end("spark-1", HCA_2, 1), 18640)
    server, client = peers.server_command(run), peers.client_command(run)
    assert f"ib_write_bw -d {HCA_2} -i 1 -x 3 -p 18640 -D {peers.RDMA_DURATION_S} -F --report_gbits" in server
    assert f"ib_write_bw -d {HCA_2} -i 1 -x 1 -p 18640 -D {peers.RDMA_DURATION_S} -F --report_gbits 192.168.101.11" in client
    # One line, and valid sh: the client retries only a refused connect.
    assert "\n" not in client
    subprocess.run(["sh", "-n", "-c", client], check=True)


def test_the_client_retries_a_refused_connect_and_nothing_else(tmp_path):
    # The client's own shell, run here with a stand-in ib_write_bw.
    counter = tmp_path / "calls"
    stub = tmp_path / "ib_write_bw"
    stub.write_text("#!/bin/sh\necho x >> " + str(counter) + "\n"
                    "n=$(wc -l < " + str(counter) + ")\n"
                    "if [ \"$n\" -lt 3 ]; then echo \" Couldn't connect to 192.168.101.11:18640\"; exit 1; fi\n"
                    "if [ \"$STUB_FAIL\" = 1 ]; then echo ' Completion with error at client'; exit 1; fi\n"
                    "echo ' #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]'\n"
                    "echo ' 65536      1000           0.00               98.50               0.187'\n")
    stub.chmod(0o755)
    run = peers.RdmaRun(RAIL_2, end("spark-2", HCA_2), end("spark-1", HCA_2), 18640)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", peers.client_command(run).replace("sleep 1", "true")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and parse_write_bw(done.stdout) == 98.5
    assert len(counter.read_text().split()) == 3
    counter.write_text("x\nx\n")  # connects at once, then the run fails: no retry
    done = subprocess.run(["sh", "-c", peers.client_command(run)], env={**env, "STUB_FAIL": "1"},
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Completion with error" in done.stdout
    assert len(counter.read_text().split()) == 3


# --- rdma: the check ----------------------------------------------------------------

def rdma_properties(cluster, worker="spark-2") -> dict:
    properties = []
    call(peers.test_rdma, cluster, worker_name=worker, properties=properties)
    assert [key for key, _ in properties] == ["detail", "gbits"]
    return dict(properties)


def rdma_detail(cluster, worker="spark-2"):
    return rdma_properties(cluster, worker)["detail"]


def test_converged_rails_carry_rdma_alone_both_ways_and_all_at_once(spark):
    properties = rdma_properties(spark)
    detail = properties["detail"]
    # The figures themselves, for the JSON report's row (its "figures").
    assert properties["gbits"] == {f"{RAIL_1} spark-1 -> spark-2": 111.7, f"{RAIL_1} spark-2 -> spark-1": 111.7,
                                   f"{RAIL_2} spark-1 -> spark-2": 111.7, f"{RAIL_2} spark-2 -> spark-1": 111.7,
                                   "all rails spark-1 -> spark-2": 223.4}
    assert detail == (f"rail {RAIL_1}: spark-1 -> spark-2 111.7 Gb/s, spark-2 -> spark-1 111.7 Gb/s; "
                      f"rail {RAIL_2}: spark-1 -> spark-2 111.7 Gb/s, spark-2 -> spark-1 111.7 Gb/s; "
                      "all rails at once spark-1 -> spark-2: 111.7 + 111.7 = 223.4 Gb/s")
    events = spark.wire.events
    servers = {(s.node, s.hca, s.gid) for s in spark.wire.servers.values()}
    assert servers == {(node, hca, 3) for node in ("spark-1", "spark-2") for hca in (HCA_1, HCA_2)}
    assert len(spark.wire.servers) == 6  # 2 rails x 2 directions, then 2 rails at once, each on its own port
    # All rails at once: both servers, then both clients, before any client is waited for.
    assert [kind for kind, *_ in events[-6:]] == ["server", "server", "client", "client", "waited", "waited"]


def test_each_rail_talks_to_the_peers_address_on_that_rail(spark):
    rdma_detail(spark)
    clients = [(e[1], e[2]) for e in spark.wire.events if e[0] == "client"]
    assert clients[:4] == [("spark-1", HCA_1), ("spark-2", HCA_1), ("spark-1", HCA_2), ("spark-2", HCA_2)]


def test_a_bond_carries_rdma_on_both_rails_to_the_control_address(spark_bond):
    detail = rdma_detail(spark_bond)
    assert detail.startswith(f"rail {RAIL_1}: spark-1 -> spark-2 111.7 Gb/s") and "= 223.4 Gb/s" in detail


def test_one_rails_rdma_failing_fails_that_rail_alone_and_at_once_while_the_other_works(spark):
    spark.wire.down_hcas.add(("spark-2", HCA_2))
    properties = []
    with pytest.raises(Failed) as caught:
        call(peers.test_rdma, spark, worker_name="spark-2", properties=properties)
    lines = str(caught.value).split("\n")
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"spark-2: RDMA on rail {RAIL_2} spark-1 -> spark-2 (client spark-1 {HCA_2} port 1 gid 3, "
                               f"server spark-2 {HCA_2} port 1 gid 3): expected an ib_write_bw result "
                               f"({peers.RDMA_DURATION_S} s), found client: Completion with error at client / Failed status 12: wr_id 0 "
                               "syndrom 0x81; server: Failed to complete run; fix:")
    assert lines[1].strip().startswith(f"RDMA on rail {RAIL_2} spark-2 -> spark-1")
    assert lines[2].strip().startswith(f"RDMA on rail {RAIL_2} spark-1 -> spark-2") and "all rails at once" in lines[2]
    assert all("fix: check 'roce_gid' on both nodes" in line for line in lines)
    assert RAIL_1 not in str(caught.value)
    # What worked is still measured and reported.
    detail = dict(properties)["detail"]
    assert detail == (f"rail {RAIL_1}: spark-1 -> spark-2 111.7 Gb/s, spark-2 -> spark-1 111.7 Gb/s; "
                      f"rail {RAIL_2}: spark-1 -> spark-2 failed, spark-2 -> spark-1 failed; "
                      "all rails at once spark-1 -> spark-2: 111.7 + failed = 111.7 Gb/s")


def test_a_run_that_ends_well_without_a_result_is_measured_once_more_on_fresh_ports(lab):
    lab.wire.blank_runs[("spark-1", HCA_2)] = 1  # spark-1 -> spark-2 on rail 2, as the lab did once in CI
    properties = rdma_properties(lab)
    assert properties["detail"] == (f"rail {RAIL_1}: spark-1 -> spark-2 111.7 Gb/s, spark-2 -> spark-1 111.7 Gb/s; "
                                    f"rail {RAIL_2}: spark-1 -> spark-2 111.7 Gb/s (second run), spark-2 -> spark-1 111.7 Gb/s; "
                                    "all rails at once spark-1 -> spark-2: 111.7 + 111.7 = 223.4 Gb/s")
    servers = [e for e in lab.wire.events if e[0] == "server" and e[1] == "spark-2" and e[2] == HCA_2]
    assert servers[1][3] == servers[0][3] + peers.RDMA_RETRY_PORT_OFFSET  # never the first run's port
    assert len(lab.wire.servers) == 7


def test_a_run_without_a_result_twice_fails_and_says_it_ran_twice(lab):
    lab.wire.blank_runs[("spark-1", HCA_2)] = 2
    message = failure(peers.test_rdma, lab, worker_name="spark-2")
    assert message.startswith(f"spark-2: RDMA on rail {RAIL_2} spark-1 -> spark-2 (client spark-1 {HCA_2} port 1 gid 3, "
                              f"server spark-2 {HCA_2} port 1 gid 3): expected an ib_write_bw result "
                              f"({peers.RDMA_DURATION_S} s), found no result line in the client's output (second run)")


def test_a_failing_run_is_not_repeated(spark):
    spark.wire.down_hcas.add(("spark-2", HCA_2))
    failure(peers.test_rdma, spark, worker_name="spark-2")
    assert len(spark.wire.servers) == 6


def test_a_degraded_rail_fails_on_real_hardware_by_its_link_rate(spark):
    assert spark.node("spark-2").spec.get("rdma_min_link_fraction") == 0.5  # group_data's value, as shipped
    spark.wire.gbits[("spark-2", HCA_2)] = DEGRADED_GBITS
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    lines = message.split("\n")
    assert len(lines) == 2, lines  # both directions of that rail; the total still clears one rail's rate
    threshold = RDMA_MIN_LINK_FRACTION * 100
    assert lines[0].startswith(f"spark-2: RDMA on rail {RAIL_2} spark-1 -> spark-2 (client spark-1 {HCA_2} port 1 gid 3, "
                               f"server spark-2 {HCA_2} port 1 gid 3) bandwidth: expected >= {threshold:.1f} Gb/s "
                               f"({RDMA_MIN_LINK_FRACTION:g} of the 100 Gb/s link rate sysfs reports), found 13.1 Gb/s; "
                               "fix: a CX-7 hot-plugged after boot stays at ~13 Gb/s")
    assert f"`ethtool {RAIL_2}`" in lines[0]


def test_all_rails_at_once_below_one_rails_share_fails(spark):
    for hca in (HCA_1, HCA_2):
        spark.wire.gbits[("spark-1", hca)] = 40.0  # each rail alone is also below 50
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    assert "RDMA spark-1 -> spark-2 on all rails at once: expected >= 50.0 Gb/s in total" not in message
    spark.wire.gbits.clear()
    for hca in (HCA_1, HCA_2):
        spark.wire.gbits[("spark-1", hca)] = 24.0
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    assert ("RDMA spark-1 -> spark-2 on all rails at once: expected >= 50.0 Gb/s in total (0.5 of the 100 Gb/s link "
            "rate), found 48.0 Gb/s") in message


def test_the_lab_reports_bandwidth_without_judging_it(lab):
    assert lab.node("spark-2").spec.get("rdma_min_link_fraction") == 0
    for hca in (HCA_1, HCA_2):
        lab.wire.gbits[("spark-2", hca)] = 0.3  # soft-RoCE under emulation
        lab.node("spark-1").rates[hca] = None  # never read where nothing is judged
    detail = rdma_detail(lab)
    assert "spark-1 -> spark-2 0.3 Gb/s" in detail and detail.endswith("0.3 + 0.3 = 0.6 Gb/s")


def test_an_unreadable_link_rate_fails_on_real_hardware(spark):
    spark.node("spark-1").rates[HCA_1] = None
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    lines = message.split("\n")
    assert len(lines) == 1, lines  # named once, though two runs of that rail needed it
    assert lines[0].startswith(f"spark-2: link rate on rail {RAIL_1}: expected a rate in Gb/s from sysfs (ports/N/rate), "
                               f"found spark-1 {HCA_1} port 1: unreadable (cat: /sys/class/infiniband/{HCA_1}/ports/1/rate: "
                               "No such file or directory)")


def test_a_fraction_outside_0_to_1_is_named(spark):
    spark.node("spark-2").spec.data["rdma_min_link_fraction"] = 50
    with pytest.raises(VerifyEnvironmentError, match="'rdma_min_link_fraction' must be a number from 0 to 1, got 50"):
        call(peers.test_rdma, spark, worker_name="spark-2")


def test_a_rail_without_its_gid_is_named_and_the_other_rail_still_runs(spark):
    worker = spark.node("spark-2")
    worker.gid_index = 1  # the worker's GIDs sit at another index: detected per device, not assumed
    rdma_detail(spark)
    assert {(s.node, s.gid) for s in spark.wire.servers.values()} == {("spark-1", 3), ("spark-2", 1)}
    original = worker.gid_listing
    worker.gid_listing = lambda port_dir: "" if HCA_2 in port_dir else original(port_dir)
    spark.wire.servers.clear()
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    assert message.startswith(f"spark-2: {HCA_2} on spark-2 (rail {RAIL_2}): expected a RoCE v2 GID of 192.168.101.11, "
                              "found none in its GID table; fix: see check 'roce_gid' on spark-2")
    assert {s.hca for s in spark.wire.servers.values()} == {HCA_1}


def test_a_head_that_cannot_serve_fails_rdma_worker_to_head_only(spark):
    spark.wire.refuses_tcp.add("spark-1")
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    failing = re.findall(r"RDMA on rail (\S+) (\S+ -> \S+)", message)
    assert failing == [(RAIL_1, "spark-2 -> spark-1"), (RAIL_2, "spark-2 -> spark-1")]
    assert "found client: Couldn't connect to 192.168.100.10:" in message  # the rail's own address
    assert "found client: Couldn't connect to 192.168.101.10:" in message


def test_missing_perftest_fails_rdma_before_any_run(spark):
    spark.node("spark-2").tools.discard("ib_write_bw")
    message = failure(peers.test_rdma, spark, worker_name="spark-2")
    assert message == "spark-2: ib_write_bw on spark-2: expected installed, found missing; fix: install perftest (roles/rdma)"
    assert spark.wire.servers == {}


# --- openai_endpoint ----------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port, deadline_s=15):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing healthy on 127.0.0.1:{port}")
        time.sleep(0.1)


def start_standin(tmp_path, key=None):
    """The lab's stand-in engine, one node, serving on 127.0.0.1; returns (port, process)."""
    port = free_port()
    argv = ["vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash", "--served-model-name", SERVED, "--host", "127.0.0.1",
            "--port", str(port), "--nnodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1",
            "--master-port", str(free_port())]
    process = subprocess.Popen([sys.executable, str(STANDIN), *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={"SPARK_STANDIN_STATE_FILE": str(tmp_path / "state.json"), "PATH": "/usr/bin:/bin",
                                    "SPARK_ENGINE": "vllm",  # serving.env names the engine
                                    **({"VLLM_API_KEY": key} if key else {})})
    wait_healthy(port)
    return port, process


@pytest.fixture
def standin(tmp_path):
    port, process = start_standin(tmp_path)
    try:
        yield port
    finally:
        process.kill()
        process.wait(timeout=5)


def test_an_api_open_to_every_address_is_also_asked_from_the_controller(monkeypatch, lab, standin):
    lab.wire.api = standin
    for node in lab.wire.nodes.values():
        node.spec.data.update(api_listen="all", ssh_hostname="127.0.0.1", api_port=standin)
    properties = []
    call(peers.test_openai_endpoint, lab, head_name="spark-1", properties=properties)
    assert "completion from this controller" in properties[0][1] and "completion from spark-2" in properties[0][1]
    # Where the controller cannot reach it, the check says so and why.
    for node in lab.wire.nodes.values():
        node.spec.data.update(api_port=free_port())  # nothing listens there
    with pytest.raises(Failed, match="from this controller.*a firewall between here and the head"):
        call(peers.test_openai_endpoint, lab, head_name="spark-1")


def test_an_answer_within_half_a_millisecond_still_has_its_tokens_per_second(monkeypatch, standin, capsys):
    """The stand-in on this machine can answer faster than the 3 decimals elapsed_s
    keeps: the speed comes from the time as measured (this made the test above flaky)."""
    ticks = iter([100.0, 100.0002])
    clock = ModuleType("time")
    clock.monotonic = lambda: next(ticks)
    monkeypatch.setitem(sys.modules, "time", clock)  # the probe's `import time`
    monkeypatch.setattr(sys, "argv", ["probe", f"http://127.0.0.1:{standin}", SERVED, "10", "16"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    exec(compile(peers.ENDPOINT_PROBE, "endpoint_probe", "exec"), {})
    chat = json.loads(capsys.readouterr().out.splitlines()[-1])["chat"]
    assert chat["elapsed_s"] == 0.0 and chat["completion_tokens"] > 0
    assert chat["tokens_per_s"] == round(chat["completion_tokens"] / 0.0002, 2)
    assert peers.completion_speed("spark-2", {"chat": chat}).endswith(" tokens/s")


def test_with_an_api_key_the_probe_sends_it_on_stdin_and_passes(monkeypatch, tmp_path):
    key = "lab-key-0123456789abcdef"
    key_file = tmp_path / "api_key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    port, process = start_standin(tmp_path, key=key)
    try:
        without = converged(monkeypatch, "inventory/lab2.py")
        without.wire.api = port
        with pytest.raises(Failed, match="HTTP 401"):
            call(peers.test_openai_endpoint, without, head_name="spark-1")
        keyed = converged(monkeypatch, "inventory/lab2.py", serving_api_key_file=str(key_file))
        keyed.wire.api = port
        properties = []
        call(peers.test_openai_endpoint, keyed, head_name="spark-1", properties=properties)
        assert "tokens/s" in properties[0][1]
        assert keyed.wire.probe_commands and not any(key in c for c in keyed.wire.probe_commands)
    finally:
        process.kill()
        process.wait(timeout=5)


def test_the_lab_stand_in_passes_openai_endpoint_and_reports_tokens_per_second(lab, standin):
    lab.wire.api = standin
    properties = []
    call(peers.test_openai_endpoint, lab, head_name="spark-1", properties=properties)
    ((key, detail),) = properties
    assert key == "detail"
    assert re.fullmatch(r"completion from spark-2: \d+ tokens in \d+\.\d\d s = \d+\.\d tokens/s", detail), detail


ENGINE_FAULTS = {
    # how an engine that lists its model fails to generate -> the words of the check's message
    "http_500": "expected HTTP 200, found HTTP 500: {\"error\": \"CUDA out of memory\"}",
    "empty_content": "expected generated text in choices[0].message.content, found ''",
    "zero_tokens": "expected usage.completion_tokens > 0, found 0",
    "no_usage": "expected usage.completion_tokens > 0, found no usage.completion_tokens",
    "hangs": "expected an answer within 1 s, found TimeoutError",
}


def fake_engine(fault):
    class Engine(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self.answer(200, {})
            else:
                self.answer(200, {"object": "list", "data": [{"id": SERVED, "object": "model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if fault == "http_500":
                return self.answer(500, {"error": "CUDA out of memory"})
            if fault == "hangs":
                time.sleep(3)
            content = "" if fault == "empty_content" else "Hello"
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                      "usage": {"prompt_tokens": 9, "completion_tokens": 0 if fault == "zero_tokens" else 2}}
            if fault == "no_usage":
                del answer["usage"]
            self.answer(200, answer)

    return Engine


@pytest.mark.parametrize("fault", sorted(ENGINE_FAULTS))
def test_an_engine_that_lists_its_model_but_cannot_generate_fails_openai_endpoint(lab, monkeypatch, fault):
    monkeypatch.setattr(peers, "CHAT_TIMEOUT_S", 1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake_engine(fault))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lab.wire.api = server.server_address[1]
    try:
        message = failure(peers.test_openai_endpoint, lab, head_name="spark-1")
    finally:
        server.shutdown()
        server.server_close()
    lines = message.split("\n")
    assert len(lines) == 1, message  # /health and /v1/models are fine
    assert message.startswith(f"spark-1: http://192.168.100.10:8000/v1/chat/completions (model {SERVED}, max_tokens 8) "
                              "from spark-2: ")
    assert ENGINE_FAULTS[fault] in message and "fix: the engine answers but does not generate" in message


def test_endpoint_problems_judge_the_completion_after_health_and_models():
    healthy = {"health": 200, "models": [SERVED],
               "chat": {"model": SERVED, "status": 200, "content": "Hi", "completion_tokens": 2, "elapsed_s": 0.5}}
    assert peers.endpoint_problems(healthy, SERVED) == []
    thinking = dict(healthy, chat=dict(healthy["chat"], content=None, reasoning="Okay, the user"))
    assert peers.endpoint_problems(thinking, SERVED) == []
    not_asked = {"health": 200, "models": [SERVED]}
    assert peers.endpoint_problems(not_asked, SERVED) == [
        ("/v1/chat/completions", "an answer to one chat completion", "no completion asked")]
    down = {"health_error": "URLError(ConnectionRefused)", "models_error": "URLError",
            "chat": {"model": SERVED, "error": "URLError(ConnectionRefused)"}}
    assert [what.split(" ")[0] for what, _, _ in peers.endpoint_problems(down, SERVED)] == [
        "/health", "/v1/models", "/v1/chat/completions"]


def test_completion_speed_is_tokens_over_elapsed_seconds():
    probe = {"chat": {"completion_tokens": 8, "elapsed_s": 0.5, "tokens_per_s": 16.0}}
    assert peers.completion_speed("spark-2", probe) == "completion from spark-2: 8 tokens in 0.50 s = 16.0 tokens/s"
    assert peers.completion_speed("spark-2", {"chat_error": "no model"}) is None


def test_the_report_keeps_a_checks_detail_and_leaves_it_out_when_there_is_none(tmp_path):
    book = ResultBook()
    book.record("spark-1", "openai_endpoint", "passed", "", 1.0, "completion from spark-2: 8 tokens/s")
    book.record("spark-1", "openai_endpoint", "passed", "", 0.1)  # teardown carries no detail
    book.record("spark-1", "bond", "passed", "", 0.2)
    write_json(tmp_path / "verify.json", book.results(), "inventory/lab2.py")
    results = json.loads((tmp_path / "verify.json").read_text())["results"]
    assert results[0]["detail"] == "completion from spark-2: 8 tokens/s"
    assert "detail" not in results[1]
