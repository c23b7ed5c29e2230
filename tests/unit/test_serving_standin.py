"""The lab's stand-in engine: argv parsing, a real two-rank run on loopback,
and the image builder's root filesystem."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

import signal

import pytest

from roles.serving.argv import ClusterPlace, render_engine_argv
from spark_cluster import engine_image
from spark_cluster.engines import ENGINES
from spark_cluster.engine_image import STANDIN_BUILDER_SOURCE as BUILDER, STANDIN_SOURCE, effective_image, standin_tag
from source_module import load_source

SERVER = STANDIN_SOURCE / "server.py"
REAL_TAG = standin_tag()
REPORT = STANDIN_SOURCE / "report.py"


def load_server():
    return load_source("standin_server", SERVER)


server = load_server()


def place(world_size, rank, **overrides):
    values = dict(world_size=world_size, rank=rank, head_qsfp_ip="10.0.0.1", master_port=29519,
                  api_port=8000, model="deepseek-ai/DeepSeek-V4-Flash", served_model_name="ds4")
    values.update(overrides)
    return ClusterPlace(**values)


@pytest.mark.parametrize("entrypoint_is_engine", [True, False])
@pytest.mark.parametrize("world_size", [2, 4])
def test_parses_what_the_role_renders_for_vllm(world_size, entrypoint_is_engine):
    profile = {"enable_expert_parallel": True, "speculative_config": {"method": "deepseek_mtp"}}
    for rank in range(world_size):
        argv = render_engine_argv("vllm", profile, place(world_size, rank, entrypoint_is_engine=entrypoint_is_engine))
        args = server.parse_engine_argv(argv, "vllm")
        assert args["engine"] == "vllm"
        assert args["model"] == "deepseek-ai/DeepSeek-V4-Flash"
        assert (args["nnodes"], args["node_rank"]) == (world_size, rank)
        assert (args["master_addr"], args["master_port"]) == ("10.0.0.1", 29519)
        assert args["headless"] == (rank != 0)
        assert server.serves_api(args) == (rank == 0)
        if rank == 0:
            assert args["port"] == 8000 and args["served_model_name"] == "ds4"


@pytest.mark.parametrize("world_size", [2, 4])
def test_parses_what_the_role_renders_for_sglang(world_size):
    for rank in range(world_size):
        argv = render_engine_argv("sglang", {"trust_remote_code": True, "mem_fraction_static": 0.8},
                                  place(world_size, rank))
        args = server.parse_engine_argv(argv, "sglang")
        assert args["engine"] == "sglang"
        assert (args["nnodes"], args["node_rank"]) == (world_size, rank)
        assert (args["master_addr"], args["master_port"]) == ("10.0.0.1", 29519)
        assert args["model"] == "deepseek-ai/DeepSeek-V4-Flash"
        assert server.serves_api(args) == (rank == 0)


def test_argv_errors_are_one_line():
    with pytest.raises(server.ArgvError, match="--master-addr"):
        server.parse_engine_argv(["m", "--nnodes", "2"], "vllm")
    with pytest.raises(server.ArgvError, match="dist-init-addr"):
        server.parse_engine_argv(["python3", "-m", "sglang.launch_server", "--model-path", "m"], "sglang")
    with pytest.raises(server.ArgvError, match="outside"):
        server.parse_engine_argv(["m", "--master-addr", "a", "--master-port", "1", "--nnodes", "2", "--node-rank", "2"],
                                 "vllm")
    with pytest.raises(server.ArgvError, match="SPARK_ENGINE must name one of vllm, sglang, got ''"):
        server.parse_engine_argv(["m", "--master-addr", "a", "--master-port", "1"], "")


def test_the_engine_is_the_one_named_not_guessed_from_argv():
    # A command line without launcher words (the image's ENTRYPOINT starts the
    # engine) reads as whichever engine SPARK_ENGINE names: an SGLang one
    # parsed as vLLM lacks vLLM's rendezvous flags.
    argv = render_engine_argv("sglang", {}, place(2, 1, entrypoint_is_engine=True))
    assert server.parse_engine_argv(argv, "sglang")["master_addr"] == "10.0.0.1"
    with pytest.raises(server.ArgvError, match="vllm needs --master-addr"):
        server.parse_engine_argv(argv, "vllm")
    # Without --port, each engine's own default API port.
    assert server.parse_engine_argv(["m", "--master-addr", "a", "--master-port", "1"], "vllm")["port"] == 8000
    assert server.parse_engine_argv(["--model-path", "m", "--dist-init-addr", "a:1"], "sglang")["port"] == 30000


def test_the_stand_in_imitates_every_engine_of_the_registry():
    # The stand-in runs in a container without spark_cluster: its own table must
    # follow the registry, so an engine added there is not refused in the lab.
    assert server.DEFAULT_PORTS == {name: engine.default_port for name, engine in ENGINES.items()}
    assert server.TOKENS_METRIC == {name: engine.tokens_metric for name, engine in ENGINES.items()}
    assert server.API_KEY_VARIABLES == {name: e.api_key_variable for name, e in ENGINES.items() if e.api_key_variable}
    for name, engine in ENGINES.items():
        argv = render_engine_argv(name, {}, place(2, 1, entrypoint_is_engine=True))
        assert server.parse_engine_argv(argv, name)["master_addr"] == "10.0.0.1", name


def test_equals_form_and_unknown_flags():
    args = server.parse_engine_argv(["m", "--master-addr=10.0.0.1", "--master-port=1", "--unknown", "x", "--port=9"],
                                    "vllm")
    assert (args["master_addr"], args["master_port"], args["port"]) == ("10.0.0.1", 1, 9)


def test_env_subset_keeps_the_interface_variables_only():
    env = {"NCCL_SOCKET_IFNAME": "bond0", "GLOO_SOCKET_IFNAME": "bond0", "MN_IF_NAME": "bond0",
           "OMPI_MCA_btl_tcp_if_include": "bond0", "VLLM_HOST_IP": "10.0.0.2", "HF_HOME": "/h",
           "SECRET_TOKEN": "x", "PATH": "/usr/bin"}
    subset = server.environment_subset(env)
    assert "SECRET_TOKEN" not in subset and "PATH" not in subset
    assert subset["MN_IF_NAME"] == "bond0" and subset["VLLM_HOST_IP"] == "10.0.0.2"


# --- a real run on loopback --------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def start(tmp_path):
    processes = []

    def launch(name, argv, env_extra):
        env = {**os.environ, "SPARK_STANDIN_STATE_FILE": str(tmp_path / f"{name}.json"), "SPARK_ENGINE": "vllm",
               "NCCL_SOCKET_IFNAME": "lo", **env_extra}
        process = subprocess.Popen([sys.executable, str(SERVER), *argv], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        return process

    yield launch
    for process in processes:
        process.kill()
        process.wait(timeout=5)


def test_head_waits_for_its_worker_then_serves(start, tmp_path):
    master_port, api_port = free_port(), free_port()
    common = place(2, 0, head_qsfp_ip="127.0.0.1", master_port=master_port, api_port=api_port,
                   entrypoint_is_engine=True)
    head_argv = render_engine_argv("vllm", {"trust_remote_code": True}, common)
    head_argv[head_argv.index("--host") + 1] = "127.0.0.1"
    worker_argv = render_engine_argv("vllm", {"trust_remote_code": True},
                                     place(2, 1, head_qsfp_ip="127.0.0.1", master_port=master_port,
                                           api_port=api_port, entrypoint_is_engine=True))
    base = f"http://127.0.0.1:{api_port}"

    start("head", head_argv, {"VLLM_HOST_IP": "127.0.0.1"})
    status, body = wait_for(lambda: get(base + "/health"))
    assert status == 503 and body["joined"] == []

    worker = start("worker", worker_argv, {"VLLM_HOST_IP": "127.0.0.2"})
    wait_for(lambda: get(base + "/health")[0] == 200)

    status, models = get(base + "/v1/models")
    assert status == 200 and models["data"][0]["id"] == "ds4"

    status, state = get(base + "/debug/state")
    assert state["role"] == "head" and state["world_size"] == 2 and state["all_joined"]
    assert [(w["rank"], w["host_ip"]) for w in state["joined_workers"]] == [(1, "127.0.0.2")]
    assert state["env"]["NCCL_SOCKET_IFNAME"] == "lo"
    assert set(state["rlimit_memlock"]) == {"soft", "hard"}
    assert "/" in state["mounts"] and state["capabilities"]["CapEff"]
    assert state["argv"] == head_argv and "stand-in" in state["note"]

    request = urllib.request.Request(
        base + "/v1/chat/completions", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": "ds4", "messages": [{"role": "user", "content": "hello"}]}).encode())
    with urllib.request.urlopen(request, timeout=3) as response:
        completion = json.loads(response.read())
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"].endswith("echo: hello")
    assert "stand-in" in completion["choices"][0]["message"]["content"]

    # The worker's own report, as `docker exec ... report.py` prints it.
    worker_state = tmp_path / "worker.json"
    wait_for(lambda: worker_state.exists() and json.loads(worker_state.read_text())["connected_to_master"])
    report = subprocess.run([sys.executable, str(REPORT)], capture_output=True, text=True, timeout=10,
                            env={**os.environ, "SPARK_STANDIN_STATE_FILE": str(worker_state)})
    assert report.returncode == 0, report.stderr
    reported = json.loads(report.stdout)
    assert reported["role"] == "worker" and reported["rank"] == 1 and reported["env"]["VLLM_HOST_IP"] == "127.0.0.2"

    # A worker that goes away leaves the head as a real one: /health still
    # 200, but no completion ever comes back (it hangs in NCCL).
    worker.kill()
    worker.wait(timeout=5)
    wait_for(lambda: get(base + "/debug/state")[1]["broken"] == "worker rank 1 left the formed cluster")
    assert get(base + "/health")[0] == 200
    assert chat(base, timeout=2) == "timeout"
    # A worker that comes back does not cure it: only a restart does.
    start("worker-again", worker_argv, {"VLLM_HOST_IP": "127.0.0.2"})
    wait_for(lambda: get(base + "/debug/state")[1]["all_joined"])
    assert chat(base, timeout=2) == "timeout"


def chat(base, timeout=3, key=None):
    """"timeout", or (status, body) of a chat completion."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(
        base + "/v1/chat/completions", method="POST", headers=headers,
        data=json.dumps({"model": "ds4", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (socket.timeout, TimeoutError):
        return "timeout"
    except urllib.error.URLError as error:
        if isinstance(error.reason, (socket.timeout, TimeoutError)):
            return "timeout"
        raise


def pair(start, tmp_path, key=None):
    """A head and a worker on loopback, formed; returns (base URL, head, worker)."""
    master_port, api_port = free_port(), free_port()
    argv = [render_engine_argv("vllm", {}, place(2, rank, head_qsfp_ip="127.0.0.1", master_port=master_port,
                                                 api_port=api_port, entrypoint_is_engine=True, api_host="127.0.0.1"))
            for rank in (0, 1)]
    extra = {"VLLM_API_KEY": key} if key else {}
    head = start("head", argv[0], extra)
    worker = start("worker", argv[1], {})
    base = f"http://127.0.0.1:{api_port}"
    wait_for(lambda: get(base + "/health")[0] == 200)
    return base, head, worker, argv


def test_a_worker_whose_head_died_hangs_instead_of_rejoining(start, tmp_path):
    base, head, worker, argv = pair(start, tmp_path)
    head.kill()
    head.wait(timeout=5)
    state = tmp_path / "worker.json"
    wait_for(lambda: json.loads(state.read_text())["connected_to_master"] is False)
    # A new head on the same address: the old worker never joins it.
    start("head-again", argv[0], {})
    wait_for(lambda: get(base + "/health")[0] == 503)
    time.sleep(3)
    status, body = get(base + "/health")
    assert status == 503 and body["joined"] == [] and worker.poll() is None


def test_a_wedge_stops_generation_while_health_answers(start, tmp_path):
    base, head, worker, _ = pair(start, tmp_path)
    status, first = chat(base)
    assert status == 200
    head.send_signal(signal.SIGUSR1)
    wait_for(lambda: get(base + "/debug/state")[1]["broken"] == "wedged (SIGUSR1)")
    assert get(base + "/health")[0] == 200 and chat(base, timeout=2) == "timeout"


def test_the_generation_counter_moves_with_each_completion(start, tmp_path):
    base, *_ = pair(start, tmp_path)

    def counter():
        with urllib.request.urlopen(base + "/metrics", timeout=3) as response:
            text = response.read().decode()
        (line,) = [line for line in text.splitlines() if line.startswith("vllm:generation_tokens_total")]
        return float(line.rsplit(None, 1)[1])

    before = counter()
    assert chat(base)[0] == 200
    assert counter() > before


def test_with_an_api_key_the_v1_paths_want_it_and_health_does_not(start, tmp_path):
    base, *_ = pair(start, tmp_path, key="k" * 32)
    assert chat(base) == (401, {"error": "Unauthorized"})
    assert chat(base, key="wrong" * 8)[0] == 401
    assert chat(base, key="k" * 32)[0] == 200
    assert get(base + "/health")[0] == 200
    assert get(base + "/v1/models")[0] == 401


def test_sigterm_stops_the_server_promptly(start):
    api_port = free_port()
    process = start("single", ["m", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                               "--nnodes", "1", "--host", "127.0.0.1", "--port", str(api_port)], {})
    wait_for(lambda: get(f"http://127.0.0.1:{api_port}/health")[0] == 200)
    process.terminate()
    assert process.wait(timeout=5) == 0


def test_without_an_engine_named_the_server_refuses_to_start(start):
    process = start("unnamed", ["m", "--master-addr", "127.0.0.1", "--master-port", "1"], {"SPARK_ENGINE": ""})
    assert process.wait(timeout=10) == 2
    (line,) = process.stderr.read().splitlines()
    assert "SPARK_ENGINE must name one of vllm, sglang, got ''" in line


# --- the image --------------------------------------------------------------

def test_tag_is_a_content_hash_and_derived_only_in_the_lab():
    tag = standin_tag()
    assert tag.startswith("spark-standin:") and len(tag.split(":")[1]) == 12
    assert tag == standin_tag()
    assert effective_image("vllm-ds4-sm121:latest", True) == tag
    assert effective_image("vllm-ds4-sm121:latest", False) == "vllm-ds4-sm121:latest"


@pytest.fixture
def standin_copy(tmp_path, monkeypatch):
    """The stand-in's sources and builder copied to tmp_path, and standin_tag reading the copy."""
    source, builder = tmp_path / "standin", tmp_path / "build_standin.py"
    shutil.copytree(STANDIN_SOURCE, source)
    shutil.copy(BUILDER, builder)
    monkeypatch.setattr(engine_image, "STANDIN_SOURCE", source)
    monkeypatch.setattr(engine_image, "STANDIN_BUILDER_SOURCE", builder)
    return source, builder


def test_tag_follows_the_content_of_every_file_in_the_image(standin_copy):
    source, builder = standin_copy
    original = standin_tag()
    # The same content elsewhere gives the same tag: only content and names count.
    assert original == REAL_TAG
    for path in (source / "server.py", source / "report.py", builder):
        text = path.read_text()
        path.write_text(text + "# changed\n")
        changed = standin_tag()
        assert changed != original and changed.startswith("spark-standin:"), path.name
        path.write_text(text)
        assert standin_tag() == original, path.name


def test_tag_changes_when_a_source_is_added(standin_copy):
    source, _ = standin_copy
    original = standin_tag()
    (source / "extra.py").write_text("")
    assert standin_tag() != original


# The builder packs the interpreter that runs it; on the node that is the
# distribution's /usr/bin/python3, as here when it exists.
NODE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def test_builder_root_filesystem_is_small_and_complete(tmp_path):
    output = tmp_path / "rootfs.tar"
    subprocess.run([NODE_PYTHON, str(BUILDER), "--source", str(STANDIN_SOURCE), "--output", str(output)],
                   check=True, capture_output=True, timeout=120)
    assert output.stat().st_size < 60e6
    with tarfile.open(output) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert {"standin/server.py", "standin/report.py"} <= set(members)
    assert any(name.endswith("/python3") for name in members)
    assert any(name.split("/")[-1].startswith("ld-linux") for name in members)
    assert any(name.endswith("/encodings/__init__.py") for name in members)
    assert any("/lib-dynload/" in name for name in members)
    assert not any("/test/" in name or "/tkinter/" in name for name in members)
    for link in ("lib", "bin"):
        if os.path.islink("/" + link):
            assert members[link].issym()
