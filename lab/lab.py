"""The lab as a whole: up, down, destroy, status, rebuild."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import accel as accel_mod
from . import bootwait
from . import image as image_mod
from . import cx7, nodes, ssh, state, switchproc, topology
from .errors import LabError
from .tools import require


def _layout_file():
    return state.state_dir() / "lab.json"


def _recorded() -> dict:
    try:
        layout = json.loads(_layout_file().read_text())
    except (OSError, ValueError):
        return {}
    return layout if isinstance(layout, dict) else {}


def recorded_count() -> int | None:
    try:
        return int(_recorded()["nodes"])
    except (KeyError, TypeError, ValueError):
        return None


def recorded_cables() -> str:
    """The cabling the lab was brought up with; a lab from before the option had port 1 only."""
    cables = _recorded().get("cables")
    return cables if cables in cx7.CABLES else cx7.DEFAULT_CABLES


def recorded_accel() -> tuple[str, str] | None:
    """The accelerator the lab was last brought up with, and why; None before the first up."""
    layout = _recorded()
    if layout.get("accel") in accel_mod.CHOICES:
        return layout["accel"], str(layout.get("accel_reason", ""))
    return None


def _record(count: int, image, cables: str, choice: accel_mod.Choice) -> None:
    layout = {"nodes": count, "image": str(image.directory), "cables": cables,
              "accel": choice.accel, "accel_reason": choice.reason}
    _layout_file().write_text(json.dumps(layout) + "\n")


def known_indexes() -> list[int]:
    """Every node the state dir knows about: recorded, with an overlay, or running."""
    found = set(range(1, (recorded_count() or 0) + 1))
    for path in state.state_dir().glob("spark-*.qcow2"):
        try:
            found.add(state.node_index(path.stem))
        except ValueError:
            pass
    for path in state.state_dir().glob("spark-*.pid"):
        try:
            found.add(state.node_index(path.stem))
        except ValueError:
            pass
    return sorted(found)


def running_indexes() -> list[int]:
    return [i for i in known_indexes() if nodes.running_pid(i) is not None]


def ensure_api_key() -> Path:
    """The lab's API key (state.api_key_path), made once, readable by its owner only."""
    path = state.api_key_path()
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path


def up(count: int, timeout: float | None = None, log=print, cables: str | None = None,
       accel: str | None = None) -> dict[int, float]:
    """Starts the lab; `cables` (cx7.CABLES) defaults to what the lab was last brought up with;
    `accel` (kvm, tcg, auto; default SPARK_LAB_ACCEL, else auto) picks the qemu accelerator."""
    if count not in state.SUPPORTED_SIZES:
        raise LabError(f"--nodes must be one of {state.SUPPORTED_SIZES}, got {count}")
    if cables is not None and cables not in cx7.CABLES:
        raise LabError(f"--cables must be one of {sorted(cx7.CABLES)}, got {cables!r}")
    for program in ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"):
        require(program)
    running = running_indexes()
    previous = recorded_count()
    if running and previous and previous != count:
        raise LabError(f"the lab is running with {previous} nodes: `python -m lab down` first")
    cables = cables or recorded_cables()
    if running and cables != recorded_cables():
        raise LabError(f"the lab is running with --cables {recorded_cables()}: `python -m lab down` first")
    choice = _accelerator(accel, running, log)
    image = image_mod.ensure_image(log=log)
    state.state_dir().mkdir(parents=True, exist_ok=True)
    ensure_api_key()
    _record(count, image, cables, choice)
    indexes = list(range(1, count + 1))
    to_start = [i for i in indexes if i not in running]
    load = host_load()
    for index in to_start:
        nodes.check_ports(index)
    if topology.uses_switch(count) and switchproc.ensure_running(count, cables):
        log(f"QSFP switch on 127.0.0.1 port "
            f"{', '.join(str(p) for p, _ in topology.switch_specs(count, cables))}")
    log(f"QSFP cables: {describe_cables(cables)}")
    for index in to_start:
        if nodes.ensure_overlay(index, image):
            ssh.forget_host_key(index)
        nodes.start(index, count, image, cables, choice.accel)
        log(f"{state.node_name(index)}: started (ssh port {state.ssh_port(index)})")
    budget = bootwait.boot_budget(choice.accel, len(to_start), os.cpu_count() or 1, load,
                                  _base_timeout(timeout))
    answered = wait_for_ssh(indexes, budget, log=log)
    print_table(indexes, answered, set(running), log)
    return answered


def wait_for_ssh(indexes: list[int], budget: bootwait.Budget, log=print) -> dict[int, float]:
    """Seconds until each node answered SSH; a LabError naming what was awaited when one did not."""
    if budget.factor > 1:
        log(f"slow host: waiting up to {budget.seconds:.0f}s per boot (x{budget.factor:.1f} for "
            f"{budget.booting} VM(s) + load {budget.load:.1f} on {budget.cpus} CPU(s))")
    watched = [bootwait.Node(i, state.node_name(i), f"{state.SSH_HOST}:{state.ssh_port(i)}",
                             nodes.console_path(i)) for i in indexes]
    bootwait.wait(watched, budget, ssh.reachable, lambda i: nodes.running_pid(i) is not None, log=log)
    failed = [n for n in watched if n.answered is None]
    if failed:
        first = failed[0]
        print(f"--- last lines of {first.name}'s console ({first.console}) ---", file=sys.stderr)
        print(nodes.console_tail(first.index), file=sys.stderr)
        others = ", ".join(n.name for n in failed[1:])
        raise LabError(f"{first.name} did not come up: {first.failure}"
                       + (f" (also: {others})" if others else "")
                       + "; the VMs are left running: `python -m lab down` to stop them")
    return {n.index: n.answered for n in watched}


