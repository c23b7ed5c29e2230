"""End to end on the 2-node lab, in order: converge (the shipped default,
dual_subnet on one cable in port 1), no-op, verify, a dead head, a dead
worker, a wedged head (each healed by the watcher alone), a profile change
(the deploy waits for a completion), reboot, break and repair, a node with
missing hardware, a node whose admin cannot sudo, a rebuilt node, a node whose QSFP ports another
configuration already claims (NVIDIA's playbook), and the switch to bond mode.
Each test builds on the state the previous one left, as a user's session would.
The last three are marked `extended`: CI's hour has no room for them, so
`scripts/test --extended` runs them (the default run deselects them)."""

import json
import re
import time

import pytest

from labsupport import (
    as_root,
    boot_count,
    chat_answer,
    chat_works,
    container_started_at,
    deploy,
    failed_checks,
    group_data,
    head_healthy,
    image_id,
    journal,
    lab,
    lab_api_key,
    node_now,
    on_node,
    outcomes,
    tree_digest,
    verify,
    wait_for,
)

from spark_cluster.model_cache import model_cache_dir
from spark_cluster.caches import hf_home
from spark_cluster.engine_image import standin_tag

NODES = ["spark-1", "spark-2"]
HEAD, WORKER = NODES
BOND_INVENTORY = "inventory/lab2_bond.py"
# One cable in port 1: its two PCIe halves are the rails, each with its HCA.
RAILS = {"enp1s0f1np1": "rocep1s0f1", "enP2p1s0f1np1": "roceP2p1s0f1"}
# The verify check of the links that carry our addresses, and its words about
# the worker's second rail losing its address.
LINKS_CHECK = "links"
LINKS_WORDS = "enP2p1s0f1np1 IPv4: expected 192.168.101.11/24, found no address"
# Shaped like the Hugging Face cache: blobs, a snapshot of absolute-free relative
# links, refs. Small, so the copy is quick under emulation; the role does not care.
MODEL_DIR = model_cache_dir(hf_home("/home/spark"), "deepseek-ai/DeepSeek-V4-Flash")
PLANT_MODEL = f"""set -e
d={MODEL_DIR}
mkdir -p "$d/blobs" "$d/refs" "$d/snapshots/0123abc"
printf '%s' '{{"model_type": "deepseek_v4"}}' > "$d/blobs/c0ffee"
head -c 4194304 /dev/urandom > "$d/blobs/facade"
ln -sfn ../../blobs/c0ffee "$d/snapshots/0123abc/config.json"
ln -sfn ../../blobs/facade "$d/snapshots/0123abc/model-00001-of-00001.safetensors"
echo 0123abc > "$d/refs/main"
mkdir -p "$d/snapshots/0123abc/original"
head -c 1048576 /dev/urandom > "$d/blobs/0dd5"
ln -sfn ../../../blobs/0dd5 "$d/snapshots/0123abc/original/consolidated.00.pth"
"""
# A format folder the engine does not read (distribute_model_exclude): it stays on the head.
LEFT_BEHIND = ("./blobs/0dd5", "./snapshots/0123abc/original*")

pytestmark = pytest.mark.lab

# How long the lab's cluster may take to answer again after one of its
# engines died or wedged, with no command: the watchers' detection (3 probes
# of 10 s, inventory/lab_common.py), the restarts of both engines and the
# stand-in's start under emulation. A real engine adds its own start (3-19
# minutes) to this.
RECOVERY_BOUND_S = 300
WATCH_UNIT = "spark-serving-watch.service"
# The deploy's progress lines, one per look at a node's engine (roles/serving/ready.py).
READY_WORDS = "ready after"


def compile_cache(node):
    """What the node's stand-in engine found in its compile cache when it started (server.py)."""
    report = as_root(node, "docker exec spark-serving python3 /standin/report.py").stdout
    return json.loads(report)["compile_cache"]


def wait_serving_healthy(timeout=900):
    wait_for(lambda: head_healthy(HEAD), timeout, what="head /health = 200 with all workers joined")


