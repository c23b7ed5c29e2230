"""serving.env and spark-serving.service as they land on the node."""

import difflib
import runpy
from pathlib import Path

import pytest

from roles.caches.mounts import cache_mounts
from roles.rdma import roce_env_command
from roles.serving.argv import ClusterPlace, render_engine_argv
from roles.serving.environment import ServingEnvError, serving_environment
from roles.serving.facts import DockerImageId, DockerRuntimes
from roles.serving.unit import (
    Container,
    render_env_file,
    render_unit,
    systemd_quote,
    unit_context,
    unquote_exec_start,
)

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = runpy.run_path(str(REPO / "group_data" / "all.py"))
PROFILE = GROUP_DATA["serving_profiles"]["deepseek-v4-flash"]
HOME = "/home/spark"


def environment(qsfp_ip, profile_env=None):
    return serving_environment(
        bond_name="bond0", qsfp_ip=qsfp_ip, head_qsfp_ip="10.0.0.1", home=HOME,
        profile_env=PROFILE["env"] if profile_env is None else profile_env,
    )


def parse_env_file(text):
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return dict(pairs)


@pytest.mark.parametrize("qsfp_ip", ["10.0.0.1", "10.0.0.2"])
def test_env_file_pins_every_interface_and_address(qsfp_ip):
    env = parse_env_file(render_env_file(environment(qsfp_ip)))
    for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "MN_IF_NAME",
                 "OMPI_MCA_btl_tcp_if_include"):
        assert env[name] == "bond0", name
    assert env["NCCL_IB_DISABLE"] == "0"
    assert env["VLLM_HOST_IP"] == qsfp_ip
    assert env["MASTER_ADDR"] == "10.0.0.1"
    assert env["HF_HOME"] == f"{HOME}/.cache/huggingface"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/root/.cache/torch/inductor"
    assert env["RAY_memory_monitor_refresh_ms"] == "0"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert env["TORCH_CUDA_ARCH_LIST"] == "12.1a"
    # Detected at each start into roce.env, never pinned here.
    assert "NCCL_IB_HCA" not in env and "NCCL_IB_GID_INDEX" not in env


def test_env_file_has_no_quotes_docker_would_keep():
    text = render_env_file(environment("10.0.0.2"))
    assert '"' not in text and "'" not in text
    assert all("=" in line for line in text.splitlines() if line and not line.startswith("#"))


def test_profile_cannot_pin_the_detected_roce_variables():
    with pytest.raises(ServingEnvError, match="nccl_ib_hca"):
        environment("10.0.0.2", {"NCCL_IB_HCA": "mlx5_0"})


def test_multiline_values_are_refused():
    with pytest.raises(ServingEnvError):
        environment("10.0.0.2", {"BAD": "a\nb"})


def unit_text(rank=0, world_size=2, nvidia=False, engine="vllm", hca="auto", gid="auto"):
    host_data = {"bond_name": "bond0", "qsfp_ip": f"10.0.0.{rank + 1}", "nccl_ib_hca": hca,
                 "nccl_ib_gid_index": gid, "qsfp_interfaces": ["enp1s0f0np0", "enp1s0f1np1"]}
    place = ClusterPlace(world_size=world_size, rank=rank, head_qsfp_ip="10.0.0.1", master_port=29519,
                         api_port=8000, model="deepseek-ai/DeepSeek-V4-Flash",
                         served_model_name="deepseek-v4-flash", entrypoint_is_engine=True)
    container = Container(image="vllm-ds4-sm121:latest",
                          engine_argv=render_engine_argv(engine, PROFILE[engine], place),
                          mounts=cache_mounts(HOME), nvidia_runtime=nvidia)
    context = unit_context(container=container, engine=engine, rank=rank, world_size=world_size,
                           head_qsfp_ip="10.0.0.1", master_port=29519,
                           roce_detect_command=roce_env_command(host_data),
                           start_timeout_s=1800, stop_timeout_s=60)
    return render_unit(context)


def directive(text, key):
    return [line.split("=", 1)[1] for line in text.replace("\\\n", " ").splitlines() if line.startswith(key + "=")]


def exec_start(text):
    (value,) = directive(text, "ExecStart")
    return unquote_exec_start(value)


