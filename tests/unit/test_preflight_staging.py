"""roles/preflight/staging.py: the model and the image staged somewhere, and the
words that say what is missing, what was expected, what was found and the fix (pure)."""

import pytest

from roles.preflight.staging import image_problems, model_problems, sources_line
from spark_cluster.copy_source import pullable
from spark_cluster.model_cache import model_whole

ORDER = ["spark-1", "spark-2"]
HF = "/home/nvidia/.cache/huggingface"
MODEL = "deepseek-ai/DeepSeek-V4-Flash"
WHOLE = {"digest": "d", "files": 48, "bytes": 160 * 2**30, "incomplete": 0}
PARTIAL = {"digest": "p", "files": 12, "bytes": 40 * 2**30, "incomplete": 2}
NGC = "nvcr.io/nvidia/vllm:26.04-py3"
LOCAL = "vllm-ds4-sm121:latest"


def messages(problems):
    return {problem.node: problem.message for problem in problems}


@pytest.mark.parametrize("image, pull", [
    (NGC, True), ("lmsysorg/sglang:spark", True), ("localhost:5000/vllm:x", True),
    (LOCAL, False), ("vllm-dspark-runtime:clean", False), ("spark-standin@sha256:abc", False),
])
def test_pullable(image, pull):
    assert pullable(image) is pull


def test_an_image_held_anywhere_is_no_problem():
    assert image_problems(NGC, {"spark-1": None, "spark-2": "sha256:1"}, ORDER, user="nvidia") == []
    assert image_problems(NGC, {"spark-1": "sha256:1", "spark-2": None}, ORDER, user="nvidia") == []


def test_a_pullable_image_on_no_node():
    problems = image_problems(NGC, {"spark-1": None, "spark-2": None}, ORDER, user="nvidia")
    assert [(p.node, p.field, p.expected, p.found, p.kind) for p in problems] == [
        (name, f"engine image {NGC}", "present on one node at least", "on no node (spark-1 absent; spark-2 absent)",
         "node") for name in ORDER]
    assert problems[0].fix == (f"pull it on one node: `docker pull {NGC}` (as nvidia, in the docker group, or with "
                               "sudo); the deploy copies it to the other nodes over QSFP")


def test_a_local_build_on_no_node_is_loaded_or_built_never_pulled():
    (problem, _) = image_problems(LOCAL, {"spark-1": None, "spark-2": None}, ORDER, user="nvidia")
    assert "docker pull" not in problem.fix
    assert problem.fix == (
        f"{LOCAL} is a local build that no registry holds: load it on one node from the machine that has it "
        f"(`docker save {LOCAL} | ssh nvidia@NODE docker load`, or `docker load -i FILE.tar` there) or build it "
        f"there (`docker build -t {LOCAL} .`); the deploy copies it to the other nodes over QSFP")


def test_a_limited_run_says_which_nodes_it_did_not_reach():
    (problem,) = image_problems(NGC, {"spark-1": None}, ORDER, user="nvidia")
    assert problem.found == "on no node (spark-1 absent; spark-2 not reached (outside --limit or unreachable))"
    assert problem.fix.endswith("; or reach spark-2 (without --limit), if a node there holds it")


def test_without_distribution_each_node_must_hold_the_image_itself():
    problems = image_problems(NGC, {"spark-1": "sha256:1", "spark-2": None}, ORDER, user="nvidia", copied=False)
    assert messages(problems) == {"spark-2": (
        f"spark-2: engine image {NGC} is absent, expected present on this node (distribute_image = False: nothing "
        f"is copied); pull it on this node: `docker pull {NGC}` (as nvidia, in the docker group, or with sudo), "
        "or set distribute_image = True to copy it from a node that holds it")}


def test_a_named_source_without_the_image_is_told_and_the_holder_named():
    problems = image_problems(NGC, {"spark-1": "sha256:1", "spark-2": None}, ORDER, user="nvidia", explicit="spark-2")
    assert messages(problems) == {"spark-2": (
        f"spark-2: engine image {NGC} on distribute_source spark-2 is absent, expected present; pull it on spark-2: "
        f"`docker pull {NGC}` (as nvidia, in the docker group, or with sudo); the deploy copies it to the other "
        "nodes over QSFP; or remove distribute_source: spark-1, which holds it, is then the source")}


def test_a_model_on_no_node_gets_the_download_into_the_admins_cache():
    problems = model_problems(MODEL, {"spark-1": None, "spark-2": None}, ORDER, user="nvidia", hf_home=HF)
    assert messages(problems)["spark-1"] == (
        f"spark-1: model {MODEL} is on no node (spark-1 absent; spark-2 absent), expected whole in nvidia's Hugging "
        f"Face cache ({HF}/hub) on one node at least; download it on one node as nvidia, not with sudo and not with "
        f"--local-dir, HF_HOME unset: `hf download {MODEL}` (huggingface_hub's CLI; older releases: "
        f"`huggingface-cli download {MODEL}`) puts it in {HF}/hub, the cache the engine container mounts; the "
        "deploy copies it to the other nodes over QSFP")
    assert set(messages(problems)) == set(ORDER)


def test_a_head_without_the_model_is_reported_when_no_worker_holds_it_whole():
    """Today's gap: a head without the model went unreported. A worker with a
    partial download is no source either; the fix is to resume it there."""
    problems = model_problems(MODEL, {"spark-1": None, "spark-2": PARTIAL}, ORDER, user="nvidia", hf_home=HF)
    head = messages(problems)["spark-1"]
    assert "spark-1 absent; spark-2 partial (12 files, 40.0 GiB, 2 still downloading or cut short)" in head
    assert f"finish the download: run `hf download {MODEL}` again as nvidia on spark-2 (it resumes)" in head


def test_a_model_held_whole_by_any_node_is_no_problem():
    assert model_problems(MODEL, {"spark-1": None, "spark-2": WHOLE}, ORDER, user="nvidia", hf_home=HF) == []
    assert model_problems(MODEL, {"spark-1": PARTIAL, "spark-2": WHOLE}, ORDER, user="nvidia", hf_home=HF) == []


def test_without_model_distribution_a_node_without_it_is_told_to_download_there():
    problems = model_problems(MODEL, {"spark-1": WHOLE, "spark-2": None}, ORDER, user="nvidia", hf_home=HF,
                              copied=False)
    (problem,) = problems
    assert (problem.node, problem.found) == ("spark-2", "absent")
    assert problem.expected == f"whole in nvidia's Hugging Face cache ({HF}/hub) on this node (distribute_model = " \
        "False: nothing is copied)"
    assert problem.fix.startswith("download it on this node as nvidia")
    assert problem.fix.endswith("or set distribute_model = True to copy it from a node that holds it")
    assert "the deploy copies" not in problem.fix


def test_sources_line_names_the_source_and_the_receivers():
    assert sources_line("model m", {"spark-1": None, "spark-2": WHOLE}, ORDER, model_whole) == (
        "preflight: model m is copied from spark-2; spark-1 receives it over QSFP")
    assert sources_line("image i", {"spark-1": "a", "spark-2": "a"}, ORDER, lambda v: v is not None) == (
        "preflight: image i is copied from spark-1; every node holds it already")
    assert sources_line("image i", {"spark-1": None, "spark-2": None}, ORDER, lambda v: v is not None) is None
