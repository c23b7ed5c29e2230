"""The model, spread over QSFP from the node that holds it whole.

Desired state on every node: the admin's Hugging Face cache holds every file
of serving_model that the engine reads (distribute_model_files, less
distribute_model_exclude: spark_cluster/copy_plan.py), each the source's
size and link target, owned by the admin. Files outside that set are left as
they are (a receiver's other revisions or formats are the owner's).

How it gets there: each receiver runs spark_cluster/files/tree_copy.py as the
admin: rsync streams over every rail of its upstream (both halves of the
cabled port), each on its own kept SSH connection with the verified host keys
and the cipher spark_cluster/copy_ssh.py chose. With distribute_fanout =
"chain" (the default) the receivers pull from each other in inventory order
while the one before them still receives, so the source sends the model once;
an upstream that stalls is replaced by the source. Progress (bytes, rate, ETA)
shows in the deploy's output; the figures close the run (copy_report.py).
Nothing is copied when every receiver holds the listed files already; a copy
cut short resumes file by file.
"""

from __future__ import annotations

import json
import shlex
import time
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import OperationError, StringCommand
from pyinfra.operations import files, python

from spark_cluster.cluster_facts import member_connected, member_fact
from spark_cluster.copy_plan import (
    TREE_COPY,
    copy_argv,
    entries_bytes,
    missing_entries,
    model_entries,
    peer_addresses,
    upstreams,
)
from spark_cluster.copy_report import record
from spark_cluster.copy_source import choose_source
from spark_cluster.copy_ssh import copy_ssh_argv
from spark_cluster.caches import cache_root
from spark_cluster.engine_image import explicit_source, member_order
from spark_cluster.fabric import fabric
from spark_cluster.model_cache import model_listing_want, model_manifest_want, model_whole

TREE_COPY_PATH = "/usr/local/lib/spark-cluster/tree_copy.py"
# A copy may take long (150 GB at a few GB/s is minutes; over a degraded link, hours):
# bounded so a hung one still ends the run.
COPY_TIMEOUT_S = 6 * 3600


def model_source(host_data, manifests) -> str | None:
    """The node the model is copied from: distribute_source, else the first node
    (head first) that holds it whole; None when none does."""
    whole = {name: manifest for name, manifest in manifests.items() if model_whole(manifest)}
    return choose_source(whole, member_order(host_data), explicit_source(host_data))


def wants(s, account) -> list:
    """The model facts to read ahead; the caller (distribute.wants) asks only when the model is copied."""
    admin = account()
    if not admin:
        return []
    return [model_manifest_want(admin["home"], s.serving_model), model_listing_want(admin["home"], s.serving_model)]


def rail_ips_of(host_data, peer: str) -> list[str]:
    """`peer`'s address on each of this node's links (every rail; the bond's one address)."""
    names = [member["name"] for member in host_data.get("peers") or []]
    index = names.index(peer)
    return [link.peer_ips[index] for link in fabric(host_data).links]


def plan(s, home: str) -> dict | None:
    """This node's copy in this run, or None: {source, upstream, entries, missing}."""
    manifests = member_fact(model_manifest_want(home, s.serving_model))
    source = model_source(host.data, manifests)
    # Never from a partial tree (a distribute_source without the model whole is preflight's to report).
    if source is None or source == host.name or not model_whole(manifests.get(source)):
        return None
    listings = member_fact(model_listing_want(home, s.serving_model))
    entries = model_entries(listings.get(source) or {}, s.distribute_model_files, s.distribute_model_exclude)
    missing = {name: missing_entries(entries, listings[name]) for name in member_order(host.data)
               if name != source and member_connected(name) and listings.get(name) is not None}
    receivers = [name for name, lacking in missing.items() if lacking]
    if host.name not in receivers:
        return None
    return {"source": source, "upstream": upstreams(receivers, source, s.distribute_fanout)[host.name],
            "entries": entries, "missing": missing[host.name]}


def run_copy(argv: list[str], model: str, upstream: str, how: str) -> None:
    """pyinfra callback (python.call): runs the receiver's copy as the admin,
    its progress lines shown live, and keeps its figures for the run's summary."""
    started = time.monotonic()
    logger.info(f"    [{host.name}] copying {model}: {how}")
    # print_output: pyinfra prints each line as it comes, under the host's prefix.
    ok, output = host.run_shell_command(StringCommand(shlex.join(argv)), _sudo=False, _timeout=COPY_TIMEOUT_S,
                                        print_output=True)
    results = [line.split(" ", 1)[1] for line in output.stdout_lines if line.startswith("result ")]
    result = json.loads(results[-1]) if results else {}
    if not ok or not result.get("ok"):
        why = result.get("error") or "\n".join(output.stderr_lines[-5:]) or "no result line"
        missing = ", ".join(result.get("missing") or [])
        raise OperationError(f"copy of {model} from {upstream} failed: {why}"
                             + (f" (still missing: {missing})" if missing else "")
                             + "; run the deploy again: the copy resumes where it stopped")
    line = record(host.state, model, host.name, int(result.get("moved", 0)), time.monotonic() - started, how)
    logger.info(f"    [{host.name}] copied {line}")


def apply(s, account: dict) -> None:
    home = account["home"]
    copy = plan(s, home)
    if copy is None:
        return
    model_dir = model_listing_want(home, s.serving_model).kwargs["path"]
    files.directory(
        name="Hugging Face hub directory",
        path=model_dir.rsplit("/", 1)[0],
        user=s.ssh_user, group=account["group"], mode="755",
    )
    files.put(name="The model copy program", src=str(TREE_COPY), dest=TREE_COPY_PATH,
              user="root", group="root", mode="755")
    list_path = f"{cache_root(home)}/copy-{s.serving_model.replace('/', '--')}.json"
    files.put(
        name="The files this copy moves",
        src=StringIO(json.dumps({"files": copy["entries"]}, indent=0)),
        dest=list_path, user=s.ssh_user, group=account["group"], mode="600",
    )
    upstream, source = copy["upstream"], copy["source"]
    user = s.ssh_user
    addresses = peer_addresses(user, upstream, rail_ips_of(host.data, upstream))
    fallback = peer_addresses(user, source, rail_ips_of(host.data, source)) if upstream != source else []
    streams = s.distribute_streams_per_rail * len(addresses)
    argv = copy_argv(TREE_COPY_PATH, model_dir, model_dir, addresses, list_path, streams,
                     copy_ssh_argv(home), fallback=fallback, stall_s=s.distribute_stall_s)
    missing = [entry for entry in copy["missing"] if "size" in entry]
    how = f"{streams} streams over {len(addresses)} rail(s) from {upstream}" + (
        f", chained behind source {source}" if upstream != source else "")
    python.call(
        # One name for every receiver (pyinfra shows an operation's names together);
        # each receiver's upstream and streams are in its own output lines.
        name=f"Copy {s.serving_model} from {source} over QSFP "
        f"({len(missing)} files, {entries_bytes(missing) / 2**30:.1f} GiB, {s.distribute_fanout})",
        function=run_copy, argv=argv, model=s.serving_model, upstream=upstream, how=how,
    )
