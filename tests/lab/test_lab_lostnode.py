"""A worker powered off in the middle of a deploy (issue 15): the head still
finishes its run, the run ends naming the lost worker and the command to run
again, and once the worker is back one more deploy converges it.

The field report: a worker's VM killed during the network role made pyinfra
raise `ConnectError: Unable to establish SFTP connection` out of that host's
greenlet and abort the whole run (spark_cluster/lost_nodes.py, docs/design.md
"A node lost mid-run").

To give the network role work on the worker without a rebuild or a reboot,
the test deletes the worker's netplan file: the live links keep their
addresses, and the next deploy uploads the file again (the very SFTP upload
of the report), applies netplan and waits for the links. The worker's VM is
killed when the deploy starts that upload. The head gets work after the
network role too (a cache directory's mode put wrong, which the caches role
puts right), so its run visibly goes on after the loss.
"""

import re

import pytest

from labsupport import ANSI, as_root, deploy, deploy_losing, head_healthy, lab, wait_for

pytestmark = pytest.mark.lab

HEAD, WORKER = "spark-1", "spark-2"
NETPLAN = "/etc/netplan/40-spark-cluster.yaml"
# The network role's upload of the netplan file (roles/network: Snapshot.put).
MARKER = r"Starting operation: .*Describe the QSFP links in /etc/netplan/40-spark-cluster\.yaml"
# A directory the caches role owns, on the head (lab admin: spark; cache_dir_mode 755).
HEAD_CACHE = "/home/spark/.cache/spark-cluster/tilelang"


@pytest.mark.extended
def test_a_worker_lost_mid_deploy_fails_alone_and_one_more_deploy_converges_it(lab2):
    start = deploy(lab2)  # this file may run on its own: start from a converged lab
    assert start.returncode == 0, start.output[-6000:]
    as_root(WORKER, f"rm -f {NETPLAN}")
    as_root(HEAD, f"chmod 700 {HEAD_CACHE}")

    lost, killed_at = deploy_losing(lab2, WORKER, MARKER)
    text = ANSI.sub("", lost.output)
    after_kill = text[text.index(killed_at):]

    # Not an abort: no pyinfra error; pyinfra exits 1 since a host failed.
    assert lost.returncode == 1, text[-6000:]
    assert "--> pyinfra error" not in text and "UnexpectedInternalError" not in text, text[-6000:]
    assert "--> Results:" in text, text[-6000:]
    # The head ran on after the loss, to the end of the deploy, without an error.
    assert any(f"Cache directory {HEAD_CACHE}" in op for op in lost.changed_operations(HEAD)), text[-6000:]
    assert re.search(r"Starting operation: .*caches: ", after_kill), after_kill[-6000:]
    assert not [line for line in lost.host_lines(HEAD) if "Error" in line], lost.host_lines(HEAD)
    assert as_root(HEAD, f"stat -c %a {HEAD_CACHE}").stdout.strip() == "755"
    # The run ends naming the lost worker, and what to run again.
    summary = [line.strip() for line in text.splitlines() if line.startswith("--> lost mid-run: ")]
    assert len(summary) == 1 and summary[0].startswith(f"--> lost mid-run: {WORKER} (its SSH connection dropped"), \
        text[-3000:]
    assert HEAD not in summary[0].split(" (", 1)[0]
    rerun = [line for line in text.splitlines() if line.startswith("--> Run again once ")]
    assert len(rerun) == 1 and f"{WORKER} answers SSH" in rerun[0] and rerun[0].rstrip().endswith(f"{lab2} deploy.py"), \
        rerun

    # Power back on (`lab up` starts only the stopped node, on its own disk).
    lab("up", "--nodes", "2", timeout=1800)
    again = deploy(lab2)
    assert again.returncode == 0, again.output[-6000:]
    assert as_root(WORKER, f"test -s {NETPLAN}", check=False).returncode == 0
    # The head's watcher restarted its engine when the worker vanished; with the
    # worker back the cluster answers again, with no command.
    wait_for(lambda: head_healthy(HEAD), 900, what="head /health = 200 with the worker joined again")
    converged = deploy(lab2)
    assert converged.returncode == 0 and converged.grand_total()["changed"] == 0, converged.output[-6000:]
