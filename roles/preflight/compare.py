"""Compare the nodes' inventories (pure): what is wrong, and on which node."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

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
    # "node": the node itself is unfit (link down, disk) and always fails.
    kind: str

    @property
    def message(self) -> str:
        return f"{self.node}: {self.field} is {self.found}, expected {self.expected}"


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


def _link_problems(node: str, facts: Mapping[str, Any], interfaces, carrier_required: str) -> list[Problem]:
    carriers = facts.get("carriers") or {}
    problems = [
        Problem(node, f"QSFP interface {name}", "present", "absent", "node")
        for name in interfaces
        if carriers.get(name, "absent") == "absent"
    ]
    if problems:
        return problems
    # "unknown" (port administratively down on a fresh node) is not a missing
    # cable: the network role brings the port up and pings every peer.
    down = [name for name in interfaces if carriers.get(name) == "down"]
    if carrier_required == "all" or len(down) == len(interfaces):
        return [Problem(node, f"QSFP link {name}", "up", "down (cable?)", "node") for name in down]
    return []


def _disk_problem(node: str, facts: Mapping[str, Any], min_disk_gib: float) -> list[Problem]:
    free = facts.get("disk_free_gib")
    where = facts.get("disk_path") or "the admin's home"
    field = f"free disk at {where}"
    if free is None:
        return [Problem(node, field, f">= {min_disk_gib} GiB", "unreadable", "node")]
    if free < min_disk_gib:
        return [Problem(node, field, f">= {min_disk_gib} GiB (model_disk_gib)", f"{free} GiB", "node")]
    return []


def compare_nodes(
    facts_by_node: Mapping[str, Mapping[str, Any] | None],
    *,
    qsfp_interfaces=("enp1s0f0np0", "enp1s0f1np1"),
    carrier_required: str = "any",
    min_disk_gib: float = 200,
    fields=CONSISTENT_FIELDS,
) -> list[Problem]:
    """Every problem, sorted by node. Nodes without facts (not connected,
    e.g. outside --limit) are neither checked nor compared."""
    known = {node: facts for node, facts in facts_by_node.items() if facts is not None}
    problems: list[Problem] = []
    for node, facts in sorted(known.items()):
        problems += _link_problems(node, facts, list(qsfp_interfaces), carrier_required)
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
    links = " ".join(f"{name}={state}" for name, state in sorted((facts.get("carriers") or {}).items()))
    free = facts.get("disk_free_gib")
    verdict = "; ".join(p.message for p in problems if p.node == node) or "OK"
    return (
        f"preflight {node}: kernel {facts.get('kernel')}, driver {facts.get('driver')}, "
        f"image {_short_image(facts.get('image_id'))} (NCCL {facts.get('nccl') or '?'}), qsfp {links or '-'}, "
        f"disk {'?' if free is None else free} GiB free -> {verdict}"
    )
