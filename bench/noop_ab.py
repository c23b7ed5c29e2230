"""The no-op re-run of this tree against another revision's, on one converged lab (a benchmark).

Alternates the two deploys (A = this tree, B = REV) on the same VMs, so the
machine's noise falls on both alike, and prints each run's seconds, facts per
node and CPU seconds, then the B/A ratios. Both must report zero changes.
Needs a lab converged by this tree, e.g. the one `deploy_bench.py --keep` leaves:

    .venv/bin/python bench/deploy_bench.py --sizes 2 4 --keep
    .venv/bin/python bench/noop_ab.py 52b972d --size 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy_bench import REPO, noop_run


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", str(into), rev], cwd=REPO, check=True,
                   capture_output=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the revision to compare with (B)")
    parser.add_argument("--size", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # The other tree drives this tree's lab: same VMs, ports and keys.
    env = {**os.environ, "SPARK_LAB_DIR": str(REPO / ".lab")}
    with tempfile.TemporaryDirectory(prefix="spark-ab-") as scratch:
        other = worktree(args.rev, Path(scratch) / "tree")
        try:
            totals = {"A": [], "B": []}
            for round_number in range(1, args.rounds + 1):
                for label, tree in (("A", REPO), ("B", other)):
                    seconds, changed, facts, vm_cpu, controller_cpu = noop_run(args.size, cwd=tree, env=env)
                    totals[label].append((seconds, vm_cpu + controller_cpu, sum(facts.values())))
                    print(f"round {round_number} {label}: no-op {seconds:5.0f}s ({changed} changes) | "
                          f"facts per node {'/'.join(map(str, sorted(set(facts.values()))))} | "
                          f"CPU {vm_cpu + controller_cpu:5.0f}s", flush=True)
                    if changed:
                        sys.exit(f"bench: {label} changed something on a converged lab")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=REPO, capture_output=True)
    mean = {label: [sum(column) / len(column) for column in zip(*rows)] for label, rows in totals.items()}
    print(f"{args.size} nodes, B ({args.rev}) / A (this tree): no-op time {mean['B'][0] / mean['A'][0]:.2f}x, "
          f"CPU {mean['B'][1] / mean['A'][1]:.2f}x, facts {mean['B'][2] / mean['A'][2]:.2f}x")


if __name__ == "__main__":
    main()
