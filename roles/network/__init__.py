"""QSFP network: bond0 over the QSFP ports, with the node's cluster address.

Desired state:
- the QSFP ports exist and at least one has link (else this host fails first);
- netplan.io and ping are installed;
- /etc/netplan/40-spark-cluster.yaml (0600 root) defines the bond, its slaves
  (MTU, no DHCP) and the static address; no gateway, so the management NIC
  keeps the default route; no other netplan file is touched;
- the live bond matches that file: netplan is applied only when the file
  changed or the bond drifted (address flushed, MTU, slaves, mode);
- on the run that (re)applied it, the bond is up and every peer answers over
  it with full-MTU frames.
"""

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import PACKAGES_WANT, ensure_packages, fail_host

from .checks import bond_drift, bond_needs_recreate, bond_up_command, hardware_problem
from .facts import QsfpLinks
from .netplan import render_netplan
from .settings import network_settings

PACKAGES = ["netplan.io", "iputils-ping"]


def _links(s):
    return want(QsfpLinks, interfaces=s.qsfp_interfaces, bond=s.bond_name)


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    s = network_settings(host.data)
    return [_links(s), PACKAGES_WANT, snapshot_want([s.netplan_file])]


@deploy("network: bond over the QSFP ports")
def apply():
    s = network_settings(host.data)
    links = host_fact(_links(s))

    problem = hardware_problem(host.name, s, links)
    if problem:
        fail_host("Check the QSFP hardware", problem)
        return

    ensure_packages("Install netplan and ping", PACKAGES)

    netplan_file = Snapshot([s.netplan_file]).put(
        name=f"Describe {s.bond_name} in {s.netplan_file}",
        src=StringIO(render_netplan(s)),
        dest=s.netplan_file,
        user="root",
        group="root",
        mode="600",
    )

    apply_commands = ["netplan generate"]  # validates every netplan file before touching a link
    if bond_needs_recreate(s, links):
        apply_commands.append(f"ip link delete {shlex.quote(s.bond_name)}")
    apply_commands.append("netplan apply")
    # An unchanged file cannot notice a live bond that drifted (address
    # flushed, MTU, slaves): then netplan is applied regardless.
    drift = bond_drift(s, links)
    applied = server.shell(
        name="Apply netplan (validated first)",
        commands=apply_commands,
        _if=None if drift else any_changed(netplan_file),
    )

    server.shell(
        name=f"Wait for {s.bond_name} and ping every peer over it",
        commands=[bond_up_command(s)],
        _if=any_changed(applied),
    )
