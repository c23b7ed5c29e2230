"""The verification suite's summary table, JSON report and pytest messages."""

import json
from types import SimpleNamespace

from sparkverify.report import CheckResult, ResultBook, format_summary, message_of, write_json


def test_summary_is_checks_by_nodes_with_dash_where_not_applicable():
    results = [
        CheckResult("spark-1", "links", "passed"),
        CheckResult("spark-2", "links", "failed", "spark-2: enP2p1s0f1np1 IPv4: expected 192.168.101.11/24, found no address"),
        CheckResult("spark-1", "gpu_memory", "skipped", "no NVIDIA driver on this host"),
        CheckResult("spark-2", "rdma", "passed"),
    ]
    table = format_summary(results, ["spark-1", "spark-2"]).splitlines()
    assert table[0].split() == ["check", "spark-1", "spark-2"]
    assert table[1].split() == ["links", "PASS", "FAIL"]
    assert table[2].split() == ["gpu_memory", "SKIP", "-"]
    assert table[3].split() == ["rdma", "-", "PASS"]
    assert table[-1] == "2 passed, 1 failed, 1 skipped"


def test_a_failure_in_any_phase_wins(tmp_path):
    book = ResultBook()
    book.record("spark-1", "links", "passed", "", 0.5)
    book.record("spark-1", "links", "failed", "teardown broke", 0.1)
    book.record("spark-1", "links", "passed", "", 0.1)
    (result,) = book.results()
    assert (result.outcome, result.message) == ("failed", "teardown broke")
    write_json(tmp_path / "out" / "verify.json", book.results(), "inventory/lab2.py")
    document = json.loads((tmp_path / "out" / "verify.json").read_text())
    assert document["summary"] == {"passed": 0, "failed": 1, "skipped": 0}
    assert document["results"][0] == {"node": "spark-1", "check": "links", "outcome": "failed",
                                      "message": "teardown broke", "duration_s": 0.7, "nodeid": ""}


def test_the_json_report_keeps_each_tests_id_and_the_figures_it_recorded(tmp_path):
    book = ResultBook()
    nodeid = "tests/verify/test_peers.py::test_rdma[spark-2]"
    book.record("spark-2", "rdma", "passed", "", 61.0, "all rails at once: 92.1 + 91.8 = 183.9 Gb/s",
                nodeid=nodeid, figures={"gbits_total": 183.9})
    write_json(tmp_path / "verify.json", book.results(), "inventory/spark2.py")
    (row,) = json.loads((tmp_path / "verify.json").read_text())["results"]
    assert row["nodeid"] == nodeid and row["figures"] == {"gbits_total": 183.9}
    assert row["detail"] == "all rails at once: 92.1 + 91.8 = 183.9 Gb/s"


def test_messages_from_pytest_reports():
    assert message_of(SimpleNamespace(longrepr=None)) == ""
    assert message_of(SimpleNamespace(longrepr=("f.py", 3, "Skipped: no NVIDIA driver on this host"))) == \
        "no NVIDIA driver on this host"
    assert message_of(SimpleNamespace(longrepr="spark-1: expected X, found Y")) == "spark-1: expected X, found Y"
    crash = SimpleNamespace(reprcrash=SimpleNamespace(message="Failed: boom"))
    assert message_of(SimpleNamespace(longrepr=crash)) == "boom"