def _accelerator(requested: str | None, running: list[int], log) -> accel_mod.Choice:
    """The probe's choice, or the running VMs' accelerator: one lab runs under one accelerator,
    so `lab status` tells the truth about every node."""
    recorded = recorded_accel()
    if running and recorded:
        kept = accel_mod.Choice(*recorded)
        if requested and requested != accel_mod.AUTO and requested != kept.accel:
            raise LabError(f"the lab is running under {kept.accel}, not {requested}: "
                           "`python -m lab down` first")
        log(f"lab: accelerator {kept.accel} ({kept.reason}; kept: the lab's VMs run under it)")
        return kept
    choice = accel_mod.choose(requested)
    log(choice.line())
    return choice


def host_load() -> float:
    """The 1-minute load average: work the booting VMs will share the CPUs with."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _base_timeout(timeout: float | None) -> float | None:
    """--timeout, else SPARK_LAB_BOOT_TIMEOUT, else None (the accelerator's default)."""
    return timeout if timeout is not None else state.boot_timeout()


def down(force: bool = False, log=print) -> None:
    indexes = running_indexes()
    with ThreadPoolExecutor(max_workers=max(1, len(indexes))) as pool:
        list(pool.map(lambda i: nodes.stop(i, graceful=not force), indexes))
    for index in indexes:
        log(f"{state.node_name(index)}: stopped")
    if switchproc.stop():
        log("QSFP switch: stopped")


def destroy(log=print) -> None:
    down(force=True, log=log)
    directory = state.state_dir()
    if directory.exists():
        shutil.rmtree(directory)
        log(f"removed {directory}")


def rebuild(name: str, timeout: float | None = None, log=print, accel: str | None = None) -> float:
    index = _index_of(name)
    count = recorded_count() or max(2, index)
    if index > count:
        raise LabError(f"{name} is not part of the {count}-node lab")
    choice = _accelerator(accel, [i for i in running_indexes() if i != index], log)
    image = image_mod.ensure_image(log=log)
    state.state_dir().mkdir(parents=True, exist_ok=True)
    layout = _recorded()
    if layout:
        _layout_file().write_text(json.dumps(dict(layout, accel=choice.accel, accel_reason=choice.reason)) + "\n")
    if nodes.stop(index, graceful=False):
        log(f"{name}: stopped")
    nodes.delete_files(index)
    nodes.ensure_overlay(index, image)
    ssh.forget_host_key(index)
    nodes.check_ports(index)
    cables = recorded_cables()
    if topology.uses_switch(count):
        switchproc.ensure_running(count, cables)
    load = host_load()
    started = time.monotonic()
    nodes.start(index, count, image, cables, choice.accel)
    log(f"{name}: reinstalled from the base image, booting")
    wait_for_ssh([index], bootwait.boot_budget(choice.accel, 1, os.cpu_count() or 1, load,
                                               _base_timeout(timeout)), log=log)
    elapsed = time.monotonic() - started
    log(f"{name}: reachable after {elapsed:.0f}s")
    return elapsed


def status(log=print) -> list[dict]:
    rows = []
    for index in known_indexes():
        running = nodes.running_pid(index) is not None
        rows.append({
            "name": state.node_name(index),
            "running": running,
            "ssh_port": state.ssh_port(index),
            "reachable": running and ssh.reachable(index, timeout=10),
        })
    if not rows:
        log(f"no lab in {state.state_dir()}")
        return rows
    log(f"{'node':<10}{'running':<9}{'ssh port':<10}reachable")
    for row in rows:
        log(f"{row['name']:<10}{_yes(row['running']):<9}{row['ssh_port']:<10}{_yes(row['reachable'])}")
    log(f"QSFP cables: {describe_cables(recorded_cables())}")
    accelerator = recorded_accel()
    if accelerator:
        log(f"accelerator: {accelerator[0]} ({accelerator[1]})")
    if topology.uses_switch(recorded_count() or 0):
        log(f"QSFP switch: {'running' if switchproc.running_pid() else 'stopped'}")
    return rows


def describe_cables(cables: str) -> str:
    """One line: which netdevs have a cable (carrier) and which have none."""
    def names(port):
        return " + ".join(lane.netdev for lane in cx7.LANES if lane.port == port)

    ports = cx7.CABLES[cables]
    text = "; ".join(f"port {port} cabled ({names(port)})" for port in ports)
    empty = [port for port in (0, 1) if port not in ports]
    if empty:
        text += "; " + "; ".join(f"port {port} empty, no carrier ({names(port)})" for port in empty)
    return f"{cables}: {text}"


def print_table(indexes: list[int], answered: dict[int, float], already: set[int], log=print) -> None:
    log(f"{'node':<10}{'ssh':<20}{'state'}")
    for index in indexes:
        how = "was running" if index in already else f"up after {answered.get(index, 0):.0f}s"
        log(f"{state.node_name(index):<10}{state.SSH_HOST + ':' + str(state.ssh_port(index)):<20}{how}")
    log(f"ssh: python -m lab ssh spark-1   (user {state.ADMIN_USER}, sudo password {state.ADMIN_PASSWORD})")


def _index_of(name: str) -> int:
    try:
        return state.node_index(name)
    except ValueError:
        raise LabError(f"unknown node {name!r}: nodes are named spark-1, spark-2, ...") from None


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
