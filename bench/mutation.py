"""Mutation testing as a benchmark (not a CI gate): how many wrong lines in the
modules where a wrong line breaks a cluster silently do the unit tests catch?

    .venv/bin/python bench/mutation.py                      # every module below (~30 min on 2 cores)
    .venv/bin/python bench/mutation.py roles/ssh/render.py  # one (or more) of them
    .venv/bin/python bench/mutation.py --recheck            # only the last run's survivors, after new tests

The tool is cosmic-ray (pip-installed into this interpreter if missing; docs/benchmarks.md
says why it and not mutmut or pytest-gremlins). It writes each mutant into the file
on disk and runs the module's tests, so it sees the code however the tests load it:
as a package, from a file path (the RoCE detector), as a subprocess, or through
sys.path (tests/verify). It never touches this working tree: each of its (at most
two) workers mutates its own copy under .mutation/ (git-ignored), made fresh from
the working tree at the start of a run.

Each mutant runs against the module's own tests (MODULES); what they let through
runs once more against the whole unit tier. Per module it prints the mutants, those
inside annotations (never evaluated: dropped unrun), killed, equivalent (listed with
why in bench/mutation_equivalent.txt), survived, and the score:
killed / (mutants - in annotations - equivalent). Then each survivor not listed as
equivalent: a gap in the tests, or an equivalent mutant still to be judged.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import json
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".mutation"
EQUIVALENT_FILE = REPO / "bench" / "mutation_equivalent.txt"
COSMIC_RAY = "cosmic-ray==8.7.0"
# What a worker's copy needs to run the unit tests (nothing else of the tree).
TREE = ["roles", "spark_cluster", "lab", "tests", "inventory", "group_data", "deploy.py", "pyproject.toml"]

# Each module and the unit tests written for it (globs under tests/unit): every
# mutant is run against those first, which is cheap. A mutant they let through
# is run once more against the whole unit tier (tests/unit), so a test
# elsewhere that catches it counts too: the score is the unit tier's.
MODULES = {
    "roles/rdma/files/roce_detect.py": ["test_rdma*.py", "test_roce_detect*.py"],
    "spark_cluster/inventory.py": ["test_inventory*.py"],
    "roles/network/checks.py": ["test_network*.py"],
    "roles/network/netplan.py": ["test_network*.py", "test_netplan*.py"],
    "roles/serving/argv.py": ["test_serving_argv*.py"],
    "roles/serving/unit.py": ["test_serving_render*.py", "test_serving_unit*.py"],
    "roles/serving/environment.py": ["test_serving_render*.py", "test_serving_env*.py"],
    "roles/ssh/render.py": ["test_ssh.py", "test_ssh_render*.py"],
    "spark_cluster/model_cache.py": ["test_distribute*.py", "test_copy_source.py"],
    "spark_cluster/copy_source.py": ["test_copy_source.py", "test_distribute*.py"],
    "roles/preflight/staging.py": ["test_preflight_staging.py"],
    "tests/verify/sparkverify/parse.py": ["test_verify_parse*.py"],
    # Where the renovation (fe3c4c2) moved logic out of the modules above: the
    # Jinja settings every rendered file shares, and the image-copy decisions.
    "spark_cluster/templates.py": ["test_network.py", "test_ssh.py", "test_serving_render*.py", "test_templates*.py"],
    "spark_cluster/engine_image.py": ["test_distribute*.py", "test_engine_image*.py"],
    # The engine registry (each engine's cluster flags: the argv's core) and the
    # serving role's pure desired state.
    "spark_cluster/engines.py": ["test_serving_argv*.py", "test_serving_render*.py", "test_serving_standin.py"],
    "roles/serving/desired.py": ["test_serving_render*.py", "test_serving_ops.py"],
}
WHOLE_TIER = ["tests/unit"]


def ensure_cosmic_ray() -> Path:
    """The cosmic-ray command beside this interpreter, pip-installed on first use."""
    command = Path(sys.executable).with_name("cosmic-ray")
    if not command.exists():
        print(f"installing {COSMIC_RAY} into {sys.prefix} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", COSMIC_RAY], check=True)
    return command


def test_files(module: str, root: Path = REPO) -> list[str]:
    found = sorted({path for pattern in MODULES[module] for path in glob.glob(pattern, root_dir=root / "tests" / "unit")})
    return [f"tests/unit/{name}" for name in found]


def slug(module: str) -> str:
    return module.replace("/", "_").removesuffix(".py")


def copy_tree(destination: Path) -> None:
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")
    for name in TREE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, destination / name)


# --- equivalent mutants -------------------------------------------------------

def mutant_key(module: str, function: str | None, diff: str) -> tuple[str, str, str, str]:
    """A mutant as module, function, original line, mutated line: stable across
    runs and line moves, and readable (cosmic-ray's job ids change every run)."""
    removed = next((line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")), "")
    added = next((line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")), "")
    return module, function or "<module>", removed, added


def load_equivalent() -> dict[tuple[str, str, str, str], str]:
    """bench/mutation_equivalent.txt: `module :: function :: original line :: mutated line :: why`."""
    entries = {}
    for number, line in enumerate(EQUIVALENT_FILE.read_text().splitlines() if EQUIVALENT_FILE.exists() else [], 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(" :: ")
        if len(parts) != 5 or not parts[4].strip():
            raise SystemExit(f"{EQUIVALENT_FILE}:{number}: want `module :: function :: original line :: mutated line :: why`")
        entries[tuple(part.strip() for part in parts[:4])] = parts[4].strip()
    return entries


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the annotations are, in a module that never evaluates them
    (`from __future__ import annotations`, PEP 563); none otherwise."""
    tree = ast.parse(source)
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                 and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    if not future:
        return []
    found = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
            annotations = [argument.annotation for argument in every if argument is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        found += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations if a is not None]
    return found


def drop_annotation_mutants(session: Path, source: str) -> int:
    """Take out of the session the mutants inside annotations: equivalent by
    construction (nothing ever evaluates the annotation), so not worth a run."""
    spans = annotation_spans(source)
    with sqlite3.connect(session) as db:
        rows = db.execute("SELECT job_id, start_pos_row, start_pos_col FROM mutation_specs").fetchall()
        dropped = [(job,) for job, row, col in rows if any(start <= (row, col) < end for start, end in spans)]
        db.executemany("DELETE FROM mutation_specs WHERE job_id = ?", dropped)
        db.executemany("DELETE FROM work_items WHERE job_id = ?", dropped)
    return len(dropped)


# --- running ------------------------------------------------------------------

@dataclass
class Outcome:
    module: str
    total: int = 0
    killed: int = 0
    incompetent: int = 0
    in_annotations: int = 0                          # equivalent by construction, never run
    equivalent: list = field(default_factory=list)   # (line, key, why)
    survived: list = field(default_factory=list)     # (line, key, diff)
    killed_but_listed: list = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        judged = self.total - self.in_annotations - self.incompetent - len(self.equivalent)
        return 100.0 * self.killed / judged if judged else None


def test_command(tests: list[str]) -> str:
    return " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])


def write_config(config: Path, module: str, tests: list[str], timeout: float) -> None:
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        # a mutant that loops forever is killed by the timeout, not waited for
        f"timeout = {timeout:.0f}.0\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command(tests))}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n"
    )


def timed_run(command: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True)
    return result, time.monotonic() - started


def survivors_to_pending(session: Path, module: str, source: str, equivalent: dict) -> int:
    """Forget the results of the survivors not listed as equivalent, so that
    `cosmic-ray exec` runs them again; how many."""
    spans = annotation_spans(source)
    with sqlite3.connect(session) as db:
        rows = db.execute(
            "SELECT r.job_id, r.diff, m.start_pos_row, m.start_pos_col, m.definition_name FROM work_results r"
            " JOIN mutation_specs m ON m.job_id = r.job_id WHERE r.test_outcome IN ('SURVIVED', 'survived')")
        again = [(job,) for job, diff, row, col, function in rows.fetchall()
                 if mutant_key(module, function, diff or "") not in equivalent
                 and not any(start <= (row, col) < end for start, end in spans)]
        db.executemany("DELETE FROM work_results WHERE job_id = ?", again)
    return len(again)


def run_module(module: str, slot: Path, cosmic_ray: Path, recheck: bool, equivalent: dict, own_only: bool) -> Outcome:
    outcome = Outcome(module)
    started = time.monotonic()
    sessions = WORK / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    config, session = sessions / f"{slug(module)}.toml", sessions / f"{slug(module)}.sqlite"
    # the worker's copy is what gets mutated: positions are in its text
    source = (slot / module).read_text()
    source_hash = hashlib.sha256(source.encode()).hexdigest()
    hash_file = sessions / f"{slug(module)}.source-sha256"
    annotations_file = sessions / f"{slug(module)}.in-annotations"

    # The tests must pass on the unmutated code, or every mutant would look killed.
    own_tests = test_files(module, slot)
    baseline, own_seconds = timed_run(test_command(own_tests), slot)
    if baseline.returncode != 0:
        outcome.error = "tests fail on the unmutated code:\n" + baseline.stdout[-3000:]
        return outcome
    write_config(config, module, own_tests, max(30.0, 5 * own_seconds))
    reuse = recheck and session.exists() and hash_file.exists() and hash_file.read_text() == source_hash
    if recheck and not reuse:
        print(f"{module}: changed since the last run (or never run): running every mutant", flush=True)
    if reuse:
        survivors_to_pending(session, module, source, equivalent)
    else:
        session.unlink(missing_ok=True)
        subprocess.run([str(cosmic_ray), "init", str(config), str(session)], cwd=slot, check=True, capture_output=True)
        annotations_file.write_text(str(drop_annotation_mutants(session, source)))
        hash_file.write_text(source_hash)
    for attempt in ("own", "whole"):
        if attempt == "whole":
            if own_only:
                break
            # what the module's own tests let through, against every unit test
            if not survivors_to_pending(session, module, source, equivalent):
                break
            whole, whole_seconds = timed_run(test_command(WHOLE_TIER), slot)
            if whole.returncode != 0:
                outcome.error = "the unit tier fails on the unmutated code:\n" + whole.stdout[-3000:]
                return outcome
            write_config(config, module, WHOLE_TIER, max(60.0, 5 * whole_seconds))
        executed = subprocess.run([str(cosmic_ray), "exec", str(config), str(session)], cwd=slot,
                                  capture_output=True, text=True)
        if executed.returncode != 0:
            outcome.error = "cosmic-ray exec failed:\n" + executed.stderr[-3000:]
            return outcome
    dump = subprocess.run([str(cosmic_ray), "dump", str(session)], cwd=slot, capture_output=True, text=True, check=True)

    outcome.in_annotations = int(annotations_file.read_text()) if annotations_file.exists() else 0
    outcome.total = outcome.in_annotations
    spans = annotation_spans(source)
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        outcome.total += 1
        if result is None:
            outcome.error = "some mutants were not run"
            continue
        mutation = item["mutations"][0]
        key = mutant_key(module, mutation.get("definition_name"), result.get("diff") or "")
        where = mutation["start_pos"][0]
        if any(start <= tuple(mutation["start_pos"]) < end for start, end in spans):
            outcome.in_annotations += 1  # a session from before they were dropped at init
            continue
        if result["test_outcome"] == "killed":
            outcome.killed += 1
            if key in equivalent:
                outcome.killed_but_listed.append((where, key))
        elif result["test_outcome"] == "incompetent":
            outcome.incompetent += 1
        elif key in equivalent:
            outcome.equivalent.append((where, key, equivalent[key]))
        else:
            outcome.survived.append((where, key, result.get("diff") or ""))
    outcome.seconds = time.monotonic() - started
    return outcome


def report(outcomes: list[Outcome]) -> None:
    print()
    print(f"{'module':<36} {'mutants':>7} {'in annotations':>14} {'killed':>6} {'equivalent':>10} {'survived':>8} {'score':>6}  time")
    for outcome in outcomes:
        if outcome.error:
            print(f"{outcome.module:<36} ERROR: {outcome.error.splitlines()[0]}")
            continue
        score = f"{outcome.score:5.1f}%" if outcome.score is not None else "   n/a"
        print(f"{outcome.module:<36} {outcome.total:>7} {outcome.in_annotations:>14} {outcome.killed:>6} {len(outcome.equivalent):>10} "
              f"{len(outcome.survived):>8} {score:>6}  {outcome.seconds:4.0f}s"
              + (f"  ({outcome.incompetent} incompetent, left out)" if outcome.incompetent else ""))
    for outcome in outcomes:
        if outcome.error:
            print(f"\n== {outcome.module}: {outcome.error}")
        for where, key in outcome.killed_but_listed:
            print(f"\n== {outcome.module}:{where}: listed as equivalent but a test kills it, drop it from "
                  f"{EQUIVALENT_FILE.name}: {key[2]}  ->  {key[3]}")
        for where, key, diff in sorted(outcome.survived):
            print(f"\n-- survived {outcome.module}:{where} ({key[1]})\n   - {key[2]}\n   + {key[3]}")
            print(f"   (if equivalent, list it as: {' :: '.join(key)} :: WHY)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=2, help="workers, each on its own copy (default 2; at most 2)")
    parser.add_argument("--recheck", action="store_true",
                        help="rerun only the last run's survivors (a module whose source changed runs whole)")
    parser.add_argument("--own-only", action="store_true",
                        help="run the module's own tests only, not the whole tier on their survivors (quicker, lower)")
    arguments = parser.parse_args()
    unknown = [module for module in arguments.modules if module not in MODULES]
    if unknown:
        parser.error(f"not a benchmarked module: {', '.join(unknown)}")
    modules = arguments.modules or list(MODULES)
    jobs = max(1, min(arguments.jobs, 2, len(modules)))
    cosmic_ray = ensure_cosmic_ray()
    equivalent = load_equivalent()

    todo: queue.Queue = queue.Queue()
    # biggest first, so the two workers finish close together
    for module in sorted(modules, key=lambda module: -len((REPO / module).read_text().splitlines())):
        todo.put(module)
    outcomes: dict[str, Outcome] = {}

    def worker(number: int) -> None:
        slot = WORK / f"worker-{number}"
        copy_tree(slot)
        while True:
            try:
                module = todo.get_nowait()
            except queue.Empty:
                return
            print(f"[worker {number}] {module}: {len(test_files(module))} test files", flush=True)
            outcomes[module] = run_module(module, slot, cosmic_ray, arguments.recheck, equivalent, arguments.own_only)
            print(f"[worker {number}] {module}: done in {outcomes[module].seconds:.0f}s", flush=True)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = [outcomes[module] for module in modules if module in outcomes]
    report(ordered)
    (WORK / "results.json").write_text(json.dumps([
        {"module": o.module, "total": o.total, "killed": o.killed, "incompetent": o.incompetent,
         "in_annotations": o.in_annotations, "equivalent": len(o.equivalent), "survived": [[w, *k] for w, k, _ in o.survived],
         "score": o.score, "error": o.error} for o in ordered], indent=1))
    return 1 if any(outcome.error for outcome in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
