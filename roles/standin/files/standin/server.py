"""STAND-IN for the real inference engine (vLLM / SGLang). It runs no model.

Why it exists: the lab VMs have no GPU and cannot pull images, yet the deploy
must be proven end to end there. The standin role therefore builds this
stand-in inside a lab node (distribute copies it to the others), and the
serving role runs it with exactly the argv, env files, devices, limits and
mounts that the real engine would get. It imitates the engine that
SPARK_ENGINE (serving.env) names, and then does the parts that can be
checked without a GPU:

- rank 0 listens on the master address:port, like the engine's rendezvous,
  and waits for every other rank to say hello; workers connect, retrying
  until they first join, and hold the connection;
- the head serves the OpenAI endpoints on --port: /health (200 once all
  workers joined), /v1/models, /v1/chat/completions (an echo, marked as
  such), /metrics (a generation counter under the engine's metric name);
- /debug/state (and report.py, for workers) shows what the engine would see:
  argv, the interface/NCCL environment, RLIMIT_MEMLOCK, /dev/infiniband,
  mount points and effective capabilities.

It FAILS LIKE THE REAL ENGINES, which is what the serving watcher
(roles/serving/files/serving_watch.py) is proven against in the lab:
- a worker that lost the head it had joined never exits and never rejoins:
  a real vLLM worker loops on the dead head's TCPStore (DeepSeek V4 on 4
  Sparks, trap 1), so only a restart brings it back;
- a head that lost a worker after the cluster formed keeps /health at 200
  and /v1/models answering, but every completion hangs: a real head hangs in
  NCCL's next collective. Workers joining again do not cure it (a real
  head's process group cannot take a new member); only a restart does;
- `docker kill -s USR1 spark-serving` wedges the head the same way (no more
  tokens, /health 200): the lab's stand-in for a stuck engine.

It STANDS IN FOR THE ENGINE'S COMPILE CACHES (vLLM's torch.compile cache
under /root/.cache/vllm, SGLang's Triton cache), which is what
roles/distribute/warm_caches.py is proven against in the lab: on start it
looks in that directory for an artifact keyed by its own build (a digest of
its files). Found: a cache HIT, nothing is compiled. Absent: a cache MISS,
it "compiles" (a short sleep, where a real engine spends minutes) and
writes the artifact. The outcome, with the artifact's digest, is in
/debug/state and report.py under "compile_cache", and one journal line
says HIT or MISS. Only a mounted cache directory is used, as only a mounted
one outlives the container (and a stand-in run outside one never writes
into the caller's home).

What it cannot imitate: loading times (it is ready in seconds), memory use,
NCCL traffic itself, what a real compile cache holds.

Standard library only: the image holds nothing but the node's own python3.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# report.py reads what the server last wrote here (override for tests).
STATE_FILE = os.environ.get("SPARK_STANDIN_STATE_FILE", "/tmp/spark-standin-state.json")
# The engine to imitate: the serving role names it in serving.env for every engine.
ENGINE_VARIABLE = "SPARK_ENGINE"
# The API port each engine serves on when its command line names none.
DEFAULT_PORTS = {"vllm": 8000, "sglang": 30000}
ENV_PREFIXES = (
    "NCCL_", "GLOO_", "TP_", "OMPI_", "VLLM_", "HF_", "TORCHINDUCTOR_", "TILELANG_",
    "TRITON_", "PYTORCH_", "TORCH_", "RAY_", "SGLANG_", "CUDA_",
)
ENV_NAMES = ("MN_IF_NAME", "MASTER_ADDR", "MASTER_PORT", "HOME")
HEARTBEAT_S = 5.0
# A worker silent this long is gone (a rebooted VM never sends FIN).
PEER_TIMEOUT_S = 20.0
CAP_IPC_LOCK = 14
# How long a completion hangs on a broken or wedged head before it fails:
# longer than any client waits, as with a head stuck in NCCL.
HANG_S = 3600.0
# The variable each engine takes its API key from (SGLang has none), and the
# paths the key guards, as vLLM's middleware does: /health and /metrics stay open.
API_KEY_VARIABLES = {"vllm": "VLLM_API_KEY"}
GUARDED_PREFIXES = ("/v1", "/v2", "/inference")
# The generation counter each engine exports on /metrics.
TOKENS_METRIC = {"vllm": "vllm:generation_tokens_total", "sglang": "sglang:generation_tokens_total"}
STANDIN_NOTE = "stand-in engine (spark-cluster lab): no model runs here"
# Each engine's compile cache: the variable that moves it (vLLM's
# VLLM_CACHE_ROOT, Triton's TRITON_CACHE_DIR), else its default for root, who
# runs the engine: where spark_cluster/caches.py mounts it. Not under HOME:
# this image has no /etc/passwd, so docker sets HOME=/ here.
COMPILE_CACHES = {"vllm": ("VLLM_CACHE_ROOT", "/root/.cache/vllm"), "sglang": ("TRITON_CACHE_DIR", "/root/.triton/cache")}
# Where, under the cache, the artifact lies (vLLM keeps torch.compile's there).
COMPILE_SUBDIR = "torch_compile_cache"
# The "compile" a miss costs: long enough to show, short enough for the lab.
COMPILE_S = 2.5

# Flags that take no value, in either engine's vocabulary. Any other --flag
# followed by a word that is not a flag takes that word as its value.
BOOLEAN_FLAGS = {
    "--headless", "--enable-expert-parallel", "--enable-prefix-caching", "--trust-remote-code",
    "--enable-auto-tool-choice", "--disable-cuda-graph", "--enforce-eager",
}


class ArgvError(ValueError):
    pass


def parse_engine_argv(argv: list[str], engine: str) -> dict:
    """The parts of a vLLM or SGLang command line the stand-in acts on; `engine`
    says which of the two it is (SPARK_ENGINE), never the words of argv.

    Accepts `vllm serve MODEL ...`, `MODEL ...` (image ENTRYPOINT is vllm serve)
    and `python3 -m sglang.launch_server ...`.
    """
    if engine not in DEFAULT_PORTS:
        raise ArgvError(f"stand-in: {ENGINE_VARIABLE} must name one of {', '.join(DEFAULT_PORTS)}, got {engine!r}")
    words = list(argv)
    # Drop the launcher words in front of the arguments.
    while words and words[0] in ("vllm", "serve", "python3", "python", "-m", "sglang.launch_server"):
        words.pop(0)

    flags: dict[str, str | bool] = {}
    positionals: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("--"):
            name, has_value, inline = word.partition("=")
            if has_value:
                flags[name] = inline
            elif name in BOOLEAN_FLAGS or index + 1 >= len(words) or words[index + 1].startswith("--"):
                flags[name] = True
            else:
                flags[name] = words[index + 1]
                index += 1
        else:
            positionals.append(word)
        index += 1

    def number(name, default=None):
        value = flags.get(name, default)
        if value is None or value is True:
            raise ArgvError(f"stand-in: {name} needs a number")
        try:
            return int(value)
        except ValueError:
            raise ArgvError(f"stand-in: {name} is not a number: {value!r}") from None

    model = flags.get("--model-path") or flags.get("--model") or (positionals[0] if positionals else None)
    if engine == "sglang":
        init = flags.get("--dist-init-addr")
        if not isinstance(init, str) or ":" not in init:
            raise ArgvError("stand-in: sglang needs --dist-init-addr HOST:PORT")
        master_addr, _, port_text = init.rpartition(":")
        master_port = int(port_text)
    else:
        master_addr = flags.get("--master-addr")
        if not isinstance(master_addr, str):
            raise ArgvError("stand-in: vllm needs --master-addr")
        master_port = number("--master-port")
    nnodes = number("--nnodes", 1)
    node_rank = number("--node-rank", 0)
    if not 0 <= node_rank < nnodes:
        raise ArgvError(f"stand-in: --node-rank {node_rank} is outside --nnodes {nnodes}")
    served = flags.get("--served-model-name")
    return {
        "engine": engine,
        "model": model,
        "served_model_name": served if isinstance(served, str) else model,
        "nnodes": nnodes,
        "node_rank": node_rank,
        "master_addr": master_addr,
        "master_port": master_port,
        "host": flags.get("--host") if isinstance(flags.get("--host"), str) else "0.0.0.0",
        "port": number("--port", DEFAULT_PORTS[engine]),
        "headless": flags.get("--headless") is True,
        "flags": flags,
    }


def serves_api(args: dict) -> bool:
    return args["node_rank"] == 0 and not args["headless"]


# --- what the engine would see -----------------------------------------------

def _limit(value: int):
    return "unlimited" if value == resource.RLIM_INFINITY else value


def _mount_points(path="/proc/self/mountinfo") -> list[str]:
    points = []
    try:
        with open(path) as mountinfo:
            for line in mountinfo:
                fields = line.split()
                if len(fields) > 4:
                    # mountinfo escapes spaces and the like as \ooo octal
                    points.append(fields[4].encode().decode("unicode_escape"))
    except OSError:
        return []
    return points


def _capabilities(path="/proc/self/status") -> dict:
    try:
        with open(path) as status:
            for line in status:
                if line.startswith("CapEff:"):
                    value = line.split()[1]
                    return {"CapEff": value, "cap_ipc_lock": bool(int(value, 16) >> CAP_IPC_LOCK & 1)}
    except OSError:
        pass
    return {"CapEff": None, "cap_ipc_lock": None}


def _infiniband():
    try:
        return sorted(os.listdir("/dev/infiniband"))
    except OSError:
        return None


def environment_subset(environ=None) -> dict:
    environ = os.environ if environ is None else environ
    return {
        name: value
        for name, value in sorted(environ.items())
        if name.startswith(ENV_PREFIXES) or name in ENV_NAMES
    }


def inspect_process() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return {
        "env": environment_subset(),
        "rlimit_memlock": {"soft": _limit(soft), "hard": _limit(hard)},
        "infiniband": _infiniband(),
        "mounts": _mount_points(),
        "capabilities": _capabilities(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


# --- compile cache ------------------------------------------------------------

def build_key(source_dir: str | None = None) -> str:
    """A digest of the stand-in's own files: its build, as a real cache keys
    its entries by the engine's version and the compiled graph."""
    source_dir = source_dir or os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(source_dir)):
        if name.endswith(".py"):
            with open(os.path.join(source_dir, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read() + b"\0")
    return digest.hexdigest()[:12]


def compile_cache_dir(engine: str, environ=None) -> str:
    environ = os.environ if environ is None else environ
    variable, default = COMPILE_CACHES[engine]
    return environ.get(variable) or default


def warm_compile(cache_dir: str, key: str, compile_s: float = COMPILE_S) -> dict:
    """Look for this build's artifact in `cache_dir`: a HIT uses it, a MISS
    "compiles" for `compile_s` and writes it. Returns what happened."""
    artifact = os.path.join(cache_dir, COMPILE_SUBDIR, f"standin-compiled-{key}")
    started = time.time()
    try:
        with open(artifact, "rb") as found:
            content = found.read()
        outcome = "hit"
    except FileNotFoundError:
        time.sleep(compile_s)  # the minutes of torch.compile and Triton autotuning
        content = json.dumps({"key": key, "compiled_on": socket.gethostname(), "compiled_at": time.time(),
                              "nonce": os.urandom(8).hex()}).encode()
        os.makedirs(os.path.dirname(artifact), exist_ok=True)
        temporary = f"{artifact}.tmp{os.getpid()}"
        with open(temporary, "wb") as out:
            out.write(content)
        os.chmod(temporary, 0o644)  # another node's admin copies it from here
        os.replace(temporary, artifact)
        outcome = "miss"
    try:
        compiled_on = json.loads(content).get("compiled_on")
    except (ValueError, AttributeError):
        compiled_on = None
    return {"outcome": outcome, "artifact": artifact, "sha256": hashlib.sha256(content).hexdigest(),
            "compiled_on": compiled_on, "seconds": round(time.time() - started, 2)}


def use_compile_cache(engine: str, mounts: list[str], key: str) -> dict:
    """warm_compile in the engine's cache directory when it is mounted; logs the outcome."""
    cache_dir = compile_cache_dir(engine)
    if cache_dir.rstrip("/") not in mounts:
        log(f"compile cache {cache_dir} is not mounted: nothing cached, nothing compiled")
        return {"outcome": "not mounted", "artifact": None, "dir": cache_dir}
    try:
        result = warm_compile(cache_dir, key)
    except OSError as error:
        log(f"compile cache {cache_dir}: {error}")
        return {"outcome": "error", "error": str(error), "artifact": None, "dir": cache_dir}
    if result["outcome"] == "hit":
        log(f"compile cache HIT: {result['artifact']} (compiled on {result['compiled_on']}, "
            f"sha256 {result['sha256'][:12]}): nothing compiled")
    else:
        log(f"compile cache MISS: {result['artifact']} absent: compiled in {result['seconds']} s "
            "(stand-in for torch.compile and Triton) and wrote it")
    return {**result, "dir": cache_dir}


# --- cluster membership -------------------------------------------------------

def log(message: str) -> None:
    print(f"[standin] {message}", file=sys.stderr, flush=True)


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class Cluster:
    def __init__(self, args: dict, argv: list[str]):
        self.args = args
        self.argv = argv
        self.lock = threading.Lock()
        self.workers: dict[int, dict] = {}  # rank -> {host_ip, peer, joined_at}
        self._connection_of: dict[int, int] = {}  # rank -> serial of its live connection
        self._serial = 0
        self.master_connected = False
        self.started_at = time.time()
        self.stopping = threading.Event()
        self.formed = False  # every worker joined at least once
        self.broken = ""  # why completions hang (a worker left, a wedge); never cleared
        self.generated_tokens = 0
        self.compile_cache: dict = {"outcome": "not yet looked"}

    @property
    def is_head(self) -> bool:
        return self.args["node_rank"] == 0

    def joined_ranks(self) -> list[int]:
        with self.lock:
            return sorted(self.workers)

    def all_joined(self) -> bool:
        joined = self.joined_ranks() == list(range(1, self.args["nnodes"]))
        if joined and not self.formed:
            self.formed = True
            log("all workers joined: serving")
            # The line uvicorn prints once a real engine's API is up: what
            # the deploy's wait shows as the engine's phase.
            print("INFO:     Application startup complete.", file=sys.stderr, flush=True)
        return joined

    def healthy(self) -> bool:
        """/health's answer: like a real engine's, it stays 200 once the
        cluster formed, whatever happened to generation since."""
        return self.formed or self.all_joined()

    def break_generation(self, why: str) -> None:
        if not self.broken:
            self.broken = why
            log(f"{why}: completions now hang while /health stays 200 (as a real engine's do)")

    def state(self) -> dict:
        with self.lock:
            workers = [
                {"rank": rank, **info} for rank, info in sorted(self.workers.items())
            ]
            connected = self.master_connected
        state = {
            "standin": True,
            "note": STANDIN_NOTE,
            "role": "head" if self.is_head else "worker",
            "engine": self.args["engine"],
            "rank": self.args["node_rank"],
            "world_size": self.args["nnodes"],
            "master": f"{self.args['master_addr']}:{self.args['master_port']}",
            "served_model_name": self.args["served_model_name"],
            "argv": self.argv,
            "compile_cache": self.compile_cache,
            "started_at": self.started_at,
            "written_at": time.time(),
        }
        if self.is_head:
            state["joined_workers"] = workers
            state["all_joined"] = self.all_joined()
            state["broken"] = self.broken
        else:
            state["connected_to_master"] = connected
        state.update(inspect_process())
        return state

    def write_state(self) -> None:
        """For report.py: `docker exec spark-serving python3 /standin/report.py`."""
        temporary = STATE_FILE + ".tmp"
        try:
            with open(temporary, "w") as out:
                json.dump(self.state(), out, indent=2, sort_keys=True)
            os.replace(temporary, STATE_FILE)
        except OSError as error:
            log(f"cannot write {STATE_FILE}: {error}")

    # head side
    def open_rendezvous(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The master address, as the engine's rendezvous: it must be this
        # node's QSFP address, or the bind fails, the process exits and
        # systemd tries again.
        listener.bind((self.args["master_addr"], self.args["master_port"]))
        listener.listen(64)
        log(f"rendezvous on {self.args['master_addr']}:{self.args['master_port']}, "
            f"waiting for {self.args['nnodes'] - 1} worker(s)")
        return listener

    def serve_rendezvous(self, listener: socket.socket) -> None:
        while not self.stopping.is_set():
            connection, peer = listener.accept()
            with self.lock:
                self._serial += 1
                serial = self._serial
            threading.Thread(target=self._hold_worker, args=(connection, peer, serial), daemon=True).start()

    def _hold_worker(self, connection: socket.socket, peer, serial: int) -> None:
        _keepalive(connection)
        connection.settimeout(PEER_TIMEOUT_S)
        rank = None
        try:
            reader = connection.makefile("r")
            hello = json.loads(reader.readline() or "null")
            if not isinstance(hello, dict) or not isinstance(hello.get("rank"), int):
                raise ValueError(f"bad hello {hello!r}")
            rank = hello["rank"]
            if not 1 <= rank < self.args["nnodes"]:
                raise ValueError(f"rank {rank} outside 1..{self.args['nnodes'] - 1}")
            with self.lock:
                # A reconnecting worker replaces its stale connection.
                self.workers[rank] = {"host_ip": hello.get("host_ip"), "peer": peer[0], "joined_at": time.time()}
                self._connection_of[rank] = serial
            log(f"worker rank {rank} joined from {peer[0]} (host_ip {hello.get('host_ip')})")
            connection.sendall(b'{"ok": true}\n')
            self.write_state()
            while reader.readline():  # heartbeats; EOF or timeout ends the membership
                pass
        except (OSError, ValueError) as error:
            log(f"connection from {peer[0]} ended: {error}")
        finally:
            connection.close()
            if rank is not None:
                with self.lock:
                    left = self._connection_of.get(rank) == serial
                    if left:
                        del self.workers[rank], self._connection_of[rank]
                if left:
                    log(f"worker rank {rank} left")
                    if self.formed:
                        self.break_generation(f"worker rank {rank} left the formed cluster")
                self.write_state()

    # worker side
    def join_master(self) -> None:
        hello = json.dumps({"rank": self.args["node_rank"], "host_ip": os.environ.get("VLLM_HOST_IP")})
        backoff = 1.0
        joined = False
        while not self.stopping.is_set():
            if joined:
                log(f"lost the master {self.args['master_addr']}:{self.args['master_port']} it had joined: "
                    "hanging, as a real vLLM worker does on a dead head's TCPStore (restart it to rejoin)")
                self.stopping.wait()
                return
            try:
                with socket.create_connection((self.args["master_addr"], self.args["master_port"]), timeout=10) as sock:
                    _keepalive(sock)
                    sock.sendall(hello.encode() + b"\n")
                    with self.lock:
                        self.master_connected = True
                    log(f"joined master {self.args['master_addr']}:{self.args['master_port']}")
                    joined = True
                    self.write_state()
                    backoff = 1.0
                    self._heartbeat(sock)
            except OSError as error:
                log(f"master {self.args['master_addr']}:{self.args['master_port']} not reachable: {error}")
            with self.lock:
                was_connected, self.master_connected = self.master_connected, False
            if was_connected:
                self.write_state()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def _heartbeat(self, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            sock.sendall(b"ping\n")
            readable, _, _ = select.select([sock], [], [], HEARTBEAT_S)
            if readable and not sock.recv(4096):
                raise OSError("master closed the connection")


# --- HTTP (head only) ---------------------------------------------------------

def make_handler(cluster: Cluster):
    class Handler(BaseHTTPRequestHandler):
        server_version = "spark-standin"

        def log_message(self, fmt, *args):  # keep the journal quiet
            pass

        def _json(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self, path) -> bool:
            """vLLM's answer to a guarded path without the key: 401."""
            key = os.environ.get(API_KEY_VARIABLES.get(cluster.args["engine"], ""), "")
            if not key or not path.startswith(GUARDED_PREFIXES):
                return False
            scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and given == key:
                return False
            self._json(401, {"error": "Unauthorized"})
            return True

        def do_GET(self):
            path = self.path.split("?")[0]
            if self._refused(path):
                return
            if path == "/health":
                if cluster.healthy():
                    self._json(200, {"status": "ok", "standin": True})
                else:
                    self._json(503, {"status": "waiting for workers", "standin": True,
                                     "joined": cluster.joined_ranks(), "world_size": cluster.args["nnodes"]})
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [{
                    "id": cluster.args["served_model_name"], "object": "model",
                    "created": int(cluster.started_at), "owned_by": "spark-cluster-standin",
                    "root": cluster.args["model"],
                }]})
            elif path == "/debug/state":
                self._json(200, cluster.state())
            elif path == "/metrics":
                name = TOKENS_METRIC[cluster.args["engine"]]
                data = (f"# TYPE {name} counter\n{name}{{model_name=\"{cluster.args['served_model_name']}\"}} "
                        f"{float(cluster.generated_tokens)}\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._json(404, {"error": f"no route {path}"})

        def do_POST(self):
            path = self.path.split("?")[0]
            if self._refused(path):
                return
            if path != "/v1/chat/completions":
                self._json(404, {"error": f"no route {path}"})
                return
            if cluster.broken:
                threading.Event().wait(HANG_S)  # the client gives up first
                self._json(500, {"error": cluster.broken, "standin": True})
                return
            if not cluster.all_joined():
                self._json(503, {"error": "waiting for workers", "standin": True})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                messages = request.get("messages") or []
                last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
            except (ValueError, AttributeError):
                self._json(400, {"error": "body must be a JSON chat completion request"})
                return
            text = f"[{STANDIN_NOTE}] echo: {last}"
            cluster.generated_tokens += len(text.split())
            self._json(200, {
                "id": f"chatcmpl-standin-{int(time.time() * 1000)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": cluster.args["served_model_name"],
                "system_fingerprint": "spark-standin",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                # Words stand in for tokens: a client (the verify suite) sees
                # something generated, as from a real engine.
                "usage": {"prompt_tokens": len(str(last).split()), "completion_tokens": len(text.split()),
                          "total_tokens": len(str(last).split()) + len(text.split())},
            })

    return Handler


def main(argv: list[str]) -> int:
    try:
        args = parse_engine_argv(argv, os.environ.get(ENGINE_VARIABLE, ""))
    except (ArgvError, ValueError) as error:
        log(str(error))
        return 2
    cluster = Cluster(args, argv)
    # PID 1 in a container ignores SIGTERM unless it handles it: `docker stop`
    # would wait out its whole timeout.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The lab's wedge: generation stops, /health keeps answering.
    signal.signal(signal.SIGUSR1, lambda *_: cluster.break_generation("wedged (SIGUSR1)"))
    log(f"{STANDIN_NOTE}; {args['engine']} rank {args['node_rank']} of {args['nnodes']}")
    # Before it joins the cluster: a real engine compiles before it serves.
    cluster.compile_cache = use_compile_cache(args["engine"], _mount_points(), build_key())
    cluster.write_state()
    if cluster.is_head:
        if args["nnodes"] > 1:
            listener = cluster.open_rendezvous()
            threading.Thread(target=cluster.serve_rendezvous, args=(listener,), daemon=True).start()
    else:
        threading.Thread(target=cluster.join_master, daemon=True).start()
    if serves_api(args):
        httpd = ThreadingHTTPServer((args["host"], args["port"]), make_handler(cluster))
        httpd.daemon_threads = True
        log(f"API on {args['host']}:{args['port']}")
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    while True:  # the threads do the work; refresh the report now and then
        time.sleep(HEARTBEAT_S)
        cluster.write_state()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
