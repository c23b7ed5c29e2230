"""The watcher's `report` and `smoke` (roles/serving/files/serving_watch.py),
what `spark-cluster status` and `smoke` run on each node: against the lab's
stand-in engine on 127.0.0.1, with systemctl and docker answered by fakes."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from roles.serving.argv import render_engine_argv
from roles.serving.desired import serving_settings
from roles.serving.watch import WATCH_SOURCE, watch_config
from spark_cluster.engines import ENGINES, ClusterPlace
from collect_ops import GROUP_DATA
from test_serving_watch import STANDIN, free_port, until, watch

KEY = "lab-key-0123456789abcdef"
IMAGE_ID = "sha256:" + "ab12" * 16


@pytest.fixture
def standin_head(tmp_path):
    """A one-node stand-in engine whose API wants KEY; yields its API port."""
    api = free_port()
    argv = render_engine_argv("vllm", {}, ClusterPlace(
        world_size=1, rank=0, head_qsfp_ip="127.0.0.1", master_port=free_port(), api_port=api, model="org/m",
        served_model_name="m", entrypoint_is_engine=True, api_host="127.0.0.1"))
    process = subprocess.Popen(
        [sys.executable, str(STANDIN), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "SPARK_ENGINE": "vllm", "VLLM_API_KEY": KEY,
             "SPARK_STANDIN_STATE_FILE": str(tmp_path / "state.json")})
    try:
        until(lambda: watch.probe_completion({"api_url": f"http://127.0.0.1:{api}", "served_model_name": "m",
                                              "probe_timeout_s": 2}, KEY)[0])
        yield api
    finally:
        process.kill()
        process.wait(timeout=5)


def node_config(tmp_path, api, role="head"):
    env = tmp_path / "serving.env"
    env.write_text(f"VLLM_HOST_IP=127.0.0.1\nVLLM_API_KEY={KEY}\n")
    return {"node": "spark-1", "role": role, "engine": "vllm", "unit": "spark-serving.service",
            "container": "spark-serving", "env_file": str(env), "api_key_variable": "VLLM_API_KEY",
            "api_url": f"http://127.0.0.1:{api}", "served_model_name": "m", "model": "org/m",
            "image": "spark-standin:0123456789ab", "probe_timeout_s": 5,
            "head_state_url": f"http://127.0.0.1:{free_port()}/state"}


def fake_node(monkeypatch, active="active", running=True, changed_s_ago=125.0):
    """systemctl and docker as a node with the engine `running` (or not) answers them."""
    uptime = 10_000.0

    def fake_run(argv, timeout=30):
        if argv[:2] == ["systemctl", "show"]:
            changed = int((uptime - changed_s_ago) * 1e6)
            return 0, f"ActiveState={active}\nSubState=running\nNRestarts=2\nStateChangeTimestampMonotonic={changed}\n"
        if argv[:4] == ["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}"]:
            return (0, "true 2026-12-01T10:00:00.5Z\n") if running else (1, "Error: No such object\n")
        if argv[:4] == ["docker", "inspect", "-f", "{{.Image}}"]:
            return (0, IMAGE_ID + "\n") if running else (1, "Error: No such object\n")
        if argv[:3] == ["docker", "image", "inspect"]:
            return 0, IMAGE_ID + "\n"
        if argv[:2] == ["docker", "logs"]:
            return 0, "[standin] API on 127.0.0.1\n"
        raise AssertionError(argv)

    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/uptime":
            from io import StringIO
            return StringIO(f"{uptime} 1.0\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(watch, "run", fake_run)
    monkeypatch.setattr(watch, "open", fake_open, raising=False)


# --- report ---------------------------------------------------------------------------

@pytest.mark.parametrize("active, running, ready, answered, state", [
    ("inactive", False, False, False, "stopped"),
    ("failed", False, False, False, "stopped"),
    ("activating", False, False, False, "starting"),
    ("deactivating", True, False, False, "stopping"),
    ("active", False, False, False, "starting"),
    ("active", True, False, False, "starting"),
    ("active", True, False, True, "not answering"),
    ("active", True, True, True, "serving"),
])
def test_the_serving_state_reads_as_a_person_says_it(active, running, ready, answered, state):
    assert watch.serving_state(active, running, ready, answered) == state


def test_a_serving_head_reports_its_model_image_id_uptime_and_health(tmp_path, standin_head, monkeypatch):
    fake_node(monkeypatch)
    result = watch.report(node_config(tmp_path, standin_head))
    assert result["state"] == "serving" and result["ready"] is True and result["health"] == "200"
    assert result["model"] == "org/m" and result["engine"] == "vllm" and result["role"] == "head"
    assert result["image"] == "spark-standin:0123456789ab" and result["image_id"] == IMAGE_ID
    assert result["unit"] == "active" and result["restarts"] == "2"
    assert result["since_s"] == pytest.approx(125.0, abs=0.01)
    assert KEY not in json.dumps(result)


def test_a_stopped_node_reports_stopped_with_the_image_it_would_run(tmp_path, monkeypatch):
    fake_node(monkeypatch, active="failed", running=False)
    result = watch.report(node_config(tmp_path, free_port()))
    assert result["state"] == "stopped" and result["unit"] == "failed" and result["engine_running"] is False
    assert result["image_id"] == IMAGE_ID and result["health"] == "no answer"


def test_a_worker_without_its_head_is_starting_and_asks_no_api(tmp_path, monkeypatch):
    fake_node(monkeypatch)
    result = watch.report(node_config(tmp_path, free_port(), role="worker"))
    assert result["state"] == "starting" and result["health"] is None
    assert result["detail"] == "the head's watcher does not answer"


def test_report_runs_as_the_node_runs_it(tmp_path):
    """The shipped file itself, as `sudo python3 serving_watch.py report`: no
    systemctl or docker on PATH reads as unknown and stopped, never a traceback."""
    config = tmp_path / "watch.json"
    config.write_text(json.dumps(node_config(tmp_path, free_port())))
    result = subprocess.run([sys.executable, str(WATCH_SOURCE), "report"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "SPARK_WATCH_CONFIG": str(config), "PATH": "/nonexistent"})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and report["unit"] == "unknown" and report["state"] == "unknown"
    assert report["image_id"] == "" and report["node"] == "spark-1"


# --- smoke ----------------------------------------------------------------------------

def test_smoke_answers_and_measures_tokens_per_second_alone_and_at_concurrency(tmp_path, standin_head):
    config = node_config(tmp_path, standin_head)
    key = watch.env_value(config["env_file"], config["api_key_variable"])
    result = watch.smoke(config, key, concurrency=3, max_tokens=16)
    assert result["ok"] is True and result["error"] == ""
    assert "echo: In two sentences" in result["answer"]  # the stand-in echoes the prompt
    assert result["single"]["requests"] == 1 and result["single"]["tokens"] > 0
    assert result["single"]["tokens_per_s"] > 0
    concurrent = result["concurrent"]
    assert concurrent["requests"] == 3 and concurrent["failed"] == 0
    assert concurrent["tokens"] == 3 * result["single"]["tokens"] and concurrent["tokens_per_s"] > 0


def test_smoke_without_the_key_fails_saying_what_the_api_said(tmp_path, standin_head):
    result = watch.smoke(node_config(tmp_path, standin_head), None, concurrency=2, max_tokens=8)
    assert result["ok"] is False and result["error"].startswith("HTTP 401")
    assert "single" not in result


def test_smoke_counts_failed_requests_under_concurrency(tmp_path):
    """A server that answers the first two requests and refuses the rest."""
    answered = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            answered.append(1)
            if len(answered) > 2:
                self.send_error(503)
                return
            data = json.dumps({"choices": [{"message": {"content": "Hello there"}}],
                               "usage": {"completion_tokens": 10}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = node_config(tmp_path, server.server_address[1])
        result = watch.smoke(config, None, concurrency=4, max_tokens=8)
    finally:
        server.shutdown()
    assert result["answer"] == "Hello there" and result["single"]["tokens_per_s"] > 0
    assert result["concurrent"]["failed"] == 4 and result["concurrent"]["tokens"] is None
    assert result["ok"] is False and result["error"].startswith("4 of 5 timed requests failed: HTTP 503")


def test_smoke_on_a_worker_refuses():
    result = watch.smoke({"role": "worker", "node": "spark-2"}, None)
    assert result == {"ok": False, "node": "spark-2", "error": "smoke runs on the head only"}


def test_smoke_runs_as_the_node_runs_it_and_prints_no_key(tmp_path, standin_head):
    config = tmp_path / "watch.json"
    config.write_text(json.dumps(node_config(tmp_path, standin_head)))
    result = subprocess.run([sys.executable, str(WATCH_SOURCE), "smoke", "2", "8"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "SPARK_WATCH_CONFIG": str(config)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["concurrent"]["requests"] == 2 and KEY not in result.stdout


# --- what the role writes for it ----------------------------------------------------------

def test_watch_settings_name_the_model_and_image_the_node_was_deployed_with():
    s = serving_settings(dict(GROUP_DATA, serving_standin=True))
    config = watch_config(s=s, engine=ENGINES["vllm"], node="spark-1", rank=0, control_ip="10.0.0.1",
                          head_ip="10.0.0.1", api_host_ip="10.0.0.1", memory=("gpu_memory_utilization", 0.8),
                          image="spark-standin:0123456789ab")
    assert config["model"] == GROUP_DATA["serving_model"] and config["image"] == "spark-standin:0123456789ab"
    assert config["role"] == "head"
