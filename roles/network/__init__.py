"""QSFP network: the node's rails and control address, in the configured network mode.

Desired state:
- every rail (each PCIe half of each cabled QSFP port, spark_cluster/fabric.py)
  exists and has link (per qsfp_carrier_required), else this host fails first;
- no other configuration claims a QSFP netdev (other netplan files such as
  NVIDIA's 40-cx7.yaml, NetworkManager profiles, networkd files): else this
  host stops before any change, naming them, unless qsfp_takeover is on; then
  they are moved aside under takeover_dir (never deleted, restore.sh beside
  them). A netplan file with exactly our rail addresses is adopted that way
  without the setting: netplan must never merge two files for one port;
- netplan.io and ping are installed;
- /etc/netplan/40-spark-cluster.yaml (0600 root) describes the mode's links:
  "dual_subnet" one address per rail on its own subnet, "bond" bond0 over the
  rails with the node's one address; MTU on all, no DHCP, no gateway (the
  management NIC keeps the default route), renderer networkd per device (so
  netplan tells DGX OS's NetworkManager to leave exactly these ports alone and
  an NM restart cannot touch them; every other interface keeps NM); a running
  NetworkManager lets go of them at once (files/nm_release.sh), and its own
  conf.d file names them unmanaged, so no boot can race it;
- ARP is answered only on the netdev that holds the address (sysctl file);
- the live links match that file: netplan is applied only when the file
  changed or the links drifted (address flushed, MTU, slaves, mode, a leftover bond);
- on the run that (re)applied it, every link is up and every peer answers on
  each link's subnet with full-MTU frames.
"""

import time
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import PACKAGES_WANT, ensure_packages, fail_host
from spark_cluster.lost_nodes import failed_this_run

from .checks import (NM_UNMANAGED_FILE, hardware_problem, link_up_commands, nm_drift, nm_present,
                     nm_release_command, render_nm_unmanaged)
from .facts import QsfpLinks
from .netplan import mode_role, render_netplan, render_sysctl
from spark_cluster.qsfp_owners import TAKEOVER_DIR, owners_want, refusal, takeover_command, verdict
from .settings import network_settings

PACKAGES = ["netplan.io", "iputils-ping"]
# One backup directory per run that takes ports over (UTC, sortable).
RUN_STAMP = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _links(s):
    return want(QsfpLinks, names=s.watched)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    s = network_settings(host.data)
    return [_links(s), owners_want(), PACKAGES_WANT, snapshot_want([s.netplan_file, s.sysctl_file, NM_UNMANAGED_FILE])]


def _move_other_owners(s):
    """Takes the QSFP ports over from other configurations, or stops this host
    (preflight already stopped it in a full deploy). Returns the operations
    that moved something (netplan must then be applied again), or None when
    this host stopped."""
    claims = host_fact(owners_want())
    decision = verdict(claims, s.fabric, s.qsfp_takeover)
    if decision == "none":
        return []
    if decision == "refuse":
        fail_host("Check for other owners of the QSFP ports", refusal(host.name, claims))
        return None
    why = "adopted: it holds exactly our rail addresses" if decision == "adopt" else "qsfp_takeover is on"
    return [server.shell(
        name=f"Move other QSFP configurations aside ({why}; backed up, restorable)",
        commands=[takeover_command(claims, f"{TAKEOVER_DIR}/{RUN_STAMP}")],
    )]


@operation()
def wait_for_links(s, peers: list[dict]):
    """link_up_commands, built when it runs: a peer lost or failed earlier in
    this run (spark_cluster.lost_nodes) is not waited for."""
    lost = failed_this_run(host.state, other_than=host.name)
    if lost:
        host.noop(f"not waiting for {', '.join(lost)}: lost or failed earlier in this run")
    yield from link_up_commands(s, peers, lost)


@deploy("network: the QSFP rails")
def apply():
    s = network_settings(host.data)
    links = host_fact(_links(s))

    problem = hardware_problem(host.name, s, links)
    if problem:
        fail_host("Check the QSFP hardware", problem)
        return
    moved = _move_other_owners(s)
    if moved is None:
        return

    ensure_packages("Install netplan and ping", PACKAGES)

    paths = Snapshot([s.netplan_file, s.sysctl_file, NM_UNMANAGED_FILE])
    sysctl = paths.put(
        name=f"ARP per netdev: {s.sysctl_file}",
        src=StringIO(render_sysctl()), dest=s.sysctl_file, user="root", group="root", mode="644",
    )
    server.shell(
        name="Load the ARP settings",
        commands=[f"sysctl -q -p {s.sysctl_file}"],
        _if=any_changed(sysctl),
    )
    netplan_file = paths.put(
        name=f"Describe the QSFP links in {s.netplan_file}",
        src=StringIO(render_netplan(s)), dest=s.netplan_file, user="root", group="root", mode="600",
    )

    if nm_present(links):
        paths.put(
            name=f"NetworkManager leaves the QSFP links alone from boot on: {NM_UNMANAGED_FILE}",
            src=StringIO(render_nm_unmanaged(s)), dest=NM_UNMANAGED_FILE, user="root", group="root", mode="644",
        )

    mode = mode_role(s)
    # netplan generate validates every netplan file before a link is touched.
    apply_commands = ["netplan generate", *mode.before_apply(s, links), "netplan apply", nm_release_command(s)]
    # An unchanged file cannot notice live links that drifted (address
    # flushed, MTU, slaves): then netplan is applied regardless. A file moved
    # aside changes what netplan merges, so it is applied then too.
    drift = mode.drift(s, links) + nm_drift(s, links)
    applied = server.shell(
        name="Apply netplan (validated first)",
        commands=apply_commands,
        _if=None if drift else any_changed(netplan_file, *moved),
    )

    wait_for_links(
        name="Wait for the QSFP links and ping every peer on each",
        s=s, peers=host.data.get("peers") or [],
        _if=any_changed(applied),
    )
