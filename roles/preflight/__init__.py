"""Preflight: every node agrees with its peers and is fit, before anything changes.

Desired state (checked, never changed):
- all nodes run the same kernel, the same NVIDIA driver ("none" everywhere in
  the lab is consistent) and, where a node has the engine image, the same image
  id; with distribute_image on, a differing image is only logged: the
  distribute role replaces it with the source's in this run;
- the NCCL version in the image is reported, with a warning where it is known
  to wedge at this tensor parallel size;
- this node's QSFP interfaces exist and have link (per qsfp_carrier_required);
- the filesystem of the admin's home has model_disk_gib free for the model cache.

A node at fault gets one failing operation, the first of the whole deploy for
it, so pyinfra drops it before any change. Disagreements fail the odd node(s)
out; with no plurality (2 nodes, or a 2-2 split) every node involved fails.
preflight_strict = False turns disagreements into warnings. When everything
agrees no operation is emitted at all. Nodes outside --limit are not compared.
"""

from pyinfra import host, logger
from pyinfra.api import deploy

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import member_fact, member_names, run_cache
from spark_cluster.engine_image import image_of
from spark_cluster.host_ops import fail_host
from spark_cluster.settings import role_settings

from .compare import CONSISTENT_FIELDS, compare_nodes, nccl_warning, summary_line
from .defaults import DEFAULTS
from .facts import NodeInventory


def _inventory(s):
    return want(
        NodeInventory,
        interfaces=list(s.qsfp_interfaces),
        image=image_of(host.data) or "",
        user=s.ssh_user or "",
    )


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    return [_inventory(role_settings(host.data, DEFAULTS))]


def cluster_problems(s):
    """Problems of the whole cluster, computed (and the summary logged) once per run."""
    facts = member_fact(_inventory(s))
    problems = compare_nodes(
        facts,
        qsfp_interfaces=s.qsfp_interfaces,
        carrier_required=s.qsfp_carrier_required,
        min_disk_gib=s.model_disk_gib,
        fields=[f for f in CONSISTENT_FIELDS if f != "image_id" or not s.distribute_image],
    )
    cache = run_cache()
    if cache.setdefault("preflight_problems", problems) is problems:
        for name in member_names():
            logger.info(summary_line(name, facts.get(name), problems))
            warning = nccl_warning(name, (facts.get(name) or {}).get("nccl"), host.data.world_size)
            if warning:
                logger.warning(f"preflight: {warning}")
    return cache["preflight_problems"]


@deploy("preflight: nodes agree before anything changes")
def apply():
    s = role_settings(host.data, DEFAULTS)
    mine = [problem for problem in cluster_problems(s) if problem.node == host.name]
    fatal = [p for p in mine if p.kind == "node" or s.preflight_strict]
    for problem in mine:
        if problem not in fatal:
            logger.warning(f"preflight (preflight_strict = False): {problem.message}")
    if fatal:
        fail_host(
            "Preflight: this node is unfit or disagrees with its peers",
            "preflight: " + "; ".join(p.message for p in fatal),
        )
