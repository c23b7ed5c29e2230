"""How long `lab up` waits for a VM to answer SSH, and the wait itself.

A fixed budget was wrong both ways: too short for two TCG guests on a loaded two-core host
(they answered a minute after a 300 s limit), needlessly long for KVM. The budget here grows
with the accelerator's pace, the VMs booting at once and the host's load, per CPU; past it, a
node is still waited for while its serial console keeps growing (the guest is visibly booting),
and never past a hard ceiling. Everything but `wait` is pure and unit-tested.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import accel as accel_mod

# One unloaded VM to SSH: 35-90 s under TCG (lab-notes), a few seconds under KVM; the base
# keeps a wide margin over both.
BASE_S = {accel_mod.TCG: 300.0, accel_mod.KVM: 120.0}
# How long a silent console is still taken for a booting guest once the budget is spent:
# TCG's quiet stretches (initrd unpacking, docker's first start) are long.
STALL_S = {accel_mod.TCG: 180.0, accel_mod.KVM: 90.0}
CEILING_S = 25 * 60.0
PROGRESS_EVERY_S = 30.0
POLL_S = 3.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Budget:
    seconds: float  # waited unconditionally
    ceiling: float  # never waited past, console growing or not
    stall: float  # past `seconds`, a console silent this long ends the wait
    accel: str
    base: float
    factor: float
    booting: int
    cpus: int
    load: float

    def describe(self) -> str:
        scaled = (f" x{self.factor:.1f} for {self.booting} VM(s) booting + load {self.load:.1f} "
                  f"on {self.cpus} CPU(s)") if self.factor > 1 else ""
        return (f"{self.seconds:.0f}s ({self.base:.0f}s under {self.accel}{scaled}), then while the "
                f"console grows (silent for {self.stall:.0f}s ends it), at most {self.ceiling:.0f}s")


def boot_budget(accel: str, booting: int, cpus: int, load: float, base: float | None = None) -> Budget:
    """The wait for `booting` VMs started at once on `cpus` CPUs already carrying `load`
    (the 1-minute load average before they started).

    Each booting VM wants a whole CPU (one vCPU thread), so the pace per VM falls by
    (VMs + load) / CPUs once that exceeds 1. `base` (--timeout, SPARK_LAB_BOOT_TIMEOUT)
    replaces the accelerator's default for one VM on an idle host and is scaled alike.
    """
    if accel not in BASE_S:
        raise ValueError(f"unknown accelerator {accel!r}")
    base = BASE_S[accel] if base is None else float(base)
    cpus = max(1, int(cpus))
    load = max(0.0, float(load))
    factor = max(1.0, (max(1, booting) + load) / cpus)
    ceiling = max(CEILING_S, base)
    return Budget(seconds=min(base * factor, ceiling), ceiling=ceiling, stall=STALL_S[accel],
                  accel=accel, base=base, factor=factor, booting=booting, cpus=cpus, load=load)


def keep_waiting(elapsed: float, since_growth: float, budget: Budget) -> bool:
    """True while a node that has not answered is still worth waiting for."""
    if elapsed >= budget.ceiling:
        return False
    if elapsed < budget.seconds:
        return True
    return since_growth < budget.stall


def last_console_line(text: str, width: int = 100) -> str:
    """The console's last non-empty line, without colour codes or carriage returns."""
    for line in reversed(_ANSI.sub("", text).replace("\r", "\n").splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 3] + "..."
    return "(nothing yet)"


def console_tail_text(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def console_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class Node:
    """One node being waited for; `target` names what is waited for, e.g. 127.0.0.1:2221."""

    index: int
    name: str
    target: str
    console: Path
    size: int = 0
    grew_at: float = 0.0
    answered: float | None = None
    failure: str | None = None
    last_line: str = field(default="(nothing yet)")


def failure_text(node: Node, elapsed: float, now: float, budget: Budget) -> str:
    return (f"no SSH on {node.target} after {elapsed:.0f}s (waited {budget.describe()}; "
            f"its console had been silent for {now - node.grew_at:.0f}s); "
            f"its console last showed: {node.last_line!r}")


def wait(nodes: list[Node], budget: Budget, reachable, is_running, log=print,
         clock=time.monotonic, sleep=time.sleep, poll: float = POLL_S,
         progress_every: float = PROGRESS_EVERY_S) -> list[Node]:
    """Waits until every node answered (`reachable(index)`), exited or ran out of budget.

    Sets each node's `answered` (seconds) or `failure` (a sentence) and prints a progress
    line every `progress_every` seconds: who is still awaited and what its console shows.
    """
    started = clock()
    for node in nodes:
        node.size = console_size(node.console)
        node.grew_at = started
        if node.size:
            node.last_line = last_console_line(console_tail_text(node.console))
    pending = list(nodes)
    next_report = started + progress_every
    while pending:
        for node in list(pending):
            now = clock()
            size = console_size(node.console)
            if size != node.size:
                node.size, node.grew_at = size, now
                node.last_line = last_console_line(console_tail_text(node.console))
            if reachable(node.index):
                node.answered = clock() - started
                pending.remove(node)
            elif not is_running(node.index):
                node.failure = (f"its VM exited after {now - started:.0f}s; "
                                f"its console last showed: {node.last_line!r}")
                pending.remove(node)
            elif not keep_waiting(now - started, now - node.grew_at, budget):
                node.failure = failure_text(node, now - started, now, budget)
                pending.remove(node)
        if not pending:
            break
        now = clock()
        if now >= next_report:
            next_report = now + progress_every
            log(progress_line(pending, now - started, now, budget))
        sleep(poll)
    return nodes


def progress_line(pending: list[Node], elapsed: float, now: float, budget: Budget) -> str:
    phase = (f"{elapsed:.0f}s of {budget.seconds:.0f}s" if elapsed < budget.seconds
             else f"{elapsed:.0f}s, past the {budget.seconds:.0f}s budget while consoles grow "
                  f"(at most {budget.ceiling:.0f}s)")
    waiting = "; ".join(f"{n.name} ({n.target}, console silent {now - n.grew_at:.0f}s): {n.last_line}"
                        for n in pending)
    return f"waiting for SSH, {phase}: {waiting}"
