"""spark_cluster/engine_image.py: what the lab stand-in's tag is made of, and
the image id fact's parser. The tag decides whether every node rebuilds or
reloads the stand-in: it must follow the stand-in's Python sources and nothing
else. Each case once let a wrong line through the tests (mutation testing,
docs/benchmarks.md)."""

import re

from collect_ops import cluster
# The offline harness of test_distribute.py: facts answered per node, no connection.
from test_distribute import IMAGE, Nodes, image_ops, ops_of

from spark_cluster import engine_image
from spark_cluster.engine_image import DockerImageId, standin_sources, standin_tag


def test_the_standin_sources_are_its_python_files_only(tmp_path, monkeypatch):
    """Notes, byte code or a cache directory beside the sources are not part
    of the image: they must not change its tag."""
    for name in ("server.py", "report.py", "NOTES.txt", "README.md", "Makefile", "server.pyc"):
        (tmp_path / name).write_text(name)
    (tmp_path / "__pycache__").mkdir()
    monkeypatch.setattr(engine_image, "STANDIN_SOURCE", tmp_path)
    assert standin_sources() == [tmp_path / "report.py", tmp_path / "server.py"]
    tag = standin_tag()
    (tmp_path / "NOTES.txt").write_text("edited")
    assert standin_tag() == tag
    (tmp_path / "server.py").write_text("changed")
    assert standin_tag() != tag


def test_the_standin_tag_is_the_repository_and_12_hex_digits():
    """A stable format: a longer or shorter digest would rename the image every node holds."""
    assert re.fullmatch(r"spark-standin:[0-9a-f]{12}", standin_tag())


def test_image_id_fact_reads_the_first_line_or_none():
    fact = DockerImageId()
    assert fact.process(["sha256:abc\n", "sha256:def\n"]) == "sha256:abc"
    assert fact.process(["", "  \n"]) is None and fact.process([]) is None


# --- which node receives the image ---------------------------------------------------


def test_a_node_listed_before_a_named_source_receives_the_image(monkeypatch):
    """distribute_source may be any member: spark-1 then loads the image from
    spark-2 like any other receiver, whatever order the names sort in."""
    ops = ops_of(cluster(2, distribute_source="spark-2"), Nodes(images={"spark-2": {IMAGE: "sha256:2"}}),
                 monkeypatch)
    assert [op for op, _, _ in ops["spark-1"]] == image_ops("spark-2", "spark-1")
    assert ops["spark-2"] == []

