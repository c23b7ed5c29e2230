"""The model in a node's Hugging Face cache: where it lies, and what a node holds of it.

Preflight reads it on every node (is the model anywhere, whole?), distribute
copies it from a node that holds it whole (spark_cluster/copy_source.py).
"""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import FactBase

from .batch_fact import Want, want
from .caches import hf_home
from .copy_plan import listing_command, parse_listing
from .shipped import shipped_command

# Shipped with the package and run by the unit tests against temporary trees.
MODEL_MANIFEST = Path(__file__).parent / "files" / "model_manifest.sh"


def model_cache_dir(hf_home: str, model: str) -> str:
    """Where the Hugging Face hub keeps `org/name` under HF_HOME."""
    return f"{hf_home}/hub/models--{model.replace('/', '--')}"


def manifest_command(path: str) -> str:
    """Prints digest, file count, total bytes and partial downloads of the tree at `path`;
    nothing when it is absent (files/model_manifest.sh)."""
    return shipped_command(MODEL_MANIFEST, path)


def parse_manifest(lines: list[str]) -> dict | None:
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) < 3:
        return None
    manifest = {"digest": lines[0], "files": int(lines[1]), "bytes": int(lines[2])}
    # The fourth line came later: a manifest without it says nothing of partial files.
    manifest["incomplete"] = int(lines[3]) if len(lines) > 3 else 0
    return manifest


def model_whole(manifest: dict | None) -> bool:
    """Whether a node holds the model whole: files, and none still downloading
    (an interrupted `hf download` leaves blobs/*.incomplete behind)."""
    return bool(manifest) and manifest["files"] > 0 and not manifest.get("incomplete")


def describe_holding(manifest: dict | None) -> str:
    """What a node holds of the model, in a message."""
    if manifest is None:
        return "absent"
    if not manifest["files"]:
        return "an empty directory"
    size = f"{manifest['files']} files, {manifest['bytes'] / 2**30:.1f} GiB"
    if manifest.get("incomplete"):
        return f"partial ({size}, {manifest['incomplete']} still downloading or cut short)"
    return f"whole ({size})"


class ModelManifest(FactBase):
    """{"digest", "files", "bytes", "incomplete"} of a directory tree, or None when it is absent.

    Names, sizes and symlink targets, not contents: Hugging Face blobs are
    named by their hash, so this identifies a 150 GB cache in a second where
    hashing it would take minutes.
    """

    def command(self, path: str) -> str:
        return manifest_command(path)

    def process(self, output):
        return parse_manifest(output)


def model_manifest_want(home: str, model: str) -> Want:
    """What a node holds of `model` in the Hugging Face cache under the admin's `home`:
    preflight and distribute read this one fact."""
    return want(ModelManifest, path=model_cache_dir(hf_home(home), model))


class ModelListing(FactBase):
    """{path: (size, link target or "", modification second)} of every file
    and link in a tree; {} when it is absent. What distribute copies file by
    file (copy_plan.py)."""

    @staticmethod
    def default():
        # pyinfra answers a command that printed nothing with the default: an
        # absent tree holds nothing (None stays "not read": a node not reached).
        return {}

    def command(self, path: str) -> str:
        return listing_command(path)

    def process(self, output):
        return parse_listing(output)


def model_listing_want(home: str, model: str) -> Want:
    """Each file of `model` in the admin's Hugging Face cache, with its size and link target."""
    return want(ModelListing, path=model_cache_dir(hf_home(home), model))