def test_first_deploy_converges_with_exactly_one_reboot_per_node(lab2):
    before = {node: boot_count(node) for node in NODES}
    result = deploy(lab2)
    assert result.returncode == 0, result.output[-6000:]
    totals = result.grand_total()
    assert totals["errors"] == 0 and totals["changed"] > 0, totals
    after = {node: boot_count(node) for node in NODES}
    assert after == {node: before[node] + 1 for node in NODES}, (before, after)
    # It ended only once the cluster answered: each node says so, and a
    # completion works at once.
    for node in NODES:
        assert any(READY_WORDS in line for line in result.host_lines(node)), result.output[-6000:]
    assert chat_works(WORKER)


def test_second_deploy_changes_nothing_and_never_reboots(lab2):
    before = {node: boot_count(node) for node in NODES}
    result = deploy(lab2, "-v")
    assert result.returncode == 0, result.output[-6000:]
    totals = result.grand_total()
    assert totals["changed"] == 0 and totals["errors"] == 0, result.output[-6000:]
    # The read-ahead: every fact a role reads, in one command per node, after
    # one unprivileged read of the admin account.
    assert result.facts_per_node() == {node: 2 for node in NODES}, result.facts_per_node()
    for node in NODES:
        assert any("No changes" in line for line in result.host_lines(node)), node
        # Nothing was (re)started, so nothing was waited for.
        assert not any(f"serving {node}:" in line for line in result.host_lines(node)), node
    assert {node: boot_count(node) for node in NODES} == before


def test_verification_suite_is_green_on_the_converged_lab(lab2, tmp_path):
    wait_serving_healthy()
    code, entries, output = verify(lab2, tmp_path / "verify.json")
    assert code == 0, output[-6000:]
    checks = {entry["check"] for entry in entries if entry["outcome"] == "passed"}
    for check in (LINKS_CHECK, "network_manager", "roce_gid", "memlock", "infiniband", "drm_override", "env_file",
                  "serving_unit", "ping_mtu", "ssh_mesh", "rdma", "openai_endpoint"):
        assert check in checks, (check, sorted(checks))
    # Both halves of the cabled port, in the engine's own environment: the
    # detector found both rails' HCAs at serving start.
    for node in NODES:
        roce = as_root(node, "cat /run/spark-cluster/roce.env").stdout
        assert f"NCCL_IB_HCA={','.join(RAILS.values())}" in roce.splitlines(), (node, roce)
    # The lab serves with an API key (.lab/api_key): verify passed with it,
    # a request without it is refused, and the key is in no unit or argv.
    assert chat_answer(WORKER, key="") == "401 0"
    assert chat_works(WORKER)
    key = lab_api_key()
    for node in NODES:
        readable = as_root(node, "cat /etc/systemd/system/spark-serving*.service /etc/spark-cluster/watch.json; "
                                 "ps -eo args").stdout
        assert key and key not in readable, node
        assert key in as_root(node, "cat /etc/spark-cluster/serving.env").stdout, node


def heals(broken_node, restarted_node, journal_node, cause, action):
    """Breaks the cluster with `action` on `broken_node`, then waits, with no
    command, until a completion works again and `restarted_node`'s engine was
    restarted by its watcher, whose journal names `cause`. Returns the seconds."""
    since = node_now(journal_node)
    restarted_before = container_started_at(restarted_node)
    as_root(broken_node, action)
    started = time.monotonic()
    wait_for(lambda: container_started_at(restarted_node) != restarted_before and chat_works(WORKER),
             RECOVERY_BOUND_S, interval=10, what=f"the cluster answering again after `{action}` on {broken_node}")
    elapsed = time.monotonic() - started
    lines = journal(journal_node, WATCH_UNIT, since)
    assert cause in lines, lines
    print(f"\n{action} on {broken_node}: answering again after {elapsed:.0f}s")
    return elapsed


