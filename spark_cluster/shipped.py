"""Shell programs shipped as files under a package's files/ and sent inline.

The command is `sh -c '<file text>' NAME ARGS...`: nothing is installed on
the node, and the inputs are arguments, each shell-quoted, never text
templated into the program. So the file the node runs is the file the unit
tests run with `sh FILE ARGS...` (against temporary trees and stub tools).
"""

from __future__ import annotations

import shlex
from pathlib import Path


def shipped_command(script: Path, *args: str) -> str:
    """The one-line shell command that runs `script` with `args` ($0 is its file name)."""
    return " ".join(["sh", "-c", shlex.quote(script.read_text()), shlex.quote(script.name), *map(shlex.quote, args)])
