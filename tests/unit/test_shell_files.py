"""The shell programs shipped under files/ (sent to the nodes with `sh -c`):
valid POSIX sh for dash, clean under shellcheck, and packaged."""

import fnmatch
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*REPO.glob("roles/*/files/*.sh"), *REPO.glob("spark_cluster/files/*.sh")])
NAMES = [str(path.relative_to(REPO)) for path in SHIPPED]


def test_the_shipped_programs_are_found():
    assert {"roles/preflight/files/node_inventory.sh", "spark_cluster/files/path_state.sh",
            "spark_cluster/files/model_manifest.sh", "roles/network/files/link_up_wait.sh"} <= set(NAMES)


@pytest.mark.parametrize("script", SHIPPED, ids=NAMES)
def test_shipped_shell_parses(script):
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("script", SHIPPED, ids=NAMES)
def test_shipped_shell_passes_shellcheck(script):
    assert shutil.which("shellcheck"), "shellcheck is missing: scripts/setup installs it"
    # --shell=sh: the nodes run these with dash, so a bashism is an error here.
    result = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SHIPPED, ids=NAMES)
def test_shipped_shell_is_package_data(script):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = script.parent
    while not (package_dir / "__init__.py").exists():
        package_dir = package_dir.parent
    package = ".".join(package_dir.relative_to(REPO).parts)
    assert any(fnmatch.fnmatch(package, pattern) for pattern in project["packages"]["find"]["include"]), package
    globs = [*project["package-data"].get("*", []), *project["package-data"].get(package, [])]
    inside = str(script.relative_to(package_dir))
    assert any(fnmatch.fnmatch(inside, pattern) for pattern in globs), (package, inside, globs)
