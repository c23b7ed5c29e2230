"""uninstall.py on the 2-node lab: it leaves no spark-cluster unit, file or
netplan on the nodes, puts back what a takeover moved aside, keeps the model
and the image, a second uninstall changes nothing, and a deploy after it
converges again without a reboot (the DRM override is never put back), after
which one more deploy changes nothing.

Runs after test_lab_cluster.py in the same session (a converged lab). The
uninstall runs pyinfra on uninstall.py directly, as labsupport.deploy runs
deploy.py: the `spark-cluster uninstall` subcommand wraps exactly this, and
calling pyinfra keeps this test independent of the CLI's own options.
"""

import shlex
import sys

import pytest

from labsupport import DeployResult, as_root, boot_count, deploy, image_id, on_node, run

from roles import leftovers
from spark_cluster.engine_image import standin_tag
from spark_cluster.fabric import QSFP_NETDEVS
from spark_cluster.qsfp_owners import OWN_NETPLAN_FILE, TAKEOVER_DIR

pytestmark = pytest.mark.lab

INVENTORY = "inventory/lab2.py"
NODES = ["spark-1", "spark-2"]
HEAD = NODES[0]
HOME = "/home/spark"
# test_lab_cluster.py's takeover scenario plants NVIDIA's playbook file on a worker.
NVIDIA_FILE = "/etc/netplan/40-cx7.yaml"
# Our rails' subnets in the lab (group_data's default qsfp_subnets).
OUR_SUBNETS = ("192.168.100.", "192.168.101.", "192.168.102.", "192.168.103.")


def uninstall(inventory: str, *extra: str, timeout=1200) -> DeployResult:
    result = run([sys.executable, "-m", "pyinfra", "-y", inventory, "uninstall.py", *extra], timeout=timeout)
    return DeployResult(result.returncode, result.stdout + result.stderr)


def present(node: str, paths: list[str]) -> list[str]:
    """The paths that exist on `node` (as root: some are under 0700 directories)."""
    script = "; ".join(f"[ -e {shlex.quote(p)} ] && echo {shlex.quote(p)}" for p in paths) + "; true"
    return as_root(node, script).stdout.split()


def test_a_dry_uninstall_plans_the_removals_and_changes_nothing(lab2):
    """Fast: the facts parse on real nodes and the plan names what goes; nothing is touched."""
    result = run([sys.executable, "-m", "pyinfra", "--dry", lab2, "uninstall.py"], timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for words in ("Stop and disable spark-serving-watch.service", "Stop and disable spark-serving.service",
                  f"Remove {OWN_NETPLAN_FILE}", "Release the QSFP ports"):
        assert words in output, (words, output[-6000:])
    for node in NODES:
        assert as_root(node, "systemctl is-active spark-serving-watch.service").stdout.strip() == "active"
        assert present(node, [OWN_NETPLAN_FILE]) == [OWN_NETPLAN_FILE]


@pytest.mark.extended
def test_uninstall_leaves_nothing_then_a_deploy_converges_again_without_a_reboot(lab2):
    boots = {node: boot_count(node) for node in NODES}
    images = {node: image_id(node, standin_tag()) for node in NODES}
    # A takeover earlier in the session (test_lab_cluster's extended scenario) left a backup.
    took_over = {node: bool(present(node, [TAKEOVER_DIR])) for node in NODES}

    result = uninstall(lab2)
    assert result.returncode == 0, result.output[-6000:]
    assert result.grand_total()["errors"] == 0

    for node in NODES:
        units = as_root(node, "systemctl list-unit-files --no-legend 'spark-*' || true").stdout.split()
        assert units == [], (node, units)
        assert present(node, leftovers.owned_paths(HOME)) == [], node
        netplan = as_root(node, "ls /etc/netplan").stdout.split()
        assert "40-spark-cluster.yaml" not in netplan, (node, netplan)
        assert as_root(node, "ip link show bond0", check=False).returncode != 0, node
        authorized = on_node(node, "cat ~/.ssh/authorized_keys").stdout
        assert "spark-cluster@" not in authorized and authorized.strip(), node  # the lab's own key stays
        assert "spark-cluster host keys" not in as_root(node, "cat /etc/ssh/ssh_known_hosts || true").stdout
        # Data stays: the engine image (and the caches) are still there.
        assert image_id(node, standin_tag()) == images[node]
        assert present(node, [f"{HOME}/.cache/spark-cluster", f"{HOME}/.cache/huggingface"]) == [
            f"{HOME}/.cache/spark-cluster", f"{HOME}/.cache/huggingface"]
        if took_over[node]:
            # What the takeover moved aside is back where the owner had it.
            assert present(node, [NVIDIA_FILE]) == [NVIDIA_FILE], node
        else:
            # Nothing of ours on the ports: no address of our subnets.
            addresses = as_root(node, "ip -4 -o address show").stdout
            ours = [line for line in addresses.splitlines()
                    if line.split()[1] in QSFP_NETDEVS and any(s in line for s in OUR_SUBNETS)]
            assert ours == [], (node, ours)

    # A second uninstall changes nothing.
    again = uninstall(lab2)
    assert again.returncode == 0 and again.grand_total()["changed"] == 0, again.output[-6000:]

    # A deploy converges again; the restored owner configuration needs the takeover setting again.
    extra = ("--data", "qsfp_takeover=true") if any(took_over.values()) else ()
    redeployed = deploy(lab2, *extra)
    assert redeployed.returncode == 0, redeployed.output[-6000:]
    assert redeployed.grand_total()["changed"] > 0
    settled = deploy(lab2, *extra)
    assert settled.returncode == 0 and settled.grand_total()["changed"] == 0, settled.output[-6000:]
    # No reboot anywhere: the uninstall never put the DRM override back.
    assert {node: boot_count(node) for node in NODES} == boots
    for node in NODES:
        assert as_root(node, "systemctl is-active spark-serving.service").stdout.strip() == "active"
