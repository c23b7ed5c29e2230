"""Cache directories and the mount table the serving role uses."""

from spark_cluster.account import UserAccount
from spark_cluster.caches import ENGINE_CACHES, cache_env, cache_mounts, engine_cache_dirs, hf_home

HOME = "/home/spark"


def test_every_engine_cache_has_a_host_dir_under_spark_cluster():
    dirs = engine_cache_dirs(HOME)
    assert set(dirs) == {"vllm", "triton", "flashinfer", "torch", "tilelang"}
    assert all(path == f"{HOME}/.cache/spark-cluster/{name}" for name, path in dirs.items())


def test_mounts_land_where_each_engine_looks():
    mounts = dict(cache_mounts(HOME))
    assert mounts[f"{HOME}/.cache/spark-cluster/vllm"] == "/root/.cache/vllm"
    assert mounts[f"{HOME}/.cache/spark-cluster/triton"] == "/root/.triton/cache"
    assert mounts[f"{HOME}/.cache/spark-cluster/flashinfer"] == "/root/.cache/flashinfer"
    assert mounts[f"{HOME}/.cache/spark-cluster/torch"] == "/root/.cache/torch"
    assert mounts[f"{HOME}/.cache/spark-cluster/tilelang"] == "/root/.tilelang/cache"


def test_hf_cache_is_mounted_at_the_same_absolute_path():
    # HF snapshots are absolute symlinks; elsewhere they dangle.
    assert hf_home(HOME) == f"{HOME}/.cache/huggingface"
    assert (hf_home(HOME), hf_home(HOME)) in cache_mounts(HOME)
    assert cache_env(HOME)["HF_HOME"] == hf_home(HOME)


def test_cache_variables_point_into_the_mounts():
    env = cache_env(HOME)
    inside = set(ENGINE_CACHES.values())
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/root/.cache/torch/inductor"
    assert env["TILELANG_CACHE_DIR"] == "/root/.tilelang/cache"
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TILELANG_CACHE_DIR"):
        assert any(env[name] == path or env[name].startswith(path + "/") for path in inside)


def test_trailing_slash_in_home_does_not_double():
    assert cache_mounts(HOME + "/") == cache_mounts(HOME)


def test_user_account_fact_reads_home_and_groups_by_name():
    fact = UserAccount()
    assert fact.process(["/home/spark", "spark", "spark sudo docker"]) == {
        "home": "/home/spark", "group": "spark", "groups": ["spark", "sudo", "docker"]}
    assert fact.process([]) is None
    assert "getent passwd spark" in fact.command(user="spark")
    assert "id -Gn spark" in fact.command(user="spark")
    assert "'a b'" in fact.command(user="a b")
