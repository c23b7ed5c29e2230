"""What a model copy moves, and who sends it to whom (pure: no pyinfra).

The model lies in the admin's Hugging Face cache as the hub writes it:
blobs/<hash> (the bytes), snapshots/<revision>/<file> (links to ../../blobs/<hash>)
and refs/<branch>. A copy moves only what the engine reads: the snapshot
files that distribute_model_files names (globs on their path inside the
snapshot) and distribute_model_exclude does not (a repository's duplicate
format folders: original/, metal/), the blobs those links point to, and
refs. It moves the blobs largest first, so the streams take the big shards
apart, and the links last.

Fan-out (distribute_fanout): "chain" has every receiver, in inventory order,
pull from the one before it while that one is still receiving (the source
sends the model once, whatever the cluster's size); "star" has every
receiver pull from the source, as every tool before did.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import posixpath
import shlex
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# path -> (size, link target or "", modification second) of a tree, as
# `find -printf '%P\t%s\t%l\t%T@\n'` lists it.
Listing = Mapping[str, "tuple[int, str, int]"]

# The engine reads the weights, the configs, the tokenizer and the chat template.
DEFAULT_MODEL_FILES = ("*.safetensors", "*.json", "*.model", "*.tiktoken", "*.txt", "*.py", "*.jinja",
                       "tokenizer*")
# Folders of the same weights in another format, which no engine here reads.
DEFAULT_MODEL_EXCLUDE = ("original/*", "metal/*", "gguf/*", "onnx/*")
FANOUTS = ("chain", "star")


def _load_shipped():
    # The copy program runs on the nodes with the standard library alone, so it
    # cannot import this package; the plan loads it instead, so both read a
    # tree and judge an entry held by the same code.
    spec = importlib.util.spec_from_file_location("spark_cluster_tree_copy", TREE_COPY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TREE_COPY = Path(__file__).parent / "files" / "tree_copy.py"
shipped = _load_shipped()


def listing_command(path: str) -> str:
    """One line: the tree at `path` as a listing, nothing when absent."""
    return shipped.listing_command(path)


def parse_listing(lines: Iterable[str]) -> dict[str, tuple[int, str, int]]:
    """The listing's files and links (a copy's temporary directory left out)."""
    return shipped.parse_listing("\n".join(lines))[0]


def matches(name: str, patterns: Sequence[str]) -> bool:
    """A pattern with a '/' matches the path inside the snapshot, one without it the file's own name."""
    return any(fnmatch.fnmatchcase(name if "/" in pattern else posixpath.basename(name), pattern)
               for pattern in patterns)


def model_entries(source: Listing, include: Sequence[str] = DEFAULT_MODEL_FILES,
                  exclude: Sequence[str] = DEFAULT_MODEL_EXCLUDE) -> list[dict]:
    """The entries of the source's tree a receiver needs, in copy order (for tree_copy.py's --list)."""
    blobs: dict[str, int] = {}
    files, links = [], []
    for path, (size, target, mtime) in sorted(source.items()):
        top, _, rest = path.partition("/")
        if top == "refs":
            # A ref names a revision in 40 hex digits: the same size whichever it
            # names, so its modification time (rsync -a keeps it) tells them apart.
            files.append({"path": path, "size": size, "mtime": mtime})
        elif top == "snapshots":
            inside = rest.partition("/")[2]  # the file's path inside its revision
            if not inside or not matches(inside, include) or matches(inside, exclude):
                continue
            if not target:  # a plain file in a snapshot (written without links)
                files.append({"path": path, "size": size, "mtime": mtime})
                continue
            blob = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if blob in source and not source[blob][1]:  # a blob is named by its hash: its size suffices
                blobs[blob] = source[blob][0]
                links.append({"path": path, "link": target})
    ordered = sorted(({"path": path, "size": size} for path, size in blobs.items()),
                     key=lambda entry: (-entry["size"], entry["path"]))
    return ordered + files + links


def missing_entries(entries: Sequence[dict], held: Listing) -> list[dict]:
    """The entries a node's tree lacks (a file of another size, a link elsewhere)."""
    return [entry for entry in entries if not shipped.listing_holds(held, entry)]


def entries_bytes(entries: Iterable[dict]) -> int:
    return sum(entry.get("size", 0) for entry in entries)


def upstreams(receivers: Sequence[str], source: str, fanout: str) -> dict[str, str]:
    """{receiver: the node it pulls from}: receivers in inventory order."""
    if fanout not in FANOUTS:
        raise ValueError(f"distribute_fanout must be one of {', '.join(FANOUTS)}, got {fanout!r}")
    if fanout == "star":
        return {receiver: source for receiver in receivers}
    chain, previous = {}, source
    for receiver in receivers:
        chain[receiver] = previous
        previous = receiver
    return chain


def copy_argv(script: str, source_dir: str, dest_dir: str, addresses: Sequence[str], list_path: str,
              streams: int, ssh: Sequence[str], fallback: Sequence[str] = (), stall_s: int = 120,
              progress_every_s: int = 10) -> list[str]:
    """The receiver's tree_copy.py command."""
    argv = ["python3", script, source_dir, dest_dir, "--from", ",".join(addresses), "--list", list_path,
            "--streams", str(streams), "--ssh", shlex.join(ssh), "--progress-every", str(progress_every_s),
            "--stall-s", str(stall_s), "--remove-list"]
    if fallback:
        argv += ["--fallback", ",".join(fallback)]
    return argv


def peer_addresses(user: str, peer: str, rail_ips: Sequence[str]) -> list[str]:
    """tree_copy.py's --from for `peer`: its address on every rail, each checked against its name's host key."""
    return [f"{user}@{ip}#{peer}" for ip in rail_ips]