def test_a_dead_head_engine_brings_the_cluster_back_without_a_command(lab2):
    # systemd restarts the head's container; the worker's engine, still
    # waiting on the dead head (as a real vLLM worker does), is restarted by
    # its watcher and joins the new head.
    heals(HEAD, WORKER, WORKER, "restart the worker engine: the head's engine restarted", "docker kill spark-serving")


def test_a_dead_worker_engine_brings_the_cluster_back_without_a_command(lab2):
    # The head keeps /health at 200 but generates nothing (as a real head in
    # NCCL): its watcher restarts it, then the worker's rejoins.
    heals(WORKER, HEAD, HEAD, "restart the head engine: no tokens in 3 probes in a row", "docker kill spark-serving")


def test_a_wedged_head_that_still_answers_health_is_restarted(lab2):
    since = node_now(HEAD)
    started_before = container_started_at(HEAD)
    as_root(HEAD, "docker kill -s USR1 spark-serving")
    # The wedge, as the field sees it: /health 200, no completion.
    assert head_healthy(HEAD)
    assert chat_answer(WORKER, timeout=5).startswith("error")
    wait_for(lambda: container_started_at(HEAD) != started_before and chat_works(WORKER), RECOVERY_BOUND_S,
             interval=10, what="the cluster answering again after a wedge")
    assert "restart the head engine: no tokens in 3 probes in a row" in journal(HEAD, WATCH_UNIT, since)


def test_a_deploy_that_changes_the_profile_waits_for_a_completion_and_shows_progress(lab2):
    profiles = group_data()["serving_profiles"]
    profiles["deepseek-v4-flash"]["vllm"]["max_num_seqs"] = 4
    result = deploy(lab2, "--data", f"serving_profiles={json.dumps(profiles, separators=(',', ':'))}")
    assert result.returncode == 0, result.output[-6000:]
    for node in NODES:
        progress = [line for line in result.host_lines(node) if f"serving {node}:" in line]
        assert progress and READY_WORDS in progress[-1], result.output[-6000:]
    head_argv = as_root(HEAD, "docker inspect -f '{{json .Args}}' spark-serving").stdout
    assert '"--max-num-seqs","4"' in head_argv.replace(" ", ""), head_argv
    # Ready when the deploy says so: no waiting here.
    assert chat_works(WORKER)


def test_serving_comes_back_after_a_reboot_without_any_command(lab2, tmp_path):
    before = {node: boot_count(node) for node in NODES}
    for node in NODES:
        as_root(node, "systemctl reboot", check=False)
    for node in NODES:
        wait_for(lambda node=node: boot_count(node) == before[node] + 1, 600, what=f"{node} back")
    wait_serving_healthy()
    code, entries, output = verify(lab2, tmp_path / "verify.json")
    assert code == 0, output[-6000:]


# How a user (or an upgrade) breaks each check on the worker, and the words of
# that check's own message about it. Applied one at a time, each followed by its
# own check, in an order where no breakage touches a later check's subject (the
# QSFP link goes last: without it the QSFP side, and so ssh_mesh, is gone), so every
# check is shown to catch its own breakage, not a neighbour's.
BREAKAGES = [
    ("ssh_mesh", "sed -i '/spark-cluster/d' /home/spark/.ssh/authorized_keys", "authorized_keys"),
    ("env_file", "chmod 0644 /etc/spark-cluster/serving.env", "found mode 0644"),
    ("drm_override", "echo 'options nvidia-drm modeset=1 fbdev=1' > /etc/modprobe.d/zz-nvidia-drm-override.conf",
     "expected absent, found present"),
    ("memlock", "rm -f /etc/systemd/system/docker.service.d/90-spark-cluster-memlock.conf && "
                "systemctl daemon-reload && systemctl restart docker", "docker.service drop-in"),
    ("serving_unit", "systemctl stop spark-serving", "spark-serving.service: expected active, found"),
    (LINKS_CHECK, "ip address flush dev enP2p1s0f1np1", LINKS_WORDS),
]


