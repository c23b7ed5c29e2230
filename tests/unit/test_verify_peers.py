"""The cross-node checks (tests/verify/test_peers.py) against simulated nodes on
a simulated QSFP fabric: every ping must come back, every HCA pair must carry
RDMA in both directions, and the API must generate, not only list its model.
The endpoint probe itself runs for real, against HTTP servers on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import inspect
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
from types import SimpleNamespace

import pytest
from _pytest.outcomes import Failed

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "tests" / "verify"
STANDIN = REPO / "roles" / "standin" / "files" / "standin" / "server.py"
sys.path.insert(0, str(VERIFY))

from sparkverify.expect import ROCE_ENV  # noqa: E402
from sparkverify.inventory import NodeSpec  # noqa: E402
from sparkverify.remote import Result  # noqa: E402
from sparkverify.report import ResultBook, write_json  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(f"verify_{name}", VERIFY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _load("test_peers")
SERVED = "deepseek-v4-flash"


# --- a simulated cluster --------------------------------------------------------

@dataclass
class Server:
    """An ibv_rc_pingpong server one run started."""

    node: str
    hca: str
    gid: str
    exchanged: bool = False
    failed: bool = False


@dataclass
class Fabric:
    """The QSFP side as the checks see it through the nodes' commands."""

    nodes: dict = field(default_factory=dict)
    servers: dict = field(default_factory=dict)  # TCP port -> Server
    down_hcas: set = field(default_factory=set)  # (node, hca) whose link carries no RoCE
    refuses_tcp: set = field(default_factory=set)  # nodes that drop incoming TCP (a firewall)
    ping_answers: dict = field(default_factory=dict)  # (source, target) -> replies out of each count
    ping_mode: dict = field(default_factory=dict)  # (source, target) -> "too_big"
    pinged: list = field(default_factory=list)  # (source, target, payload bytes, count) of every ping sent
    api: int | None = None  # the local port standing in for the head's API

    def node_at(self, ip):
        return next(n for n in self.nodes.values() if n.spec.qsfp_ip == ip)


class FakeBackground:
    def __init__(self, command, server):
        self.command, self.server = command, server

    def wait(self, timeout):
        if self.server.exchanged and not self.server.failed:
            return Result(self.command, 0, "8192000 bytes in 0.01 seconds = 6553.60 Mbit/sec\n", "")
        if self.server.failed:
            return Result(self.command, 1, "", "Failed status transport retry counter exceeded (12) for wr_id 2\n")
        return Result(self.command, 124, "", "")


PINGPONG = re.compile(r"ibv_rc_pingpong -d (\S+)(?: -i (\d+))? -g (\d+) -n \d+ -p (\d+)(?: (\d+\.\d+\.\d+\.\d+))?")


