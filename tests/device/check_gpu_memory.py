"""The verify suite's gpu_memory check against a real NVIDIA driver (no lab VM
has one). Run on any machine with an NVIDIA GPU, from the repository root:

    python3 tests/device/check_gpu_memory.py

It runs the check itself (tests/verify/test_node.py) on this machine, as the
suite would on a node, in four states: the driver as it is (passes at a low
minimum), a minimum above the GPU's memory (fails with both figures), CUDA
unusable (CUDA_VISIBLE_DEVICES="": the nvidia-smi fallback must still read a
total), and no nvidia-smi on the PATH (a Spark without a driver: fails).
Prints one line per state and exits non-zero if any state is judged wrongly.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

VERIFY = Path(__file__).resolve().parents[1] / "verify"
sys.path.insert(0, str(VERIFY))

from _pytest.outcomes import Failed, Skipped  # noqa: E402
from sparkverify.inventory import NodeSpec  # noqa: E402
from sparkverify.result import Result  # noqa: E402

spec = importlib.util.spec_from_file_location("verify_test_node", VERIFY / "test_node.py")
checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checks)


class LocalNode:
    """Runs the check's commands here, with an environment of the state's choosing."""

    def __init__(self, data: dict, env: dict):
        self.spec = NodeSpec("local", data)
        self.name = "local"
        self.env = env

    def run(self, command: str, timeout: float = 60) -> Result:
        done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=self.env)
        return Result(command, done.returncode, done.stdout, done.stderr)

    run_root = run


def judge(data: dict, env: dict) -> str:
    try:
        checks.test_gpu_memory(LocalNode(data, env))
    except Failed as error:
        return f"failed: {error}"
    except Skipped as error:
        return f"skipped: {error}"
    return "passed"


def main() -> int:
    base = dict(os.environ)
    no_smi = {**base, "PATH": ":".join(p for p in base.get("PATH", "").split(":")
                                       if not (Path(p) / "nvidia-smi").exists()) or "/nonexistent"}
    states = [
        ("driver as is, minimum 1 GiB", {"min_gpu_memory_gib": 1}, base, "passed"),
        ("minimum above the GPU's memory", {"min_gpu_memory_gib": 100000}, base, "failed: local: GPU memory"),
        ("CUDA unusable, nvidia-smi fallback", {"min_gpu_memory_gib": 1}, {**base, "CUDA_VISIBLE_DEVICES": ""}, "passed"),
        ("no nvidia-smi on the PATH (real hardware)", {"min_gpu_memory_gib": 1}, no_smi, "failed: local: NVIDIA driver"),
        ("no nvidia-smi, inventory without GPU (lab)", {"gpu_expected": False}, no_smi, "skipped"),
    ]
    wrong = 0
    for title, data, env, expected in states:
        outcome = judge(data, env)
        good = outcome.startswith(expected)
        wrong += not good
        print(f"{'ok  ' if good else 'WRONG'} {title}: {outcome.splitlines()[0][:300]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