def test_each_broken_condition_fails_its_own_check_and_a_redeploy_repairs_it(lab2, tmp_path):
    for number, (check, command, words) in enumerate(BREAKAGES):
        as_root(WORKER, command)
        code, entries, output = verify(lab2, tmp_path / f"{check}.json", "-k", f"test_{check} and {WORKER}")
        outcome, message = outcomes(entries).get((WORKER, check), ("not run", ""))
        assert code != 0 and outcome == "failed", (check, outcome, output[-3000:])
        assert words in message and "fix:" in message, (check, message)

    code, entries, output = verify(lab2, tmp_path / "broken.json")
    assert code != 0
    failed = failed_checks(entries)
    for check, _, _ in BREAKAGES:
        assert (WORKER, check) in failed, (check, sorted(failed), output[-4000:])

    result = deploy(lab2)
    assert result.returncode == 0, result.output[-6000:]
    wait_serving_healthy()
    code, entries, output = verify(lab2, tmp_path / "repaired.json")
    assert code == 0, output[-6000:]


def test_missing_roce_device_stops_only_that_host(lab2):
    # Something only the last role repairs, on the head: if the run went on
    # there after the worker was stopped, the watcher's settings are 0644
    # again (a repair that restarts no engine: the worker's cannot start now).
    as_root(HEAD, "chmod 0600 /etc/spark-cluster/watch.json")
    as_root(WORKER, "; ".join(f"rdma link delete {device}" for device in RAILS.values()))
    try:
        result = deploy(lab2)
        assert result.returncode != 0
        # Preflight reads the RDMA device on every rail and stops the worker first.
        words = "RDMA device on rail enp1s0f1np1 is none, expected rocep1s0f1"
        assert any(words in line for line in result.host_lines(WORKER)), result.output[-6000:]
        head_lines = result.host_lines(HEAD)
        assert head_lines and not any("Error" in line for line in head_lines), head_lines
        assert any("Watcher settings" in op for op in result.changed_operations(HEAD)), result.output[-6000:]
        assert as_root(HEAD, "stat -c %a /etc/spark-cluster/watch.json").stdout.strip() == "644"
        assert not result.changed_operations(WORKER), result.changed_operations(WORKER)
    finally:
        as_root(WORKER, "; ".join(f"rdma link add {device} type rxe netdev {netdev}"
                                  for netdev, device in RAILS.items()), check=False)


# An inventory as a user could get it wrong: the worker's sudo password.
WRONG_SUDO_INVENTORY = """from inventory.lab_common import lab_cluster

spark = lab_cluster(2)
spark[1][1]["_sudo_password"] = "not-the-password"
"""
DRM_OVERRIDE = "/etc/modprobe.d/zz-nvidia-drm-override.conf"


def test_a_node_whose_admin_cannot_sudo_stops_before_the_gpu_role_and_the_other_converges(lab2, tmp_path):
    """The worker's admin cannot become root (a wrong sudo password): the run
    asks it once, says so in one line, and changes nothing there, not even
    the gpu role's work that is waiting on it (a DRM override put back, as on
    a fresh Spark: removing it means a reboot); the head converges (it repairs
    a drifted file) in the same run."""
    inventory = tmp_path / "lab2_wrong_sudo.py"
    inventory.write_text(WRONG_SUDO_INVENTORY)
    as_root(WORKER, f"printf 'options nvidia-drm modeset=1 fbdev=1\\n' > {DRM_OVERRIDE}")
    as_root(HEAD, "chmod 0600 /etc/spark-cluster/watch.json")
    boots = boot_count(WORKER)
    try:
        result = deploy(str(inventory))
        assert result.returncode != 0
        words = "spark-2: sudo as 'spark' did not answer (a wrong sudo password, or spark may not use sudo there)"
        assert words in result.output, result.output[-6000:]
        # One sudo on the worker for the whole run (its batch of facts), not one per fact.
        attempts = [line for line in result.host_lines(WORKER) if "incorrect password attempts" in line]
        assert len(attempts) == 1, attempts
        assert not result.changed_operations(WORKER), result.changed_operations(WORKER)
        assert as_root(WORKER, f"test -e {DRM_OVERRIDE}", check=False).returncode == 0, "the gpu role ran"
        assert boot_count(WORKER) == boots
        head_lines = result.host_lines(HEAD)
        assert head_lines and not any("Error" in line for line in head_lines), head_lines
        assert any("Watcher settings" in op for op in result.changed_operations(HEAD)), result.output[-6000:]
        assert as_root(HEAD, "stat -c %a /etc/spark-cluster/watch.json").stdout.strip() == "644"
    finally:
        # Planted by this test and never acted on: removing it restores the node exactly.
        as_root(WORKER, f"rm -f {DRM_OVERRIDE}", check=False)


