"""The serving watcher (roles/serving/files/serving_watch.py): its policy,
case by case, the memory check, the engine phases it reads from logs, and
the settings the role writes for it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from roles.serving.watch import (WATCH_SOURCE, api_host, memory_claim, read_api_key, refuse_secret_flags,
                                 secret_flag, watch_config)
from roles.serving.argv import render_engine_argv
from roles.serving.desired import serving_settings
from spark_cluster.engine_image import STANDIN_SOURCE
from spark_cluster.engines import ENGINES, ClusterPlace
from spark_cluster.settings import SettingError
from collect_ops import GROUP_DATA
from test_rdma import python38_violations
from source_module import load_source


def load_watch():
    return load_source("serving_watch", WATCH_SOURCE)


watch = load_watch()
STANDIN = STANDIN_SOURCE / "server.py"
CONFIG = {"role": "head", "start_timeout_s": 600, "fail_after": 3, "rejoin_grace_s": 30,
          "backoff_s": 60, "backoff_max_s": 900, "max_restarts_per_hour": 6}
WORKER = dict(CONFIG, role="worker")
T0 = 1_000_000.0


def step(config, observed, memory=None, now=T0):
    return watch.decide(config, {"unit_active": True, **observed}, memory or watch.fresh_memory(), now)


def head_run(probes, start=T0, tokens=None, config=CONFIG, every=10.0):
    """Feeds the head's policy one probe result per look; returns the actions."""
    memory, actions = watch.fresh_memory(), []
    for index, ok in enumerate(probes):
        observed = {"engine_started_at": start, "probe_ok": ok}
        if tokens is not None:
            observed["tokens"] = tokens[index]
        action, reason, memory = step(config, observed, memory, start + 5 + index * every)
        actions.append((action, reason))
    return actions, memory


# --- the head -------------------------------------------------------------------

def test_a_starting_head_is_left_alone_until_the_start_timeout():
    actions, _ = head_run([False] * 5)
    assert [a for a, _ in actions] == ["none"] * 5
    assert actions[-1][1].startswith("starting (")


def test_a_head_that_never_answers_is_restarted_after_the_start_timeout():
    action, reason, memory = step(CONFIG, {"engine_started_at": T0, "probe_ok": False}, now=T0 + 601)
    assert action == "restart" and "no completion 601s after the engine started" in reason
    assert memory["restarts"] == [T0 + 601]


def test_a_head_that_answered_is_restarted_after_fail_after_misses_in_a_row():
    actions, memory = head_run([True, False, False, False])
    assert [a for a, _ in actions] == ["none", "none", "none", "restart"]
    assert "no tokens in 3 probes in a row" in actions[-1][1] and "a worker left" in actions[-1][1]


def test_one_answer_between_misses_resets_the_count():
    actions, _ = head_run([True, False, False, True, False, False])
    assert all(a == "none" for a, _ in actions)


def test_a_moving_generation_counter_is_alive_even_when_the_probe_queues():
    # A busy engine may not answer the probe in time, but it generates.
    actions, _ = head_run([True, False, False, False, False], tokens=[10, 20, 30, 40, 50])
    assert all(a == "none" for a, _ in actions)
    assert actions[-1][1] == "generating"
    actions, _ = head_run([True, False, False, False, False], tokens=[10, 20, 20, 20, 20])
    assert actions[-1][0] == "restart"


def test_a_new_engine_starts_a_new_judgement():
    _, memory = head_run([True, False, False])
    action, reason, memory = step(CONFIG, {"engine_started_at": T0 + 100, "probe_ok": False}, memory, T0 + 110)
    assert action == "none" and reason.startswith("starting (") and memory["failures"] == 0


def test_nothing_is_done_while_systemd_has_serving_stopped_or_restarting():
    _, memory = head_run([True, False, False])
    action, reason, _ = watch.decide(CONFIG, {"unit_active": False, "engine_started_at": None}, memory, T0 + 50)
    assert action == "none" and "stopped" in reason
    action, reason, _ = watch.decide(CONFIG, {"unit_active": True, "engine_started_at": None}, memory, T0 + 50)
    assert action == "none" and "systemd starts it" in reason


