"""What `spark-cluster status`, `logs` and `smoke` print (pure: no SSH, unit-tested).

status: one table a person reads at a glance, a row per node, then a line per
node that needs a look (why it is not serving, or why it could not be asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from spark_cluster.engine_image import STANDIN_REPOSITORY

HEADERS = ("NODE", "ROLE", "STATE", "MODEL", "IMAGE ID", "RAILS", "UP")
SERVING = "serving"
UNREACHABLE = "unreachable"
# Marks the lab's stand-in image in the IMAGE ID column.
STANDIN_MARK = "*"


@dataclass(frozen=True)
class RailAddress:
    """One netdev the deploy gave an address (spark_cluster.fabric's links), as `ip -j addr` shows it."""

    netdev: str
    addresses: tuple[str, ...] = ()
    up: bool = True
    error: str = ""


@dataclass(frozen=True)
class NodeStatus:
    """One node's answer: the watcher's `report` (None when there is none) and its rails;
    error says why the node could not be asked at all."""

    name: str
    report: dict[str, Any] | None = None
    rails: tuple[RailAddress, ...] = ()
    error: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # What the error means in the STATE column: unreachable, or sudo refused.
    problem: str = UNREACHABLE

    @property
    def state(self) -> str:
        if self.error:
            return self.problem
        if self.report is None:
            return "no report"
        return str(self.report.get("state") or "unknown")


def is_standin(image: str | None) -> bool:
    """The lab's stand-in engine image (roles/standin tags it spark-standin:<content hash>)."""
    return bool(image) and str(image).startswith(f"{STANDIN_REPOSITORY}:")


def short_image_id(image_id: str | None) -> str:
    """sha256:0123456789abcdef... -> 0123456789ab, as `docker images` shows it."""
    if not image_id:
        return "-"
    return image_id.split(":", 1)[-1][:12]


def uptime_text(seconds: float | None) -> str:
    """Since when the unit is in its state: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{days}d{hours % 24:02d}h"


def rails_text(rails: Sequence[RailAddress]) -> str:
    """netdev=address for each rail; a rail without its address or link says so."""
    if not rails:
        return "-"
    words = []
    for rail in rails:
        if rail.error:
            value = "?"
        elif not rail.addresses:
            value = "no address"
        else:
            value = ",".join(rail.addresses)
        words.append(f"{rail.netdev}={value}" + ("" if rail.up or rail.error else " (down)"))
    return " ".join(words)


def status_row(node: NodeStatus) -> tuple[str, ...]:
    report = node.report or {}
    image = short_image_id(report.get("image_id"))
    if is_standin(report.get("image")) and image != "-":
        image += STANDIN_MARK
    return (node.name, str(report.get("role") or "-"), node.state, str(report.get("model") or "-"), image,
            # UP: how long the engine's unit has been active; nothing for a stopped one.
            rails_text(node.rails), uptime_text(report.get("since_s")) if report.get("unit") == "active" else "-")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def node_notes(node: NodeStatus) -> list[str]:
    """Why a node needs a look, one line each (nothing for a serving node with its rails)."""
    notes = list(node.notes)
    if node.error:
        return [node.error, *notes]
    report = node.report or {}
    if node.state != SERVING:
        found = "; ".join(str(part) for part in (report.get("phase"), report.get("detail")) if part)
        if report.get("unit") in ("failed", "inactive"):
            found = f"unit {report['unit']}" + (f"; {found}" if found else "")
        notes.append(f"{node.name}: {node.state}" + (f" ({found})" if found else ""))
    for rail in node.rails:
        if rail.error:
            notes.append(f"{node.name}: {rail.netdev}: {rail.error}")
        elif not rail.up or not rail.addresses:
            notes.append(f"{node.name}: rail {rail.netdev} is {'down' if not rail.up else 'without its address'}; "
                         "fix: check the QSFP cable, then `sudo netplan apply` or deploy again")
    return notes


def status_table(nodes: Sequence[NodeStatus]) -> str:
    """The table, then what needs a look: why a node is not serving, image ids that
    differ between nodes, and a footnote when the engine is the lab's stand-in."""
    lines = [format_table(HEADERS, [status_row(node) for node in nodes])]
    notes = [note for node in nodes for note in node_notes(node)]
    ids = {node.name: node.report.get("image_id") for node in nodes if node.report and node.report.get("image_id")}
    if len(set(ids.values())) > 1:
        found = ", ".join(f"{name} {short_image_id(value)}" for name, value in ids.items())
        notes.append(f"image ids differ ({found}): every node must run the same image; "
                     "fix: deploy again (it copies the head's image to the others)")
    standin = next((node.report for node in nodes if node.report and is_standin(node.report.get("image"))), None)
    if standin:
        notes.append(f"{STANDIN_MARK} {standin['image']} is the lab's stand-in engine "
                     "(roles/standin: no GPU, no weights), not the real engine")
    serving = sum(node.state == SERVING for node in nodes)
    lines.append("")
    lines.extend(notes)
    lines.append(f"{serving} of {len(nodes)} node(s) serving")
    return "\n".join(lines)


def status_exit(nodes: Sequence[NodeStatus]) -> int:
    """0 only when every node serves."""
    return 0 if nodes and all(node.state == SERVING for node in nodes) else 1


# --- logs ---------------------------------------------------------------------

def prefixed(name: str, text: str, width: int = 0) -> list[str]:
    """Each line of `text` behind the node's name, names padded to `width`."""
    return [f"{name.ljust(width)} | {line}" for line in text.splitlines()]


# --- smoke --------------------------------------------------------------------

def first_words(text: str, count: int = 24) -> str:
    words = text.split()
    return " ".join(words[:count]) + (" ..." if len(words) > count else "")


def _figure(measured: dict[str, Any] | None) -> str:
    if not measured:
        return "not measured"
    rate = measured.get("tokens_per_s")
    head = f"{rate} tokens/s" if rate is not None else "no token count (the API sent no usage)"
    failed = f", {measured['failed']} failed" if measured.get("failed") else ""
    return f"{head} ({measured.get('tokens')} tokens in {measured.get('seconds')} s, " \
           f"{measured.get('requests')} request(s){failed})"


def smoke_text(head: str, result: dict[str, Any]) -> tuple[str, int]:
    """(what to print, exit status) for the head watcher's `smoke` JSON."""
    lines = []
    if result.get("answer"):
        lines.append(f"{head} answered ({result.get('model')}): {first_words(result['answer'])}")
    if result.get("single"):
        lines.append(f"single stream: {_figure(result['single'])}")
    if result.get("concurrent"):
        lines.append(f"at concurrency {result.get('concurrency')}: {_figure(result['concurrent'])}")
    if is_standin(result.get("image")):
        lines.append("(the lab's stand-in engine: these figures say nothing of a real engine's speed)")
    if result.get("ok"):
        return "\n".join(lines), 0
    lines.append(
        f"smoke failed on {head}: expected a chat completion from {result.get('model') or 'the served model'} "
        f"and tokens/s figures; found: {result.get('error') or 'no answer'}; fix: `spark-cluster status` "
        "shows whether every node serves, `spark-cluster logs` shows why an engine is not up")
    return "\n".join(lines), 1
