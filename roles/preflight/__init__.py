"""Preflight: every node agrees with its peers and is fit, before anything changes.

Desired state (checked, never changed):
- all nodes run the same kernel, the same NVIDIA driver ("none" everywhere in
  the lab is consistent) and, where a node has the engine image, the same image
  id; with distribute_image on, a differing image is only logged: the
  distribute role replaces it with the source's in this run;
- the NCCL version in the image is reported, with a warning where it is known
  to wedge at this tensor parallel size;
- the rails group_data names (spark_cluster.fabric: each PCIe half of each
  port in qsfp_ports) exist, have link (per qsfp_carrier_required) and carry
  an RDMA device; no other QSFP netdev has link (a cable in the port
  qsfp_ports does not name); an RDMA device named otherwise than DGX OS names
  it is only logged (the RoCE detector reads the real names anyway);
- the admin account (ssh_user) exists and owns its home, and sudo works for
  it (files of its own are written there; every change needs sudo);
- the filesystem of the admin's home has model_disk_gib free for the model cache;
- the model (whole, in the admin's Hugging Face cache) and the engine image
  are on one node at least, the source distribute copies each from (or on
  every node, with distribution off); else each node that lacks one is told
  how to stage it (staging.py). The lab's stand-in needs neither staged;
- no other configuration claims a QSFP netdev (NVIDIA's 40-cx7.yaml,
  NetworkManager profiles, networkd files), unless qsfp_takeover is on or it
  is a netplan file the network role adopts (spark_cluster/qsfp_owners.py):
  checked here, so such a node stops before the gpu role's reboot.

A node at fault gets one failing operation, the first of the whole deploy for
it, so pyinfra drops it before any change. Disagreements fail the odd node(s)
out; with no plurality (2 nodes, or a 2-2 split) every node involved fails.
preflight_strict = False turns disagreements into warnings. When everything
agrees no operation is emitted at all. Nodes outside --limit are not compared.
"""

from pyinfra import host, logger
from pyinfra.api import deploy

from spark_cluster.batch_fact import want
from spark_cluster.cluster_facts import host_fact, member_fact, member_names, run_cache, sudo_refusal, sudo_refused
from spark_cluster.caches import hf_home
from spark_cluster.engine_image import explicit_source, image_of, member_order
from spark_cluster.fabric import QSFP_NETDEVS, fabric
from spark_cluster.host_ops import admin_account, fail_host
from spark_cluster.model_cache import model_manifest_want, model_whole
from spark_cluster.qsfp_owners import owners_want, refusal, verdict
from spark_cluster.settings import cluster_settings

from .compare import CONSISTENT_FIELDS, compare_nodes, nccl_warning, summary_line
from .facts import NodeInventory
from .staging import image_problems, model_problems, sources_line


def _inventory(s):
    # Every QSFP netdev, not only the rails: a carrier on another one says
    # the cable is in a port qsfp_ports does not name.
    return want(
        NodeInventory,
        interfaces=list(QSFP_NETDEVS),
        image=image_of(host.data) or "",
        user=s.ssh_user or "",
    )


def _settings():
    return cluster_settings(host.data)


def _rails_by_node(names):
    """{member: its rails, as group_data and its inventory entry say}."""
    inventory = host.state.inventory
    return {name: fabric(inventory.get_host(name).data).rails for name in names}


def _checks_model(s):
    # The lab's stand-in loads no weights: nothing to stage there.
    return bool(s.serving_model) and not s.serving_standin


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    s = _settings()
    reads = [_inventory(s), owners_want()]
    if _checks_model(s):
        admin = account()
        if admin:
            reads.append(model_manifest_want(admin["home"], s.serving_model))
    return reads


def staging(s, facts):
    """Problems of the model and the image being staged nowhere, and one log line per item on its source."""
    order, explicit = member_order(host.data), explicit_source(host.data)
    problems, lines = [], []
    image = image_of(host.data)
    if image and not s.serving_standin:  # the stand-in is built in this run
        image_ids = {name: value.get("image_id") for name, value in facts.items() if value is not None}
        problems += image_problems(image, image_ids, order, user=s.ssh_user, explicit=explicit,
                                   copied=s.distribute_image)
        lines.append(s.distribute_image and sources_line(f"engine image {image}", image_ids, order,
                                                         lambda image_id: image_id is not None, explicit))
    account = admin_account(s.ssh_user)
    if _checks_model(s) and account:
        reached = [name for name, value in facts.items() if value is not None]
        manifests = member_fact(model_manifest_want(account["home"], s.serving_model))
        manifests = {name: manifests.get(name) for name in reached}
        problems += model_problems(s.serving_model, manifests, order, user=s.ssh_user,
                                   hf_home=hf_home(account["home"]), explicit=explicit, copied=s.distribute_model)
        lines.append(s.distribute_model and sources_line(f"model {s.serving_model}", manifests, order, model_whole,
                                                         explicit))
    return problems, [line for line in lines if line]


def cluster_problems(s):
    """Problems of the whole cluster, computed (and the summary logged) once per run."""
    facts = member_fact(_inventory(s))
    problems = compare_nodes(
        facts,
        # Only the members read (connected, inside --limit) are judged.
        rails=_rails_by_node([name for name, value in facts.items() if value is not None]),
        carrier_required=s.qsfp_carrier_required,
        min_disk_gib=s.model_disk_gib,
        fields=[f for f in CONSISTENT_FIELDS if f != "image_id" or not s.distribute_image],
        admin_user=s.ssh_user,
    )
    staged, source_lines = staging(s, facts)
    problems = sorted(problems + staged, key=lambda problem: problem.node)
    cache = run_cache()
    if cache.setdefault("preflight_problems", problems) is problems:
        for line in source_lines:
            logger.info(line)
        for name in member_names():
            logger.info(f"preflight {name}: sudo refused, not checked" if sudo_refused(name)
                        else summary_line(name, facts.get(name), problems))
            warning = nccl_warning(name, (facts.get(name) or {}).get("nccl"), host.data.world_size)
            if warning:
                logger.warning(f"preflight: {warning}")
    return cache["preflight_problems"]


@deploy("preflight: nodes agree before anything changes")
def apply():
    s = _settings()
    mine = [problem for problem in cluster_problems(s) if problem.node == host.name]
    fatal = [p for p in mine if p.kind == "node" or (p.kind == "mismatch" and s.preflight_strict)]
    for problem in mine:
        if problem.kind == "warning":
            logger.warning(f"preflight: {problem.message}")
        elif problem not in fatal:
            logger.warning(f"preflight (preflight_strict = False): {problem.message}")
    if sudo_refused(host.name):
        # Asked nothing more: its facts are empty, so nothing else is judged.
        fail_host("Preflight: this node refuses sudo", "preflight: " + sudo_refusal(host.name, s.ssh_user))
        return
    messages = [p.message for p in fatal]
    claims = host_fact(owners_want())
    if verdict(claims, fabric(host.data), s.qsfp_takeover) == "refuse":
        messages.append(refusal(host.name, claims))
    if messages:
        fail_host("Preflight: this node is unfit or disagrees with its peers", "preflight: " + "; ".join(messages))
