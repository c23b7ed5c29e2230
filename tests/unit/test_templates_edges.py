"""spark_cluster/templates.py: the one Jinja setup every rendered file shares.
Files land on nodes byte for byte (their checksums decide what changes), so its
whitespace rules are pinned on a small template: a block tag takes its own
line with it, the final newline stays, a missing variable is an error. The
block rule once let a wrong line through the tests, which parse the rendered
YAML and env files instead of reading them (mutation testing, docs/benchmarks.md)."""

import jinja2
import pytest

from spark_cluster.templates import render_template


def template(tmp_path, text):
    path = tmp_path / "file.j2"
    path.write_text(text)
    return path


def test_block_tags_leave_no_blank_lines_or_indentation(tmp_path):
    text = "interfaces:\n  {% for name in names %}\n  - {{ name }}\n  {% endfor %}\nmtu: 9000\n"
    assert render_template(template(tmp_path, text), {"names": ["a", "b"]}) == "interfaces:\n  - a\n  - b\nmtu: 9000\n"


def test_a_missing_variable_is_an_error_and_nothing_is_escaped(tmp_path):
    path = template(tmp_path, "Environment={{ value }}\n")
    assert render_template(path, {"value": "A=<b> & 'c'"}) == "Environment=A=<b> & 'c'\n"
    with pytest.raises(jinja2.UndefinedError):
        render_template(path, {})
