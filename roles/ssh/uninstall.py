"""Node-to-node SSH, undone: the cluster key and the managed blocks are gone,
everything else of the admin's and the system's SSH files stays.

Desired state after it:
- ~admin/.ssh/id_ed25519_spark_cluster and its .pub are gone;
- no line of ~admin/.ssh/authorized_keys carries the cluster key's comment
  (spark-cluster@<cluster_name>): the admin's own keys stay;
- the managed blocks are gone from ~admin/.ssh/config and
  /etc/ssh/ssh_known_hosts (the files themselves, and every other line, stay).
The controller's copy of the key (~/.local/share/spark-cluster/<cluster_name>)
stays: it is not on a node, and a later deploy reuses it.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from spark_cluster.cluster_facts import host_fact
from spark_cluster.cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account
from spark_cluster.settings import cluster_settings

from . import KNOWN_HOSTS_BLOCK, _config_block
from .defaults import CONFIG_MARKER, KNOWN_HOSTS_MARKER
from .keys import key_comment


def key_files(home):
    """The cluster key pair in the admin's ~/.ssh."""
    private_key = f"{home}/.ssh/{KEY_NAME}"
    return [private_key, f"{private_key}.pub"]


def authorized_line_pattern(cluster_name):
    """files.line's pattern for an authorized_keys line of the cluster key (its comment ends the line)."""
    # cluster_name holds letters, digits and _.- (spark_cluster/schema.py): only
    # the dot means something to grep and sed.
    return f"^.* {key_comment(cluster_name).replace('.', '[.]')}$"


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    reads = [KNOWN_HOSTS_BLOCK]
    admin = account()
    if admin:
        reads += [snapshot_want(key_files(admin["home"])), _config_block(f"{admin['home']}/.ssh")]
    return reads


@deploy("ssh: uninstall the cluster key and the managed blocks")
def apply():
    s = cluster_settings(host.data)
    if host_fact(KNOWN_HOSTS_BLOCK):
        files.block(name=f"Remove the cluster's host keys from {SYSTEM_KNOWN_HOSTS}", path=SYSTEM_KNOWN_HOSTS,
                    marker=KNOWN_HOSTS_MARKER, present=False)
    account = admin_account(s.ssh_user)
    if account is None:
        return  # nothing of the admin's to remove: the deploy never wrote under a home it could not find
    ssh_dir = f"{account['home']}/.ssh"
    paths = Snapshot(key_files(account["home"]))
    for path in key_files(account["home"]):
        paths.absent(name=f"Remove {path}", path=path)
    files.line(name="The cluster key may no longer log in as the admin", path=f"{ssh_dir}/authorized_keys",
               line=authorized_line_pattern(s.cluster_name), present=False)
    if host_fact(_config_block(ssh_dir)):
        files.block(name="Remove the peers from ~/.ssh/config", path=f"{ssh_dir}/config", marker=CONFIG_MARKER,
                    present=False)
