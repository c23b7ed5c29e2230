"""Warm engine compile caches travel from the image's source to nodes whose caches are empty.

Desired state: each engine cache directory (spark_cluster/caches.py: vllm,
triton, flashinfer, torch, tilelang) of a node that is EMPTY holds what the
source's holds, when the source's is not empty and both nodes run the same
image id. The image this run copies counts: a node that receives the image
ends the run with the source's id. A non-empty cache directory is never
touched, and a second run copies nothing (the directories are no longer empty).

The source is the image's source (engine_image.image_source: distribute_source,
else the first node, head first, that has the image): its caches were built by
the image every receiver runs. The caches are only valid for the same engine
build on the same GPU (docs/design.md), hence the image id test.

A copy lands in a hidden directory inside the cache first and is moved in
when whole: a copy cut short leaves the cache looking empty (that directory
aside), so the next run resumes it instead of keeping a partial cache forever.
Copied with `rsync -a` as the admin over the cluster's SSH (copy_ssh), from the
source's QSFP address.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import server

from spark_cluster.batch_fact import Want, want
from spark_cluster.caches import engine_cache_dirs
from spark_cluster.cluster_facts import member_fact
from spark_cluster.copy_ssh import copy_ssh_argv
from spark_cluster.engine_image import image_id_of, image_of, image_source, image_to_receive
from spark_cluster.host_ops import admin_account
from spark_cluster.settings import cluster_settings

# Where a copy in progress lands inside the cache directory it warms.
WARMING = ".spark-cluster-warming"
EMPTY = {"empty": True, "bytes": 0}


class CacheDirs(FactBase):
    """{path: {"empty", "bytes"}} for each cache directory; a missing one is
    empty, and so is one that holds nothing but an unfinished copy (WARMING)."""

    def command(self, paths: list[str]) -> str:
        return (
            f"for p in {' '.join(map(shlex.quote, paths))}; do if [ -d \"$p\" ]; then "
            f"printf '%s\\t%s\\t%s\\n' \"$(find \"$p\" -mindepth 1 -maxdepth 1 ! -name {WARMING} -print -quit | wc -l)\" "
            "\"$(du -sb --exclude=" + WARMING + " \"$p\" | cut -f1)\" \"$p\"; "
            "else printf '0\\t0\\t%s\\n' \"$p\"; fi; done"
        )

    def process(self, output):
        return parse_cache_dirs(output)


def parse_cache_dirs(lines: list[str]) -> dict:
    dirs = {}
    for line in lines:
        entries, size, path = line.rstrip("\n").split("\t", 2)
        dirs[path] = {"empty": int(entries) == 0, "bytes": int(size) if int(entries) else 0}
    return dirs


def cache_dirs_want(home: str) -> Want:
    """What the node holds in its engine caches; the same paths on every node (one admin, one home)."""
    return want(CacheDirs, paths=list(engine_cache_dirs(home).values()))


def caches_to_receive(own: dict | None, source: dict | None, own_image_id: str | None,
                      source_image_id: str | None) -> list[str]:
    """The cache directories (paths) this node receives from the source.

    `own`, `source`: CacheDirs of each node (None: not read); `own_image_id`:
    the image id this node runs at the end of this run (the source's when it
    receives the image now). Only empty directories, only from non-empty ones,
    only when both ends run one image id.
    """
    if own is None or source is None or source_image_id is None or own_image_id != source_image_id:
        return []
    return [path for path, state in own.items() if state["empty"] and not source.get(path, EMPTY)["empty"]]


def size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def warm_command(home: str, user: str, source_ip: str, path: str) -> str:
    """rsync `path` of the source into `path` of this node, through WARMING, as the admin."""
    landing = f"{path}/{WARMING}"
    rsync = shlex.join([
        "rsync", "-a", "--partial", f"--exclude=/{WARMING}", "-e", shlex.join(copy_ssh_argv(home)),
        f"{user}@{source_ip}:{path}/", f"{landing}/",
    ])
    # Whole: its entries move in (one rename each) and the landing goes.
    move_in = f"find {shlex.quote(landing)} -mindepth 1 -maxdepth 1 -exec mv -t {shlex.quote(path)} {{}} +"
    return f"{rsync} && {move_in} && rmdir {shlex.quote(landing)}"


def wants(account) -> list[Want]:
    """The facts this part of distribute reads on a node (the source's too)."""
    s = cluster_settings(host.data)
    if not s.distribute_caches:
        return []
    reads = []
    image = image_of(host.data)
    if image:
        reads.append(image_id_of(image))
    admin = account()
    if admin:
        reads.append(cache_dirs_want(admin["home"]))
    return reads


def apply() -> None:
    """Called at the end of distribute.apply: after the image load it counts on."""
    s = cluster_settings(host.data)
    account = admin_account(s.ssh_user)
    image = image_of(host.data)
    if not s.distribute_caches or account is None or not image:
        return
    source = image_source(host.data)
    if source is None or source["name"] == host.name:
        return
    image_ids = member_fact(image_id_of(image))
    receive = image_to_receive(host.data)
    own_image_id = receive[1] if receive else image_ids.get(host.name)
    dirs = member_fact(cache_dirs_want(account["home"]))
    names = {path: name for name, path in engine_cache_dirs(account["home"]).items()}
    for path in caches_to_receive(dirs.get(host.name), dirs.get(source["name"]), own_image_id,
                                  image_ids.get(source["name"])):
        server.shell(
            name=f"Warm the {names[path]} cache from {source['name']} over QSFP "
            f"({size_text(dirs[source['name']][path]['bytes'])})",
            # As the admin: the cluster key is the admin's, and the cache stays the admin's.
            commands=[warm_command(account["home"], s.ssh_user, source["qsfp_ip"], path)],
            _sudo=False,
        )
