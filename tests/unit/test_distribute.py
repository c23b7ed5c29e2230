"""roles/distribute: what is copied where, decided from every node's facts, offline."""

import hashlib
import json
import re
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api import OperationError

from collect_ops import GROUP_DATA, cluster, collect
from roles import distribute, serving, standin
from roles.distribute import model
from spark_cluster.model_cache import MODEL_MANIFEST, ModelManifest, model_cache_dir, parse_manifest
from spark_cluster.engine_image import needs_copy, standin_tag
from spark_cluster.settings import SettingError

IMAGE = GROUP_DATA["serving_image"]
MODEL_DIR = model_cache_dir("/home/spark/.cache/huggingface", GROUP_DATA["serving_model"])
MANIFEST = {"digest": "d1", "files": 81, "bytes": 152 * 2**30}


def hub_listing(shards=38, revision="r1"):
    """A model's Hugging Face cache as ModelListing answers: blobs, snapshot links, refs/main."""
    names = {f"model-{i:05d}.safetensors": 4 * 2**30 for i in range(shards)}
    names.update({"config.json": 1700, "tokenizer.json": 7_800_000, "README.md": 9000})
    tree = {"refs/main": (len(revision), "", 1764590000)}
    for name, size in names.items():
        blob = hashlib.sha256(name.encode()).hexdigest()  # a blob is named by its content's hash
        tree[f"blobs/{blob}"] = (size, "", 1764590001)
        tree[f"snapshots/{revision}/{name}"] = (75, f"../../blobs/{blob}", 1764590002)
    return tree


FULL = hub_listing()
PARTIAL = hub_listing(shards=10)
# The copy: 38 shards, config, tokenizer and refs/main (the README stays behind).
COPIED = "41 files, 152.0 GiB"


def image_ops(source, *chain, image=IMAGE):
    """The image's two operations on a receiver (roles/distribute/image.py): the relay, then the id check."""
    return [f"Load {image} from {source} over QSFP (relay {' -> '.join([source, *chain])})",
            f"Load {image} from {source} over QSFP: its image id is the source's"]


class Nodes:
    """Per node: its docker images and its model manifest; answers the facts distribute reads."""

    def __init__(self, images=None, manifests=None, groups=None, listings=None):
        self.images = images or {}
        self.manifests = manifests or {}
        # What each node's tree lists: whole where its manifest says so, fewer shards where partial.
        self.listings = listings if listings is not None else {
            name: PARTIAL if manifest.get("incomplete") else FULL for name, manifest in self.manifests.items()}
        # Admins already in the docker group: the common case, so the default.
        self.groups = groups if groups is not None else {f"spark-{i}": ["docker"] for i in range(1, 5)}
        self.calls = []
        self.rsync = True  # installed (DGX OS ships it)

    def fact(self, name, cls, kwargs):
        self.calls.append((name, cls.__name__))
        if cls.__name__ == "UserAccount":
            return {"home": "/home/spark", "group": "spark"}
        if cls.__name__ == "DockerImageId":
            return self.images.get(name, {}).get(kwargs["image"])
        if cls.__name__ == "ModelManifest":
            assert kwargs["path"] == MODEL_DIR
            return self.manifests.get(name)
        if cls.__name__ == "ModelListing":
            assert kwargs["path"] == MODEL_DIR
            return self.listings.get(name, {})
        if cls.__name__ in ("Directory", "File", "Sha1File"):  # a receiver has neither script nor list yet
            return None
        if cls.__name__ == "TmpDir":
            return "/tmp"
        if cls.__name__ == "CacheDirs":  # cold engine caches everywhere (tests/unit/test_warm_caches.py)
            return {path: {"empty": True, "bytes": 0} for path in kwargs["paths"]}
        if cls.__name__ == "DebPackages":
            return {"rsync": ["3.4.1"]} if self.rsync else {}
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


def copy_argv_of(ops, name):
    """(op name, the receiver's tree_copy.py argv) of `name`'s model copy."""
    op, text, args = next(entry for entry in ops[name] if entry[0].startswith("Copy "))
    assert text.startswith("run_copy: ")
    return op, shlex.split(text.removeprefix("run_copy: ")), args


