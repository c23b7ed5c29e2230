"""The QSFP network, undone: the ports are the owner's again, configured as
they were before the deploy.

Desired state after it:
- /etc/netplan/40-spark-cluster.yaml, the ARP sysctl file and
  NetworkManager's conf.d file naming the ports unmanaged are gone;
- every configuration a deploy moved aside (qsfp_takeover, or an adopted
  netplan file) is back where it was, through its backup's restore.sh; a
  backup that cannot go back (its path exists again) stays, and the closing
  check names it: nothing of the owner's is ever deleted;
- our bond and our addresses are off the ports (an address the inventory
  gives a port that another configuration claims, as the owner's file put back
  does, is the owner's and stays), netplan has applied what is left,
  NetworkManager manages again every port netplan does not give to
  networkd, and ARP is answered as the kernel (and the remaining sysctl files)
  say.
Not undone: the live MTU stays until the owner's configuration sets one or
the next boot; netplan.io and ping stay installed (DGX OS ships them).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.fabric import QSFP_NETDEVS
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.qsfp_owners import OWN_NETPLAN_FILE, TAKEOVER_DIR, owners_want
from spark_cluster.shipped import shipped_command
from spark_cluster.uninstall import addresses_to_release, bonds_to_delete, netplan_links, release_args

from .checks import NM_UNMANAGED_FILE, our_netdevs
from .facts import QsfpLinks
from .settings import SYSCTL_FILE, network_settings

# Shipped with the role and run by the unit tests against temporary trees and stub tools.
RESTORE = Path(__file__).parent / "files" / "takeover_restore.sh"
RELEASE = Path(__file__).parent / "files" / "qsfp_release.sh"
OWNED_FILES = [OWN_NETPLAN_FILE, SYSCTL_FILE, NM_UNMANAGED_FILE]
OWNED_PATHS = [*OWNED_FILES, TAKEOVER_DIR]
OWN_NETPLAN = want(FileContents, path=OWN_NETPLAN_FILE)


def _links(s):
    # The bond is looked for under its name whatever the mode: a cluster
    # switched back from bond mode may still carry it.
    return want(QsfpLinks, names=list(dict.fromkeys([*QSFP_NETDEVS, s.bond_name])))


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    return [snapshot_want(OWNED_PATHS), OWN_NETPLAN, _links(network_settings(host.data)), owners_want()]


def release_plan(s, netplan_lines, links, claims):
    """(addresses, bonds, ports) to release: what our file configures, or the
    inventory says it would on a port no other configuration claims (claims:
    the QsfpOwners fact), that the ports still carry; the ports to hand back
    to NetworkManager. Once the owner's file is back it gives a port the very
    address the inventory does (NVIDIA's layout is ours): that one is theirs."""
    configured = netplan_links(netplan_lines)
    claimed = {netdev for claim in claims for netdev in claim.netdevs}
    fabric_addresses = [(link.netdev, link.address) for link in s.fabric.links if link.netdev not in claimed]
    addresses = addresses_to_release([*configured["addresses"], *fabric_addresses], links)
    bonds = bonds_to_delete([*configured["bonds"], s.bond_name], links)
    ports = [name for name in dict.fromkeys([*configured["netdevs"], *our_netdevs(s)]) if name in QSFP_NETDEVS]
    return addresses, bonds, ports


@deploy("network: uninstall the QSFP configuration, restore what it moved aside")
def apply():
    s = network_settings(host.data)
    paths = Snapshot(OWNED_PATHS)
    # Read before the file goes: it says exactly what the deploy configured.
    addresses, bonds, ports = release_plan(s, host_fact(OWN_NETPLAN), host_fact(_links(s)), host_fact(owners_want()))
    removed = [paths.absent(name=f"Remove {path}", path=path) for path in OWNED_FILES if paths.get(path)]
    if paths.get(TAKEOVER_DIR):
        server.shell(name=f"Put back the QSFP configurations moved aside under {TAKEOVER_DIR}",
                     commands=[shipped_command(RESTORE, TAKEOVER_DIR)])
    if removed or paths.get(TAKEOVER_DIR) or addresses or bonds:
        server.shell(name="Release the QSFP ports: our bond and addresses off, netplan applied, "
                          "NetworkManager's ports back",
                     commands=[shipped_command(RELEASE, *release_args(addresses, bonds, ports))])