@pytest.mark.parametrize("rank", [0, 1])
def test_unit_runs_the_container_with_rdma_memlock_and_host_namespaces(rank):
    argv = exec_start(unit_text(rank=rank))
    assert argv[:5] == ["/usr/bin/docker", "run", "--rm", "--name", "spark-serving"]
    joined = " ".join(argv)
    for words in ("--device /dev/infiniband", "--ulimit memlock=-1:-1", "--cap-add IPC_LOCK",
                  "--network host", "--ipc host",
                  "--env-file /etc/spark-cluster/serving.env --env-file /run/spark-cluster/roce.env",
                  f"-v {HOME}/.cache/huggingface:{HOME}/.cache/huggingface",
                  f"-v {HOME}/.cache/spark-cluster/vllm:/root/.cache/vllm",
                  f"-v {HOME}/.cache/spark-cluster/triton:/root/.triton/cache"):
        assert words in joined, words
    image = argv.index("vllm-ds4-sm121:latest")
    assert argv[image + 1] == "deepseek-ai/DeepSeek-V4-Flash"
    assert ("--headless" in argv) == (rank != 0)


def test_speculative_config_survives_systemd_quoting():
    argv = exec_start(unit_text())
    assert argv[argv.index("--speculative-config") + 1] == '{"method":"deepseek_mtp","num_speculative_tokens":2}'


def test_gpus_only_with_an_nvidia_runtime():
    assert "--gpus" not in exec_start(unit_text(nvidia=False))
    argv = exec_start(unit_text(nvidia=True))
    assert argv[argv.index("--gpus") + 1] == "all"


def test_unit_lifecycle_directives():
    text = unit_text()
    assert directive(text, "After") == ["network-online.target docker.service"]
    assert directive(text, "Wants") == ["network-online.target"]
    assert directive(text, "Requires") == ["docker.service"]
    assert directive(text, "PartOf") == ["docker.service"]
    assert directive(text, "Restart") == ["always"] and directive(text, "RestartSec") == ["10"]
    assert directive(text, "TimeoutStartSec") == ["1800"]
    assert directive(text, "ExecStop") == ["/usr/bin/docker stop -t 60 spark-serving"]
    assert directive(text, "WantedBy") == ["multi-user.target"]
    pre = directive(text, "ExecStartPre")
    assert pre[0] == "-/usr/bin/docker rm -f spark-serving"
    detector = unquote_exec_start(pre[-1])
    assert detector[:2] == ["/usr/bin/python3", "/usr/local/lib/spark-cluster/roce_detect.py"]
    assert detector[detector.index("--netdev") + 1] == "bond0"
    assert detector[detector.index("--output") + 1] == "/run/spark-cluster/roce.env"
    assert "--env" in detector and "--hca" not in detector and "--gid-index" not in detector


def test_pinned_roce_values_are_passed_to_the_detector():
    detector = unquote_exec_start(directive(unit_text(hca="mlx5_0,mlx5_1", gid=3), "ExecStartPre")[-1])
    assert detector[detector.index("--hca") + 1] == "mlx5_0,mlx5_1"
    assert detector[detector.index("--gid-index") + 1] == "3"


def test_one_template_head_and_worker_differ_only_in_rank_specific_lines():
    head, worker = unit_text(rank=0).splitlines(), unit_text(rank=1).splitlines()
    changed = [line[2:] for line in difflib.ndiff(head, worker) if line[:2] in ("- ", "+ ")]
    markers = ("Description=", "# Head:", "# Worker:", "--node-rank", "--host", "--port",
               "--served-model-name", "--headless", "--ip 10.0.0.")
    assert changed and all(any(marker in line for marker in markers) for line in changed), changed


def test_sglang_unit_uses_launch_server_with_new_flag_names():
    argv = exec_start(unit_text(engine="sglang", world_size=4, rank=2))
    assert "--dist-init-addr" in argv and "--master-addr" not in argv and "--headless" not in argv


@pytest.mark.parametrize("word,expected", [
    ("plain", "plain"),
    ("a b", '"a b"'),
    ('{"k":1}', '"{\\"k\\":1}"'),
    ("$HOME", "$$HOME"),
    ("100%", "100%%"),
])
def test_systemd_quote(word, expected):
    assert systemd_quote(word) == expected
    assert unquote_exec_start(systemd_quote(word)) == [word]


def test_docker_facts_parse_their_output():
    assert DockerImageId().process(["sha256:abc"]) == "sha256:abc"
    assert DockerImageId().process([]) is None
    assert DockerRuntimes().process(['{"io.containerd.runc.v2":{},"nvidia":{"path":"x"},"runc":{}}']) == [
        "io.containerd.runc.v2", "nvidia", "runc"]
    assert DockerRuntimes().process(["not json"]) == []
    assert "'{{json .Runtimes}}'" in DockerRuntimes().command()
    assert "'{{.Id}}'" in DockerImageId().command(image="x:1")
