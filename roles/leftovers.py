"""What the deploy leaves on a node, gathered from every role's uninstall
module (each names its paths from its role's own constants), and the
uninstall's closing check that none of it is left.

Not a role: uninstall.py and the lab test read it, after every role.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact
from spark_cluster.host_ops import admin_account
from spark_cluster.settings import cluster_settings
from spark_cluster.uninstall import LeftBehind, left_behind_command

from roles.network import uninstall as network
from roles.rdma import uninstall as rdma
from roles.serving import uninstall as serving
from roles.ssh import uninstall as ssh
from roles.standin import uninstall as standin

UNITS = serving.UNIT_NAMES


def owned_paths(home: str | None) -> list[str]:
    """Every path the deploy writes that an uninstall removes; those under the
    admin's home only when it is known. Kept on purpose, so not here: the
    engine caches and the Hugging Face cache (data), the model and the image
    (unless asked: roles/distribute/uninstall.py), the owner's own SSH files."""
    paths = [*serving.OWNED_PATHS, *standin.OWNED_PATHS, *rdma.OWNED_PATHS, *network.OWNED_PATHS]
    return paths + (ssh.key_files(home) if home else [])


def _left_behind(home):
    return want(LeftBehind, units=UNITS, paths=owned_paths(home))


def wants(account):
    """The facts this module reads on a node (see cluster_facts.read_ahead)."""
    admin = account()
    return [_left_behind(admin["home"] if admin else None)]


@deploy("uninstall: nothing of spark-cluster left")
def check():
    """Fails the host, naming them, when a unit or path of ours is still there
    after this run. Skipped when the run found none at its start: then it
    removed nothing, and a second uninstall changes nothing."""
    account = admin_account(cluster_settings(host.data).ssh_user)
    home = account["home"] if account else None
    if host_fact(_left_behind(home)):
        server.shell(name="Nothing of spark-cluster is left (units, files, netplan)",
                     commands=[left_behind_command(UNITS, owned_paths(home), check=True)])
