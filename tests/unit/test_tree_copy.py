"""The shipped copy script (spark_cluster/files/tree_copy.py), run for real on
temporary trees: real rsync, and an `ssh` that runs the remote command on this
machine (so "another node" is another directory)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "spark_cluster" / "files" / "tree_copy.py"
MiB = 2**20

pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v rsync"]).returncode != 0,
                                reason="rsync is not installed (scripts/setup installs it)")

# ssh [options] HOST COMMAND...: runs COMMAND here, with HOSTDIR in it replaced
# by HOST (so a source directory .../HOSTDIR is another one per host); logs
# each call's host to $FAKE_SSH_LOG.
FAKE_SSH = r"""#!/usr/bin/env python3
import os, subprocess, sys
args, with_value = sys.argv[1:], {"-o", "-i", "-c", "-l", "-p", "-F", "-b", "-O", "-S", "-E"}
exiting, alias = False, ""
while args and args[0].startswith("-"):
    option = args.pop(0)
    if option == "-O":
        exiting = True
    if option in with_value:
        value = args.pop(0)
        if value.startswith("HostKeyAlias="):
            alias = " " + value.split("=", 1)[1]
if exiting:
    sys.exit(0)
host, command = args[0], " ".join(args[1:]).replace("HOSTDIR", args[0])
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(host + alias + "\n")
if os.environ.get("FAKE_SSH_DOWN") == host:
    sys.stderr.write("ssh: connect to host " + host + " port 22: Connection refused\n")
    sys.exit(255)
sys.exit(subprocess.call(["sh", "-c", command]))
"""


@pytest.fixture
def ssh(tmp_path, monkeypatch):
    path = tmp_path / "fake-ssh"
    path.write_text(FAKE_SSH)
    path.chmod(0o755)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return path, log


def make_tree(root: Path, shards: int, shard_bytes: int) -> list[dict]:
    """A Hugging Face cache tree: shards and small files in blobs/, links in
    snapshots/; returns its list, as the deploy writes it (largest first, links last)."""
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / "rev1").mkdir(parents=True)
    files = {f"model-{i:05d}.safetensors": os.urandom(shard_bytes) for i in range(shards)}
    files["config.json"] = b'{"architectures": ["DeepseekV4ForCausalLM"]}'
    files["tokenizer.json"] = os.urandom(3000)
    entries, links = [], []
    for number, (name, data) in enumerate(files.items()):
        blob = f"blobs/{number:040x}"
        (root / blob).write_bytes(data)
        (root / "snapshots" / "rev1" / name).symlink_to(f"../../{blob}")
        entries.append({"path": blob, "size": len(data)})
        links.append({"path": f"snapshots/rev1/{name}", "link": f"../../{blob}"})
    entries.sort(key=lambda entry: -entry["size"])
    return entries + links


def tree_state(root: Path) -> dict:
    """Every file's bytes and every link's target under root."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            state[relative] = ("link", os.readlink(path))
        elif path.is_file():
            state[relative] = ("file", path.read_bytes())
    return state


def copy_argv(ssh, source, dest, listing, *extra, sources="node-a"):
    return [sys.executable, str(SCRIPT), str(source), str(dest), "--from", sources, "--list", str(listing),
            "--ssh", str(ssh[0]), "--progress-every", "0.2", *extra]


def write_list(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"files": entries}))
    return path


def lines_of(output: str, kind: str) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in output.splitlines() if line.startswith(kind + " ")]


