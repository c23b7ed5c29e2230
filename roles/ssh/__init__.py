"""SSH between the nodes over the QSFP link, with verified host keys.

Desired state (admin = the SSH login user):
- one ed25519 key pair per cluster, made once on the controller
  (~/.local/share/spark-cluster/<cluster_name>/, or $SPARK_CLUSTER_STATE_DIR/<cluster_name>/);
- ~admin/.ssh 0700; the private key at ~admin/.ssh/id_ed25519_spark_cluster
  (0600) and its .pub (0644), owned by the admin; the public key authorized in
  ~admin/.ssh/authorized_keys, other keys kept;
- a managed block at the top of ~admin/.ssh/config (0600): per peer, a Host
  entry matching its name and QSFP address, using the cluster key and
  StrictHostKeyChecking yes (never "no", never accept-new);
- a managed block in /etc/ssh/ssh_known_hosts (0644 root) with every member's
  host keys (itself included) under "<name>,<qsfp_ip>".

Host keys are read from each member during this run, so a reinstalled node's
new keys replace the old ones everywhere on the next full run. A member not
connected in this run (outside --limit, unreachable) keeps the keys the
block already lists for it: a limited run never erases a peer.
"""

from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.util import get_file_sha1
from pyinfra.facts.files import Block
from pyinfra.operations import files, server

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact, member_fact
from spark_cluster.cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS
from spark_cluster.file_state import UNCHANGED, Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.settings import cluster_settings

from .defaults import CONFIG_MARKER, KNOWN_HOSTS_MARKER
from .facts import HostPublicKeys
from .keys import ensure_cluster_key
from .render import keys_by_name, known_hosts_text, ssh_config_text
from .secret import private_file


KNOWN_HOSTS_BLOCK = want(Block, path=SYSTEM_KNOWN_HOSTS, marker=KNOWN_HOSTS_MARKER)
HOST_KEYS = want(HostPublicKeys)


def _config_block(ssh_dir):
    return want(Block, path=f"{ssh_dir}/config", marker=CONFIG_MARKER)


def _managed(ssh_dir, public_line):
    """(files and directories, whole lines) of the admin's SSH files this role manages."""
    private_key = f"{ssh_dir}/{KEY_NAME}"
    managed = [ssh_dir, private_key, f"{private_key}.pub", f"{ssh_dir}/authorized_keys", f"{ssh_dir}/config",
               SYSTEM_KNOWN_HOSTS]
    return managed, {f"{ssh_dir}/authorized_keys": [public_line]}


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    reads = [HOST_KEYS, KNOWN_HOSTS_BLOCK]
    admin = account()
    if admin:
        ssh_dir = f"{admin['home']}/.ssh"
        key = ensure_cluster_key(cluster_settings(host.data).cluster_name)
        reads += [snapshot_want(*_managed(ssh_dir, key.public_line)), _config_block(ssh_dir)]
    return reads


def recorded_known_hosts():
    """The lines of this node's known_hosts block, as the run found it."""
    return host_fact(KNOWN_HOSTS_BLOCK)


def cluster_host_keys():
    """{name: (qsfp_ip, [keys])} for every member, live keys first, else what
    this node's known_hosts block already holds for that member."""
    live = member_fact(HOST_KEYS)
    recorded = keys_by_name(recorded_known_hosts())
    members = {}
    for member in host.data.cluster_members:
        name = member["name"]
        keys = live.get(name) or recorded.get(name)
        if not keys:
            logger.warning(f"{host.print_prefix}ssh: no host keys known for {name} (not connected this run)")
            continue
        members[name] = (member["qsfp_ip"], keys)
    return members


def _block(recorded, **arguments):
    """files.block, only when the block does not already hold exactly `content`
    (files.block asks the node twice to find out)."""
    if (recorded or []) == arguments["content"].split("\n"):
        return UNCHANGED
    return files.block(**arguments)


def _known_hosts(members, paths: Snapshot):
    text = known_hosts_text(members).rstrip("\n")
    if not text:
        return
    block = _block(
        recorded_known_hosts(),
        name=f"Host keys of every node in {SYSTEM_KNOWN_HOSTS}",
        path=SYSTEM_KNOWN_HOSTS,
        content=text,
        marker=KNOWN_HOSTS_MARKER,
    )
    paths.perms(
        name=f"{SYSTEM_KNOWN_HOSTS} readable by every user",
        path=SYSTEM_KNOWN_HOSTS,
        user="root",
        group="root",
        mode="644",
        after=[block],
    )


def _authorize(paths: Snapshot, public_line, user, group, ssh_dir):
    authorized = f"{ssh_dir}/authorized_keys"
    if paths.has_line(authorized, public_line) and paths.owned(authorized, "file", user, group, mode="600"):
        return
    server.user_authorized_keys(
        name="Cluster key may log in as the admin",
        user=user,
        group=group,
        public_keys=[public_line],
        authorized_key_directory=ssh_dir,
    )


@deploy("ssh: node-to-node SSH over QSFP with verified host keys")
def apply():
    s = cluster_settings(host.data)
    account = admin_account(s.ssh_user)
    if account is None:
        fail_host("Find the admin user's home", f"ssh: admin user {s.ssh_user!r} not found on {host.name}")
        return
    user, group, ssh_dir = s.ssh_user, account["group"], f"{account['home']}/.ssh"
    key = ensure_cluster_key(s.cluster_name)
    private_key = f"{ssh_dir}/{KEY_NAME}"

    config = f"{ssh_dir}/config"
    paths = Snapshot(*_managed(ssh_dir, key.public_line))

    paths.directory(name="~/.ssh is the admin's alone", path=ssh_dir, user=user, group=group, mode="700")
    private = UNCHANGED
    if not paths.holds(private_key, get_file_sha1(str(key.private_path))):
        private = private_file(
            name="Cluster private key",
            src=str(key.private_path),
            dest=private_key,
            _sudo=False,  # straight into the 0700 ~/.ssh, never through /tmp
        )
    paths.perms(name="Cluster private key is the admin's alone", path=private_key,
                user=user, group=group, mode="600", after=[private])
    paths.put(
        name="Cluster public key",
        src=StringIO(key.public_line + "\n"),
        dest=f"{private_key}.pub",
        user=user,
        group=group,
        mode="644",
    )
    _authorize(paths, key.public_line, user, group, ssh_dir)
    config_block = _block(
        host_fact(_config_block(ssh_dir)),
        name="Peers in ~/.ssh/config: QSFP address, cluster key, strict host keys",
        path=config,
        content=ssh_config_text(host.data.peers, user, private_key).rstrip("\n"),
        marker=CONFIG_MARKER,
        before=True,
        after=True,
    )
    paths.perms(name="~/.ssh/config is the admin's", path=config, user=user, group=group, mode="600",
                after=[config_block])
    _known_hosts(cluster_host_keys(), paths)