def test_nothing_is_restarted_while_a_deploy_rewrites_the_unit():
    """A head that misses its probes, while the unit file on disk is newer
    than systemd's copy: a restart now would run the old unit (a lab run in
    bond mode caught one running the old rails' RoCE detection); the deploy
    restarts it once it has reloaded."""
    _, memory = head_run([True, False, False])
    changing = {"unit_active": True, "unit_changing": True, "engine_started_at": T0, "probe_ok": False}
    action, reason, memory = watch.decide(CONFIG, changing, memory, T0 + 40)
    assert action == "none" and "a deploy is rewriting the unit" in reason
    action, _, _ = watch.decide(CONFIG, dict(changing, unit_changing=False), memory, T0 + 50)
    assert action == "restart"


# --- backoff ----------------------------------------------------------------------

def test_restarts_back_off_exponentially_and_hold_at_the_hourly_cap():
    memory = dict(watch.fresh_memory(), restarts=[T0])
    assert watch.restart_gate(memory, T0 + 30, CONFIG)[0] == "none"  # 60 s after the first
    assert watch.restart_gate(memory, T0 + 61, CONFIG) is None
    memory["restarts"] = [T0, T0 + 61]
    assert "backoff" in watch.restart_gate(memory, T0 + 61 + 100, CONFIG)[1]  # 120 s after the second
    assert watch.restart_gate(memory, T0 + 61 + 121, CONFIG) is None
    memory["restarts"] = [T0 + i * 500 for i in range(6)]
    action, why = watch.restart_gate(memory, T0 + 3000, CONFIG)
    assert action == "hold" and "6 restarts in the last hour" in why and "restart.py" in why
    # An hour later the oldest no longer count.
    assert watch.restart_gate(memory, T0 + 3700, CONFIG) is None


def test_a_restart_refused_by_backoff_is_retried_on_a_later_look():
    _, memory = head_run([True, False, False, False])  # restarted once at T0 + 35
    memory.update(engine_started_at=T0 + 40, answered=True, failures=2)
    action, reason, memory = step(CONFIG, {"engine_started_at": T0 + 40, "probe_ok": False}, memory, T0 + 60)
    assert action == "none" and "backoff" in reason
    action, _, _ = step(CONFIG, {"engine_started_at": T0 + 40, "probe_ok": False}, memory, T0 + 100)
    assert action == "restart"


# --- a worker ------------------------------------------------------------------------

def worker_look(memory, head_started, now, started=T0, skew=0.0):
    """The head's watcher reports its engine's start on its own clock, `skew` seconds off ours."""
    head = None if head_started == "unreachable" else {
        "engine_started_at": None if head_started is None else head_started + skew,
        "engine_started_local": head_started}
    return step(WORKER, {"engine_started_at": started, "head": head}, memory, now)


def test_the_heads_engine_is_known_by_its_own_clock_so_skew_and_jitter_restart_nothing():
    # The head's clock runs 300 s ahead; each look moves it onto ours with some jitter.
    _, _, memory = worker_look(None, T0 - 500, T0 + 10, skew=300)
    for look, jitter in enumerate((2.5, -3.0, 7.0)):
        head = {"engine_started_at": T0 - 500 + 300, "engine_started_local": T0 - 500 + jitter}
        action, reason, memory = step(WORKER, {"engine_started_at": T0, "head": head}, memory, T0 + 20 + look)
        assert action == "none" and reason == "head engine seen"


def test_a_worker_whose_head_restarted_later_rejoins():
    action, _, memory = worker_look(None, T0 - 500, T0 + 10)  # joined a head that ran already
    assert action == "none" and memory["head_seen"] == T0 - 500
    action, reason, memory = worker_look(memory, None, T0 + 20)  # the head's engine is gone
    assert action == "none" and "waiting" in reason
    action, reason, _ = worker_look(memory, T0 + 200, T0 + 210)
    assert action == "restart" and "the head's engine restarted (200s after this worker's)" in reason


def test_head_and_worker_restarted_together_by_a_deploy_is_no_reason():
    _, _, memory = worker_look(None, T0 - 500, T0 + 2)  # the old head, seen just before it restarted
    action, reason, memory = worker_look(memory, T0 + 5, T0 + 12)
    assert action == "none" and "restarted with this one" in reason and memory["head_seen"] == T0 + 5


