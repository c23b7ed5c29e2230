"""serving.env and spark-serving.service as they land on the node, from the
serving role's pure computation (roles/serving/desired.py)."""

import difflib
import json

import pytest
from collect_ops import GROUP_DATA, cluster

from roles.serving.argv import render_engine_argv
from roles.serving.desired import desired_serving, serving_settings
from roles.serving.facts import DockerRuntimes
from roles.serving.unit import docker_run_argv, systemd_quote, unquote_exec_start
from spark_cluster.caches import cache_mounts
from spark_cluster.engine_image import DockerImageId, image_of
from spark_cluster.engines import ENGINES, ClusterPlace, Engine
from spark_cluster.settings import SettingError

PROFILE = GROUP_DATA["serving_profiles"]["deepseek-v4-flash"]
HOME = "/home/spark"
IMAGE = GROUP_DATA["serving_image"]


def node_data(rank=0, world_size=2, **overrides):
    """host.data of one node: group_data under the inventory's derived values."""
    return {**GROUP_DATA, **cluster(world_size, **overrides)[rank][1]}


def desired(rank=0, world_size=2, nvidia=False, **overrides):
    data = node_data(rank, world_size, **overrides)
    return desired_serving(serving_settings(data), data, image=IMAGE, home=HOME,
                           docker_runtimes=["nvidia", "runc"] if nvidia else ["runc"])


def environment(qsfp_ip, profile_env=None):
    """The env file's text for the node at `qsfp_ip`, with the profile's env or `profile_env`."""
    profiles = {"p": {**PROFILE, "env": PROFILE["env"] if profile_env is None else profile_env}}
    rank = int(qsfp_ip.rsplit(".", 1)[1]) - 1
    return desired(rank=rank, serving_profiles=profiles, serving_profile="p").env_text


def parse_env_file(text):
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return dict(pairs)


@pytest.mark.parametrize("qsfp_ip", ["10.0.0.1", "10.0.0.2"])
def test_env_file_pins_every_interface_and_address(qsfp_ip):
    env = parse_env_file(environment(qsfp_ip))
    for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "MN_IF_NAME",
                 "OMPI_MCA_btl_tcp_if_include"):
        assert env[name] == "enp1s0f1np1", name  # the control interface: the first rail
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
    text = environment("10.0.0.2")
    assert '"' not in text and "'" not in text
    assert all("=" in line for line in text.splitlines() if line and not line.startswith("#"))


def test_profile_cannot_pin_the_detected_roce_variables():
    with pytest.raises(SettingError, match="nccl_ib_hca"):
        environment("10.0.0.2", {"NCCL_IB_HCA": "mlx5_0"})


def test_multiline_values_are_refused():
    with pytest.raises(SettingError, match="cannot be written to a docker env file"):
        environment("10.0.0.2", {"BAD": "a\nb"})


def engine_settings(engine):
    """serving_engine with an image of that engine (the schema refuses a vLLM image under SGLang)."""
    return {"serving_engine": engine} if engine == "vllm" else {
        "serving_engine": engine, "serving_image": None, "serving_image_entrypoint_is_engine": None}


def unit_text(rank=0, world_size=2, nvidia=False, engine="vllm", hca="auto", gid="auto"):
    return desired(rank, world_size, nvidia, **engine_settings(engine), nccl_ib_hca=hca, nccl_ib_gid_index=gid).unit_text


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
    # every rail with its own address (the test cluster: 10.0.0.x and 10.0.1.x)
    assert detector[detector.index("--rails") + 1] == "enp1s0f1np1=10.0.0.1,enP2p1s0f1np1=10.0.1.1"
    assert detector[detector.index("--output") + 1] == "/run/spark-cluster/roce.env"
    assert "--env" in detector and "--hca" not in detector and "--gid-index" not in detector


