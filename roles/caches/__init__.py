"""Engine caches on the host, so a restart reuses compiled kernels.

Desired state (owner: the admin user, mode 0755):
- ~admin/.cache/spark-cluster/{vllm,triton,flashinfer,torch,tilelang};
- ~admin/.cache/huggingface, mounted at the same path inside containers.
The mount table itself lives in spark_cluster/caches.py, shared with serving.
"""

from pyinfra import host
from pyinfra.api import deploy
from spark_cluster.caches import cache_root, engine_cache_dirs, hf_home
from spark_cluster.file_state import Snapshot, snapshot_want
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.settings import cluster_settings



def _cache_dirs(home):
    return [cache_root(home), *engine_cache_dirs(home).values(), hf_home(home)]


def _managed_paths(home):
    return [f"{home}/.cache", *_cache_dirs(home)]


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    admin = account()
    return [snapshot_want(_managed_paths(admin["home"]))] if admin else []


@deploy("caches: engine and Hugging Face caches on the host")
def apply():
    s = cluster_settings(host.data)
    account = admin_account(s.ssh_user)
    if account is None:
        fail_host(
            "Find the admin user's home",
            f"caches: admin user {s.ssh_user!r} not found on {host.name} (set ssh_user in the inventory)",
        )
        return
    home, group = account["home"], account["group"]

    # Parents first and as the admin: created implicitly by sudo they would
    # belong to root and lock the admin out of ~/.cache. ~/.cache keeps its mode.
    cache_dirs = _cache_dirs(home)
    paths = Snapshot(_managed_paths(home))
    paths.directory(name="~/.cache belongs to the admin", path=f"{home}/.cache", user=s.ssh_user, group=group)
    for path in cache_dirs:
        paths.directory(
            name=f"Cache directory {path}",
            path=path,
            user=s.ssh_user,
            group=group,
            mode=s.cache_dir_mode,
        )
