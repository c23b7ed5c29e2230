"""spark_cluster/batch_fact: many facts' commands run for real as one shell script,
and each fact gets the value it would get asked on its own."""

import getpass
import os
import shlex
import subprocess

import pytest
from pyinfra.api import FactBase
from pyinfra.facts.files import Block

from spark_cluster.model_cache import ModelManifest
from roles.network.facts import QsfpLinks
from roles.preflight.facts import NodeInventory
from spark_cluster.account import UserAccount
from spark_cluster.batch_fact import Batch, batch_script, split_output, unique, want
from spark_cluster.file_state import PathLines


class Printed(FactBase):
    """Prints `text` as given (with or without a last newline)."""

    def command(self, text):
        return f"printf %s {shlex.quote(text)}"

    def process(self, output):
        return list(output)


class Failing(FactBase):
    def command(self):
        return "echo partial; exit 3"


class NeedsMissingTool(FactBase):
    def requires_command(self):
        return "spark-cluster-no-such-tool"

    def command(self):
        return "spark-cluster-no-such-tool --version"


class EndsInComment(FactBase):
    def command(self):
        return "echo kept # a comment must not swallow what the batch adds"

    def process(self, output):
        return output[0]


def lines_of(text: str) -> list[str]:
    """Output lines as pyinfra reads them: split at newlines, the last newline not a line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20)


def alone(item):
    """The value pyinfra gets for one fact asked on its own (status, then process or default)."""
    fact = item.fact()
    command = fact.command(**item.kwargs)
    result = sh(command if isinstance(command, str) else command.get_raw_value())
    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    return fact.process(lines) if lines else fact.default()


def batched(wants):
    fact = Batch()
    result = sh(fact.command(wants))
    assert result.returncode == 0, result.stderr
    return fact.process(lines_of(result.stdout))


# Stubs first on PATH, so the node inventory reads the same in every run (df's
# free space would move between the batched and the lone run on a busy disk).
STUBS = {
    "docker": "#!/bin/sh\nprintf 'image_id=sha256:0123\\nenv.NCCL_VERSION=2.30.4-1\\n'\n",
    "nvidia-smi": "#!/bin/sh\necho 580.142\n",
    "df": "#!/bin/sh\nprintf 'Filesystem 1024-blocks Used Available Capacity Mounted on\\n/dev/x 9 1 8 12%% /\\n'\n",
}


@pytest.fixture
def node(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    for name, text in STUBS.items():
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_text("0" * 100)
    (tmp_path / "config").write_text("Host other\n# BEGIN peers\nHost spark-2\n  User spark\n# END peers\n")
    (tmp_path / "plain").write_text("no block here\n")
    return tmp_path


def test_each_fact_gets_the_value_it_gets_alone(node):
    wants = [
        want(PathLines, paths=[str(node / "config"), str(node / "absent")], lines=[]),
        want(UserAccount, user=getpass.getuser()),
        want(UserAccount, user="spark-cluster-nobody"),  # `exit 0` before any output: the default
        want(ModelManifest, path=str(node / "model")),
        want(ModelManifest, path=str(node / "absent")),
        # A shipped script (`sh -c '<file text>' ARGS...`, quotes and a Go template inside) in the batch's script.
        want(NodeInventory, interfaces=["lo", "spark-cluster-no-such-nic"], image="vllm:x;rm -rf /", user="root"),
        want(NodeInventory, interfaces=[], image="", user="spark-cluster-nobody"),
        # Block keeps the path between command() and process(): the same instance must do both.
        want(Block, path=str(node / "config"), marker="# {mark} peers"),
        want(Block, path=str(node / "plain"), marker="# {mark} peers"),
        want(Block, path=str(node / "absent"), marker="# {mark} peers"),
        want(QsfpLinks, names=["spark-cluster-no-such-nic", "spark-cluster-no-bond"]),
        want(Printed, text="no newline at the end"),
        want(Printed, text="two lines\n\n"),
        want(Printed, text=""),
        want(EndsInComment),
    ]
    answers = batched(wants)
    for item in wants:
        assert answers[item.key] == alone(item), item.kwargs
    assert answers[want(Block, path=str(node / "config"), marker="# {mark} peers").key] == ["Host spark-2", "  User spark"]
    assert answers[want(Printed, text="two lines\n\n").key] == ["two lines", ""]
    inventory = answers[want(NodeInventory, interfaces=["lo", "spark-cluster-no-such-nic"],
                             image="vllm:x;rm -rf /", user="root").key]
    assert (inventory["image_id"], inventory["nccl"]) == ("sha256:0123", "2.30.4-1")
    assert inventory["carriers"]["spark-cluster-no-such-nic"] == "absent"


def test_a_failing_fact_and_a_missing_tool_are_left_to_pyinfra(node):
    wants = [want(Failing), want(NeedsMissingTool), want(UserAccount, user=getpass.getuser())]
    answers = batched(wants)
    assert set(answers) == {wants[2].key}, "the caller asks those two alone, and pyinfra reports them"


def test_output_that_looks_like_a_marker_does_not_split_a_fact():
    fact = Batch()
    script = fact.command([want(Printed, text="spark-cluster-batch-0000 0 0\n")])
    assert fact.marker not in "spark-cluster-batch-0000", "each batch has a marker of its own"
    answers = fact.process(lines_of(sh(script).stdout))
    assert list(answers.values()) == [["spark-cluster-batch-0000 0 0"]]


def test_a_cut_short_output_answers_only_what_came_whole():
    script = batch_script("M", [("echo one", ""), ("echo two", "")])
    lines = lines_of(sh(script).stdout)
    assert split_output("M", lines) == {0: ("0", ["one"]), 1: ("0", ["two"])}
    assert split_output("M", lines[:-2]) == {0: ("0", ["one"])}


def test_several_roles_naming_one_fact_ask_it_once():
    items = [want(UserAccount, user="spark"), want(Printed, text="x"), want(UserAccount, user="spark")]
    assert unique(items) == items[:2]
