"""The figures of this run's copies over QSFP, printed once the run ends.

Each copy logs its own line when it finishes; the summary after pyinfra's
results puts them together (item, node, bytes, seconds, rate, how), so a
first deploy ends saying how long the distribution took and at what speed.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

GiB = 2**30
_REPORTS: dict[int, list[dict[str, Any]]] = {}


def amount(count: float) -> str:
    """Bytes as GiB, or MiB below one GiB (a lab's small model reads 0.00 GiB otherwise)."""
    return f"{count / GiB:.2f} GiB" if count >= GiB else f"{count / 2**20:.1f} MiB"


def copy_line(item: str, node: str, moved: int, seconds: float, how: str) -> str:
    rate = moved / seconds if seconds > 0 else 0.0
    return f"{item} -> {node}: {amount(moved)} in {seconds:.0f} s ({amount(rate)}/s), {how}"


def record(state, item: str, node: str, moved: int, seconds: float, how: str) -> str:
    """Keeps one copy's figures for the run's summary; returns its line."""
    reports = _REPORTS.get(id(state))
    if reports is None:
        reports = _REPORTS[id(state)] = []
        atexit.register(_print, state)
    reports.append({"item": item, "node": node, "moved": moved, "seconds": seconds, "how": how})
    return copy_line(item, node, moved, seconds, how)


def summary_lines(reports: list[dict[str, Any]]) -> list[str]:
    if not reports:
        return []
    return ["--> Copies over QSFP in this run:"] + [
        "    " + copy_line(r["item"], r["node"], r["moved"], r["seconds"], r["how"]) for r in reports]


def _print(state) -> None:
    # After pyinfra's results, on stderr as pyinfra logs (as lost_nodes' summary).
    for line in summary_lines(_REPORTS.pop(id(state), [])):
        print(line, file=sys.stderr, flush=True)
