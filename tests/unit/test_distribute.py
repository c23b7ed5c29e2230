"""roles/distribute: what is copied where, decided from every node's facts, offline."""

import re
import shlex
import subprocess

import pytest

from collect_ops import GROUP_DATA, cluster, collect
from roles import distribute, serving, standin
from spark_cluster.model_cache import MODEL_MANIFEST, ModelManifest, model_cache_dir, parse_manifest
from spark_cluster.engine_image import needs_copy, standin_tag
from spark_cluster.settings import SettingError

IMAGE = GROUP_DATA["serving_image"]
MODEL_DIR = model_cache_dir("/home/spark/.cache/huggingface", GROUP_DATA["serving_model"])
MANIFEST = {"digest": "d1", "files": 40, "bytes": 160 * 2**30}


class Nodes:
    """Per node: its docker images and its model manifest; answers the facts distribute reads."""

    def __init__(self, images=None, manifests=None, groups=None):
        self.images = images or {}
        self.manifests = manifests or {}
        # Admins already in the docker group: the common case, so the default.
        self.groups = groups if groups is not None else {f"spark-{i}": ["docker"] for i in range(1, 5)}
        self.calls = []

    def fact(self, name, cls, kwargs):
        self.calls.append((name, cls.__name__))
        if cls.__name__ == "UserAccount":
            return {"home": "/home/spark", "group": "spark"}
        if cls.__name__ == "DockerImageId":
            return self.images.get(name, {}).get(kwargs["image"])
        if cls.__name__ == "ModelManifest":
            assert kwargs["path"] == MODEL_DIR
            return self.manifests.get(name)
        if cls.__name__ == "Directory":
            return None
        if cls.__name__ == "CacheDirs":  # cold engine caches everywhere (tests/unit/test_warm_caches.py)
            return {path: {"empty": True, "bytes": 0} for path in kwargs["paths"]}
        if cls.__name__ == "DebPackages":
            return {"rsync": ["3.4.1"]}
        if cls.__name__ == "Users":
            return {"spark": {"home": "/home/spark", "group": "spark", "groups": list(self.groups.get(name, []))}}
        if cls.__name__ == "Groups":
            return {"docker", "spark"}
        if cls.__name__ in ("Os", "Which"):
            return {"Os": "Linux", "Which": "/usr/sbin/usermod"}[cls.__name__]
        raise AssertionError(f"unexpected fact {cls.__name__}")


def ops_of(hosts, nodes, monkeypatch, roles=(distribute,), limit=None):
    """Operations that would run a command, named without their role's prefix ("distribute: ... | Copy ...")."""
    ops = collect(hosts, nodes.fact, monkeypatch, roles, limit)
    return {
        name: [(op.split(" | ", 1)[-1], text, args) for op, text, args in entries if text]
        for name, entries in ops.items()
    }


def test_model_dir_follows_the_hub_layout():
    assert model_cache_dir("/h/.cache/huggingface", "deepseek-ai/DeepSeek-V4-Flash") == (
        "/h/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-V4-Flash"
    )


@pytest.mark.parametrize("source, own, copy", [
    (None, None, False),      # nobody has it: nothing to copy from
    ("a", None, True),
    ("a", "b", True),         # held differently: the source wins
    ("a", "a", False),        # identical: nothing moves
    (None, "b", False),       # only this node has it: never deleted
])
def test_needs_copy(source, own, copy):
    assert needs_copy(source, own) is copy


def test_manifest_parse():
    assert parse_manifest(["abc", "3", "42", "1"]) == {"digest": "abc", "files": 3, "bytes": 42, "incomplete": 1}
    # A node answering the older three lines: nothing known to be partial.
    assert parse_manifest(["abc", "3", "42"]) == {"digest": "abc", "files": 3, "bytes": 42, "incomplete": 0}
    assert parse_manifest([]) is None


# --- the manifest (files/model_manifest.sh), run on temporary trees

def manifest_of(path):
    result = subprocess.run(["sh", str(MODEL_MANIFEST), str(path)], capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stderr) == (0, "")
    return parse_manifest(result.stdout.splitlines())


def model_tree(root):
    """A Hugging Face cache in miniature: a blob, a snapshot linking to it, a file beside."""
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / "abc123").write_text("w" * 1000)
    (root / "snapshots" / "rev1").mkdir(parents=True)
    (root / "snapshots" / "rev1" / "model.safetensors").symlink_to("../../blobs/abc123")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("rev1")
    return root


