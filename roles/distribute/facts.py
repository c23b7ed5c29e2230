"""What a node holds of the model: a cheap identity of a model directory tree."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import FactBase

from spark_cluster.shipped import shipped_command

# Shipped with the role and run by the unit tests against temporary trees.
MODEL_MANIFEST = Path(__file__).parent / "files" / "model_manifest.sh"


def manifest_command(path: str) -> str:
    """Prints digest, file count and total bytes of the tree at `path`; nothing when it is absent
    (files/model_manifest.sh)."""
    return shipped_command(MODEL_MANIFEST, path)


def parse_manifest(lines: list[str]) -> dict | None:
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) < 3:
        return None
    return {"digest": lines[0], "files": int(lines[1]), "bytes": int(lines[2])}


class ModelManifest(FactBase):
    """{"digest", "files", "bytes"} of a directory tree, or None when it is absent.

    Names, sizes and symlink targets, not contents: Hugging Face blobs are
    named by their hash, so this identifies a 150 GB cache in a second where
    hashing it would take minutes.
    """

    def command(self, path: str) -> str:
        return manifest_command(path)

    def process(self, output):
        return parse_manifest(output)
