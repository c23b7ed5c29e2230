"""The run's closing figures of its copies (spark_cluster/copy_report.py)."""

from types import SimpleNamespace

from spark_cluster import copy_report


def test_each_copy_is_one_line_in_gib_or_mib_with_its_rate():
    line = copy_report.copy_line("deepseek-ai/DeepSeek-V4-Flash", "spark-2", 150 * 2**30, 60.0, "8 streams")
    assert line == "deepseek-ai/DeepSeek-V4-Flash -> spark-2: 150.00 GiB in 60 s (2.50 GiB/s), 8 streams"
    small = copy_report.copy_line("m", "spark-2", 5 * 2**20, 10.0, "x")
    assert small == "m -> spark-2: 5.0 MiB in 10 s (0.5 MiB/s), x"
    assert copy_report.copy_line("m", "n", 0, 0.0, "x") == "m -> n: 0.0 MiB in 0 s (0.0 MiB/s), x"


def test_the_summary_gathers_every_copy_of_the_run_and_prints_it_once(capsys):
    state = SimpleNamespace()
    copy_report.record(state, "model", "spark-2", 2**30, 1.0, "a")
    copy_report.record(state, "image", "spark-3", 2**30, 2.0, "b")
    copy_report._print(state)
    assert capsys.readouterr().err.splitlines() == [
        "--> Copies over QSFP in this run:",
        "    model -> spark-2: 1.00 GiB in 1 s (1.00 GiB/s), a",
        "    image -> spark-3: 1.00 GiB in 2 s (512.0 MiB/s), b",
    ]
    copy_report._print(state)  # printed once: the atexit call after this finds nothing
    assert capsys.readouterr().err == ""
    assert copy_report.summary_lines([]) == []
