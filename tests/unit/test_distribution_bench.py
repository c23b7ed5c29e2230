"""The pure parts of bench/distribution_bench.py: the synthetic tree, the CPU
counter, the copy check and the tables (the bench itself needs root and
namespaces, and is run by hand)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "distribution_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("distribution_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_tree_plan_is_a_hub_tree_of_shards_small_files_and_links(bench):
    entries = bench.tree_plan(1.0, shard_mib=256)
    files = [e for e in entries if "size" in e]
    links = [e for e in entries if "link" in e]
    shards = [e for e in files if e["size"] == 256 * bench.MIB]
    assert len(shards) == 4
    assert entries[:4] == shards  # the big work first
    assert len(files) == 4 + len(bench.SMALL_FILES) + 1  # + refs/main
    assert entries[-1] == {"path": "refs/main", "size": len(bench.REVISION)}
    # Every snapshot entry links to one blob the list holds, relative like the hub's.
    blobs = {e["path"] for e in files if e["path"].startswith("blobs/")}
    assert len(links) == len(blobs)
    for link in links:
        assert link["path"].startswith(f"snapshots/{bench.REVISION}/")
        assert link["link"].startswith("../../blobs/")
        assert link["link"][len("../../"):] in blobs
    names = [link["path"].rsplit("/", 1)[1] for link in links]
    assert "model-00004-of-00004.safetensors" in names and "config.json" in names
    assert all(len(b.split("/")[1]) == 64 for b in blobs)


def test_tree_plan_rounds_the_size_to_whole_shards_and_keeps_one(bench):
    assert sum(1 for e in bench.tree_plan(3.0) if e.get("size") == 256 * bench.MIB) == 12
    assert sum(1 for e in bench.tree_plan(0.01) if e.get("size") == 256 * bench.MIB) == 1
    assert bench.tree_plan(0.5) == bench.tree_plan(0.5)  # same names every run


def test_busy_jiffies_counts_all_but_idle_and_iowait(bench):
    stat = "cpu  100 2 30 5000 40 5 6 7 99 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n"
    assert bench.busy_jiffies(stat) == 100 + 2 + 30 + 5 + 6 + 7
    assert bench.busy_jiffies(Path("/proc/stat").read_text()) > 0


def test_listing_finds_a_wrong_size_a_wrong_link_and_a_missing_file(bench, tmp_path):
    def tree(root, size=3, target="../../blobs/a"):
        (root / "blobs").mkdir(parents=True)
        (root / "blobs" / "a").write_bytes(b"x" * size)
        (root / "blobs" / "b").write_bytes(b"y")
        (root / "snapshots" / "r").mkdir(parents=True)
        os.symlink(target, root / "snapshots" / "r" / "f")
        return bench.tree_listing(root)

    good = tree(tmp_path / "src")
    assert ("blobs/a", "f", 3) in good and ("snapshots/r/f", "l", "../../blobs/a") in good
    assert bench.listing_difference(good, tree(tmp_path / "same")) == ""
    assert "blobs/a" in bench.listing_difference(good, tree(tmp_path / "short", size=2))
    assert "../../blobs/b" in bench.listing_difference(good, tree(tmp_path / "link", target="../../blobs/b"))
    (tmp_path / "same" / "blobs" / "b").unlink()
    assert "blobs/b" in bench.listing_difference(good, bench.tree_listing(tmp_path / "same"))


def test_last_result_reads_the_copy_scripts_last_result_line(bench):
    output = 'progress {"bytes": 1}\nresult {"bytes": 5}\nnoise\nresult {"bytes": 9}\n'
    assert bench.last_result(output) == {"bytes": 9}
    assert bench.last_result('progress {"bytes": 1}\n') is None


def test_scaling_compares_three_receivers_with_one_for_each_shaped_method(bench):
    gib = 1 << 30

    def fig(section, method, receivers, seconds):
        return bench.Figure(section, method, receivers, seconds, gib * receivers, 10.0, 5.0)

    figures = [fig("today", "star", 1, 1.0), fig("shaped", "iperf3", 1, 4.0),
               fig("shaped", "star", 1, 20.0), fig("shaped", "star", 3, 60.0),
               fig("shaped", "chain", 1, 21.0), fig("shaped", "chain", 3, 25.2),
               fig("shaped", "alone", 1, 5.0)]
    rows = bench.scaling_rows(figures, shape_mbit=500)
    assert [r[0] for r in rows] == ["star", "chain"]
    star, chain = rows
    assert star[3] == pytest.approx(3.0) and chain[3] == pytest.approx(1.2)
    assert star[4] == pytest.approx(gib * 8 / 20.0 / 500e6)
    table = bench.scaling_table(figures, 500)
    assert "| star | 20.0 | 60.0 | 3.00 |" in table
    assert "| chain | 21.0 | 25.2 | 1.20 |" in table


def test_figures_table_gives_cpu_per_gb_moved_to_all_receivers(bench):
    figure = bench.Figure("today", "star", 3, 10.0, 3 * 10**9, 30.0, None, "yes", "note")
    assert figure.per_gb(figure.machine_cpu_s) == "10.00"
    line = bench.figures_table([figure]).splitlines()[-1]
    assert line == f"| today | star (note) | 3 | 10.0 | {3e9 / (1 << 30) / 10:.2f} | 10.00 | n/a | yes |"


def test_memory_available_reads_meminfo_in_bytes(bench):
    assert bench.memory_available("MemTotal: 10 kB\nMemAvailable:    2048 kB\n") == 2048 * 1024
    with pytest.raises(ValueError):
        bench.memory_available("MemTotal: 10 kB\n")
