"""roles/distribute/warm_caches.py: which engine caches a node receives and how,
and the stand-in engine's compile cache the lab proves it against."""

import os
import shlex
import subprocess
from types import SimpleNamespace

import pytest

from collect_ops import GROUP_DATA, cluster, collect
from roles.distribute import warm_caches
from roles.distribute.warm_caches import (
    WARMING, CacheDirs, cache_dirs_want, caches_to_receive, parse_cache_dirs, warm_command,
)
from spark_cluster.caches import ENGINE_CACHES, cache_mounts, engine_cache_dirs
from spark_cluster.copy_ssh import copy_ssh_argv
from spark_cluster.engine_image import STANDIN_SOURCE
from source_module import load_source

HOME = "/home/spark"
DIRS = engine_cache_dirs(HOME)
IMAGE = GROUP_DATA["serving_image"]
FULL, EMPTY = {"empty": False, "bytes": 3 * 2**20}, {"empty": True, "bytes": 0}


def holding(*names):
    """CacheDirs of a node whose caches `names` hold something, the others empty."""
    return {path: (FULL if name in names else EMPTY) for name, path in DIRS.items()}


# --- which directories ---------------------------------------------------------

def test_only_empty_dirs_receive_and_only_from_full_ones():
    own, source = holding("vllm", "torch"), holding("vllm", "triton")
    assert caches_to_receive(own, source, "sha256:a", "sha256:a") == [DIRS["triton"]]


@pytest.mark.parametrize("own_id, source_id", [
    ("sha256:a", "sha256:b"),  # another engine build: its kernels are not ours
    (None, "sha256:a"),        # no image here and none arriving
    ("sha256:a", None),        # the source's image is unknown (or built only in this run)
    (None, None),
])
def test_nothing_moves_between_different_or_unknown_images(own_id, source_id):
    assert caches_to_receive(holding(), holding(*DIRS), own_id, source_id) == []


def test_nothing_moves_from_or_to_a_node_not_read():
    assert caches_to_receive(None, holding(*DIRS), "sha256:a", "sha256:a") == []
    assert caches_to_receive(holding(), None, "sha256:a", "sha256:a") == []


def test_a_node_with_every_cache_warm_receives_nothing():
    assert caches_to_receive(holding(*DIRS), holding(*DIRS), "sha256:a", "sha256:a") == []


# --- the fact, run for real ------------------------------------------------------

def run_fact(paths):
    command = CacheDirs().command(paths)
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    return CacheDirs().process(output.splitlines())


def test_fact_tells_empty_absent_and_full_dirs_apart(tmp_path):
    empty, absent, full, warming = (tmp_path / name for name in ("empty", "absent", "full", "warming"))
    empty.mkdir()
    (full / "torch_compile_cache").mkdir(parents=True)
    (full / "torch_compile_cache" / "kernel").write_bytes(b"x" * 100_000)
    # A copy cut short: only its landing directory, which does not count.
    (warming / WARMING).mkdir(parents=True)
    (warming / WARMING / "part").write_bytes(b"y" * 50_000)
    found = run_fact([str(empty), str(absent), str(full), str(warming)])
    assert found[str(empty)] == {"empty": True, "bytes": 0}
    assert found[str(absent)] == {"empty": True, "bytes": 0}
    assert found[str(warming)] == {"empty": True, "bytes": 0}
    assert found[str(full)]["empty"] is False and found[str(full)]["bytes"] >= 100_000


def test_fact_of_a_dotfile_only_dir_is_not_empty(tmp_path):
    (tmp_path / ".hidden").write_text("kept")
    assert run_fact([str(tmp_path)])[str(tmp_path)]["empty"] is False


def test_sizes_read_well_from_kernels_to_gigabytes():
    assert warm_caches.size_text(12_288) == "12 KiB"
    assert warm_caches.size_text(3 * 2**30) == "3072.0 MiB"


def test_parse_keeps_paths_whole():
    assert parse_cache_dirs(["1\t42\t/h/a b", "0\t4096\t/h/c"]) == {
        "/h/a b": {"empty": False, "bytes": 42}, "/h/c": {"empty": True, "bytes": 0}}


# --- the copy ----------------------------------------------------------------------