def test_a_worker_waiting_for_its_first_head_is_left_alone():
    memory = None
    for now in (T0 + 10, T0 + 20):
        action, _, memory = worker_look(memory, "unreachable", now)
        assert action == "none"
    action, _, memory = worker_look(memory, T0 + 400, T0 + 410)  # the head boots late
    assert action == "none" and memory["head_seen"] == T0 + 400


def test_a_worker_restarted_by_its_watcher_starts_afresh():
    _, _, memory = worker_look(None, T0 - 500, T0 + 10)
    action, _, memory = worker_look(memory, T0 + 200, T0 + 210)
    assert action == "restart"
    # Its new engine joins the head that is there now: no second restart.
    action, _, memory = worker_look(memory, T0 + 200, T0 + 240, started=T0 + 230)
    assert action == "none" and memory["head_seen"] == T0 + 200


# --- memory before a start -------------------------------------------------------------

MEMINFO = "MemTotal:       125000000 kB\nMemFree:         2000000 kB\nMemAvailable:   {avail} kB\n"


def test_the_memory_check_names_the_node_and_both_figures():
    ok, report, line = watch.memory_verdict(MEMINFO.format(avail=90_000_000), 0.8, "gpu_memory_utilization", "spark-2")
    assert not ok
    assert line.startswith("spark-serving on spark-2: free memory 85.8 GiB is below the 95.4 GiB")
    assert "gpu_memory_utilization 0.8 of 119.2 GiB" in line and "refusing to start" in line
    assert report == {"node": "spark-2", "free_gib": 85.8, "total_gib": 119.2, "need_gib": 95.4,
                      "setting": "gpu_memory_utilization", "fraction": 0.8}
    ok, _, line = watch.memory_verdict(MEMINFO.format(avail=110_000_000), 0.8, "gpu_memory_utilization", "spark-2")
    assert ok and "starting" in line


def test_the_memory_check_refuses_without_figures():
    ok, _, line = watch.memory_verdict("MemFree: 1 kB\n", 0.8, "mem_fraction_static", "spark-1")
    assert not ok and "no MemTotal/MemAvailable" in line


@pytest.mark.parametrize("engine, flags, expected", [
    ("vllm", {"gpu_memory_utilization": 0.8}, ("gpu_memory_utilization", 0.8)),
    ("vllm", {}, ("gpu_memory_utilization", 0.9)),
    ("sglang", {"mem_fraction_static": "0.7"}, ("mem_fraction_static", 0.7)),
])
def test_the_claim_comes_from_the_engine_flag_of_the_profile(engine, flags, expected):
    assert memory_claim(ENGINES[engine], flags) == expected


@pytest.mark.parametrize("value", [0, 1.5, "much"])
def test_a_claim_that_is_no_share_is_refused(value):
    with pytest.raises(SettingError, match="gpu_memory_utilization must be"):
        memory_claim(ENGINES["vllm"], {"gpu_memory_utilization": value})


def test_group_data_may_name_its_own_share_or_zero_to_report_only():
    assert memory_claim(ENGINES["vllm"], {"gpu_memory_utilization": 0.8}, 0.25) == ("serving_memory_check", 0.25)
    assert memory_claim(ENGINES["vllm"], {}, 0) == ("serving_memory_check", 0.0)
    with pytest.raises(SettingError, match=r"serving_memory_check must be in \[0, 1\], got 2"):
        memory_claim(ENGINES["vllm"], {}, 2)
    ok, _, line = watch.memory_verdict(MEMINFO.format(avail=1), 0.0, "serving_memory_check", "spark-1")
    assert ok and "starting" in line


# --- what the engine is doing ---------------------------------------------------------------

@pytest.mark.parametrize("lines, phase", [
    (["INFO Loading safetensors checkpoint shards:  40% Completed | 2/5"], "loading weights"),
    (["x", "INFO [default_loader.py:507] Loading weights took 412.20 seconds"], "weights loaded"),
    (["INFO Compiling a graph for compile range (1, 4096) takes 31.2 s"], "compiling (torch.compile)"),
    (["Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 30%"], "capturing CUDA graphs"),
    (["[2026-11-30] Capture target decode CUDA graph begin. This can take up to several minutes."],
     "capturing CUDA graphs"),
    (["INFO:     Application startup complete."], "API up"),
    (["The server is fired up and ready to roll!"], "ready"),
    (["Loading weights took 3 s", "torch.OutOfMemoryError: CUDA out of memory"],
     "error: torch.OutOfMemoryError: CUDA out of memory"),
    (["nothing known"], ""),
])
def test_the_phase_is_the_newest_line_it_knows(lines, phase):
    assert watch.engine_phase(lines) == phase


