"""The settings schema (spark_cluster/schema.py): one declaration per key,
read by every role and the verify suite, its docs generated, and pyinfra's
CLI refusing a bad key before it connects to anything."""

import ast
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.lab_common import LAB_OVERRIDES
from spark_cluster import schema
from spark_cluster.inventory import OPTIONAL_FIELDS, REQUIRED_FIELDS, derive_topology
from spark_cluster.settings import DERIVED_FIELDS, NODE_FIELDS, SettingError, cluster_settings, unknown_keys

REPO = Path(__file__).resolve().parents[2]
GROUP_DATA = REPO / "group_data" / "all.py"


def test_the_settings_doc_is_generated_from_the_schema():
    assert (REPO / "docs" / "settings.md").read_text() == schema.settings_doc(), (
        "docs/settings.md is stale: run `python -m spark_cluster.schema > docs/settings.md`")


def test_every_key_group_data_and_the_lab_set_is_declared():
    shipped = {k for k in runpy.run_path(str(GROUP_DATA)) if not k.startswith("_")}
    assert sorted((shipped | set(LAB_OVERRIDES)) - set(schema.BY_KEY)) == []


def test_every_default_is_a_value_of_its_own_setting():
    assert [(s.key, s.problem(s.default)) for s in SETTINGS_WITH_DEFAULTS if s.problem(s.default)] == []


SETTINGS_WITH_DEFAULTS = [s for s in schema.SETTINGS if s.default is not None]


def test_no_role_keeps_a_copy_of_a_default():
    """Defaults live in the schema only: no DEFAULTS dict, no settings.get(key, default) in roles or verify."""
    copies = []
    for path in [*REPO.glob("roles/**/*.py"), *REPO.glob("spark_cluster/*.py"), *REPO.glob("tests/verify/**/*.py")]:
        if path.name == "schema.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "").endswith("DEFAULTS") for t in node.targets):
                copies.append(f"{path.relative_to(REPO)}:{node.lineno}")
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" and len(node.args) == 2
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in schema.BY_KEY
                    and any(word in ast.unparse(node.func.value) for word in ("data", "spec"))):
                copies.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert copies == []


def test_settings_fall_back_to_the_declared_default_and_keep_set_values():
    s = cluster_settings({"mtu": 1500, "serving_image": None})
    assert (s.mtu, s.api_port, s.serving_image) == (1500, schema.DEFAULTS["api_port"], None)


def test_a_typo_read_at_deploy_time_is_refused_too():
    """Outside the CLI (pyinfra's API, the verify suite) the merged data is checked when read."""
    with pytest.raises(SettingError, match="unknown setting 'serving_engin': did you mean serving_engine"):
        cluster_settings({"serving_engin": "sglang"})


def test_node_fields_derived_values_and_connector_data_are_not_settings_and_not_refused():
    cluster_settings({"ssh_user": "nvidia", "ssh_port": 22, "peers": [], "ssh_password": "x", "_sudo_password": "y"})


def test_an_image_is_read_for_the_engine_it_names():
    assert [schema.image_engine(i) for i in ("vllm-ds4-sm121:latest", "nvcr.io/nvidia/vllm:26.04-py3",
                                             "lmsysorg/sglang:spark", "ghcr.io/me/serve@sha256:ab", "vllm-sglang")] \
        == ["vllm", "vllm", "sglang", None, None]


INVENTORY = '''from spark_cluster.inventory import define_cluster
spark = define_cluster([
    {"name": "spark-1", "ssh_hostname": "127.0.0.1", "ssh_port": 9, "ssh_user": "nvidia",
     "qsfp_address": "192.168.100.10/24"},
    {"name": "spark-2", "ssh_hostname": "127.0.0.1", "ssh_port": 7, "ssh_user": "nvidia",
     "qsfp_address": "192.168.100.11/24"},
])
'''


@pytest.mark.parametrize("extra_group_data, args, message", [
    ('serving_engin = "sglang"\n', [],
     "group_data/all.py: unknown setting 'serving_engin': did you mean serving_engine?"),
    ("", ["--data", "serving_engine=sglang"],
     "group_data/all.py: 'serving_image' 'vllm-ds4-sm121:latest' is a vLLM image but 'serving_engine' is 'sglang'"),
    ("", ["--data", "api_prot=8001"], "--data: unknown setting 'api_prot': did you mean api_port?"),
])
def test_the_cli_refuses_before_connecting(tmp_path, extra_group_data, args, message):
    """pyinfra itself, on an inventory whose nodes could not even be reached
    (127.0.0.1, closed ports): the refusal comes before "Connecting to hosts"."""
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(GROUP_DATA.read_text() + extra_group_data)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "t2.py").write_text(INVENTORY)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "pyinfra", "-y", *args, "inventory/t2.py", str(REPO / "deploy.py")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"pyinfra error: {tmp_path}/{message}" in output or f"pyinfra error: {message}" in output, output
    assert "Connecting" not in output


def test_the_derived_keys_the_settings_allow_are_the_ones_the_inventory_derives():
    nodes = [{"name": "spark-1", "qsfp_address": "10.0.0.1/24"}, {"name": "spark-2", "qsfp_address": "10.0.0.2/24"}]
    assert set(derive_topology(nodes)["spark-1"]) == set(DERIVED_FIELDS)
    assert unknown_keys([*REQUIRED_FIELDS, *OPTIONAL_FIELDS, *NODE_FIELDS]) == ["name", "sudo_password"], \
        "every node field reaches host data as connector data or qsfp_address (name and sudo_password do not)"
