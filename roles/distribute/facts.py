"""What a node holds of the model: a cheap identity of a model directory tree."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


def manifest_command(path: str) -> str:
    """Prints digest, file count and total bytes of the tree at `path`; nothing when it is absent.

    The listing stays in a shell variable: a temporary file under /tmp,
    written as root with a guessable name, is what a careful tool avoids.
    """
    quoted = shlex.quote(path)
    return (
        f"[ -d {quoted} ] || exit 0; cd {quoted} || exit 1; "
        "list=$(find . -mindepth 1 \\( -type f -o -type l \\) -printf '%P\\t%s\\t%l\\n' | LC_ALL=C sort); "
        "printf '%s\\n' \"$list\" | sha256sum | cut -d' ' -f1; "
        "printf '%s\\n' \"$list\" | grep -c . ; "
        "printf '%s\\n' \"$list\" | awk -F'\\t' '{s+=$2} END {print s+0}'"
    )


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
