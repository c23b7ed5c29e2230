"""The engine command line: cluster-derived flags, profile flags, field traps."""

import json
import runpy
from pathlib import Path

import pytest

from roles.serving.argv import ClusterPlace, EngineArgvError, render_engine_argv

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = runpy.run_path(str(REPO / "group_data" / "all.py"))
PROFILE = GROUP_DATA["serving_profiles"]["deepseek-v4-flash"]
OLD_SGLANG_FLAGS = ("--num-nodes", "--master-addr", "--master-port", "--gpu-memory-utilization", "--max-model-len")


def place(world_size, rank, entrypoint_is_engine=False):
    return ClusterPlace(
        world_size=world_size, rank=rank, head_qsfp_ip="10.0.0.1", master_port=29519, api_port=8000,
        model="deepseek-ai/DeepSeek-V4-Flash", served_model_name="deepseek-v4-flash",
        entrypoint_is_engine=entrypoint_is_engine,
    )


def value(argv, flag):
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("world_size", [2, 4])
def test_vllm_head_serves_the_api_with_cluster_flags(world_size):
    argv = render_engine_argv("vllm", PROFILE["vllm"], place(world_size, 0))
    assert argv[:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash"]
    assert value(argv, "--tensor-parallel-size") == str(world_size)
    assert value(argv, "--pipeline-parallel-size") == "1"
    assert value(argv, "--nnodes") == str(world_size)
    assert value(argv, "--node-rank") == "0"
    assert value(argv, "--master-addr") == "10.0.0.1"
    assert value(argv, "--master-port") == "29519"
    assert value(argv, "--distributed-executor-backend") == "mp"
    assert value(argv, "--host") == "0.0.0.0" and value(argv, "--port") == "8000"
    assert value(argv, "--served-model-name") == "deepseek-v4-flash"
    assert "--headless" not in argv


@pytest.mark.parametrize("world_size", [2, 4])
def test_vllm_workers_are_headless_with_their_rank(world_size):
    for rank in range(1, world_size):
        argv = render_engine_argv("vllm", PROFILE["vllm"], place(world_size, rank))
        assert "--headless" in argv
        assert value(argv, "--node-rank") == str(rank)
        assert value(argv, "--master-addr") == "10.0.0.1"
        assert not {"--host", "--port", "--served-model-name"} & set(argv)


def test_vllm_profile_flags_render_as_the_engine_expects():
    argv = render_engine_argv("vllm", PROFILE["vllm"], place(2, 0))
    assert "--enable-expert-parallel" in argv and "--trust-remote-code" in argv
    assert "True" not in argv
    assert json.loads(value(argv, "--speculative-config")) == {"method": "deepseek_mtp", "num_speculative_tokens": 2}
    assert value(argv, "--speculative-config") == '{"method":"deepseek_mtp","num_speculative_tokens":2}'
    assert value(argv, "--kv-cache-dtype") == "fp8"
    assert value(argv, "--gpu-memory-utilization") == "0.8"


def test_false_and_none_flags_are_left_out():
    argv = render_engine_argv("vllm", {"enforce_eager": False, "seed": None, "no_enable_flashinfer_autotune": True}, place(2, 0))
    assert "--enforce-eager" not in argv and "--seed" not in argv
    assert "--no-enable-flashinfer-autotune" in argv


@pytest.mark.parametrize("rank", [0, 1])
def test_vllm_entrypoint_image_never_gets_serve_twice(rank):
    argv = render_engine_argv("vllm", PROFILE["vllm"], place(2, rank, entrypoint_is_engine=True))
    assert argv[0] == "deepseek-ai/DeepSeek-V4-Flash"
    assert "serve" not in argv and "vllm" not in argv
    plain = render_engine_argv("vllm", PROFILE["vllm"], place(2, rank))
    assert plain.count("serve") == 1


@pytest.mark.parametrize("world_size", [2, 4])
def test_sglang_runs_the_same_launch_server_on_every_node(world_size):
    commands = [render_engine_argv("sglang", PROFILE["sglang"], place(world_size, rank)) for rank in range(world_size)]
    for rank, argv in enumerate(commands):
        assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
        assert value(argv, "--model-path") == "deepseek-ai/DeepSeek-V4-Flash"
        assert value(argv, "--tp-size") == str(world_size)
        assert value(argv, "--nnodes") == str(world_size)
        assert value(argv, "--node-rank") == str(rank)
        assert value(argv, "--dist-init-addr") == "10.0.0.1:29519"
        assert value(argv, "--mem-fraction-static") == "0.8"
        assert value(argv, "--context-length") == "393216"
        assert value(argv, "--kv-cache-dtype") == "fp8_e4m3"
        assert value(argv, "--host") == "0.0.0.0" and value(argv, "--port") == "8000"
        assert value(argv, "--served-model-name") == "deepseek-v4-flash"
        assert "--headless" not in argv
        for old in OLD_SGLANG_FLAGS:
            assert old not in argv, old
    # Only the node rank differs between nodes.
    strip = lambda argv: [w for i, w in enumerate(argv) if i != argv.index("--node-rank") + 1]
    assert len({tuple(strip(argv)) for argv in commands}) == 1


@pytest.mark.parametrize("flag", ["gpu_memory_utilization", "max_model_len", "num_nodes", "master_addr", "master_port"])
def test_old_sglang_names_in_a_profile_are_refused(flag):
    with pytest.raises(EngineArgvError, match="renamed"):
        render_engine_argv("sglang", {flag: 1}, place(2, 0))


def test_sglang_fp8_kv_cache_is_refused_with_its_new_name():
    with pytest.raises(EngineArgvError, match="fp8_e4m3"):
        render_engine_argv("sglang", {"kv_cache_dtype": "fp8"}, place(2, 0))


@pytest.mark.parametrize("engine,key", [("vllm", "tensor_parallel_size"), ("vllm", "node_rank"), ("sglang", "tp_size")])
def test_profile_cannot_override_cluster_flags(engine, key):
    with pytest.raises(EngineArgvError, match="derives"):
        render_engine_argv(engine, {key: 8}, place(2, 0))


def test_unknown_engine_is_refused():
    with pytest.raises(EngineArgvError, match="serving_engine"):
        render_engine_argv("trtllm", {}, place(2, 0))


def test_cluster_may_be_a_plain_mapping():
    mapping = dict(world_size=2, rank=1, head_qsfp_ip="10.0.0.1", master_port=29519, api_port=8000,
                   model="m", served_model_name="m")
    assert "--headless" in render_engine_argv("vllm", {}, mapping)
