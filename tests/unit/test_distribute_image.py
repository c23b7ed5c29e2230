"""roles/distribute/image.py and files/image_relay.py: the engine image's chain.

The plan (who receives, in which order, who starts), the commands, and the
relay itself run here on a small byte stream with fake `docker` and `ssh`
executables on PATH: each fake node's `docker load` keeps what it got."""

import importlib.util
import json
import os
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import OperationError
from pyinfra.connectors.util import CommandOutput, OutputLine

from collect_ops import cluster
from test_distribute import IMAGE, Nodes, image_ops, ops_of

from roles.distribute import image
from spark_cluster.copy_ssh import COPY_CIPHER, copy_ssh_argv

HOME = "/home/spark"
ADDRESSES = {f"spark-{i}": f"spark@10.0.0.{i}" for i in range(1, 5)}
CHAIN = [(name, ADDRESSES[name]) for name in ("spark-2", "spark-3", "spark-4")]


def relay_module():
    spec = importlib.util.spec_from_file_location("image_relay_under_test", image.RELAY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the plan ------------------------------------------------------------------------------


ORDER = ["spark-1", "spark-2", "spark-3", "spark-4"]


def test_the_chain_follows_member_order_without_the_source_and_the_nodes_that_hold_the_image():
    ids = {"spark-1": "sha256:a", "spark-2": None, "spark-3": "sha256:a", "spark-4": "sha256:old"}
    assert image.relay_chain(ORDER, "spark-1", "sha256:a", ids, ORDER) == ["spark-2", "spark-4"]


def test_a_source_after_the_head_sends_to_the_head_first():
    ids = {"spark-3": "sha256:a"}
    assert image.relay_chain(ORDER, "spark-3", "sha256:a", ids, ORDER) == ["spark-1", "spark-2", "spark-4"]


def test_a_node_this_run_does_not_reach_is_not_in_the_chain():
    ids = {"spark-1": "sha256:a"}
    assert image.relay_chain(ORDER, "spark-1", "sha256:a", ids, ["spark-1", "spark-3"]) == ["spark-3"]


def test_nothing_to_relay_when_every_id_matches():
    ids = dict.fromkeys(ORDER, "sha256:a")
    assert image.relay_chain(ORDER, "spark-1", "sha256:a", ids, ORDER) == []


def test_a_receiver_that_failed_earlier_is_left_out_and_the_next_starts():
    assert image.live_chain(CHAIN, []) == CHAIN
    assert image.live_chain(CHAIN, ["spark-2", "spark-9"]) == CHAIN[1:]
    assert image.live_chain(CHAIN, ["spark-2", "spark-3", "spark-4"]) == []


# --- the operations on each node --------------------------------------------------------------------


def test_every_receiver_gets_the_relay_and_the_check_the_source_nothing(monkeypatch):
    nodes = Nodes(images={"spark-1": {IMAGE: "sha256:1"}, "spark-3": {IMAGE: "sha256:1"}})
    ops = ops_of(cluster(4), nodes, monkeypatch)
    assert ops["spark-1"] == [] and ops["spark-3"] == []
    for name in ("spark-2", "spark-4"):
        assert [op for op, _, _ in ops[name]] == image_ops("spark-1", "spark-2", "spark-4")
        relay_text = ops[name][0][1]
        # Every receiver is told the whole chain: whichever is first alive starts it.
        assert "[('spark-2', 'spark@10.0.0.2'), ('spark-4', 'spark@10.0.0.4')]" in relay_text
        assert "'source_address': 'spark@10.0.0.1'" in relay_text and "'home': '/home/spark'" in relay_text


def test_nothing_runs_when_every_node_holds_the_source_id(monkeypatch):
    nodes = Nodes(images={name: {IMAGE: "sha256:1"} for name in ORDER})
    assert ops_of(cluster(4), nodes, monkeypatch) == {name: [] for name in ORDER}


# --- the commands ----------------------------------------------------------------------------------


def test_the_first_hop_reads_docker_save_from_the_source_over_the_copy_ssh():
    spec = image.relay_spec(IMAGE, HOME, ADDRESSES["spark-1"], CHAIN, total=123)
    ssh = copy_ssh_argv(HOME)
    assert spec["source"] == [*ssh, "spark@10.0.0.1", f"docker save {IMAGE}"]
    assert spec["ssh"] == ssh and ["-c", COPY_CIPHER] == ssh[ssh.index("-c"):ssh.index("-c") + 2]
    assert "StrictHostKeyChecking=yes" in ssh and f"{HOME}/.ssh/" in ssh[ssh.index("-i") + 1]
    assert spec["node"] == "spark-2" and spec["load"] == ["docker", "load"]
    assert spec["next"] == [{"node": "spark-3", "address": "spark@10.0.0.3"},
                            {"node": "spark-4", "address": "spark@10.0.0.4"}]
    assert (spec["total"], spec["progress_s"], spec["launcher"]) == (123, image.PROGRESS_EVERY_S, image.LAUNCHER)


def test_the_relay_command_carries_the_relay_text_and_its_spec():
    spec = image.relay_spec(IMAGE, HOME, ADDRESSES["spark-1"], CHAIN, total=1)
    argv = shlex.split(image.relay_command(spec))
    assert argv[:3] == ["python3", "-c", image.LAUNCHER]
    assert argv[3] == image.RELAY.read_text() and json.loads(argv[4]) == spec


def test_inspect_reads_id_size_digests_and_store():
    command = image.inspect_command(IMAGE)
    assert shlex.split(command)[:5] == ["docker", "image", "inspect", "--format", image.INSPECT_FORMAT]
    assert command.endswith(" && docker info --format '{{.Driver}}'")
    line = 'sha256:abc 21474836480 ["nvcr.io/nvidia/vllm@sha256:d2","nvcr.io/nvidia/vllm@sha256:d1"]'
    assert image.parse_inspect([line, "overlayfs"]) == {
        "id": "sha256:abc", "size": 21474836480, "store": "overlayfs",
        "repo_digests": ["nvcr.io/nvidia/vllm@sha256:d1", "nvcr.io/nvidia/vllm@sha256:d2"]}
    assert image.parse_inspect(["sha256:abc 5 []", "overlay2"])["repo_digests"] == []
    assert image.parse_inspect(["sha256:abc 5 null"])["store"] == "unknown"
    assert image.parse_inspect([]) is None and image.parse_inspect(["Error: No such image"]) is None


# --- identity ---------------------------------------------------------------------------------------


def inspected(image_id, store="overlay2", digests=()):
    return {"id": image_id, "size": 1, "store": store, "repo_digests": sorted(digests)}


def test_the_same_id_is_the_same_image():
    assert image.identity_problem(IMAGE, "spark-2", "spark-1", inspected("sha256:a"), inspected("sha256:a")) is None


def test_a_missing_or_other_image_fails_saying_what_was_expected():
    missing = image.identity_problem(IMAGE, "spark-2", "spark-1", inspected("sha256:a"), None)
    assert f"{IMAGE} is not on spark-2 after the relay from spark-1 (expected image id sha256:a)" in missing
    assert "run the deploy again" in missing
    other = image.identity_problem(IMAGE, "spark-2", "spark-1", inspected("sha256:a"), inspected("sha256:b"))
    assert other.startswith(f"{IMAGE} on spark-2 has image id sha256:b, expected spark-1's sha256:a")
    gone = image.identity_problem(IMAGE, "spark-2", "spark-1", None, inspected("sha256:b"))
    assert gone.startswith(f"{IMAGE} is no longer on spark-1")


def test_different_image_stores_are_named_as_the_cause():
    problem = image.identity_problem(IMAGE, "spark-2", "spark-1", inspected("sha256:a", "overlay2"),
                                     inspected("sha256:b", "overlayfs"))
    assert "different Docker image stores (spark-1: overlay2, spark-2: overlayfs" in problem
    assert "use one image store on every node" in problem


def test_a_lost_repo_digest_is_reported_not_hidden():
    digest = "nvcr.io/nvidia/vllm@sha256:d1"
    source = inspected("sha256:a", digests=[digest])
    assert image.digest_note(IMAGE, "spark-2", "spark-1", source, inspected("sha256:a", digests=[digest])) is None
    note = image.digest_note(IMAGE, "spark-2", "spark-1", source, inspected("sha256:a"))
    assert digest in note and "moby/moby#22011" in note and "sha256:a" in note
    assert image.digest_note(IMAGE, "spark-2", "spark-1", inspected("sha256:a"), inspected("sha256:a")) is None


# --- progress and summary -----------------------------------------------------------------------------


def test_progress_says_bytes_rate_and_an_approximate_eta():
    relay = relay_module()
    gib = 1 << 30
    assert relay.progress_line(2 * gib, 20 * gib, 2.0) == (
        "image relay: 2.00 GiB of ~20.00 GiB (10%), 1.00 GiB/s, ETA ~18s")
    past = relay.progress_line(21 * gib, 20 * gib, 21.0)
    assert past.endswith("(99%), 1.00 GiB/s, ETA: past the estimate, finishing")
    assert relay.progress_line(gib, 0, 1.0) == "image relay: 1.00 GiB, 1.00 GiB/s"


def test_the_summary_line_has_size_time_rate_and_who_loaded_it():
    results = {"spark-2": {"bytes": 20 * 2**30, "seconds": 10.0, "loaded": True, "error": ""},
               "spark-3": {"bytes": 5, "seconds": 1.0, "loaded": False, "error": "docker load ended with status 1"}}
    line = image.relay_summary(IMAGE, "spark-1", ["spark-2", "spark-3", "spark-4"], results)
    assert line == (f"image relay: {IMAGE} from spark-1: 20.00 GiB in 10.0s (2.00 GiB/s), loaded on spark-2; "
                    "not loaded on spark-3 (docker load ended with status 1), spark-4 (no result)")


def test_result_lines_are_found_among_the_output():
    lines = ["Loaded image: x", "image relay: 1.00 GiB, 1.00 GiB/s",
             json.dumps({"image_relay": "result", "node": "spark-3", "loaded": True}), "{not json image_relay"]
    assert image.parse_results(lines) == {"spark-3": {"image_relay": "result", "node": "spark-3", "loaded": True}}


# --- the relay, run here with fake nodes ------------------------------------------------------------


FAKE_SSH = """\
#!/usr/bin/env python3
# ssh as the relay calls it: options, the destination, the remote command (run here with sh).
import os, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):
    if args.pop(0) in ("-i", "-o", "-c", "-p"):
        args.pop(0)
destination, command = args[0], " ".join(args[1:])
if os.path.exists(os.path.join(os.environ["FAKE"], "unreachable-" + destination)):
    sys.exit(255)
os.environ["FAKE_NODE"] = destination
os.execvp("sh", ["sh", "-c", command])
"""

FAKE_DOCKER = """\
#!/usr/bin/env python3
# docker save sends FAKE/image.tar (half of it, then fails, with FAKE/save-breaks);
# docker load keeps what it read as FAKE/loaded-NODE, once its input ended (and
# fails after a little with FAKE/load-fails-NODE).
import os, sys
fake, node = os.environ["FAKE"], os.environ["FAKE_NODE"]
if sys.argv[1] == "save":
    data = open(os.path.join(fake, "image.tar"), "rb").read()
    if os.path.exists(os.path.join(fake, "save-breaks")):
        sys.stdout.buffer.write(data[: len(data) // 2])
        sys.exit(1)
    sys.stdout.buffer.write(data)
elif sys.argv[1] == "load":
    if os.path.exists(os.path.join(fake, "load-fails-" + node)):
        sys.stdin.buffer.read(1000)
        sys.exit(1)
    data = sys.stdin.buffer.read()
    open(os.path.join(fake, "loaded-" + node), "wb").write(data)
    print("Loaded image: " + node)
"""


@pytest.fixture
def fake_nodes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # Not a multiple of the relay's chunk: the framing must carry a short last chunk.
    payload = os.urandom(3 * (1 << 20) + 12345)
    (tmp_path / "image.tar").write_bytes(payload)
    return SimpleNamespace(dir=tmp_path, bin=bin_dir, payload=payload)


def run_relay(fake, chain=CHAIN):
    spec = image.relay_spec(IMAGE, HOME, ADDRESSES["spark-1"], chain, total=len(fake.payload))
    spec["progress_s"] = 0.0001  # a line per chunk: the test sees them
    env = dict(os.environ, PATH=f"{fake.bin}:{os.environ['PATH']}", FAKE=str(fake.dir), FAKE_NODE=chain[0][1])
    result = subprocess.run(["sh", "-c", image.relay_command(spec)], capture_output=True, text=True,
                            env=env, timeout=60)
    return result, image.parse_results(result.stdout.splitlines())


def loaded(fake, name):
    path = fake.dir / f"loaded-{ADDRESSES[name]}"
    return path.read_bytes() if path.exists() else None


def test_every_receiver_loads_the_very_bytes_the_source_sent(fake_nodes):
    result, results = run_relay(fake_nodes)
    assert result.returncode == 0, result.stderr
    for name, _ in CHAIN:
        assert loaded(fake_nodes, name) == fake_nodes.payload, name
        assert results[name]["loaded"] and results[name]["bytes"] == len(fake_nodes.payload)
        assert results[name]["error"] == ""
    progress = [line for line in result.stdout.splitlines() if line.startswith("image relay: ")]
    assert progress and "GiB/s" in progress[0] and " of ~0.00 GiB (" in progress[0]


def test_a_failed_load_in_the_middle_fails_that_node_and_the_rest_still_load(fake_nodes):
    (fake_nodes.dir / f"load-fails-{ADDRESSES['spark-3']}").touch()
    result, results = run_relay(fake_nodes)
    assert result.returncode != 0  # not swallowed: the first hop's status says the chain failed
    assert loaded(fake_nodes, "spark-3") is None
    assert not results["spark-3"]["loaded"] and "docker load" in results["spark-3"]["error"]
    for name in ("spark-2", "spark-4"):
        assert loaded(fake_nodes, name) == fake_nodes.payload and results[name]["loaded"], name


def test_a_source_that_breaks_off_leaves_no_loaded_image_anywhere(fake_nodes):
    (fake_nodes.dir / "save-breaks").touch()
    result, results = run_relay(fake_nodes)
    assert result.returncode != 0
    for name, _ in CHAIN:
        assert loaded(fake_nodes, name) is None, name  # each load was stopped, never handed a truncated end
        assert not results[name]["loaded"], results
    assert "docker save ended with status 1" in results["spark-2"]["error"]
    assert "broke off before its end" in results["spark-3"]["error"]


def test_an_unreachable_next_node_fails_the_chain_and_the_node_before_it_keeps_its_image(fake_nodes):
    (fake_nodes.dir / f"unreachable-{ADDRESSES['spark-4']}").touch()
    result, results = run_relay(fake_nodes)
    assert result.returncode != 0
    assert loaded(fake_nodes, "spark-4") is None and "spark-4" not in results
    assert loaded(fake_nodes, "spark-3") == fake_nodes.payload and results["spark-3"]["loaded"]
    assert "the relay to spark-4 ended with status 255" in results["spark-3"]["error"]


def test_a_chain_of_one_loads_and_forwards_nothing(fake_nodes):
    result, results = run_relay(fake_nodes, chain=CHAIN[:1])
    assert result.returncode == 0, result.stderr
    assert loaded(fake_nodes, "spark-2") == fake_nodes.payload and list(results) == ["spark-2"]


# --- the callbacks on the first receiver ------------------------------------------------------------


class FakeHost:
    """host as relay_image and check_image use it: a name, the run's state, and commands answered."""

    def __init__(self, name, answer):
        self.name, self.state, self.data, self.answer, self.commands = name, object(), {}, answer, []

    def run_shell_command(self, command, **arguments):
        command = command.get_raw_value()
        self.commands.append((command, arguments))
        ok, lines, *errors = self.answer(command)
        return ok, CommandOutput([OutputLine("stdout", line) for line in lines]
                                 + [OutputLine("stderr", line) for line in (errors[0] if errors else [])])


SOURCE_INSPECT = ["sha256:a 1073741824 []", "overlay2"]


def result_line(name, loaded, error=""):
    return json.dumps({"image_relay": "result", "node": name, "loaded": loaded, "bytes": 1 << 30,
                       "seconds": 2.0, "error": error})


def callback_host(monkeypatch, name, failed, relay_lines, relay_ok=True):
    def answer(command):
        if "docker image inspect" in command:
            return True, SOURCE_INSPECT
        return relay_ok, relay_lines
    fake = FakeHost(name, answer)
    monkeypatch.setattr(image, "host", fake)
    monkeypatch.setattr(image, "failed_this_run", lambda state: list(failed))
    return fake


def test_only_the_first_live_receiver_runs_the_chain(monkeypatch):
    fake = callback_host(monkeypatch, "spark-3", [], [])
    image.relay_image(IMAGE, "spark-1", ADDRESSES["spark-1"], CHAIN, HOME)
    assert fake.commands == []


def test_the_next_receiver_starts_the_chain_when_the_first_failed_earlier(monkeypatch):
    lines = [result_line("spark-3", True), result_line("spark-4", True)]
    fake = callback_host(monkeypatch, "spark-3", ["spark-2"], lines)
    image.relay_image(IMAGE, "spark-1", ADDRESSES["spark-1"], CHAIN, HOME)
    relay, arguments = fake.commands[-1]
    spec = json.loads(shlex.split(relay)[4])
    assert spec["node"] == "spark-3" and [hop["node"] for hop in spec["next"]] == ["spark-4"]
    assert spec["total"] == 1 << 30  # the source's image size, read over the same ssh first
    assert arguments["print_output"] is True and arguments["_sudo"] is True


def test_a_failed_load_on_the_first_receiver_fails_its_operation(monkeypatch):
    lines = [result_line("spark-2", False, "docker load ended with status 1")]
    callback_host(monkeypatch, "spark-2", [], lines, relay_ok=False)
    with pytest.raises(OperationError, match="loading .* on spark-2 failed: docker load ended with status 1"):
        image.relay_image(IMAGE, "spark-1", ADDRESSES["spark-1"], CHAIN, HOME)


def test_the_check_fails_a_receiver_the_chain_did_not_reach(monkeypatch):
    def answer(command):
        if command.startswith("ssh "):
            return True, SOURCE_INSPECT
        return False, [], ["Error response from daemon: No such image: " + IMAGE]
    monkeypatch.setattr(image, "host", FakeHost("spark-4", answer))
    with pytest.raises(OperationError, match=f"{IMAGE} is not on spark-4 after the relay from spark-1"):
        image.check_image(IMAGE, "spark-1", ADDRESSES["spark-1"], HOME)


def test_a_source_the_check_cannot_reach_is_not_called_empty(monkeypatch):
    def answer(command):
        if command.startswith("ssh "):
            return False, [], ["ssh: connect to host 10.0.0.1 port 22: No route to host"]
        return True, SOURCE_INSPECT
    monkeypatch.setattr(image, "host", FakeHost("spark-4", answer))
    with pytest.raises(OperationError, match="reading .* image id on spark-1 failed .*No route to host"):
        image.check_image(IMAGE, "spark-1", ADDRESSES["spark-1"], HOME)


def test_the_check_passes_on_the_source_id(monkeypatch):
    monkeypatch.setattr(image, "host", FakeHost("spark-4", lambda command: (True, SOURCE_INSPECT)))
    image.check_image(IMAGE, "spark-1", ADDRESSES["spark-1"], HOME)
