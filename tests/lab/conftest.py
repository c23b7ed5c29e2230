"""The lab tier: a fresh 2-node lab for the whole session, torn down at the end."""

import os

import pytest

from labsupport import lab

INVENTORY = "inventory/lab2.py"


@pytest.fixture(scope="session")
def lab2():
    # Fresh overlays: the first deploy must start from never-touched nodes.
    if not os.environ.get("SPARK_LAB_REUSE"):
        lab("destroy", check=False)
    lab("up", "--nodes", "2", timeout=1800)
    yield INVENTORY
    if not os.environ.get("SPARK_LAB_KEEP"):
        lab("down", check=False)