@pytest.mark.extended
def test_a_rebuilt_node_rejoins_with_one_command_and_receives_model_and_image_over_qsfp(lab2, tmp_path):
    # The model was staged on the head only (as a user downloads it once).
    on_node(HEAD, PLANT_MODEL)
    head_boots = boot_count(HEAD)
    since = node_now(HEAD)
    lab("rebuild", WORKER, timeout=900)
    assert boot_count(WORKER) == 1  # a fresh disk: this is its first boot

    result = deploy(lab2)
    assert result.returncode == 0, result.output[-6000:]
    worker_ops = result.changed_operations(WORKER)
    assert any(f"Load {standin_tag()} from {HEAD} over QSFP" in op for op in worker_ops), worker_ops
    assert any("Copy deepseek-ai/DeepSeek-V4-Flash from spark-1 over QSFP" in op for op in worker_ops), worker_ops
    assert not any("Build the stand-in" in op for op in worker_ops), worker_ops
    # Warm caches travel too: the head's stand-in compiled into its vllm cache
    # when it first started; the worker's caches are empty, and it ends the
    # run with the head's image id.
    assert any(f"Warm the vllm cache from {HEAD} over QSFP" in op for op in worker_ops), worker_ops
    # On the head only its peers' host keys changed (the worker's new key
    # replaced the old); it waited, as every node does, for the cluster to answer.
    head_ops = [op for op in result.changed_operations(HEAD) if "Wait until the head answers" not in op]
    assert len(head_ops) == 1 and "ssh_known_hosts" in head_ops[0], head_ops

    assert image_id(WORKER, standin_tag()) == image_id(HEAD, standin_tag())  # loaded, not rebuilt
    # Identical, less the format folder no engine here reads.
    assert tree_digest(WORKER, MODEL_DIR) == tree_digest(HEAD, MODEL_DIR, LEFT_BEHIND)
    assert tree_digest(WORKER, MODEL_DIR) != tree_digest(HEAD, MODEL_DIR)
    # The copy showed its progress and its figures close the run.
    assert re.search(r"copying deepseek-ai/DeepSeek-V4-Flash: \d+ streams over 2 rail\(s\) from spark-1",
                     result.output), result.output[-6000:]
    assert "--> Copies over QSFP in this run:" in result.output
    assert re.search(r"deepseek-ai/DeepSeek-V4-Flash -> spark-2: [0-9.]+ [GM]iB in \d+ s", result.output), \
        result.output[-3000:]
    wait_serving_healthy()
    # The worker's engine started without compiling: it found the head's artifact.
    worker_cache, head_cache = compile_cache(WORKER), compile_cache(HEAD)
    assert worker_cache["outcome"] == "hit", worker_cache
    assert worker_cache["sha256"] == head_cache["sha256"], (worker_cache, head_cache)
    assert worker_cache["compiled_on"] == head_cache["compiled_on"], (worker_cache, head_cache)
    worker_log = as_root(WORKER, "docker logs spark-serving 2>&1").stdout
    assert "compile cache HIT" in worker_log and "compile cache MISS" not in worker_log, worker_log[-3000:]
    code, entries, output = verify(lab2, tmp_path / "rebuilt.json")
    assert code == 0, output[-6000:]
    # The head cannot serve without its worker (tensor parallel): its watcher
    # restarted it when the worker vanished, and it waited for the new one.
    assert "restart the head engine" in journal(HEAD, WATCH_UNIT, since)
    assert boot_count(HEAD) == head_boots

    again = deploy(lab2)
    assert again.returncode == 0 and again.grand_total()["changed"] == 0, again.output[-6000:]


