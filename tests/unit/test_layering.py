"""How the code may import, read from the sources (ast): roles import only
downward (spark_cluster, or a role that runs earlier, never from a role's
__init__), spark_cluster imports no role, nothing imports inside a function,
and roles/serving holds nothing that only the lab uses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
PACKAGE_SOURCES = sorted([*ROLES.rglob("*.py"), *(REPO / "spark_cluster").rglob("*.py")])


def role_order(deploy_source: str) -> list[str]:
    """The roles in the order deploy.py applies them (`<role>.apply()` calls)."""
    order = []
    for node in ast.walk(ast.parse(deploy_source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "apply"
                and isinstance(node.func.value, ast.Name)):
            order.append((node.lineno, node.func.value.id))
    return [name for _, name in sorted(order)]


def imported_roles(source: str, own_role: str | None) -> list[tuple[int, str]]:
    """(line, role) for every role a module imports, relative imports resolved
    from a module of `own_role` (None: a module outside roles/)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue  # from . / from .x: the module's own role
            if node.level > 1:
                modules = [f"roles.{(node.module or '').split('.')[0]}"] if node.module else [
                    f"roles.{alias.name}" for alias in node.names]
            elif node.module == "roles":
                modules = [f"roles.{alias.name}" for alias in node.names]
            else:
                modules = [node.module or ""]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "roles" and len(parts) > 1 and parts[1] != own_role:
                found.append((node.lineno, parts[1]))
    return found


def imports_in_functions(source: str) -> list[tuple[int, str]]:
    """(line, statement) of every import inside a function body."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((inner.lineno, ast.unparse(inner)))
    return found


def role_of(path: Path) -> str | None:
    relative = path.relative_to(REPO).parts
    return relative[1] if relative[0] == "roles" and len(relative) > 2 else None


ORDER = role_order((REPO / "deploy.py").read_text())


def test_deploy_order_names_every_role():
    assert sorted(ORDER) == sorted(p.name for p in ROLES.iterdir() if (p / "__init__.py").exists())


def test_no_role_init_imports_another_role():
    wrong = {
        str(init.relative_to(REPO)): imported_roles(init.read_text(), init.parent.name)
        for init in sorted(ROLES.glob("*/__init__.py"))
    }
    assert {path: lines for path, lines in wrong.items() if lines} == {}


def test_roles_import_only_roles_that_run_before_them():
    wrong = {}
    for path in PACKAGE_SOURCES:
        own = role_of(path)
        if own is None:
            continue
        later = [(line, role) for line, role in imported_roles(path.read_text(), own)
                 if ORDER.index(role) >= ORDER.index(own)]
        if later:
            wrong[str(path.relative_to(REPO))] = later
    assert wrong == {}


def test_spark_cluster_imports_no_role():
    wrong = {str(p.relative_to(REPO)): imported_roles(p.read_text(), None)
             for p in PACKAGE_SOURCES if p.relative_to(REPO).parts[0] == "spark_cluster"}
    assert {path: lines for path, lines in wrong.items() if lines} == {}


def test_nothing_imports_inside_a_function():
    wrong = {str(p.relative_to(REPO)): imports_in_functions(p.read_text()) for p in PACKAGE_SOURCES}
    assert {path: lines for path, lines in wrong.items() if lines} == {}


@pytest.mark.parametrize("source, own, expected", [
    ("from roles.distribute import image_to_receive", "serving", [(1, "distribute")]),
    ("import roles.rdma", "serving", [(1, "rdma")]),
    ("from roles import ssh", "distribute", [(1, "ssh")]),
    ("from ..caches.mounts import hf_home", "serving", [(1, "caches")]),
    ("from roles.serving.argv import flag", "serving", []),
    ("from .argv import flag\nfrom . import defaults", "serving", []),
    ("from spark_cluster.engines import ENGINES", "serving", []),
])
def test_imported_roles_reads_every_spelling(source, own, expected):
    assert imported_roles(source, own) == expected


def test_imports_in_functions_finds_a_late_import():
    source = "import os\n\ndef apply():\n    from roles.distribute import image_to_receive\n"
    assert imports_in_functions(source) == [(4, "from roles.distribute import image_to_receive")]
    assert imports_in_functions("import os\nx = lambda: os\n") == []


def test_serving_holds_nothing_only_the_lab_uses():
    """roles/serving runs on real Sparks; the stand-in engine is roles/standin's."""
    serving = ROLES / "serving"
    files = [p for p in serving.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    named = [str(p.relative_to(REPO)) for p in files if "standin" in str(p.relative_to(serving)).lower()]
    mentioned = [str(p.relative_to(REPO)) for p in files if "standin" in p.read_text().lower()]
    assert (named, mentioned) == ([], [])
