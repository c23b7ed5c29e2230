"""The lab's stand-in engine image: name derived from its content.

No image can be pulled in the lab, so the node builds one from its own
python3 (files/build_standin.py). The tag hashes every file that goes into
it, so a changed stand-in gets a new tag, a new unit, and a restart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"
STANDIN_SOURCE = FILES / "standin"
BUILDER = FILES / "build_standin.py"
REPOSITORY = "spark-standin"


def standin_sources() -> list[Path]:
    return sorted(path for path in STANDIN_SOURCE.iterdir() if path.is_file() and path.suffix == ".py")


def standin_tag() -> str:
    digest = hashlib.sha256()
    for path in [*standin_sources(), BUILDER]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def effective_image(serving_image: str | None, serving_standin: bool) -> str | None:
    """The image the unit runs: the stand-in's tag in the lab, else group_data's."""
    return standin_tag() if serving_standin else serving_image
