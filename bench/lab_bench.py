"""Lab timings (a benchmark, not a test): image build, cached image reuse, 2-node lab to SSH.

Builds a fresh image into a temporary cache (its own key too), so the user's
cache is never touched, then boots a 2-node lab from it in a temporary state
dir and tears it down. Needs root for the build (mmdebstrap), about 2 GiB of
disk for the duration, and no other lab running (2 cores: timings would mix).

    python bench/lab_bench.py [--keep-cache DIR] [--skip-boot] [--ssh-base 2620]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return elapsed


def lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-cache", type=Path, help="build into this dir and keep it")
    parser.add_argument("--skip-boot", action="store_true", help="only time the image")
    parser.add_argument("--ssh-base", default="2620",
                        help="SSH port base for the bench lab (away from a lab you may have)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="spark-lab-bench-"))
    cache = args.keep_cache or work / "cache"
    env = dict(os.environ, SPARK_LAB_CACHE=str(cache), SPARK_LAB_DIR=str(work / "state"),
               SPARK_LAB_SSH_BASE=args.ssh_base)
    env.pop("SPARK_LAB_LINK_BASE", None)
    results: list[tuple[str, float]] = []
    try:
        results.append(("image build (fresh cache)", timed(lab("build-image", "--force"), env)))
        results.append(("image reuse (cached)", timed(lab("build-image"), env)))
        if not args.skip_boot:
            results.append(("2-node lab up to SSH", timed(lab("up", "--nodes", "2"), env)))
            results.append(("2-node lab up again (no-op)", timed(lab("up", "--nodes", "2"), env)))
            results.append(("2-node lab down (clean poweroff)", timed(lab("down"), env)))
    finally:
        subprocess.run(lab("destroy"), cwd=REPO, env=env, capture_output=True)
        if args.keep_cache:
            shutil.rmtree(work / "state", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(name) for name, _ in results)
    for name, seconds in results:
        print(f"{name:<{width}}  {seconds:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
