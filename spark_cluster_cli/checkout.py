"""spark-cluster runs from a checkout of the repository: deploy.py, the
inventories, group_data and the verify suite live beside the package, not
inside the wheel. This finds that checkout, or says in one line how to get one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# What a checkout holds that the command runs: pyinfra's deploy files read
# group_data from their directory, and verify is a pytest suite.
MARKERS = ("deploy.py", "inventory", "group_data", "tests/verify")
CLONE = "git clone <the spark-cluster repository> && cd spark-cluster && scripts/setup"


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in MARKERS)


def find_checkout(package_dir: Path | None = None, cwd: Path | None = None) -> Path | None:
    """The checkout this package was installed from (editable install), else
    the current directory or one above it that is a checkout; None when neither is."""
    package_dir = Path(package_dir or Path(__file__).resolve().parent)
    cwd = Path(cwd or os.getcwd()).resolve()
    for candidate in (package_dir.parent, cwd, *cwd.parents):
        if is_checkout(candidate):
            return candidate
    return None


def require_checkout(package_dir: Path | None = None, cwd: Path | None = None) -> Path:
    """The checkout's root, or exit 2 after one line saying what to do."""
    root = find_checkout(package_dir, cwd)
    if root is None:
        beside = Path(package_dir or Path(__file__).resolve().parent).parent
        print(f"spark-cluster runs from a checkout of the repository: {CLONE}; "
              f"found no deploy.py beside {beside} nor in {Path(cwd or os.getcwd()).resolve()}", file=sys.stderr)
        raise SystemExit(2)
    return root
