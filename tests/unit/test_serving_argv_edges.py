"""roles/serving/argv.py at its edges: profile values that are falsy or equal
to True without being booleans (0, 1), and the messages when a profile breaks
two rules at once. Each once let a wrong line through the tests (mutation
testing, docs/benchmarks.md): `seed: 0` silently dropped from the command, or a
message that pairs an old flag with another flag's new name."""

import pytest
import yaml

from roles.serving.argv import ClusterPlace, EngineArgvError, profile_flags, render_engine_argv

PLACE = ClusterPlace(world_size=2, rank=0, head_qsfp_ip="10.0.0.1", master_port=29519, api_port=8000,
                     model="org/model", served_model_name="model")


def test_zero_and_one_are_values_not_switches():
    """Only the booleans are switches: 0 and 1 (and 0.0) are passed as values."""
    assert profile_flags({"seed": 0, "max_num_seqs": 1, "swap_space": 0.0, "enforce_eager": True,
                          "trust_remote_code": False}) == [
        "--seed", "0", "--max-num-seqs", "1", "--swap-space", "0.0", "--enforce-eager"]


def test_two_cluster_owned_flags_name_the_first_in_order():
    with pytest.raises(EngineArgvError) as error:
        render_engine_argv("vllm", {"port": 9000, "host": "127.0.0.1"}, PLACE)
    assert str(error.value) == (
        "serving profile for vllm sets --host, which the serving role derives from the inventory")


def test_two_renamed_sglang_flags_pair_the_old_name_with_its_own_new_name():
    with pytest.raises(EngineArgvError) as error:
        render_engine_argv("sglang", {"max_model_len": 8192, "gpu_memory_utilization": 0.8}, PLACE)
    assert str(error.value) == (
        "serving profile for sglang uses --gpu-memory-utilization, renamed to --mem-fraction-static in SGLang v0.5.12")


def test_the_fp8_respelling_is_matched_by_value_wherever_the_profile_comes_from():
    """A profile read from YAML (or built at run time) holds its own string
    objects: "fp8" is refused all the same, and every other value passes."""
    profile = yaml.safe_load("kv_cache_dtype: fp8\n")
    with pytest.raises(EngineArgvError, match="fp8_e4m3"):
        render_engine_argv("sglang", profile, PLACE)
    for allowed in ("auto", "bf16", "fp8_e4m3"):
        argv = render_engine_argv("sglang", {"kv_cache_dtype": allowed}, PLACE)
        assert argv[argv.index("--kv-cache-dtype") + 1] == allowed
