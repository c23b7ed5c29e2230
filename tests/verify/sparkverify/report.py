"""The suite's own report: one row per (node, check) with outcome and message,
printed as a table at the end and written as JSON for the lab tests and CI."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYMBOL = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
# A later phase never downgrades a failure: setup error or call failure wins.
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass
class CheckResult:
    node: str
    check: str
    outcome: str  # passed | failed | skipped
    message: str = ""
    duration_s: float = 0.0
    detail: str = ""  # a figure a check measured (e.g. tokens/s), shown even when it passes
    nodeid: str = ""  # pytest's id of the test, to rerun just this one
    figures: dict = field(default_factory=dict)  # other record_property values


class ResultBook:
    def __init__(self) -> None:
        self._results: dict[tuple[str, str], CheckResult] = {}

    def record(self, node: str, check: str, outcome: str, message: str, duration_s: float,
               detail: str = "", nodeid: str = "", figures: dict | None = None) -> None:
        key = (node, check)
        current = self._results.get(key)
        if current is None:
            self._results[key] = CheckResult(node, check, outcome, message, round(duration_s, 2), detail,
                                             nodeid, dict(figures or {}))
            return
        current.duration_s = round(current.duration_s + duration_s, 2)
        current.detail = detail or current.detail
        current.figures.update(figures or {})
        if _RANK[outcome] > _RANK[current.outcome]:
            current.outcome, current.message = outcome, message

    def results(self) -> list[CheckResult]:
        return list(self._results.values())


def format_summary(results: list[CheckResult], nodes: list[str]) -> str:
    """Checks down, nodes across; `-` where a check does not apply to a node."""
    if not results:
        return "spark-cluster verify: no checks ran"
    checks: list[str] = []
    for result in results:
        if result.check not in checks:
            checks.append(result.check)
    nodes = list(nodes) + sorted({r.node for r in results} - set(nodes))
    cell = {(r.node, r.check): SYMBOL.get(r.outcome, r.outcome.upper()) for r in results}
    width = max(len("check"), *(len(c) for c in checks))
    columns = [max(4, len(n)) for n in nodes]
    lines = ["  ".join(["check".ljust(width)] + [n.ljust(w) for n, w in zip(nodes, columns)])]
    for check in checks:
        lines.append("  ".join([check.ljust(width)] + [cell.get((n, check), "-").ljust(w) for n, w in zip(nodes, columns)]))
    counts = {o: sum(1 for r in results if r.outcome == o) for o in ("passed", "failed", "skipped")}
    lines.append(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return "\n".join(line.rstrip() for line in lines)


def write_json(path: Path, results: list[CheckResult], inventory: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "inventory": inventory,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": {o: sum(1 for r in results if r.outcome == o) for o in ("passed", "failed", "skipped")},
        # "detail" and "figures" only where a check measured something.
        "results": [{k: v for k, v in asdict(r).items() if k not in ("detail", "figures") or v} for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def message_of(report) -> str:
    """The one message a pytest report carries: the fail()/skip() text, or the
    crash line of an unexpected error."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (file, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    if isinstance(longrepr, str):
        return longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.removeprefix("Failed: ")
    return str(longrepr)
