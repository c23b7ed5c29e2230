"""roles/serving/unit.py: what an operator reads in the unit file
(`systemctl status` / `systemctl cat spark-serving`): which node is the head,
and the docker command one flag per line. The flattened argv was tested
before, but not this layout or these labels (mutation testing,
docs/benchmarks.md): a worker labelled head, or one 600-character ExecStart
line, misleads whoever debugs a cluster that does not assemble."""

import pytest

from roles.serving.unit import Container, docker_run_groups, flag_groups, render_unit, systemd_command, unit_context

ENGINE_ARGV = ["vllm", "serve", "org/model", "--tensor-parallel-size", "2", "--headless", "--enforce-eager"]


def container(engine_argv=ENGINE_ARGV):
    return Container(image="nvcr.io/nvidia/vllm:26.01", engine_argv=list(engine_argv),
                     mounts=[("/home/spark/.cache/huggingface", "/root/.cache/huggingface")], nvidia_runtime=True)


def unit(rank, world_size=2, engine_argv=ENGINE_ARGV):
    return render_unit(unit_context(
        container=container(engine_argv), engine="vllm", rank=rank, world_size=world_size,
        head_qsfp_ip="10.0.0.1", master_port=29500, roce_detect_command="/usr/bin/python3 /x/roce_detect.py",
            prestart_command="/usr/bin/python3 /x/serving_watch.py prestart",
        start_timeout_s=1800, stop_timeout_s=60,
    ))


@pytest.mark.parametrize("rank, world_size, label, line", [
    (0, 2, "(head, rank 0 of 2)", "# Head: serves the API and hosts the rendezvous."),
    (1, 2, "(worker, rank 1 of 2)", "# Worker: joins the head's rendezvous, serves no API."),
    (3, 4, "(worker, rank 3 of 4)", "# Worker: joins the head's rendezvous, serves no API."),
])
def test_the_unit_says_whether_this_node_is_the_head(rank, world_size, label, line):
    text = unit(rank, world_size)
    assert f"Description=spark-cluster vllm engine {label}\n" in text
    assert f"\n{line}\n" in text


def test_exec_start_is_one_group_of_words_per_line():
    """docker's own options, the image, the engine's leading words, then each
    engine flag with its value on a continued line of its own."""
    text = unit(1)
    start = text.index("ExecStart=")
    lines = text[start:text.index("\nExecStop=")].split(" \\\n    ")
    assert lines[0] == "ExecStart=/usr/bin/docker run --rm --name spark-serving"
    assert lines[-5:] == ["nvcr.io/nvidia/vllm:26.01", "vllm serve org/model", "--tensor-parallel-size 2",
                          "--headless", "--enforce-eager"]
    assert ["--gpus", "all"] in docker_run_groups(container())


def test_an_engine_argv_that_starts_with_a_flag_is_still_one_flag_per_line():
    """An image whose entrypoint is the engine gets no leading words."""
    assert flag_groups(["--model-path", "m", "--tp-size", "2", "--trust-remote-code"]) == [
        ["--model-path", "m"], ["--tp-size", "2"], ["--trust-remote-code"]]


def test_systemd_command_without_groups_is_one_line():
    assert systemd_command(["docker", "run", "--name", "a b"]) == 'docker run --name "a b"'