# --- small readers ------------------------------------------------------------------------------

def test_the_generation_counter_sums_every_label_set():
    text = ('# TYPE vllm:generation_tokens_total counter\n'
            'vllm:generation_tokens_total{model_name="a",engine="0"} 12.0\n'
            'vllm:generation_tokens_total{model_name="a",engine="1"} 30.0\n'
            'vllm:generation_tokens_created{model_name="a"} 1.7e9\n')
    assert watch.metrics_counter(text, "vllm:generation_tokens_total") == 42.0
    assert watch.metrics_counter(text, "sglang:generation_tokens_total") is None
    assert watch.metrics_counter(text, "") is None


def test_docker_times_are_epoch_seconds():
    assert watch.parse_docker_time("2026-11-30T22:30:01.250000000Z") == 1796077801.25
    assert watch.parse_docker_time("0001-01-01T00:00:00Z") is None and watch.parse_docker_time("") is None


def test_the_key_is_read_from_the_env_file_only(tmp_path):
    env = tmp_path / "serving.env"
    env.write_text("# comment\nVLLM_HOST_IP=10.0.0.1\nVLLM_API_KEY=abc=def\n")
    assert watch.env_value(str(env), "VLLM_API_KEY") == "abc=def"
    assert watch.env_value(str(env), "") is None and watch.env_value(str(tmp_path / "none"), "X") is None


def test_status_of_a_node_without_an_engine_is_not_ready(tmp_path):
    config = tmp_path / "watch.json"
    config.write_text(json.dumps({"node": "spark-9", "role": "head", "container": "no-such-container-here"}))
    result = subprocess.run([sys.executable, str(WATCH_SOURCE), "status"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "SPARK_WATCH_CONFIG": str(config), "PATH": "/nonexistent"})
    status = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and status["ready"] is False and status["detail"] == "no engine container running"


def test_the_watcher_needs_nothing_newer_than_python38():
    assert python38_violations(WATCH_SOURCE) == []


# --- what the role writes for it -----------------------------------------------------------------

def test_the_api_listens_on_the_qsfp_address_unless_told_otherwise():
    assert api_host("qsfp", "10.0.0.1") == "10.0.0.1" and api_host("all", "10.0.0.1") == "0.0.0.0"
    with pytest.raises(SettingError, match="'api_listen' must be one of qsfp, all, got 'lan'"):
        api_host("lan", "10.0.0.1")


@pytest.mark.parametrize("key, secret", [
    ("api_key", True), ("admin_api_key", True), ("hf_token", True), ("ssl_keyfile_password", True),
    ("max_num_batched_tokens", False), ("kv_cache_dtype", False), ("num_speculative_tokens", False),
    ("tokenizer", False),
])
def test_secret_looking_flags(key, secret):
    assert secret_flag(key) is secret


def test_a_secret_flag_in_a_profile_is_refused_naming_the_env_file_route():
    with pytest.raises(SettingError) as refused:
        refuse_secret_flags({"max_num_seqs": 8, "api_key": "hunter2"}, "ds4")
    assert "'api_key', a secret" in str(refused.value) and "serving_api_key_file" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_key_file_must_be_private_and_hold_one_word(tmp_path):
    key = tmp_path / "api_key"
    key.write_text("s3cret-key-0123456789\n")
    key.chmod(0o644)
    with pytest.raises(SettingError, match="is mode 0644: others can read the API key; chmod 600"):
        read_api_key(str(key))
    key.chmod(0o600)
    assert read_api_key(str(key)) == "s3cret-key-0123456789"
    key.write_text("two words here, too short\n")
    with pytest.raises(SettingError, match="one key of 16 to 512 printable characters"):
        read_api_key(str(key))
    with pytest.raises(SettingError, match="cannot be read"):
        read_api_key(str(tmp_path / "missing"))
    assert read_api_key(None) is None