def test_in_bond_mode_the_engine_talks_over_the_bond_and_the_detector_reads_it():
    """The serving role never asks for the mode: the fabric's control interface
    and detector arguments change with it."""
    data = desired(rank=1, network_mode="bond")
    env = parse_env_file(data.env_text)
    assert {env[name] for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME")} == {"bond0"}
    assert env["VLLM_HOST_IP"] == "10.0.0.2"
    detector = unquote_exec_start(directive(data.unit_text, "ExecStartPre")[-1])
    assert detector[detector.index("--netdev") + 1:detector.index("--netdev") + 6] == [
        "bond0", "--slaves", "enp1s0f1np1,enP2p1s0f1np1", "--ip", "10.0.0.2"]


def test_pinned_roce_values_are_passed_to_the_detector():
    detector = unquote_exec_start(directive(unit_text(hca="mlx5_0,mlx5_1", gid=3), "ExecStartPre")[-1])
    assert detector[detector.index("--hca") + 1] == "mlx5_0,mlx5_1"
    assert detector[detector.index("--gid-index") + 1] == "3"


def test_one_template_head_and_worker_differ_only_in_rank_specific_lines():
    head, worker = unit_text(rank=0).splitlines(), unit_text(rank=1).splitlines()
    changed = [line[2:] for line in difflib.ndiff(head, worker) if line[:2] in ("- ", "+ ")]
    markers = ("Description=", "# Head:", "# Worker:", "--node-rank", "--host", "--port",
               "--served-model-name", "--headless", "--ip 10.0.0.", "--rails enp1s0f1np1=10.0.0.")
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


# --- the pure computation apply() writes, and the engine registry -----------

def test_the_container_is_what_the_unit_runs():
    wanted = desired(rank=1, nvidia=True)
    assert wanted.container.image == IMAGE
    assert wanted.container.mounts == cache_mounts(HOME)
    assert wanted.container.nvidia_runtime
    assert exec_start(wanted.unit_text) == docker_run_argv(wanted.container)
    assert wanted.container.engine_argv[0] == GROUP_DATA["serving_model"]  # the image's ENTRYPOINT is vllm serve


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_env_file_names_the_engine(engine):
    assert parse_env_file(desired(**engine_settings(engine)).env_text)["SPARK_ENGINE"] == engine


def test_an_unknown_engine_is_a_setting_error():
    profiles = {"p": {"tgi": {}}}
    with pytest.raises(SettingError, match="'serving_engine' must be one of 'vllm', 'sglang', got 'tgi'"):
        desired(serving_engine="tgi", serving_profiles=profiles, serving_profile="p")


def _toy_flags(place):
    return ["--world", str(place.world_size), "--rank", str(place.rank),
            "--rendezvous", f"{place.head_qsfp_ip}:{place.master_port}"]


TOY = Engine(
    name="toy",
    label="Toy",
    launcher=("toy-serve",),
    cluster_flags=_toy_flags,
    cluster_owned=frozenset({"world", "rank", "rendezvous"}),
    renamed={"old_knob": "knob"},
    renamed_in="Toy 2.0",
    respelled={("dtype", "fp8"): "float8"},
    env=lambda qsfp_ip: {"TOY_HOST_IP": qsfp_ip},
    default_image="toy:1",
    default_image_entrypoint_is_engine=True,
)


def toy_desired(monkeypatch, flags, **overrides):
    monkeypatch.setitem(ENGINES, "toy", TOY)
    profiles = {"p": {"toy": flags, "env": {"TOY_CACHE": "/c"}}}
    overrides = {"serving_image": "toy:2", **overrides}  # the image the settings describe; IMAGE runs
    return desired(rank=1, serving_engine="toy", serving_profiles=profiles, serving_profile="p", **overrides)


def test_a_new_engine_is_a_registry_record_and_a_profile(monkeypatch):
    wanted = toy_desired(monkeypatch, {"knob": 3, "fast": True}, serving_image_entrypoint_is_engine=False)
    argv = exec_start(wanted.unit_text)
    after_image = argv[argv.index(IMAGE) + 1:]
    assert after_image == wanted.container.engine_argv == [
        "toy-serve", "--world", "2", "--rank", "1", "--rendezvous", "10.0.0.1:29519", "--knob", "3", "--fast"]
    env = parse_env_file(wanted.env_text)
    assert (env["SPARK_ENGINE"], env["TOY_HOST_IP"], env["TOY_CACHE"]) == ("toy", "10.0.0.2", "/c")
    assert "VLLM_HOST_IP" not in env and env["NCCL_SOCKET_IFNAME"] == "enp1s0f1np1"
    assert "Description=spark-cluster toy engine (worker, rank 1 of 2)" in wanted.unit_text


@pytest.mark.parametrize("flags, message", [
    ({"rank": 0}, "serving profile for toy sets --rank, which the serving role derives from the inventory"),
    ({"old_knob": 1}, "serving profile for toy uses --old-knob, renamed to --knob in Toy 2.0"),
    ({"dtype": "fp8"}, "serving profile for toy: --dtype fp8 is spelled float8 in Toy"),
])
def test_a_new_engine_brings_its_own_profile_checks(monkeypatch, flags, message):
    with pytest.raises(SettingError, match=message):
        toy_desired(monkeypatch, flags, serving_image_entrypoint_is_engine=False)


def test_without_serving_image_the_engine_default_image_runs_as_its_own_entrypoint(monkeypatch):
    monkeypatch.setitem(ENGINES, "toy", TOY)
    data = node_data(serving_engine="toy", serving_image=None, serving_image_entrypoint_is_engine=None,
                     serving_profiles={"p": {"toy": {}}}, serving_profile="p")
    wanted = desired_serving(serving_settings(data), data, image=image_of(data), home=HOME, docker_runtimes=[])
    assert wanted.container.image == "toy:1"
    assert wanted.container.engine_argv[:2] == ["--world", "2"]  # no launcher: toy:1 starts the engine
    # Another image is not known to start the engine unless group_data says so.
    assert TOY.entrypoint_is_engine("mine:2", None) is False
    assert TOY.entrypoint_is_engine("mine:2", True) is True
    assert TOY.entrypoint_is_engine("toy:1", False) is False


def test_only_the_engines_own_default_image_is_known_to_start_it():
    # An image named after the default but not it ("toy:2" sorts after "toy:1")
    # and the default's name built at run time (another str object, same text).
    assert TOY.entrypoint_is_engine("toy:2", None) is False
    assert TOY.entrypoint_is_engine("".join(["toy", ":1"]), None) is True
    # A record that does not say its default image starts the engine: launcher kept.
    plain = Engine(name="plain", label="Plain", launcher=("plain",), cluster_flags=_toy_flags,
                   cluster_owned=frozenset(), default_image="plain:1")
    assert plain.entrypoint_is_engine("plain:1", None) is False


def test_a_place_that_does_not_say_otherwise_keeps_the_launcher():
    place = ClusterPlace(world_size=2, rank=1, head_qsfp_ip="10.0.0.1", master_port=29519, api_port=8000,
                         model="m", served_model_name="s")
    assert render_engine_argv("vllm", {}, place)[:3] == ["vllm", "serve", "m"]


@pytest.mark.parametrize("served, expected", [("ds4", "ds4"), (None, GROUP_DATA["serving_model"])])
def test_the_api_serves_the_named_model_or_the_model_itself(served, expected):
    argv = desired(serving_served_model_name=served).container.engine_argv
    assert argv[argv.index("--served-model-name") + 1] == expected


# --- who reaches the API, with which key -----------------------------------------

def head_argv(**overrides):
    unit = desired(rank=0, **overrides).unit_text
    (line,) = [line for line in unit.replace("\\\n", " ").splitlines() if line.startswith("ExecStart=")]
    return unquote_exec_start(line.split("=", 1)[1])


def test_the_api_listens_on_the_heads_qsfp_address_by_default_or_everywhere_when_asked():
    argv = head_argv()
    assert argv[argv.index("--host") + 1] == "10.0.0.1"
    argv = head_argv(api_listen="all")
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def key_file(tmp_path, key="k3y-0123456789-abcdef"):
    path = tmp_path / "api_key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return str(path)


def test_an_api_key_lands_in_the_0600_env_file_only(tmp_path):
    for rank in (0, 1):
        wanted = desired(rank=rank, serving_api_key_file=key_file(tmp_path))
        assert parse_env_file(wanted.env_text)["VLLM_API_KEY"] == "k3y-0123456789-abcdef"
        assert "k3y-0123456789" not in wanted.unit_text and "k3y-0123456789" not in wanted.watch_config_text
        assert "k3y-0123456789" not in " ".join(wanted.container.engine_argv)


def test_sglang_takes_no_key_but_on_its_command_line_so_a_key_is_refused(tmp_path):
    with pytest.raises(SettingError, match="SGLang takes an API key on its command line only"):
        desired(**engine_settings("sglang"), serving_api_key_file=key_file(tmp_path))


@pytest.mark.parametrize("flag", ["api_key", "hf_token"])
def test_a_secret_in_the_profile_is_refused_before_anything_changes(flag):
    profiles = {"p": {**PROFILE, "vllm": {**PROFILE["vllm"], flag: "hunter2-hunter2"}}}
    with pytest.raises(SettingError, match=f"sets '{flag}', a secret.*serving_api_key_file"):
        desired(serving_profiles=profiles, serving_profile="p")


def test_every_start_drops_the_cache_and_checks_memory_first():
    unit = desired(rank=1).unit_text
    pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre[:2] == ["ExecStartPre=-/usr/bin/docker rm -f spark-serving",
                       "ExecStartPre=/usr/bin/python3 /usr/local/lib/spark-cluster/serving_watch.py prestart"]


def test_the_watcher_judges_with_the_profiles_memory_claim_and_the_start_timeout():
    config = json.loads(desired(rank=0).watch_config_text)
    assert config["memory_setting"] == "gpu_memory_utilization"
    assert config["memory_fraction"] == PROFILE["vllm"]["gpu_memory_utilization"]
    assert config["role"] == "head" and config["api_url"] == "http://10.0.0.1:8000"
    assert "ExecStart=/usr/bin/python3 /usr/local/lib/spark-cluster/serving_watch.py run" in desired().watch_unit_text
