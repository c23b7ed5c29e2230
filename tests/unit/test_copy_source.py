"""spark_cluster/copy_source.py: which node each copied item comes from (pure)."""

import pytest

from spark_cluster.copy_source import choose_source
from spark_cluster.model_cache import describe_holding, model_whole

ORDER = ["spark-1", "spark-2", "spark-3", "spark-4"]
WHOLE = {"digest": "d", "files": 48, "bytes": 160 * 2**30, "incomplete": 0}


@pytest.mark.parametrize("holdings, explicit, source", [
    ({"spark-1": "sha256:a", "spark-2": "sha256:a"}, None, "spark-1"),   # the head first when it holds it
    ({"spark-1": None, "spark-2": None, "spark-3": "sha256:a"}, None, "spark-3"),  # a rebuilt head
    ({"spark-3": "sha256:b", "spark-2": "sha256:a"}, None, "spark-2"),   # inventory order, not the mapping's
    ({"spark-1": None, "spark-2": None}, None, None),                    # nobody holds it: no source
    ({}, None, None),
    ({"spark-1": "sha256:a"}, "spark-4", "spark-4"),                     # distribute_source wins
    ({"spark-9": "sha256:a"}, None, None),                               # a node not in the order is never chosen
])
def test_choose_source(holdings, explicit, source):
    assert choose_source(holdings, ORDER, explicit) == source


def test_a_falsy_holding_is_still_held():
    """Only None means "does not hold": a value such as 0 or "" is a holding."""
    assert choose_source({"spark-1": None, "spark-2": ""}, ORDER) == "spark-2"


@pytest.mark.parametrize("manifest, whole, text", [
    (None, False, "absent"),
    ({"digest": "e", "files": 0, "bytes": 0, "incomplete": 0}, False, "an empty directory"),
    ({**WHOLE, "incomplete": 3}, False, "partial (48 files, 160.0 GiB, 3 still downloading or cut short)"),
    (WHOLE, True, "whole (48 files, 160.0 GiB)"),
])
def test_what_a_node_holds_of_the_model(manifest, whole, text):
    assert model_whole(manifest) is whole
    assert describe_holding(manifest) == text