NVIDIA_FILE = "/etc/netplan/40-cx7.yaml"


@pytest.mark.extended
def test_ports_another_configuration_claims_stop_that_node_until_takeover_moves_them_aside(lab2):
    """A user who followed NVIDIA's playbook first: its netplan file and
    NetworkManager profiles own the worker's QSFP ports."""
    lab("plant-nvidia", WORKER)
    planted = as_root(WORKER, f"ls {NVIDIA_FILE} /etc/NetworkManager/system-connections/").stdout.split()
    profiles = [name for name in planted if name.endswith(".nmconnection")]
    assert profiles, planted
    digest = f"sha256sum {NVIDIA_FILE} /etc/NetworkManager/system-connections/*.nmconnection | cut -d' ' -f1 | sort"
    before = as_root(WORKER, digest).stdout.split()

    stopped = deploy(lab2)
    assert stopped.returncode != 0
    worker_text = "\n".join(stopped.host_lines(WORKER)) or stopped.output
    for name in (NVIDIA_FILE, *profiles, "qsfp_takeover = True"):
        assert name in worker_text, (name, stopped.output[-6000:])
    assert not stopped.changed_operations(WORKER), stopped.changed_operations(WORKER)
    assert not any("Error" in line for line in stopped.host_lines(HEAD)), stopped.host_lines(HEAD)

    taken = deploy(lab2, "--data", "qsfp_takeover=true")
    assert taken.returncode == 0, taken.output[-6000:]
    assert any("Move other QSFP configurations aside" in op for op in taken.changed_operations(WORKER))
    # Nothing deleted: every planted file sits, unchanged, in the backup, with its way back.
    assert as_root(WORKER, f"test ! -e {NVIDIA_FILE}", check=False).returncode == 0
    backup = as_root(WORKER, "ls -d /etc/spark-cluster/takeover/*/").stdout.split()
    assert len(backup) == 1, backup
    kept = as_root(WORKER, f"cd {backup[0]} && sha256sum .{NVIDIA_FILE} "
                           "./etc/NetworkManager/system-connections/*.nmconnection | cut -d' ' -f1 | sort").stdout.split()
    assert kept == before
    assert as_root(WORKER, f"stat -c %a {backup[0]} {backup[0]}restore.sh").stdout.split() == ["700", "700"]

    again = deploy(lab2)
    assert again.returncode == 0 and again.grand_total()["changed"] == 0, again.output[-6000:]


@pytest.mark.extended
def test_bond_mode_is_one_line_away_and_converges_reruns_and_verifies(tmp_path):
    """inventory/lab2_bond.py: the same lab with network_mode = "bond"."""
    before = {node: boot_count(node) for node in NODES}
    result = deploy(BOND_INVENTORY)
    assert result.returncode == 0, result.output[-6000:]
    assert result.grand_total()["changed"] > 0
    again = deploy(BOND_INVENTORY, "-v")
    assert again.returncode == 0 and again.grand_total()["changed"] == 0, again.output[-6000:]
    assert {node: boot_count(node) for node in NODES} == before
    for node in NODES:
        slaves = on_node(node, "cat /sys/class/net/bond0/bonding/slaves").stdout.split()
        assert sorted(slaves) == sorted(RAILS), (node, slaves)
    wait_serving_healthy()
    code, entries, output = verify(BOND_INVENTORY, tmp_path / "bond.json")
    assert code == 0, output[-6000:]
    assert (WORKER, LINKS_CHECK) in {(e["node"], e["check"]) for e in entries if e["outcome"] == "passed"}