def test_the_watch_settings_point_a_worker_at_the_head_watcher_and_hold_no_key(tmp_path):
    s = serving_settings(dict(GROUP_DATA))
    config = watch_config(s=s, engine=ENGINES["vllm"], node="spark-2", rank=1, control_ip="10.0.0.2",
                          head_ip="10.0.0.1", api_host_ip="10.0.0.1", memory=("gpu_memory_utilization", 0.8))
    assert config["role"] == "worker" and config["listen"] == "10.0.0.2"
    assert config["head_state_url"] == "http://10.0.0.1:29520/state"
    assert config["api_url"] == "http://10.0.0.1:8000" and config["api_key_variable"] == "VLLM_API_KEY"
    assert config["start_timeout_s"] == GROUP_DATA["serving_start_timeout_s"]
    assert not any("key" in str(value).lower() and value != "VLLM_API_KEY" for value in config.values())


# --- the watcher's cycle against the lab's stand-in, on loopback ----------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def standin_pair(tmp_path):
    """A formed stand-in head and worker on 127.0.0.1; yields (api port, head process)."""
    master, api = free_port(), free_port()
    processes = []
    for rank in (0, 1):
        argv = render_engine_argv("vllm", {}, ClusterPlace(
            world_size=2, rank=rank, head_qsfp_ip="127.0.0.1", master_port=master, api_port=api, model="m",
            served_model_name="ds4", entrypoint_is_engine=True, api_host="127.0.0.1"))
        processes.append(subprocess.Popen(
            [sys.executable, str(STANDIN), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "SPARK_ENGINE": "vllm", "SPARK_STANDIN_STATE_FILE": str(tmp_path / f"{rank}.json")}))
    try:
        until(lambda: watch.probe_completion({"api_url": f"http://127.0.0.1:{api}", "served_model_name": "ds4",
                                              "probe_timeout_s": 2}, None)[0])
        yield api, processes[0]
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=5)


def node_config(role, api, state_port, head_state_port):
    return dict(CONFIG, role=role, node=f"{role}-node", unit="spark-serving.service", container="spark-serving",
                env_file="/nonexistent", api_key_variable="VLLM_API_KEY", api_url=f"http://127.0.0.1:{api}",
                served_model_name="ds4", tokens_metric="vllm:generation_tokens_total", listen="127.0.0.1",
                state_port=state_port, head_state_url=f"http://127.0.0.1:{head_state_port}/state",
                interval_s=1, probe_timeout_s=1, backoff_s=0)


def test_a_wedged_stand_in_head_is_restarted_by_its_watcher_and_the_worker_follows(standin_pair, monkeypatch):
    api, head_process = standin_pair
    head_port, worker_port = free_port(), free_port()
    engines = {"head": T0, "worker": T0 + 1}  # container start times, as docker would report them
    restarts = []

    def fake_run(argv, timeout=30):
        if argv[:2] == ["systemctl", "is-active"]:
            return 0, "active\n"
        if argv[:4] == ["systemctl", "show", "-p", "NeedDaemonReload"]:
            return 0, "no\n"
        if argv[:3] == ["systemctl", "--no-block", "restart"]:
            restarts.append(argv[3])
            return 0, ""
        raise AssertionError(argv)

    monkeypatch.setattr(watch, "run", fake_run)
    head = watch.Watcher(node_config("head", api, head_port, head_port))
    worker = watch.Watcher(node_config("worker", api, worker_port, head_port))
    watch.serve_state(head)

    def cycle(node, role, now):
        monkeypatch.setattr(watch, "engine_started_at", lambda config: engines[config["role"]])
        return node.cycle(now)

    assert cycle(head, "head", T0 + 10) == ("none", "answering")
    assert cycle(worker, "worker", T0 + 10) == ("none", "head engine seen")
    assert head.state()["answering"] is True

    head_process.send_signal(signal.SIGUSR1)  # the stand-in's wedge: no tokens, /health 200
    # A loaded machine may deliver the signal after the next probe: wait for the wedge itself.
    until(lambda: not watch.probe_completion(head.config, None)[0])
    actions = [cycle(head, "head", T0 + 20 + i)[0] for i in range(3)]
    assert actions == ["none", "none", "restart"] and restarts == ["spark-serving.service"]
    assert head.state()["answering"] is False

    engines["head"] = T0 + 100  # systemd started the head's new container
    assert cycle(head, "head", T0 + 105)[1].startswith("starting (")
    action, reason = cycle(worker, "worker", T0 + 110)
    assert action == "restart" and "the head's engine restarted (99s after this worker's)" in reason
    assert restarts == ["spark-serving.service"] * 2