@dataclass
class FakePeer:
    spec: NodeSpec
    fabric: Fabric
    hcas: dict  # device -> the GID index its RoCE v2 IPv4 entry really has
    roce_env: str | None
    tools: set = field(default_factory=lambda: {"ibv_rc_pingpong", "ping", "python3"})
    started: list = field(default_factory=list)

    @property
    def name(self):
        return self.spec.name

    def read_root_file(self, path):
        return self.roce_env if path == ROCE_ENV else None

    def run(self, command, timeout=60):
        if command.startswith("command -v "):
            found = command.split()[-1] in self.tools
            return Result(command, 0 if found else 1, "", "")
        if command.startswith("timeout 20 ping "):
            return self.ping(command)
        if "ibv_rc_pingpong" in command:
            return self.pingpong_client(command)
        if command.startswith("python3 -c "):
            return self.probe(command, timeout)
        return Result(command, 127, "", f"not simulated: {command}")

    run_root = run

    # ping -M do -s SIZE -c COUNT -W 2 -I bond0 TARGET, as iputils prints it
    def ping(self, command):
        argv = shlex.split(command)
        count, size, target = int(argv[argv.index("-c") + 1]), int(argv[argv.index("-s") + 1]), argv[-1]
        pair = (self.name, self.fabric.node_at(target).name)
        self.fabric.pinged.append((*pair, size, count))
        lines = [f"PING {target} ({target}) from {self.spec.qsfp_ip} bond0: {size}({size + 28}) bytes of data."]
        if self.fabric.ping_mode.get(pair) == "too_big":
            lines += ["ping: local error: message too long, mtu=1500"] * count
            lines += ["", f"--- {target} ping statistics ---",
                      f"{count} packets transmitted, 0 received, +{count} errors, 100% packet loss, time 2046ms", ""]
            return Result(command, 1, "\n".join(lines), "")
        answered = min(count, self.fabric.ping_answers.get(pair, count))
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
        hca, _, gid, port, _ = PINGPONG.search(command).groups()
        server = Server(self.name, hca, gid)
        self.fabric.servers[int(port)] = server
        self.started.append(command)
        return FakeBackground(command, server)

    def rdma_ok(self, hca, gid):
        return hca in self.hcas and self.hcas[hca] == int(gid) and (self.name, hca) not in self.fabric.down_hcas

    def pingpong_client(self, command):
        if "ibv_rc_pingpong" not in self.tools:
            return Result(command, 127, "", "bash: ibv_rc_pingpong: command not found")
        hca, _, gid, port, target = PINGPONG.search(command).groups()
        server = self.fabric.servers.get(int(port))
        peer = self.fabric.node_at(target)
        if server is None or server.node != peer.name or peer.name in self.fabric.refuses_tcp:
            return Result(command, 1, "", f"Couldn't connect to {target}:{port}")
        if not (self.rdma_ok(hca, gid) and peer.rdma_ok(server.hca, server.gid)):
            server.exchanged = server.failed = True
            return Result(command, 1, "", "Failed status transport retry counter exceeded (12) for wr_id 2")
        server.exchanged = True
        return Result(command, 0, "8192000 bytes in 0.01 seconds = 6553.60 Mbit/sec\n", "")

    def probe(self, command, timeout):
        """The real probe script, run here against the local stand-in of the head's API."""
        head = self.fabric.nodes[next(iter(self.fabric.nodes))]
        local = command.replace(f"http://{head.spec.qsfp_ip}:{head.spec.get('api_port')}",
                                f"http://127.0.0.1:{self.fabric.api}")
        local = shlex.quote(sys.executable) + local[len("python3"):]
        done = subprocess.run(["bash", "-c", local], capture_output=True, text=True, timeout=timeout)
        return Result(command, done.returncode, done.stdout, done.stderr)


class FakeCluster:
    def __init__(self, fabric):
        self.fabric = fabric
        self._nodes = fabric.nodes

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


@pytest.fixture
def lab(monkeypatch):
    """Two converged nodes, two HCAs each; the worker's RoCE v2 GID sits at another index."""
    monkeypatch.setattr(peers, "time", SimpleNamespace(sleep=lambda seconds: None))
    fabric = Fabric()
    for rank, gid in ((0, 1), (1, 3)):
        name = f"spark-{rank + 1}"
        spec = NodeSpec(name, {"qsfp_ip": f"10.0.0.{rank + 1}", "node_rank": rank, "mtu": 9000,
                               "bond_name": "bond0", "api_port": 8000, "serving_served_model_name": SERVED})
        hcas = {"rocep1s0f0": gid, "rocep1s0f1": gid}
        fabric.nodes[name] = FakePeer(spec, fabric, hcas, roce_env(hcas, gid))
    return FakeCluster(fabric)


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

def test_converged_links_pass_ping_mtu_from_every_peer(lab):
    for name in ("spark-1", "spark-2"):
        call(peers.test_ping_mtu, lab, node=lab.node(name))
    # Each node was reached from its peer with full-size frames (9000 - 28 header bytes).
    assert lab.fabric.pinged == [("spark-2", "spark-1", 8972, peers.PING_COUNT),
                                 ("spark-1", "spark-2", 8972, peers.PING_COUNT)]


