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
from spark_cluster.engine_image import image_of
from spark_cluster.fabric import QSFP_NETDEVS, fabric
from spark_cluster.host_ops import fail_host
from spark_cluster.qsfp_owners import owners_want, refusal, verdict
from spark_cluster.settings import cluster_settings

from .compare import CONSISTENT_FIELDS, compare_nodes, nccl_warning, summary_line
from .facts import NodeInventory


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


def wants(account):
    """The facts this role reads on a node (see cluster_facts.read_ahead)."""
    return [_inventory(_settings()), owners_want()]


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
    cache = run_cache()
    if cache.setdefault("preflight_problems", problems) is problems:
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