def test_a_copy_over_two_addresses_ends_identical_and_reports_progress(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    entries = make_tree(source, shards=4, shard_bytes=MiB)
    listing = write_list(tmp_path / "list.json", entries)
    done = subprocess.run(copy_argv(ssh, source, dest, listing, "--streams", "4",
                                    sources="admin@rail-1#spark-1,admin@rail-2#spark-1"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tree_state(dest) == tree_state(source)
    (result,) = lines_of(done.stdout, "result")
    assert result["ok"] and result["copied"] == len(entries) and result["bytes"] == result["total"] == sum(e.get("size", 0) for e in entries)
    # The streams alternate over both addresses (one per rail).
    # Each rail's address is checked against the peer's one verified host key (its name).
    # (rsync passes the user as -l, the listing as user@host.)
    calls = [line.split() for line in ssh[1].read_text().splitlines()]
    assert all(alias == "spark-1" for _, alias in calls), calls
    assert {host.rpartition("@")[2] for host, _ in calls} == {"rail-1", "rail-2"}
    assert not (dest / ".spark-copy-tmp").exists()
    assert listing.exists()  # kept unless --remove-list asks


def test_with_remove_list_the_list_goes_once_the_copy_is_whole(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    listing = write_list(tmp_path / "list.json", make_tree(source, shards=1, shard_bytes=MiB))
    assert subprocess.run(copy_argv(ssh, source, dest, listing, "--remove-list"), capture_output=True).returncode == 0
    assert not listing.exists()


def test_progress_lines_say_bytes_rate_and_eta(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    listing = write_list(tmp_path / "list.json", make_tree(source, shards=30, shard_bytes=4 * MiB))
    done = subprocess.run(copy_argv(ssh, source, dest, listing, "--streams", "1"), capture_output=True, text=True,
                          timeout=120)
    progress = [line for line in done.stdout.splitlines() if line.startswith("progress ")]
    assert progress, done.stdout
    assert re.fullmatch(r"progress \d+\.\d of 0\.1 GiB \(\d+%\), \d+\.\d\d GiB/s, ETA (\d+s|\d+m\d\ds|unknown)",
                        progress[0]), progress[0]


def test_a_second_copy_moves_nothing(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    listing = write_list(tmp_path / "list.json", make_tree(source, shards=2, shard_bytes=MiB))
    assert subprocess.run(copy_argv(ssh, source, dest, listing), capture_output=True).returncode == 0
    again = subprocess.run(copy_argv(ssh, source, dest, listing), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    (result,) = lines_of(again.stdout, "result")
    assert result["copied"] == 0 and result["moved"] == 0


def test_a_ref_of_the_same_size_but_another_time_is_replaced(tmp_path, ssh):
    """refs/main names a revision in 40 hex digits: its time tells revisions apart."""
    source, dest = tmp_path / "source", tmp_path / "dest"
    for root, revision, when in ((source, "b" * 40, 1764599999), (dest, "a" * 40, 1764500000)):
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(revision)
        os.utime(root / "refs" / "main", (when, when))
    listing = write_list(tmp_path / "list.json", [{"path": "refs/main", "size": 40, "mtime": 1764599999}])
    done = subprocess.run(copy_argv(ssh, source, dest, listing), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (dest / "refs" / "main").read_text() == "b" * 40


def test_only_the_listed_entries_travel(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    entries = make_tree(source, shards=2, shard_bytes=MiB)
    (source / "original").mkdir()
    (source / "original" / "consolidated.pth").write_bytes(b"x" * 1000)  # not in the list
    listing = write_list(tmp_path / "list.json", entries)
    assert subprocess.run(copy_argv(ssh, source, dest, listing), capture_output=True).returncode == 0
    assert not (dest / "original").exists()


def test_a_copy_killed_midway_resumes_and_ends_identical(tmp_path, ssh):
    source, dest = tmp_path / "source", tmp_path / "dest"
    listing = write_list(tmp_path / "list.json", make_tree(source, shards=24, shard_bytes=8 * MiB))
    copy = subprocess.Popen(copy_argv(ssh, source, dest, listing, "--streams", "2"), stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    # Kill the whole copy (script, rsyncs, ssh) once some shards landed and before all did.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        landed = [p for p in (dest / "blobs").glob("*")] if (dest / "blobs").exists() else []
        if len(landed) >= 3:
            break
        time.sleep(0.02)
    os.killpg(copy.pid, signal.SIGKILL)
    copy.wait()
    cut = tree_state(dest)
    assert 3 <= sum(kind == "file" for kind, _ in cut.values()) < 26, "the kill came too late to cut the copy short"
    # A killed copy leaves no half file under its own name: whatever is there is whole.
    for name, (kind, data) in cut.items():
        if kind == "file" and not name.startswith(".spark-copy-tmp/"):
            assert data == (source / name).read_bytes(), name
    again = subprocess.run(copy_argv(ssh, source, dest, listing), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    (result,) = lines_of(again.stdout, "result")
    assert 0 < result["copied"] < 26 + 26  # resumed: what landed before is not copied again
    assert tree_state(dest) == tree_state(source)


def test_a_chain_receiver_waits_for_files_its_upstream_is_still_receiving(tmp_path, ssh):
    """node 1 pulls from the source while node 2 pulls from node 1, both at once."""
    source, first, second = tmp_path / "source", tmp_path / "first", tmp_path / "second"
    listing = write_list(tmp_path / "list.json", make_tree(source, shards=6, shard_bytes=4 * MiB))
    one = subprocess.Popen(copy_argv(ssh, source, first, listing, "--streams", "1"), stdout=subprocess.PIPE, text=True)
    two = subprocess.run(copy_argv(ssh, first, second, listing, "--streams", "2"), capture_output=True, text=True,
                         timeout=120)
    out_one, _ = one.communicate(timeout=120)
    assert one.returncode == 0 and two.returncode == 0, two.stdout + two.stderr
    assert tree_state(second) == tree_state(source) == tree_state(first)


def test_an_upstream_that_stalls_is_replaced_by_the_fallback(tmp_path, ssh):
    nodes, dest = tmp_path / "nodes", tmp_path / "dest"
    entries = make_tree(nodes / "origin", shards=2, shard_bytes=MiB)
    (nodes / "stuck").mkdir()  # an upstream that never receives anything
    listing = write_list(tmp_path / "list.json", entries)
    argv = copy_argv(ssh, nodes / "HOSTDIR", dest, listing, "--stall-s", "1.5", "--fallback", "origin",
                     sources="stuck")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note" in done.stdout and "stuck made no progress for 1.5 s: copying the rest from origin" in done.stdout
    assert tree_state(dest) == tree_state(nodes / "origin")


def test_an_upstream_that_stalls_without_a_fallback_fails_naming_it(tmp_path, ssh):
    nodes, dest = tmp_path / "nodes", tmp_path / "dest"
    entries = make_tree(tmp_path / "elsewhere", shards=1, shard_bytes=MiB)
    (nodes / "stuck").mkdir(parents=True)
    listing = write_list(tmp_path / "list.json", entries)
    done = subprocess.run(copy_argv(ssh, nodes / "HOSTDIR", dest, listing, "--stall-s", "1", sources="stuck"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (result,) = lines_of(done.stdout, "result")
    assert not result["ok"] and "stuck made no progress for 1 s and still lacks 3 listed files" in result["error"]
    assert len(result["missing"]) == 5  # the first few named


def test_a_broken_list_is_refused_before_anything_moves(tmp_path, ssh):
    listing = write_list(tmp_path / "list.json", [{"path": "../etc/passwd", "size": 1}])
    done = subprocess.run(copy_argv(ssh, tmp_path, tmp_path / "dest", listing), capture_output=True, text=True)
    assert done.returncode != 0 and "must be relative and stay inside the tree" in done.stderr
    assert not (tmp_path / "dest").exists()