def relink(link, target):
    link.unlink()
    link.symlink_to(target)


def test_manifest_counts_files_and_links_and_their_bytes(tmp_path):
    tree = model_tree(tmp_path / "model")
    manifest = manifest_of(tree)
    link_bytes = len("../../blobs/abc123")  # a link's own size: its target's length
    assert (manifest["files"], manifest["bytes"]) == (3, 1000 + link_bytes + len("rev1"))
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["digest"])


def test_manifest_identifies_names_sizes_and_link_targets_not_place_or_contents(tmp_path):
    digest = manifest_of(model_tree(tmp_path / "a"))["digest"]
    assert manifest_of(model_tree(tmp_path / "b"))["digest"] == digest, "the same tree elsewhere"
    (tmp_path / "b" / "blobs" / "abc123").write_text("x" * 1000)
    assert manifest_of(tmp_path / "b")["digest"] == digest, "contents are not read (a blob is named by its hash)"
    changes = [
        lambda root: (root / "refs" / "main").write_text("rev22"),
        lambda root: (root / "refs" / "main").rename(root / "refs" / "other"),
        lambda root: (root / "snapshots" / "rev1" / "model.safetensors").unlink(),
        lambda root: (root / "snapshots" / "rev1" / "extra").symlink_to("../../blobs/abc124"),
        # Another revision's blob: a link target of the same length, nothing else changed.
        lambda root: relink(root / "snapshots" / "rev1" / "model.safetensors", "../../blobs/def456"),
    ]
    for index, change in enumerate(changes):
        tree = model_tree(tmp_path / f"changed-{index}")
        change(tree)
        assert manifest_of(tree)["digest"] != digest, index


def test_manifest_counts_downloads_in_progress_without_changing_the_identity(tmp_path):
    tree = model_tree(tmp_path / "model")
    assert manifest_of(tree)["incomplete"] == 0
    # What an interrupted `hf download` leaves: the blob under its hash, .incomplete.
    (tree / "blobs" / "fe12.incomplete").write_text("half")
    (tree / "snapshots" / "rev1" / "x.incomplete").write_text("not a blob: not counted")
    assert manifest_of(tree)["incomplete"] == 1
    (tree / "blobs" / "fe12.incomplete").unlink()
    (tree / "snapshots" / "rev1" / "x.incomplete").unlink()
    assert manifest_of(tree) == manifest_of(model_tree(tmp_path / "again"))


def test_manifest_of_an_empty_or_absent_tree(tmp_path):
    (tmp_path / "empty").mkdir()
    empty = manifest_of(tmp_path / "empty")
    assert (empty["files"], empty["bytes"]) == (0, 0), "an empty directory is held, with nothing in it"
    assert empty["digest"] != manifest_of(model_tree(tmp_path / "model"))["digest"]
    assert manifest_of(tmp_path / "absent") is None
    result = subprocess.run(["sh", str(MODEL_MANIFEST)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and result.stderr == "usage: model_manifest.sh DIR\n"


def test_fact_sends_the_shipped_manifest_with_the_path_as_its_argument(tmp_path):
    tree = model_tree(tmp_path / "it's a model")
    command = ModelManifest().command(str(tree))
    assert command.startswith("sh -c ") and command.endswith(" model_manifest.sh " + shlex.quote(str(tree)))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert parse_manifest(result.stdout.splitlines()) == manifest_of(tree)


def test_head_has_everything_workers_receive_model_and_image_over_qsfp(monkeypatch):
    hosts = cluster(4)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}}, manifests={"spark-1": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert ops["spark-1"] == []
    for name in ("spark-2", "spark-3", "spark-4"):
        by_name = {op: (text, args) for op, text, args in ops[name]}
        copy = next(op for op in by_name if op.startswith("Copy "))
        text, args = by_name[copy]
        assert shlex.split(text) == ["rsync", "-a", "--delete", "--partial",
                                     f"spark-1:{MODEL_DIR}/", f"{MODEL_DIR}/"]
        assert args["_sudo"] is False  # as the admin, with the cluster key and verified host keys
        assert "40 files, 160.0 GiB" in copy
        load = next(op for op in by_name if op.startswith("Load "))
        text, _ = by_name[load]
        assert "spark@10.0.0.1" in text and "StrictHostKeyChecking=yes" in text
        assert text.endswith("| docker load") and f"docker save {IMAGE}" in text
        assert "StrictHostKeyChecking=no" not in text


def test_the_admin_joins_the_docker_group_everywhere_before_any_copy(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}}, groups={})
    ops = ops_of(hosts, nodes, monkeypatch)
    for name in ("spark-1", "spark-2"):  # the source too: its docker save runs as the admin
        assert ops[name][0][1] == "usermod -a -G docker spark", ops[name]
    assert ops["spark-2"][1][0].startswith("Load ")


