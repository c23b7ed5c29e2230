"""End to end on the 2-node lab, in order: converge, no-op, verify, reboot,
break and repair, and a node with missing hardware. Each test builds on the
state the previous one left, as a user's session would."""

import pytest

from labsupport import (
    as_root,
    boot_count,
    container_started_at,
    deploy,
    failed_checks,
    head_healthy,
    image_id,
    lab,
    on_node,
    outcomes,
    tree_digest,
    verify,
    wait_for,
)

from roles.distribute.plan import model_cache_dir
from spark_cluster.caches import hf_home
from spark_cluster.engine_image import standin_tag

NODES = ["spark-1", "spark-2"]
HEAD, WORKER = NODES
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
"""

pytestmark = pytest.mark.lab


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
    assert {node: boot_count(node) for node in NODES} == before


def test_verification_suite_is_green_on_the_converged_lab(lab2, tmp_path):
    wait_serving_healthy()
    code, entries, output = verify(lab2, tmp_path / "verify.json")
    assert code == 0, output[-6000:]
    checks = {entry["check"] for entry in entries if entry["outcome"] == "passed"}
    for check in ("bond", "roce_gid", "memlock", "infiniband", "drm_override", "env_file",
                  "serving_unit", "ping_mtu", "ssh_mesh", "rdma", "openai_endpoint"):
        assert check in checks, (check, sorted(checks))


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
# bond goes last: without it the QSFP side, and so ssh_mesh, is gone), so every
# check is shown to catch its own breakage, not a neighbour's.
BREAKAGES = [
    ("ssh_mesh", "sed -i '/spark-cluster/d' /home/spark/.ssh/authorized_keys", "authorized_keys"),
    ("env_file", "chmod 0644 /etc/spark-cluster/serving.env", "found mode 0644"),
    ("drm_override", "echo 'options nvidia-drm modeset=1 fbdev=1' > /etc/modprobe.d/zz-nvidia-drm-override.conf",
     "expected absent, found present"),
    ("memlock", "rm -f /etc/systemd/system/docker.service.d/90-spark-cluster-memlock.conf && "
                "systemctl daemon-reload && systemctl restart docker", "docker.service drop-in"),
    ("serving_unit", "systemctl stop spark-serving", "spark-serving.service: expected active, found"),
    ("bond", "ip address flush dev bond0", "bond0 IPv4: expected 10.0.0.2/24, found no address"),
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
    # there after the worker was stopped, the head's env file is 0600 again.
    as_root(HEAD, "chmod 0644 /etc/spark-cluster/serving.env")
    as_root(WORKER, "rdma link delete rocep1s0f0; rdma link delete rocep1s0f1")
    try:
        result = deploy(lab2)
        assert result.returncode != 0
        assert any("no RoCE device" in line for line in result.host_lines(WORKER)) or (
            "no RoCE device" in result.output
        ), result.output[-6000:]
        head_lines = result.host_lines(HEAD)
        assert head_lines and not any("Error" in line for line in head_lines), head_lines
        assert any("Serving environment" in op for op in result.changed_operations(HEAD)), result.output[-6000:]
        assert as_root(HEAD, "stat -c %a /etc/spark-cluster/serving.env").stdout.strip() == "600"
        assert not result.changed_operations(WORKER), result.changed_operations(WORKER)
    finally:
        as_root(WORKER, "rdma link add rocep1s0f0 type rxe netdev enp1s0f0np0; "
                        "rdma link add rocep1s0f1 type rxe netdev enp1s0f1np1", check=False)


def test_a_rebuilt_node_rejoins_with_one_command_and_receives_model_and_image_over_qsfp(lab2, tmp_path):
    # The model was staged on the head only (as a user downloads it once).
    on_node(HEAD, PLANT_MODEL)
    head_started = container_started_at(HEAD)
    head_boots = boot_count(HEAD)
    lab("rebuild", WORKER, timeout=900)
    assert boot_count(WORKER) == 1  # a fresh disk: this is its first boot

    result = deploy(lab2)
    assert result.returncode == 0, result.output[-6000:]
    worker_ops = result.changed_operations(WORKER)
    assert any(f"Load {standin_tag()} from {HEAD} over QSFP" in op for op in worker_ops), worker_ops
    assert any("Copy deepseek-ai/DeepSeek-V4-Flash from spark-1 over QSFP" in op for op in worker_ops), worker_ops
    assert not any("Build the stand-in" in op for op in worker_ops), worker_ops
    # On the head only its peers' host keys changed: the worker's new key replaced the old.
    head_ops = result.changed_operations(HEAD)
    assert len(head_ops) == 1 and "ssh_known_hosts" in head_ops[0], head_ops

    assert image_id(WORKER, standin_tag()) == image_id(HEAD, standin_tag())  # loaded, not rebuilt
    assert tree_digest(WORKER, MODEL_DIR) == tree_digest(HEAD, MODEL_DIR)
    wait_serving_healthy()
    code, entries, output = verify(lab2, tmp_path / "rebuilt.json")
    assert code == 0, output[-6000:]
    assert container_started_at(HEAD) == head_started  # the head kept serving throughout
    assert boot_count(HEAD) == head_boots

    again = deploy(lab2)
    assert again.returncode == 0 and again.grand_total()["changed"] == 0, again.output[-6000:]
