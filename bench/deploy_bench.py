"""Deploy timings on the lab, 2 and 4 nodes in one run (a benchmark, not a test).

For each cluster size, from fresh VMs: lab up, first converge, no-op re-run
(which must report zero changes), serving healthy, and the verification suite
(which must be green). Prints the times per size and the 4-node/2-node ratios.
Timings here are noisy (TCG emulation on 2 cores): read the ratios, not the
seconds. The target is a no-op run that grows far less than linearly with the
node count (pyinfra works on hosts in parallel).

For the no-op run it also prints what does not depend on the machine: the
facts (SSH round trips) each node answered, and the CPU seconds the VMs and
the controller spent, which tell the deploy's own scaling from the lab's
(every VM shares the same two cores).

    .venv/bin/python bench/deploy_bench.py [--sizes 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labsupport import facts_per_node, health_probe  # noqa: E402  (one parser for the tests and the bench)
HEALTH = health_probe()


def run(argv: list[str], check: bool = True, cwd: Path = REPO, env: dict | None = None) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{output[-3000:]}")
    return elapsed, output


def lab(*args: str, check: bool = True) -> tuple[float, str]:
    return run([sys.executable, "-m", "lab", *args], check=check)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def deploy(size: int, *flags: str, cwd: Path = REPO, env: dict | None = None) -> tuple[float, int, str]:
    """Seconds, the number of operations that changed something, and pyinfra's output."""
    elapsed, output = run([sys.executable, "-m", "pyinfra", "-y", *flags, f"inventory/lab{size}.py", "deploy.py"],
                          cwd=cwd, env=env)
    output = ANSI.sub("", output)
    match = re.search(r"Grand total\s+\S+\s+(\S+)", output)
    if not match:
        sys.exit(f"bench: no pyinfra results table:\n{output[-3000:]}")
    return elapsed, 0 if match.group(1) == "-" else int(match.group(1)), output


def vm_cpu_seconds() -> float:
    """User + system CPU seconds of every qemu process (the lab's VMs) so far."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            # By command line: the lab names each VM's process after its node.
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if b"qemu-system" in program:
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def idle_vm_load(seconds: float = 20) -> float:
    """Cores the VMs keep busy while nothing is asked of them (guest timers and
    the serving containers, all emulated)."""
    before = vm_cpu_seconds()
    time.sleep(seconds)
    return (vm_cpu_seconds() - before) / seconds


def controller_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def noop_run(size: int, cwd: Path = REPO, env: dict | None = None) -> tuple[float, int, dict[str, int], float, float]:
    """The no-op re-run: seconds, changes, facts per node, VM and controller CPU seconds."""
    vms, controller = vm_cpu_seconds(), controller_cpu_seconds()
    elapsed, changed, output = deploy(size, "-v", cwd=cwd, env=env)
    return (elapsed, changed, facts_per_node(output),
            vm_cpu_seconds() - vms, controller_cpu_seconds() - controller)


def healthy() -> bool:
    result = subprocess.run([sys.executable, "-m", "lab", "ssh", "spark-1", HEALTH], cwd=REPO,
                            capture_output=True)
    return result.returncode == 0


def wait_healthy(timeout: float = 900) -> float:
    """Seconds until the head answers /health 200 (every worker joined)."""
    start = time.monotonic()
    while not healthy():
        if time.monotonic() - start > timeout:
            sys.exit(f"bench: the head's /health did not answer 200 within {timeout:.0f}s")
        time.sleep(5)
    return time.monotonic() - start


def verify(size: int) -> tuple[float, int, int]:
    """Seconds, passed checks, failed checks."""
    report = REPO / "reports" / f"bench-verify-{size}.json"
    elapsed, output = run([sys.executable, "-m", "pytest", "tests/verify", "-q", "-p", "no:cacheprovider",
                           "--inventory", f"inventory/lab{size}.py", "--report-json", str(report)], check=False)
    entries = json.loads(report.read_text()) if report.exists() else []
    if isinstance(entries, dict):
        entries = entries.get("results", [])
    passed = sum(1 for e in entries if e["outcome"] == "passed")
    failed = sum(1 for e in entries if e["outcome"] == "failed")
    if failed or not passed:
        print(output[-4000:], file=sys.stderr)
    return elapsed, passed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--keep", action="store_true", help="leave the last size's lab up (for bench/noop_ab.py)")
    args = parser.parse_args()
    rows = {}
    for size in args.sizes:
        lab("destroy")
        boot, _ = lab("up", "--nodes", str(size))
        first, first_changed, _ = deploy(size)
        idle = idle_vm_load()
        noop, noop_changed, facts, vm_cpu, controller_cpu = noop_run(size)
        ready = wait_healthy()
        checked, passed, failed = verify(size)
        if not (args.keep and size == args.sizes[-1]):
            lab("down")
        rows[size] = (boot, first, noop, vm_cpu + controller_cpu)
        print(f"{size} nodes: lab up {boot:6.0f}s | first converge {first:6.0f}s ({first_changed} changes) | "
              f"no-op re-run {noop:5.0f}s ({noop_changed} changes) | healthy +{ready:4.0f}s | "
              f"verify {checked:4.0f}s: {passed} passed, {failed} failed", flush=True)
        per_node = sorted(set(facts.values()))
        print(f"         no-op: facts per node {'/'.join(map(str, per_node)) or '?'} "
              f"({sum(facts.values())} in all) | CPU: VMs {vm_cpu:5.0f}s, controller {controller_cpu:4.0f}s, "
              f"{(vm_cpu + controller_cpu) / noop / os.cpu_count():.0%} of {os.cpu_count()} cores "
              f"(idle VMs alone: {idle / os.cpu_count():.0%})", flush=True)
        if noop_changed or failed:
            sys.exit(f"bench: {size} nodes did not converge cleanly")
    if 2 in rows and 4 in rows:
        print(f"ratio 4/2 nodes: first converge {rows[4][1] / rows[2][1]:.2f}x, "
              f"no-op re-run {rows[4][2] / rows[2][2]:.2f}x (linear would be 2.00x); "
              f"no-op CPU {rows[4][3] / rows[2][3]:.2f}x")


if __name__ == "__main__":
    main()