def option(argv, name):
    return argv[argv.index(name) + 1]


def test_head_has_everything_workers_receive_model_and_image_over_qsfp(monkeypatch):
    hosts = cluster(4)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}}, manifests={"spark-1": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert ops["spark-1"] == []
    # A chain: each receiver pulls from the one before it, over both rails of that node.
    for name, upstream in (("spark-2", "spark-1"), ("spark-3", "spark-2"), ("spark-4", "spark-3")):
        op, argv, _ = copy_argv_of(ops, name)
        number = upstream[-1]
        assert argv[:4] == ["python3", "/usr/local/lib/spark-cluster/tree_copy.py", MODEL_DIR, MODEL_DIR]
        assert option(argv, "--from") == f"spark@10.0.0.{number}#{upstream},spark@10.0.1.{number}#{upstream}"
        assert option(argv, "--streams") == "8"  # 4 per rail (distribute_streams_per_rail)
        if upstream != "spark-1":  # the source takes over from an upstream that stalls
            assert option(argv, "--fallback") == "spark@10.0.0.1#spark-1,spark@10.0.1.1#spark-1"
        else:
            assert "--fallback" not in argv
        ssh = shlex.split(option(argv, "--ssh"))
        assert ["-c", "aes128-gcm@openssh.com"] == ssh[ssh.index("-c"):ssh.index("-c") + 2]
        assert "StrictHostKeyChecking=yes" in ssh and "StrictHostKeyChecking=no" not in " ".join(ssh)
        assert op == f"Copy {GROUP_DATA['serving_model']} from spark-1 over QSFP ({COPIED}, chain)"
        by_name = {op: (text, args) for op, text, args in ops[name]}
        # One chain, head first: the source sends the image once (test_distribute_image.py).
        relay, check = image_ops("spark-1", "spark-2", "spark-3", "spark-4")
        assert [op for op in by_name if op.startswith("Load ")] == [relay, check]
        text, _ = by_name[relay]
        assert "'source_address': 'spark@10.0.0.1'" in text and "('spark-4', 'spark@10.0.0.4')" in text


def test_rsync_is_installed_once_on_both_ends_when_missing(monkeypatch):
    """The upstream serves a model or cache copy with rsync too: every node gets it, in one operation."""
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}}, manifests={"spark-1": MANIFEST})
    nodes.rsync = False
    ops = ops_of(cluster(2), nodes, monkeypatch)
    for name in ("spark-1", "spark-2"):
        installs = [op for op, _, _ in ops[name] if "rsync" in op]
        assert installs == ["rsync for copies over QSFP"], ops[name]