def test_the_copy_is_rsync_as_the_admin_over_the_cluster_ssh_from_the_qsfp_address():
    command = warm_command(HOME, "spark", "10.0.0.1", DIRS["vllm"])
    rsync = shlex.split(command.split(" && ")[0])
    assert rsync[:2] == ["rsync", "-a"]
    assert rsync[rsync.index("-e") + 1] == shlex.join(copy_ssh_argv(HOME))
    assert rsync[-2:] == [f"spark@10.0.0.1:{DIRS['vllm']}/", f"{DIRS['vllm']}/{WARMING}/"]
    assert f"--exclude=/{WARMING}" in rsync


def test_a_whole_copy_moves_in_and_leaves_no_landing(tmp_path):
    """The command run for real, with an rsync that copies locally (no SSH here)."""
    source, own, bin_dir = tmp_path / "source", tmp_path / "own", tmp_path / "bin"
    (source / "torch_compile_cache").mkdir(parents=True)
    (source / "torch_compile_cache" / "standin-compiled-abc").write_text("kernel")
    (source / ".meta").write_text("m")
    own.mkdir()
    bin_dir.mkdir()
    fake = bin_dir / "rsync"
    # Its last argument is the landing; the remote end is played by a local directory.
    fake.write_text('#!/bin/sh\nfor a; do dst=$a; done\nmkdir -p "$dst" && cp -a "$FAKE_REMOTE/." "$dst"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_REMOTE": str(source)}
    subprocess.run(["sh", "-c", warm_command(HOME, "spark", "10.0.0.1", str(own))], env=env, check=True)
    assert (own / "torch_compile_cache" / "standin-compiled-abc").read_text() == "kernel"
    assert (own / ".meta").read_text() == "m"
    assert not (own / WARMING).exists()


def test_a_failed_copy_moves_nothing_in(tmp_path):
    own, bin_dir = tmp_path / "own", tmp_path / "bin"
    (own / WARMING).mkdir(parents=True)
    (own / WARMING / "part").write_text("half")
    bin_dir.mkdir()
    (bin_dir / "rsync").write_text("#!/bin/sh\nexit 23\n")
    (bin_dir / "rsync").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", warm_command(HOME, "spark", "10.0.0.1", str(own))], env=env)
    assert result.returncode == 23
    assert sorted(os.listdir(own)) == [WARMING]  # still reads as empty: the next run resumes
    assert run_fact([str(own)])[str(own)]["empty"] is True


# --- the operations, from every node's facts ---------------------------------------------

class Nodes:
    def __init__(self, images, caches, rsync=True):
        self.images, self.caches, self.rsync = images, caches, rsync

    def fact(self, name, cls, kwargs):
        if cls.__name__ == "UserAccount":
            return {"home": HOME, "group": "spark", "groups": ["docker"]}
        if cls.__name__ == "DockerImageId":
            assert kwargs["image"] == IMAGE
            return self.images.get(name)
        if cls is CacheDirs:
            assert kwargs["paths"] == cache_dirs_want(HOME).kwargs["paths"]
            return self.caches.get(name)
        if cls.__name__ == "DebPackages":
            return {"rsync": ["3.4.1"]} if self.rsync else {}
        raise AssertionError(f"unexpected fact {cls.__name__}")


ROLE = SimpleNamespace(wants=warm_caches.wants, apply=warm_caches.apply)


def ops_of(nodes, monkeypatch, **data):
    ops = collect(cluster(2, **data), nodes.fact, monkeypatch, (ROLE,))
    return {name: [(op, text, args) for op, text, args in entries if text] for name, entries in ops.items()}


def test_a_rebuilt_worker_receiving_the_image_receives_the_heads_warm_caches(monkeypatch):
    nodes = Nodes({"spark-1": "sha256:a"}, {"spark-1": holding("vllm", "triton"), "spark-2": holding()})
    ops = ops_of(nodes, monkeypatch)
    assert ops["spark-1"] == []
    names = [op for op, _, _ in ops["spark-2"]]
    assert names == ["Warm the vllm cache from spark-1 over QSFP (3.0 MiB)",
                     "Warm the triton cache from spark-1 over QSFP (3.0 MiB)"]
    for (_, text, args), name in zip(ops["spark-2"], ("vllm", "triton")):
        assert text == warm_command(HOME, "spark", "10.0.0.1", DIRS[name])
        assert args["_sudo"] is False


def test_warm_caches_are_never_overwritten_and_a_second_run_copies_nothing(monkeypatch):
    nodes = Nodes({"spark-1": "sha256:a", "spark-2": "sha256:a"},
                  {"spark-1": holding("vllm", "triton"), "spark-2": holding("vllm", "triton")})
    assert ops_of(nodes, monkeypatch) == {"spark-1": [], "spark-2": []}


def test_a_node_keeping_another_image_receives_no_caches(monkeypatch):
    nodes = Nodes({"spark-1": "sha256:a", "spark-2": "sha256:b"},
                  {"spark-1": holding("vllm"), "spark-2": holding()})
    assert ops_of(nodes, monkeypatch, distribute_image=False)["spark-2"] == []


def test_the_setting_turns_it_off(monkeypatch):
    nodes = Nodes({"spark-1": "sha256:a"}, {"spark-1": holding("vllm"), "spark-2": holding()}, rsync=False)
    assert ops_of(nodes, monkeypatch, distribute_caches=False) == {"spark-1": [], "spark-2": []}


# --- the stand-in's compile cache -----------------------------------------------------

@pytest.fixture(scope="module")
def standin():
    return load_source("standin_server_cache", STANDIN_SOURCE / "server.py")


def test_standin_misses_compiles_then_hits_without_compiling(standin, tmp_path):
    key = standin.build_key()
    first = standin.warm_compile(str(tmp_path), key, compile_s=0.3)
    assert first["outcome"] == "miss" and first["seconds"] >= 0.3
    assert first["artifact"] == str(tmp_path / "torch_compile_cache" / f"standin-compiled-{key}")
    assert oct(os.stat(first["artifact"]).st_mode & 0o777) == "0o644"  # another node's admin reads it
    second = standin.warm_compile(str(tmp_path), key, compile_s=5)
    assert second["outcome"] == "hit" and second["seconds"] < 1
    assert second["sha256"] == first["sha256"] and second["compiled_on"] == first["compiled_on"]


def test_standin_keys_the_artifact_by_its_build(standin, tmp_path):
    standin.warm_compile(str(tmp_path), "build1", compile_s=0)
    assert standin.warm_compile(str(tmp_path), "build2", compile_s=0)["outcome"] == "miss"
    source = tmp_path / "src"
    source.mkdir()
    (source / "server.py").write_text("a")
    before = standin.build_key(str(source))
    (source / "server.py").write_text("b")
    assert standin.build_key(str(source)) != before


def test_standin_uses_only_a_mounted_cache(standin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path))
    assert standin.compile_cache_dir("vllm") == str(tmp_path)
    assert standin.use_compile_cache("vllm", ["/", "/proc"], "k")["outcome"] == "not mounted"
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(standin.warm_compile, "__defaults__", (0,))
    assert standin.use_compile_cache("vllm", ["/", str(tmp_path)], "k")["outcome"] == "miss"
    assert standin.use_compile_cache("vllm", ["/", str(tmp_path)], "k")["outcome"] == "hit"
    log = capsys.readouterr().err
    assert "compile cache MISS" in log and "compile cache HIT" in log