def test_one_lost_jumbo_frame_fails_ping_mtu_as_lossy(lab):
    # ping exits 0 here: one reply is enough for it, not for a link NCCL relies on.
    lab.fabric.ping_answers[("spark-1", "spark-2")] = 1
    message = failure(peers.test_ping_mtu, lab, node=lab.node("spark-2"))
    assert message.startswith("spark-2: ping from spark-1 (9000-byte frames, do-not-fragment)")
    assert f"expected {peers.PING_COUNT} of {peers.PING_COUNT} answered, found lossy: 1 of 3 answered" in message
    assert "ip -s link" in message and "cable" in message
    call(peers.test_ping_mtu, lab, node=lab.node("spark-1"))  # the other direction is fine


def test_a_small_mtu_on_the_path_fails_ping_mtu_as_too_big(lab):
    lab.fabric.ping_mode[("spark-2", "spark-1")] = "too_big"
    message = failure(peers.test_ping_mtu, lab, node=lab.node("spark-1"))
    assert "found too_big: 0 of 3 answered (ping: local error: message too long, mtu=1500)" in message
    assert "MTU below 9000" in message


def test_no_reply_fails_ping_mtu(lab):
    lab.fabric.ping_answers[("spark-1", "spark-2")] = 0
    assert "found no_reply: 0 of 3 answered" in failure(peers.test_ping_mtu, lab, node=lab.node("spark-2"))


# --- rdma: the plan -----------------------------------------------------------------

def settings(hcas, gid):
    return peers.RoceSettings(tuple(hcas), gid)


def test_rdma_plan_pairs_each_hca_with_its_namesake_in_both_directions():
    runs, problems = peers.rdma_plan("spark-1", settings([("rocep1s0f0", 1), ("rocep1s0f1", 1)], "1"),
                                     "spark-2", settings([("roceP2p1s0f0", 1), ("roceP2p1s0f1", 2)], "3"), 18700)
    assert problems == []
    assert [(r.client.node, r.client.hca, r.server.node, r.server.hca) for r in runs] == [
        ("spark-1", "rocep1s0f0", "spark-2", "roceP2p1s0f0"),
        ("spark-2", "roceP2p1s0f0", "spark-1", "rocep1s0f0"),
        ("spark-1", "rocep1s0f1", "spark-2", "roceP2p1s0f1"),
        ("spark-2", "roceP2p1s0f1", "spark-1", "rocep1s0f1"),
    ]
    # each end keeps its own node's GID index and port
    assert {(r.server.node, r.server.hca, r.server.ib_port, r.server.gid_index) for r in runs} == {
        ("spark-2", "roceP2p1s0f0", 1, "3"), ("spark-1", "rocep1s0f0", 1, "1"),
        ("spark-2", "roceP2p1s0f1", 2, "3"), ("spark-1", "rocep1s0f1", 1, "1")}
    assert [r.tcp_port for r in runs] == [18700, 18701, 18702, 18703]


def test_rdma_plan_reports_different_hca_counts_and_still_runs_the_pairs_it_has():
    runs, problems = peers.rdma_plan("spark-1", settings([("a", 1), ("b", 1)], "1"),
                                     "spark-2", settings([("c", 1)], "1"), 18700)
    assert [(r.client.hca, r.server.hca) for r in runs] == [("a", "c"), ("c", "a")]
    ((what, expected, found),) = problems
    assert what == f"HCAs in {ROCE_ENV}" and "as many on spark-2 as on spark-1" in expected
    assert found == "spark-1: a,b; spark-2: c"


def test_rdma_ports_never_collide_across_runs_or_workers():
    four = settings([(f"hca{i}", 1) for i in range(4)], "1")
    ports = []
    for rank in (1, 2, 3):
        first = peers.RDMA_BASE_PORT + rank * peers.RDMA_PORTS_PER_WORKER
        runs, _ = peers.rdma_plan("spark-1", four, f"spark-{rank + 1}", four, first)
        ports += [r.tcp_port for r in runs]
    assert len(ports) == 24 and len(set(ports)) == 24


# --- rdma: the check ----------------------------------------------------------------

def test_converged_rdma_runs_every_hca_both_ways_on_its_own_port(lab):
    call(peers.test_rdma, lab, worker_name="spark-2")
    started = lab.node("spark-1").started + lab.node("spark-2").started
    assert len(started) == 4 and len(lab.fabric.servers) == 4
    assert {(s.node, s.hca, s.gid) for s in lab.fabric.servers.values()} == {
        ("spark-1", "rocep1s0f0", "1"), ("spark-1", "rocep1s0f1", "1"),
        ("spark-2", "rocep1s0f0", "3"), ("spark-2", "rocep1s0f1", "3")}
    assert all(s.exchanged and not s.failed for s in lab.fabric.servers.values())


