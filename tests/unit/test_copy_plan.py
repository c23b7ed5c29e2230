"""What a model copy moves and who sends it to whom (spark_cluster/copy_plan.py)."""

import shlex
import subprocess

import pytest

from spark_cluster.copy_plan import (
    copy_argv,
    entries_bytes,
    listing_command,
    missing_entries,
    model_entries,
    parse_listing,
    peer_addresses,
    upstreams,
)

GiB = 2**30


def hub_tree(files: dict[str, int], revision="abc123") -> dict:
    """A Hugging Face hub cache listing: one blob per file, a snapshot link to it, refs/main."""
    tree = {"refs/main": (len(revision), "", 1764590000)}
    for number, (name, size) in enumerate(files.items()):
        blob = f"blobs/{number:064x}"
        depth = "../" * (name.count("/") + 2)
        tree[blob] = (size, "", 1764590001)
        tree[f"snapshots/{revision}/{name}"] = (len(depth) + 69, f"{depth}{blob}", 1764590002)
    return tree


DEEPSEEK = {
    **{f"model-{i:05d}-of-00046.safetensors": 4 * GiB - i for i in range(1, 47)},
    "model.safetensors.index.json": 120_000,
    "config.json": 1_700,
    "tokenizer.json": 7_800_000,
    "tokenizer_config.json": 170_000,
    "generation_config.json": 180,
    "README.md": 20_000,
    "figures/benchmark.png": 300_000,
    "original/consolidated.00.pth": 80 * GiB,
    "metal/model.bin": 60 * GiB,
}


def test_only_what_the_engine_reads_travels_blobs_largest_first_links_last():
    tree = hub_tree(DEEPSEEK)
    entries = model_entries(tree)
    links = [entry for entry in entries if "link" in entry]
    names = {entry["path"].split("/", 2)[2] for entry in links}
    assert names == {name for name in DEEPSEEK if name.endswith((".safetensors", ".json"))}
    assert entries[-len(links):] == links  # links last
    sizes = [entry["size"] for entry in entries if entry["path"].startswith("blobs/")]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 4 * GiB - 1  # the biggest shard first
    assert {"path": "refs/main", "size": 6, "mtime": 1764590000} in entries
    # 140 GB of duplicate formats and the README's figures stay behind.
    assert entries_bytes(entries) < sum(DEEPSEEK.values()) - 140 * GiB
    # Every link's blob travels with it.
    blobs = {entry["path"] for entry in entries if "size" in entry}
    for link in links:
        target = tree[link["path"]][1]
        assert link["link"] == target and "blobs/" + target.rsplit("blobs/", 1)[1] in blobs


def test_the_filter_is_settable_names_and_paths():
    tree = hub_tree(DEEPSEEK)
    only_config = model_entries(tree, include=["config.json"], exclude=[])
    assert [e["path"].rsplit("/", 1)[1] for e in only_config if "link" in e] == ["config.json"]
    with_original = model_entries(tree, include=["*.json", "original/*"], exclude=["*.png"])
    names = {e["path"].split("/", 2)[2] for e in with_original if "link" in e}
    assert "original/consolidated.00.pth" in names and "figures/benchmark.png" not in names


def test_a_receiver_that_holds_the_entries_misses_nothing_and_a_shorter_shard_is_missing():
    tree = hub_tree(DEEPSEEK)
    entries = model_entries(tree)
    assert missing_entries(entries, tree) == []
    cut = dict(tree)
    shard = entries[0]["path"]
    cut[shard] = (cut[shard][0] // 2, "", 1764590001)
    assert missing_entries(entries, cut) == [entries[0]]
    moved = dict(tree)
    link = entries[-1]["path"]
    moved[link] = (10, "../../blobs/elsewhere", 1764590002)
    assert missing_entries(entries, moved) == [entries[-1]]
    # Another revision's ref: the same 40-digit size, written at another time.
    ref = next(entry for entry in entries if entry["path"] == "refs/main")
    updated = {**tree, "refs/main": (6, "", 1764599999)}
    assert missing_entries(entries, updated) == [ref]
    # A blob downloaded on each node itself (another time, the same hash and size) is held.
    blob = entries[0]["path"]
    assert missing_entries(entries, {**tree, blob: (tree[blob][0], "", 1)}) == []
    assert missing_entries(entries, {}) == entries


def test_chain_sends_each_receiver_from_the_one_before_star_from_the_source():
    assert upstreams(["spark-2", "spark-3", "spark-4"], "spark-1", "chain") == {
        "spark-2": "spark-1", "spark-3": "spark-2", "spark-4": "spark-3"}
    assert upstreams(["spark-2", "spark-3"], "spark-1", "star") == {"spark-2": "spark-1", "spark-3": "spark-1"}
    assert upstreams([], "spark-1", "chain") == {}
    with pytest.raises(ValueError, match="distribute_fanout must be one of chain, star, got 'tree'"):
        upstreams(["spark-2"], "spark-1", "tree")


def test_the_copy_command_names_every_rail_and_the_fallback():
    argv = copy_argv("/usr/local/lib/spark-cluster/tree_copy.py", "/src", "/dst",
                     peer_addresses("nvidia", "spark-2", ["192.168.100.11", "192.168.101.11"]), "/l.json", 8,
                     ["ssh", "-c", "aes128-gcm@openssh.com"],
                     fallback=peer_addresses("nvidia", "spark-1", ["192.168.100.10"]))
    assert argv[argv.index("--from") + 1] == "nvidia@192.168.100.11#spark-2,nvidia@192.168.101.11#spark-2"
    assert argv[argv.index("--fallback") + 1] == "nvidia@192.168.100.10#spark-1"
    assert shlex.split(argv[argv.index("--ssh") + 1]) == ["ssh", "-c", "aes128-gcm@openssh.com"]
    assert argv[argv.index("--streams") + 1] == "8"
    assert "--remove-list" in argv  # the list was written for this copy alone


def test_the_listing_command_reads_a_real_tree(tmp_path):
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "b1").write_bytes(b"x" * 10)
    (tmp_path / "snapshots" / "r").mkdir(parents=True)
    (tmp_path / "snapshots" / "r" / "config.json").symlink_to("../../blobs/b1")
    out = subprocess.run(["sh", "-c", listing_command(str(tmp_path))], capture_output=True, text=True)
    tree = parse_listing(out.stdout.splitlines())
    assert tree["blobs/b1"][:2] == (10, "") and tree["snapshots/r/config.json"][1] == "../../blobs/b1"
    assert tree["blobs/b1"][2] == int((tmp_path / "blobs" / "b1").stat().st_mtime)
    absent = subprocess.run(["sh", "-c", listing_command(str(tmp_path / "none"))], capture_output=True)
    assert absent.returncode == 0 and absent.stdout == b""


def test_an_absent_tree_is_an_empty_listing_not_an_unread_one(tmp_path):
    """pyinfra answers a fact whose command printed nothing with its default:
    an absent model must read as held-nothing (a receiver), not as a node not read."""
    from spark_cluster.batch_fact import Batch, want
    from spark_cluster.model_cache import ModelListing

    assert ModelListing().default() == {}
    absent = want(ModelListing, path=str(tmp_path / "none"))
    batch = Batch()
    out = subprocess.run(["sh", "-c", batch.command(wants=[absent])], capture_output=True, text=True)
    assert batch.process(out.stdout.splitlines())[absent.key] == {}
