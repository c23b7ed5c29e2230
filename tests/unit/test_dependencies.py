"""Installs are the same everywhere: every library the tree imports is declared
in pyproject.toml, each declared lower bound is the version constraints-lowest.txt
pins (the set scripts/check-lowest tests), and the lock constraints.txt that
scripts/setup installs pins every declared dependency inside pyproject's range."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# Folders that hold no project source (and any virtualenv: a folder with pyvenv.cfg).
NOT_SOURCE = {"__pycache__", "build", "dist", "reports", "node_modules"}


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares it (PyYAML == pyyaml, zope.event == zope-event)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def source_files(root: Path) -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders
                         if not (name.startswith(".") or name in NOT_SOURCE or name.endswith(".egg-info")
                                 or (Path(folder) / name / "pyvenv.cfg").exists())]
        found += [Path(folder) / name for name in files if name.endswith(".py")]
    return sorted(found)


def first_party_names(files: list[Path], root: Path) -> set[str]:
    """Every module or package name the tree itself provides: the tests and the
    files roles ship put their own folder on sys.path, so a sibling file
    (collect_ops, labsupport, server) is importable by its bare name."""
    names = {path.stem for path in files}
    names |= {part for path in files for part in path.relative_to(root).parent.parts}
    return names


def third_party_imports(root: Path) -> dict[str, list[str]]:
    """{top-level module: ["file:line", ...]} of every absolute import that is
    neither the standard library nor the tree's own code."""
    files = source_files(root)
    own = first_party_names(files, root)
    found: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(line for extra in project.get("optional-dependencies", {}).values()
                                         for line in extra)]
    return [Requirement(line) for line in lines]


def read_pins(name: str) -> dict[str, Version]:
    """{canonical name: version} of a constraints file whose every line is name==version."""
    pins = {}
    for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, (f"{name}:{number}: {line!r} is not an exact pin; expected name==version "
                       f"(scripts/lock writes constraints.txt, constraints-lowest.txt is written by hand)")
        pins[canonical(match[1])] = Version(match[2])
    return pins


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return bounds[0] if len(bounds) == 1 else None


def test_the_walk_finds_third_party_imports_and_skips_the_tree_and_the_stdlib(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from . import helper\nimport json\n")
    (tmp_path / "pkg" / "helper.py").write_text("import yaml\nfrom pkg import other\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import helper_sibling\nfrom gevent.event import AsyncResult\ndef f():\n    import yaml.loader\n")
    (tmp_path / "tests" / "helper_sibling.py").write_text("")
    for venv in (".venv", "venv"):
        (tmp_path / venv / "lib").mkdir(parents=True)
        (tmp_path / venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
        (tmp_path / venv / "lib" / "site.py").write_text("import requests\n")
    assert third_party_imports(tmp_path) == {"yaml": ["pkg/helper.py:1", "tests/test_x.py:4"],
                                             "gevent": ["tests/test_x.py:2"]}


def test_the_walk_sees_the_libraries_the_roles_use():
    assert {"pyinfra", "gevent", "yaml", "jinja2", "paramiko", "testinfra"} <= set(third_party_imports(REPO))


def test_every_imported_library_is_declared():
    declared = {canonical(requirement.name) for requirement in declared_requirements()}
    distributions = packages_distributions()
    undeclared = []
    for module, places in sorted(third_party_imports(REPO).items()):
        providers = {canonical(name) for name in distributions.get(module, [])}
        if not providers:
            undeclared.append(f"{module} (imported at {', '.join(places[:3])}) is installed by no distribution "
                              f"in this environment")
        elif not providers & declared:
            undeclared.append(f"{module} (imported at {', '.join(places[:3])}) comes from "
                              f"{' or '.join(sorted(providers))}, which pyproject.toml does not declare")
    assert not undeclared, (
        "every imported library must be declared in pyproject.toml's [project] dependencies (or the test "
        "extra for what only the unit tier uses):\n  " + "\n  ".join(undeclared)
        + "\nfix: add it with a tested lower bound, pin that bound in constraints-lowest.txt, run scripts/lock")


def test_every_declared_dependency_has_one_tested_lower_bound():
    lowest = read_pins("constraints-lowest.txt")
    declared = declared_requirements()
    problems = []
    for requirement in declared:
        name, bound = canonical(requirement.name), lower_bound(requirement)
        if bound is None:
            problems.append(f"{requirement}: expected exactly one >= lower bound")
        elif name not in lowest:
            problems.append(f"{requirement}: constraints-lowest.txt has no {name}=={bound}")
        elif lowest[name] != bound:
            problems.append(f"{requirement}: constraints-lowest.txt pins {name}=={lowest[name]}, "
                            f"expected the lower bound {bound}")
    extra = set(lowest) - {canonical(requirement.name) for requirement in declared}
    problems += [f"constraints-lowest.txt pins {name}, which pyproject.toml does not declare" for name in sorted(extra)]
    assert not problems, ("pyproject's lower bounds and constraints-lowest.txt must agree, so that "
                          "scripts/check-lowest tests the bounds pyproject states:\n  " + "\n  ".join(problems))


def test_the_lock_pins_every_declared_dependency_inside_its_range():
    lock = read_pins("constraints.txt")
    problems = []
    for requirement in declared_requirements():
        name = canonical(requirement.name)
        if name not in lock:
            problems.append(f"{requirement}: constraints.txt has no pin for {name}")
        elif not requirement.specifier.contains(lock[name], prereleases=True):
            problems.append(f"{requirement}: constraints.txt pins {name}=={lock[name]}, outside that range")
    assert not problems, "\n  ".join(["the lock does not match pyproject.toml (fix: run scripts/lock):", *problems])


def test_the_lock_leaves_out_the_project_itself():
    assert "spark-cluster" not in read_pins("constraints.txt"), (
        "constraints.txt pins spark-cluster: pip would refuse the editable install; run scripts/lock")


def run_setup(tree: Path) -> list[str]:
    """Runs a copy of scripts/setup in `tree` with every tool it looks for
    stubbed out; returns the argument lines the venv's python was called with."""
    log = tree / "python.log"
    log.write_text("")
    result = subprocess.run(["bash", str(tree / "scripts" / "setup")], capture_output=True, text=True,
                            timeout=30, env={"PATH": f"{tree / 'stubs'}:/usr/bin:/bin", "LOG": str(log)})
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_setup_installs_the_lock_and_again_only_when_pyproject_or_the_lock_changes(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup", tmp_path / "scripts" / "setup")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "stubs").mkdir()
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "shellcheck", "python3"):
        (tmp_path / "stubs" / tool).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / "stubs" / tool).chmod(0o755)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text('#!/bin/sh\necho "$*" >>"$LOG"\n')
    (tmp_path / ".venv" / "bin" / "python").chmod(0o755)
    install = "-m pip install -q -c constraints.txt -e .[test]"

    assert install in run_setup(tmp_path)
    assert run_setup(tmp_path) == []
    with (tmp_path / "constraints.txt").open("a") as lock:
        lock.write("six==1.17.0\n")
    assert install in run_setup(tmp_path)
    assert run_setup(tmp_path) == []
    with (tmp_path / "pyproject.toml").open("a") as project:
        project.write("\n# changed\n")
    assert install in run_setup(tmp_path)
