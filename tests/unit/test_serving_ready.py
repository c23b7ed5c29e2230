"""The deploy's wait for a serving cluster (roles/serving/ready.py): what it
shows while the engine starts, when it ends, and how it fails."""

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import OperationError

from roles.serving import ready


def status_line(ready_, phase, detail="", memory=None):
    return json.dumps({"ready": ready_, "phase": phase, "detail": detail, "memory": memory})


@dataclass(frozen=True)
class Member:
    name: str


@pytest.fixture
def wait(monkeypatch):
    """Runs wait_until_serving against scripted `status` answers; returns (lines logged, commands run)."""
    logged, commands, clock = [], [], {"now": 0.0}
    members = {"cluster_members": [{"name": "spark-1"}, {"name": "spark-2"}, {"name": "spark-3"}]}
    # pyinfra's State as ready.py reads it: the hosts failed so far in the run.
    state = SimpleNamespace(failed_hosts=set())

    def run(answers, timeout_s=60, log_tail=("last line",), failed=(), fails_after=None):
        answers = list(answers)
        state.failed_hosts.update(Member(name) for name in failed)

        def fake_run(command):
            commands.append(command)
            if command[2] == "logtail":
                return True, list(log_tail)
            if fails_after is not None and len(commands) == fails_after[0]:
                state.failed_hosts.add(Member(fails_after[1]))
            return True, [answers.pop(0)] if answers else ["not json"]

        monkeypatch.setattr(ready, "_run", fake_run)
        monkeypatch.setattr(ready, "_sleep", lambda seconds: clock.__setitem__("now", clock["now"] + seconds))
        monkeypatch.setattr(ready.time, "monotonic", lambda: clock["now"])
        monkeypatch.setattr(ready, "host", SimpleNamespace(name="spark-1", data=members, state=state))
        monkeypatch.setattr(ready, "logger", SimpleNamespace(info=logged.append, warning=logged.append))
        ready.wait_until_serving(timeout_s, "/usr/local/lib/spark-cluster/serving_watch.py")
        return logged, commands

    return run


MEMORY = {"free_gib": 110.2, "total_gib": 119.2}


def test_it_shows_each_new_phase_and_ends_on_the_first_completion(wait):
    logged, commands = wait([
        status_line(False, "loading weights", "no answer (ConnectionRefusedError)", MEMORY),
        status_line(False, "loading weights", "no answer (ConnectionRefusedError)", MEMORY),
        status_line(False, "capturing CUDA graphs", "", MEMORY),
        status_line(True, "API up", "a completion in 0.4s (1 token(s))", MEMORY),
    ])
    assert logged == [
        "    [spark-1] serving spark-1: 0s, loading weights; no answer (ConnectionRefusedError); "
        "free memory at launch 110.2 of 119.2 GiB",
        "    [spark-1] serving spark-1: 20s, capturing CUDA graphs; free memory at launch 110.2 of 119.2 GiB",
        "    [spark-1] serving spark-1: ready after 30s: API up; a completion in 0.4s (1 token(s)); "
        "free memory at launch 110.2 of 119.2 GiB",
    ]
    assert {tuple(c) for c in commands} == {("python3", "/usr/local/lib/spark-cluster/serving_watch.py", "status")}


def test_a_long_phase_is_shown_again_every_minute(wait):
    logged, _ = wait([status_line(False, "compiling (torch.compile)")] * 8 + [status_line(True, "API up")],
                     timeout_s=600)
    assert [line.split(": ", 1)[1].split(",")[0] for line in logged] == ["0s", "60s", "ready after 80s: API up"]


def test_on_timeout_it_fails_with_the_last_phase_and_the_engines_log(wait):
    with pytest.raises(OperationError) as failed:
        wait([status_line(False, "loading weights")] * 10, timeout_s=30,
             log_tail=["Loading safetensors checkpoint shards: 10%", "torch.OutOfMemoryError: CUDA out of memory"])
    message = str(failed.value)
    assert message.startswith("serving on spark-1: no chat completion from the head within serving_start_timeout_s = 30s")
    assert "(last: serving spark-1: 30s, loading weights)" in message
    assert message.endswith("Loading safetensors checkpoint shards: 10%\ntorch.OutOfMemoryError: CUDA out of memory")


def test_status_lines_that_are_not_json_read_as_no_status():
    assert ready.parse_status(["sudo: noise", "not json"]) is None
    assert ready.parse_status(["{broken"]) is None
    assert ready.parse_status(["x", status_line(True, "ready")]) == ready.Status(True, "ready", "", None)
    assert ready.progress_line("spark-2", 5, None) == "serving spark-2: 5s, no status from the watcher yet"


def test_a_member_failed_earlier_in_the_run_ends_the_wait_at_once_naming_it(wait):
    logged, commands = wait([status_line(False, "loading weights")], failed=("spark-3",))
    assert commands == []
    assert logged[-1] == ("    [spark-1] " + ready.lost_member_message("spark-1", ["spark-3"]))
    assert "spark-3 failed or was lost in this run" in logged[-1]


def test_a_member_lost_while_the_head_waits_ends_it_within_one_poll(wait):
    logged, commands = wait([status_line(False, "loading weights")] * 5, timeout_s=1800, fails_after=(3, "spark-2"))
    assert len(commands) == 3  # not 180 polls to the timeout
    assert logged[-1].startswith("    [spark-1] serving spark-1: not waiting for a completion: spark-2 failed")


def test_a_failed_host_outside_the_cluster_does_not_end_the_wait(wait):
    logged, _ = wait([status_line(True, "API up")], failed=("spark-1", "other-cluster-node"))
    assert logged[-1].startswith("    [spark-1] serving spark-1: ready after 0s")