def test_the_list_holds_only_what_the_engine_reads_and_is_the_admins_alone(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(manifests={"spark-1": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    _, argv, _ = copy_argv_of(ops, "spark-2")
    put = next(args for op, _, args in ops["spark-2"] if op == "The files this copy moves")
    assert option(argv, "--list") == "/home/spark/.cache/spark-cluster/copy-deepseek-ai--DeepSeek-V4-Flash.json"
    assert put.get("_sudo") is not False  # written by root, for the admin (user/mode in the op)


def test_the_star_sends_every_receiver_from_the_source(monkeypatch):
    hosts = cluster(4, distribute_fanout="star", distribute_streams_per_rail=2)
    ops = ops_of(hosts, Nodes(manifests={"spark-1": MANIFEST}), monkeypatch)
    for name in ("spark-2", "spark-3", "spark-4"):
        _, argv, _ = copy_argv_of(ops, name)
        assert option(argv, "--from") == "spark@10.0.0.1#spark-1,spark@10.0.1.1#spark-1"
        assert option(argv, "--streams") == "4" and "--fallback" not in argv


def test_a_receiver_with_most_shards_copies_only_the_rest(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(manifests={"spark-1": MANIFEST}, listings={"spark-1": FULL, "spark-2": PARTIAL})
    op, _, _ = copy_argv_of(ops_of(hosts, nodes, monkeypatch), "spark-2")
    assert "(28 files, 112.0 GiB, chain)" in op  # the 28 shards it lacks


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
    # The receiver also holds a format the copy leaves behind: still nothing to do.
    extra = {**FULL, "blobs/ff": (80 * 2**30, "", 1), "snapshots/r1/original/consolidated.pth": (70, "../../../blobs/ff", 1)}
    nodes = Nodes(manifests={"spark-1": MANIFEST, "spark-2": {**MANIFEST, "digest": "other"}},
                  listings={"spark-1": FULL, "spark-2": extra})
    assert ops_of(hosts, nodes, monkeypatch) == {"spark-1": [], "spark-2": []}


def test_a_different_image_under_the_same_tag_is_replaced(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:new"}, "spark-2": {IMAGE: "sha256:old"}})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert [op for op, _, _ in ops["spark-2"]] == image_ops("spark-1", "spark-2")


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
    assert option(copy_argv_of(ops, "spark-1")[1], "--from").startswith("spark@10.0.0.2#spark-2,")


def test_a_rebuilt_head_receives_model_and_image_from_a_worker(monkeypatch):
    """The head reinstalled from scratch holds nothing: the first node that
    holds each item whole is its source, and the workers change nothing."""
    hosts = cluster(4)
    held = [f"spark-{i}" for i in (2, 3, 4)]
    nodes = Nodes(images={name: {IMAGE: "sha256:1"} for name in held},
                  manifests={name: dict(MANIFEST) for name in held})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert all(ops[name] == [] for name in held), ops
    assert option(copy_argv_of(ops, "spark-1")[1], "--from") == "spark@10.0.0.2#spark-2,spark@10.0.1.2#spark-2"
    load = [(op, text) for op, text, _ in ops["spark-1"] if op.startswith("Load ")]
    assert [op for op, _ in load] == image_ops("spark-2", "spark-1")
    assert "'source_address': 'spark@10.0.0.2'" in load[0][1]


def test_each_item_comes_from_the_first_node_that_holds_it(monkeypatch):
    """Model staged on spark-3, image on spark-2: two sources. A partial model
    (an interrupted download) on the head is replaced, never copied from."""
    hosts = cluster(4)
    partial = {"digest": "p", "files": 12, "bytes": 40 * 2**30, "incomplete": 2}
    nodes = Nodes(images={"spark-2": {IMAGE: "sha256:2"}},
                  manifests={"spark-1": partial, "spark-3": MANIFEST})
    ops = ops_of(hosts, nodes, monkeypatch)
    copies = {name: [op.split(" (")[0] for op, _, _ in entries if op.startswith("Copy ")]
              for name, entries in ops.items()}
    model = f"Copy {GROUP_DATA['serving_model']} from spark-3 over QSFP"
    assert copies == {"spark-1": [model], "spark-2": [model], "spark-3": [], "spark-4": [model]}
    load = image_ops("spark-2", "spark-1", "spark-3", "spark-4")
    assert {name: [op for op, _, _ in entries if op.startswith("Load ")] for name, entries in ops.items()} == {
        "spark-1": load, "spark-2": [], "spark-3": load, "spark-4": load}
    # The model's receivers chain in inventory order behind its source, spark-3.
    upstream = {name: option(copy_argv_of(ops, name)[1], "--from").split("#")[1].split(",")[0]
                for name in ("spark-1", "spark-2", "spark-4")}
    assert upstream == {"spark-1": "spark-3", "spark-2": "spark-1", "spark-4": "spark-2"}


def test_a_partial_model_alone_is_never_spread(monkeypatch):
    hosts = cluster(2)
    nodes = Nodes(manifests={"spark-1": {**MANIFEST, "incomplete": 1}})
    assert ops_of(hosts, nodes, monkeypatch) == {"spark-1": [], "spark-2": []}


def test_a_named_source_wins_over_the_first_holder(monkeypatch):
    hosts = cluster(4, distribute_source="spark-3")
    nodes = Nodes(images={name: {IMAGE: f"sha256:{name}"} for name in ("spark-1", "spark-3")},
                  manifests={"spark-1": MANIFEST, "spark-3": {**MANIFEST, "digest": "d3"}},
                  listings={"spark-1": FULL, "spark-3": hub_listing(revision="r3")})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert ops["spark-3"] == []
    assert option(copy_argv_of(ops, "spark-1")[1], "--from").startswith("spark@10.0.0.3#spark-3,")
    for name in ("spark-1", "spark-2", "spark-4"):
        _, argv, _ = copy_argv_of(ops, name)
        assert "spark-3" in option(argv, "--from") + option(argv, "--fallback") if "--fallback" in argv \
            else "spark-3" in option(argv, "--from")
        texts = [text for _, text, _ in ops[name]]
        assert any("'source_address': 'spark@10.0.0.3'" in text for text in texts), texts


def test_an_unknown_source_is_a_setting_error(monkeypatch):
    with pytest.raises(SettingError, match="distribute_source"):
        ops_of(cluster(2, distribute_source="spark-9"), Nodes(), monkeypatch)


def test_lab_standin_image_travels_like_a_real_one(monkeypatch):
    hosts = cluster(2, serving_standin=True)
    nodes = Nodes(images={"spark-1": {standin_tag(): "sha256:s"}})
    ops = ops_of(hosts, nodes, monkeypatch)
    assert [op for op, _, _ in ops["spark-2"]] == image_ops("spark-1", "spark-2", image=standin_tag())


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


class CopyHost:
    """pyinfra's host as run_copy uses it: what it runs, with the arguments pyinfra's
    connectors take (an unknown one fails in a real run, as print_prefix did)."""

    name = "spark-2"

    def __init__(self, stdout, ok=True):
        self.stdout, self.ok, self.state, self.ran = stdout, ok, object(), []

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        from pyinfra.api.arguments import ConnectorArguments

        unknown = set(arguments) - set(ConnectorArguments.__annotations__)
        assert not unknown, f"pyinfra's connectors take no {sorted(unknown)}"
        self.ran.append((command.get_raw_value(), print_output, arguments))
        return self.ok, SimpleNamespace(stdout_lines=self.stdout, stderr_lines=["rsync: connection unexpectedly closed"])


def test_the_copy_runs_as_the_admin_prints_live_and_keeps_its_figures(monkeypatch):
    result = {"ok": True, "moved": 3 * 2**30, "missing": [], "error": None}
    fake = CopyHost(["progress 1.0 of 3.0 GiB (33%), 1.00 GiB/s, ETA 2s", "result " + json.dumps(result)])
    monkeypatch.setattr(model, "host", fake)
    recorded = []
    monkeypatch.setattr(model, "record", lambda *args: recorded.append(args) or "line")
    model.run_copy(["python3", "tree_copy.py", "a b"], "org/m", "spark-1", "8 streams")
    (command, printed, arguments), = fake.ran
    assert command == "python3 tree_copy.py 'a b'" and printed and arguments["_sudo"] is False
    assert recorded[0][1:4] == ("org/m", "spark-2", 3 * 2**30)


def test_a_failed_copy_fails_its_operation_saying_why_and_that_a_rerun_resumes(monkeypatch):
    result = {"ok": False, "moved": 0, "missing": ["blobs/a"], "error": "rsync of blobs/a failed 3 times"}
    monkeypatch.setattr(model, "host", CopyHost(["result " + json.dumps(result)], ok=False))
    with pytest.raises(OperationError, match=r"copy of org/m from spark-1 failed: rsync of blobs/a failed 3 times "
                                             r"\(still missing: blobs/a\); run the deploy again: the copy resumes"):
        model.run_copy(["true"], "org/m", "spark-1", "x")
    monkeypatch.setattr(model, "host", CopyHost([], ok=False))
    with pytest.raises(OperationError, match="failed: rsync: connection unexpectedly closed"):
        model.run_copy(["true"], "org/m", "spark-1", "x")