def test_a_dead_second_hca_fails_rdma_for_that_pair_in_both_directions(lab):
    lab.fabric.down_hcas.add(("spark-2", "rocep1s0f1"))
    message = failure(peers.test_rdma, lab, worker_name="spark-2")
    lines = message.split("\n")
    assert len(lines) == 2, message
    assert lines[0].startswith("spark-2: RDMA spark-1 -> spark-2 (client spark-1 rocep1s0f1 port 1 gid 1, "
                               "server spark-2 rocep1s0f1 port 1 gid 3): expected 5 round trips, found client: "
                               "Failed status transport retry counter exceeded")
    assert lines[1].strip().startswith("RDMA spark-2 -> spark-1 (client spark-2 rocep1s0f1 port 1 gid 3, "
                                       "server spark-1 rocep1s0f1 port 1 gid 1)")
    assert all("fix: check 'roce_gid'" in line for line in lines)


def test_a_head_that_cannot_serve_fails_rdma_worker_to_head_only(lab):
    lab.fabric.refuses_tcp.add("spark-1")
    message = failure(peers.test_rdma, lab, worker_name="spark-2")
    failing = re.findall(r"RDMA (\S+ -> \S+) \(client \S+ (\S+)", message)
    assert failing == [("spark-2 -> spark-1", "rocep1s0f0"), ("spark-2 -> spark-1", "rocep1s0f1")]
    assert "found client: Couldn't connect to 10.0.0.1:" in message


def test_different_hca_counts_fail_rdma(lab):
    lab.node("spark-2").roce_env = roce_env(["rocep1s0f0"], 3)
    message = failure(peers.test_rdma, lab, worker_name="spark-2")
    assert f"HCAs in {ROCE_ENV}: expected as many on spark-2 as on spark-1" in message
    assert "found spark-1: rocep1s0f0,rocep1s0f1; spark-2: rocep1s0f0" in message
    assert "RDMA" not in message  # the pair both nodes list works


def test_missing_roce_env_or_pingpong_tool_fails_rdma_before_any_run(lab):
    lab.node("spark-1").roce_env = None
    lab.node("spark-2").tools.discard("ibv_rc_pingpong")
    message = failure(peers.test_rdma, lab, worker_name="spark-2")
    assert f"{ROCE_ENV} on spark-1: expected NCCL_IB_HCA and NCCL_IB_GID_INDEX, found missing or empty" in message
    assert "ibv_rc_pingpong on spark-2: expected installed, found missing; fix: install ibverbs-utils" in message
    assert lab.fabric.servers == {}


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


@pytest.fixture
def standin(tmp_path):
    """The lab's stand-in engine, one node, serving on 127.0.0.1."""
    port = free_port()
    argv = ["vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash", "--served-model-name", SERVED, "--host", "127.0.0.1",
            "--port", str(port), "--nnodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1",
            "--master-port", str(free_port())]
    process = subprocess.Popen([sys.executable, str(STANDIN), *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={"SPARK_STANDIN_STATE_FILE": str(tmp_path / "state.json"), "PATH": "/usr/bin:/bin",
                                    "SPARK_ENGINE": "vllm"})  # serving.env names the engine
    try:
        wait_healthy(port)
        yield port
    finally:
        process.kill()
        process.wait(timeout=5)


def test_the_lab_stand_in_passes_openai_endpoint_and_reports_tokens_per_second(lab, standin):
    lab.fabric.api = standin
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
    lab.fabric.api = server.server_address[1]
    try:
        message = failure(peers.test_openai_endpoint, lab, head_name="spark-1")
    finally:
        server.shutdown()
        server.server_close()
    lines = message.split("\n")
    assert len(lines) == 1, message  # /health and /v1/models are fine
    assert message.startswith(f"spark-1: http://10.0.0.1:8000/v1/chat/completions (model {SERVED}, max_tokens 8) "
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
