"""Compare the nodes' inventories (pure): what is wrong, and on which node."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from spark_cluster.fabric import PORT_HALVES, Rail

from .facts import NO_RDMA

# Fields every node must agree on; None (e.g. no image on that node) is not compared.
CONSISTENT_FIELDS = ("kernel", "driver", "image_id")
LABELS = {"kernel": "kernel", "driver": "NVIDIA driver", "image_id": "engine image id"}


@dataclass(frozen=True)
class Problem:
    node: str
    field: str
    expected: str
    found: str
    # "mismatch": the node disagrees with its peers (preflight_strict decides);
    # "node": the node itself is unfit (link down, disk) and always fails;
    # "warning": worth a line in the log, never a reason to stop.
    kind: str
    # What to do about it, when the fields alone do not say.
    fix: str = ""

    @property
    def message(self) -> str:
        text = f"{self.node}: {self.field} is {self.found}, expected {self.expected}"
        return f"{text}; {self.fix}" if self.fix else text


def _odd_ones_out(field: str, values: Mapping[str, Any]) -> list[Problem]:
    """Plurality rule: the value most nodes share wins if no other value is as
    common; otherwise (2 nodes, a 2-2 split) every node is at fault and is told
    every value."""
    present = {node: value for node, value in values.items() if value is not None}
    counts = Counter(present.values())
    if len(counts) < 2:
        return []
    label = LABELS.get(field, field)
    ranked = counts.most_common()
    if ranked[0][1] > ranked[1][1]:
        winner = ranked[0][0]
        agreeing = ", ".join(sorted(node for node, value in present.items() if value == winner))
        return [
            Problem(node, label, f"{winner} (as on {agreeing})", str(value), "mismatch")
            for node, value in sorted(present.items())
            if value != winner
        ]
    everyone = ", ".join(f"{node}={value}" for node, value in sorted(present.items()))
    return [
        Problem(node, label, f"the same on all nodes ({everyone})", str(value), "mismatch")
        for node, value in sorted(present.items())
    ]


def _ports_text(ports) -> str:
    return "[" + ", ".join(str(port) for port in ports) + "]"


def _misplaced_cable(node: str, carriers: Mapping[str, str], rails: Sequence[Rail]) -> list[Problem]:
    """A carrier on a QSFP netdev that is no rail: the cable is in a port
    qsfp_ports does not name, and the deploy would configure dead rails."""
    named = sorted({rail.port for rail in rails})
    rail_netdevs = {rail.netdev for rail in rails}
    lit = sorted({port for port, halves in PORT_HALVES.items()
                  for netdev, _ in halves if carriers.get(netdev) == "up"})
    either = sorted(set(lit) | set(named))
    fix = f"set qsfp_ports = {_ports_text(lit)} in group_data"
    if either != lit:
        fix += f" (or {_ports_text(either)} with both ports cabled)"
    return [
        Problem(node, f"carrier on {netdev}", f"none: qsfp_ports {_ports_text(named)} does not name port {port}",
                "up", "node", f"is the cable in port {port}? {fix}")
        for port, halves in sorted(PORT_HALVES.items())
        for netdev, _ in halves
        if netdev not in rail_netdevs and carriers.get(netdev) == "up"
    ]


def _rdma_problems(node: str, devices: Mapping[str, str], rails: Sequence[Rail]) -> list[Problem]:
    problems = []
    for rail in rails:
        found = devices.get(rail.netdev)
        if found is None:  # not read: nothing to say
            continue
        if found == NO_RDMA:
            problems.append(Problem(
                node, f"RDMA device on rail {rail.netdev}", rail.rdma_device, "none", "node",
                "NCCL would fall back to TCP on this rail: is the mlx5_ib module loaded (`rdma link` lists "
                "the RoCE devices)?"))
        elif found != rail.rdma_device:
            problems.append(Problem(
                node, f"RDMA device on rail {rail.netdev}", f"{rail.rdma_device} (DGX OS's name)", found, "warning",
                f"the RoCE detector finds {found} from sysfs by itself; a pinned nccl_ib_hca must name {found}"))
    return problems


def _down_fix(rail: Rail, carriers: Mapping[str, str], misplaced: bool) -> str:
    other_half = PORT_HALVES[rail.port][1 - rail.half][0]
    if misplaced:
        return "the carrier is on a QSFP netdev qsfp_ports does not name (its own line says which)"
    if carriers.get(other_half) == "up":
        # Field report: with QSFP28/QSFP56 cables only one half comes up.
        return (f"{other_half}, the other half of port {rail.port}, has link: a QSFP28/QSFP56 cable brings up "
                "one half only; use a QSFP112 cable, or set qsfp_carrier_required = \"any\"")
    return f"is the cable in port {rail.port} (qsfp_ports), firmly, and the peer powered on?"


def _link_problems(node: str, facts: Mapping[str, Any], rails: Sequence[Rail], carrier_required: str) -> list[Problem]:
    carriers = facts.get("carriers") or {}
    absent = [
        Problem(node, f"QSFP netdev {rail.netdev}", "present", "absent", "node",
                "is this a DGX Spark? qsfp_ports names the cabled port(s)")
        for rail in rails
        if carriers.get(rail.netdev, "absent") == "absent"
    ]
    if absent:
        return absent
    misplaced = _misplaced_cable(node, carriers, rails)
    problems = list(misplaced)
    # "unknown" (port administratively down on a fresh node) is not a missing
    # cable: the network role brings the port up and pings every peer.
    down = [rail for rail in rails if carriers.get(rail.netdev) == "down"]
    if carrier_required == "all" or len(down) == len(rails):
        problems += [Problem(node, f"QSFP link {rail.netdev}", "up", "down", "node",
                             _down_fix(rail, carriers, bool(misplaced)))
                     for rail in down]
    return problems + _rdma_problems(node, facts.get("rdma") or {}, rails)


def _disk_problem(node: str, facts: Mapping[str, Any], min_disk_gib: float) -> list[Problem]:
    free = facts.get("disk_free_gib")
    where = facts.get("disk_path") or "the admin's home"
    field = f"free disk at {where}"
    if free is None:
        return [Problem(node, field, f">= {min_disk_gib} GiB", "unreadable", "node")]
    if free < min_disk_gib:
        return [Problem(node, field, f">= {min_disk_gib} GiB (model_disk_gib)", f"{free} GiB", "node")]
    return []


def _admin_problems(node: str, facts: Mapping[str, Any], user: str | None) -> list[Problem]:
    """The admin account (the inventory's ssh_user) must exist and own its home:
    caches, the cluster key and the model are written there as that user."""
    admin = facts.get("admin")
    if not user or admin is None:
        return []  # an older fact (no account line): nothing to judge
    if admin is False:
        return [Problem(node, f"admin account {user!r}", "present", "missing", "node",
                        "create it (the same admin account on every node), or set ssh_user to the one this node has")]
    home, owner = admin.get("home"), admin.get("owner")
    if owner == "missing":
        return [Problem(node, f"home of {user!r} ({home})", "a directory", "missing", "node",
                        f"create it: sudo mkhomedir_helper {user}")]
    if owner != user:
        return [Problem(node, f"home of {user!r} ({home})", f"owned by {user}", f"owned by {owner}", "node",
                        f"give it back: sudo chown {user}: {home}")]
    return []


def compare_nodes(
    facts_by_node: Mapping[str, Mapping[str, Any] | None],
    *,
    rails: Sequence[Rail] | Mapping[str, Sequence[Rail]],
    carrier_required: str = "all",
    min_disk_gib: float = 200,
    fields=CONSISTENT_FIELDS,
    admin_user: str | None = None,
) -> list[Problem]:
    """Every problem (and warning), sorted by node. `rails` are what group_data
    says (spark_cluster.fabric), the same for every node or per node name.
    Nodes without facts (not connected, e.g. outside --limit) are neither
    checked nor compared."""
    known = {node: facts for node, facts in facts_by_node.items() if facts is not None}
    problems: list[Problem] = []
    for node, facts in sorted(known.items()):
        node_rails = rails[node] if isinstance(rails, Mapping) else rails
        problems += _link_problems(node, facts, list(node_rails), carrier_required)
        problems += _admin_problems(node, facts, admin_user)
        problems += _disk_problem(node, facts, min_disk_gib)
    for field in fields:
        problems += _odd_ones_out(field, {node: facts.get(field) for node, facts in known.items()})
    return sorted(problems, key=lambda problem: problem.node)


# Field report (DeepSeek V4 Flash on 4 Sparks, TP=4): NCCL 2.28.9 wedges long
# generations at tensor parallel 4; 2.30.4 fixes it.
NCCL_FIXED_FOR_TP4 = (2, 30, 4)


def _version(text: str) -> tuple[int, ...] | None:
    parts = text.split("-")[0].split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def nccl_warning(node: str, nccl: str | None, world_size: int) -> str | None:
    """A warning when the image's NCCL is known to wedge at this tensor parallel size."""
    version = _version(nccl or "")
    if world_size < 4 or version is None or version >= NCCL_FIXED_FOR_TP4:
        return None
    fixed = ".".join(map(str, NCCL_FIXED_FOR_TP4))
    return (f"{node}: the engine image ships NCCL {nccl}, which wedges long generations at tensor "
            f"parallel {world_size} (field report: DeepSeek V4 Flash on 4 Sparks); use an image with NCCL >= {fixed}")


def _short_image(image_id: str | None) -> str:
    if not image_id:
        return "absent"
    return image_id.split(":", 1)[-1][:12]


def summary_line(node: str, facts: Mapping[str, Any] | None, problems: list[Problem]) -> str:
    """One line per node for the run's log."""
    if facts is None:
        return f"preflight {node}: not connected (outside --limit or unreachable), not checked"
    carriers, devices = facts.get("carriers") or {}, facts.get("rdma") or {}
    links = " ".join(f"{name}={state}" + (f"/{devices[name]}" if name in devices else "")
                     for name, state in carriers.items())
    free = facts.get("disk_free_gib")
    mine = [p for p in problems if p.node == node]
    verdict = "; ".join([p.message for p in mine if p.kind != "warning"]
                        + [f"warning: {p.message}" for p in mine if p.kind == "warning"]) or "OK"
    return (
        f"preflight {node}: kernel {facts.get('kernel')}, driver {facts.get('driver')}, "
        f"image {_short_image(facts.get('image_id'))} (NCCL {facts.get('nccl') or '?'}), qsfp {links or '-'}, "
        f"disk {'?' if free is None else free} GiB free -> {verdict}"
    )