def test_standin_compile_cache_is_where_the_serving_role_mounts_it(standin):
    # Whatever HOME the container gets (this image has no /etc/passwd: docker sets /).
    assert standin.compile_cache_dir("vllm", {"HOME": "/"}) == ENGINE_CACHES["vllm"]
    assert standin.compile_cache_dir("sglang", {"HOME": "/"}) == ENGINE_CACHES["triton"]
    assert ("/home/spark/.cache/spark-cluster/vllm", ENGINE_CACHES["vllm"]) in cache_mounts("/home/spark")


# --- inside roles/distribute (the hook at the end of its apply) ------------------------------

def test_distribute_warms_the_caches_after_loading_the_image_they_need(monkeypatch):
    import test_distribute

    class WarmHead(test_distribute.Nodes):
        def fact(self, name, cls, kwargs):
            if cls is CacheDirs:
                return holding("vllm") if name == "spark-1" else holding()
            return super().fact(name, cls, kwargs)

    nodes = WarmHead(images={"spark-1": {test_distribute.IMAGE: "sha256:1"}})
    ops = test_distribute.ops_of(cluster(2), nodes, monkeypatch)
    assert ops["spark-1"] == []
    names = [op for op, _, _ in ops["spark-2"]]
    # The image's relay and its id check first, then the cache that image's build compiled.
    assert [name.split(" ")[0] for name in names] == ["Load", "Load", "Warm"], names
    assert names[2] == "Warm the vllm cache from spark-1 over QSFP (3.0 MiB)"