def test_nothing_is_copied_when_identical(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(images={n: {IMAGE: "sha256:1"} for n in ("spark-1", "spark-2")},
                  manifests={"spark-1": MANIFEST, "spark-2": dict(MANIFEST)})
    assert ops_of(hosts, nodes, monkeypatch) == {"spark-1": [], "spark-2": []}


def test_a_different_image_under_the_same_tag_is_replaced(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:new"}, "spark-2": {IMAGE: "sha256:old"}})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert [op for op, _, _ in ops["spark-2"]] == [f"Load {IMAGE} from spark-1 over QSFP (docker save | docker load)"]


def test_a_node_outside_the_limit_is_never_read_or_used_as_a_source(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}}, manifests={"spark-1": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch, limit={"spark-2"})
    assert ops == {"spark-2": []}
    assert all(name == "spark-2" for name, _ in nodes.calls)


def test_another_source_can_be_named(monkeypatch):
    hosts = cluster(2, distribute_source="spark-2")
    nodes = Nodes(manifests={"spark-2": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert ops["spark-2"] == []
    assert any(f"spark-2:{MODEL_DIR}/" in text for _, text, _ in ops["spark-1"])


def test_a_rebuilt_head_receives_model_and_image_from_a_worker(monkeypatch):
    """The head reinstalled from scratch holds nothing: the first node that
    holds each item whole is its source, and the workers change nothing."""
    hosts = cluster(4)
    held = [f"spark-{i}" for i in (2, 3, 4)]
    nodes = Nodes(images={name: {IMAGE: "sha256:1"} for name in held},
                  manifests={name: dict(MANIFEST) for name in held})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert all(ops[name] == [] for name in held), ops
    texts = [text for _, text, _ in ops["spark-1"]]
    assert shlex.split(texts[1]) == ["rsync", "-a", "--delete", "--partial", f"spark-2:{MODEL_DIR}/", f"{MODEL_DIR}/"]
    load = [op for op, _, _ in ops["spark-1"] if op.startswith("Load ")]
    assert load == [f"Load {IMAGE} from spark-2 over QSFP (docker save | docker load)"]
    assert "spark@10.0.0.2 " in texts[2]


def test_each_item_comes_from_the_first_node_that_holds_it(monkeypatch):
    """Model staged on spark-3, image on spark-2: two sources. A partial model
    (an interrupted download) on the head is replaced, never copied from."""
    hosts = cluster(4)
    partial = {"digest": "p", "files": 12, "bytes": 40 * 2**30, "incomplete": 2}
    nodes = Nodes(images={"spark-2": {IMAGE: "sha256:2"}},
                  manifests={"spark-1": partial, "spark-3": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    copies = {name: [op for op, _, _ in entries if op.startswith(("Copy ", "Load "))] for name, entries in ops.items()}
    model = f"Copy {GROUP_DATA['serving_model']} from spark-3 over QSFP (40 files, 160.0 GiB)"
    load = f"Load {IMAGE} from spark-2 over QSFP (docker save | docker load)"
    assert copies == {"spark-1": [model, load], "spark-2": [model], "spark-3": [load], "spark-4": [model, load]}


def test_a_partial_model_alone_is_never_spread(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(manifests={"spark-1": {**MANIFEST, "incomplete": 1}})
    assert ops_of(hosts, nodes, monkeypatch) == {"spark-1": [], "spark-2": []}


def test_a_named_source_wins_over_the_first_holder(monkeypatch):
    hosts = cluster(4, distribute_source="spark-3")
    nodes = Nodes(images={name: {IMAGE: f"sha256:{name}"} for name in ("spark-1", "spark-3")},
                  manifests={"spark-1": MANIFEST, "spark-3": {**MANIFEST, "digest": "d3"}})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert ops["spark-3"] == []
    for name in ("spark-1", "spark-2", "spark-4"):
        texts = [text for _, text, _ in ops[name]]
        assert any(f"spark-3:{MODEL_DIR}/" in text for text in texts), texts
        assert any("spark@10.0.0.3 " in text for text in texts), texts


def test_an_unknown_source_is_a_setting_error(monkeypatch):
    with pytest.raises(SettingError, match="distribute_source"):
        ops_of(cluster(2, distribute_source="spark-9"), Nodes(), monkeypatch)


def test_lab_standin_image_travels_like_a_real_one(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    nodes = Nodes(images={"spark-1": {standin_tag(): "sha256:s"}})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert any(f"docker save {standin_tag()}" in text for _, text, _ in ops["spark-2"])


class ServingNodes(Nodes):
    """Adds what the serving role reads, so distribute and serving are collected together."""

    def fact(self, name, cls, kwargs):
        if cls.__name__ == "DockerRuntimes":
            return ["runc"]
        if cls.__name__ == "Users":
            return super().fact(name, cls, kwargs)
        if cls.__name__ in ("File", "Directory", "Sha1File", "Md5File", "Sha256File", "FileContents",
                            "SystemdStatus", "SystemdEnabled"):
            return {} if cls.__name__.startswith("Systemd") else None
        if cls.__name__ == "TmpDir":
            return "/tmp"
        return super().fact(name, cls, kwargs)


def test_serving_waits_for_the_image_distribute_brings(monkeypatch):
    hosts = cluster(2)
    nodes = ServingNodes(images={"spark-1": {IMAGE: "sha256:1"}})
    ops = ops_of(hosts, nodes, monkeypatch, roles=(distribute, serving))
    texts = [text for _, text, _ in ops["spark-2"]]
    assert not any("exit 1" in text for text in texts), texts
    marker = next(text for op, text, _ in ops["spark-2"] if op == "Record the engine image the unit runs")
    assert marker  # uploaded: the worker records the head's image id, which it is about to load


def test_serving_fails_clearly_when_no_node_has_the_image(monkeypatch):
    hosts = cluster(2)
    ops = ops_of(hosts, ServingNodes(), monkeypatch, roles=(distribute, serving))
    for name in ("spark-1", "spark-2"):
        failing = [text for _, text, _ in ops[name] if "exit 1" in text]
        assert len(failing) == 1, ops[name]
        assert f"image {IMAGE} is on no node of this cluster" in failing[0]
        # group_data's image is a local build: loaded or built, never pulled.
        assert f"docker save {IMAGE} | ssh spark@NODE docker load" in failing[0] and "docker pull" not in failing[0]


def lab_ops(nodes, monkeypatch, limit=None):
    hosts = cluster(2, serving_standin=True)
    ops = ops_of(hosts, nodes, monkeypatch, roles=(standin, distribute, serving), limit=limit)
    return {name: [op for op, _, _ in entries] for name, entries in ops.items()}


def builds(names):
    return any(op.startswith("Build the stand-in") for op in names)


def loads(names):
    return any(op.startswith(f"Load {standin_tag()} from spark-1") for op in names)


def test_fresh_lab_head_builds_the_standin_and_the_worker_loads_that_very_image(monkeypatch):
    ops = lab_ops(ServingNodes(), monkeypatch)
    assert builds(ops["spark-1"]) and not loads(ops["spark-1"])
    assert loads(ops["spark-2"]) and not builds(ops["spark-2"]), ops["spark-2"]


def test_rebuilt_lab_worker_receives_the_standin_instead_of_building_it(monkeypatch):
    ops = lab_ops(ServingNodes(images={"spark-1": {standin_tag(): "sha256:s"}}), monkeypatch)
    assert not builds(ops["spark-1"])
    assert loads(ops["spark-2"]) and not builds(ops["spark-2"]), ops["spark-2"]


def test_lab_worker_limited_alone_builds_its_own_standin(monkeypatch):
    # The head is outside --limit: nothing can arrive from it, so the worker must build.
    ops = lab_ops(ServingNodes(), monkeypatch, limit={"spark-2"})
    assert builds(ops["spark-2"]) and not loads(ops["spark-2"])


def test_lab_with_the_same_standin_everywhere_changes_nothing(monkeypatch):
    images = {name: {standin_tag(): "sha256:s"} for name in ("spark-1", "spark-2")}
    ops = lab_ops(ServingNodes(images=images), monkeypatch)
    for name in ops:
        assert not builds(ops[name]) and not loads(ops[name])
