"""spark-cluster status | logs | smoke: every node looked at through verify's
SSH layer (tests/verify/sparkverify), from the inventory and --data the deploy used.

Each node answers for itself with the serving watcher the deploy installed
(/usr/local/lib/spark-cluster/serving_watch.py report | smoke), run as root:
the API key sits in the 0600 serving.env and docker is root's. Nodes are asked
in parallel; one that cannot be reached is a row saying so, never a traceback.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
# verify's inventory reader and SSH layer: one way to load and reach the cluster.
if str(REPO_ROOT / "tests" / "verify") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "verify"))

from roles.serving import defaults as serving  # noqa: E402
from sparkverify.errors import VerifyEnvironmentError  # noqa: E402
from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.parse import parse_ip_addr_json  # noqa: E402
from sparkverify.rails import node_fabric  # noqa: E402
from sparkverify.remote import Node, SudoRefused  # noqa: E402

from .command import REPORTS  # noqa: E402
from .report import NodeStatus, RailAddress, prefixed, smoke_text, status_exit, status_table  # noqa: E402

WATCH = f"/usr/bin/python3 {serving.WATCH_PATH}"
SMOKE_CONCURRENCY = 4
SMOKE_MAX_TOKENS = 128
LOG_LINES = 40


def checkout_of(args) -> Path:
    """The checkout main() found (require_checkout); this package's own for a caller that set none."""
    return getattr(args, "checkout", None) or REPO_ROOT


def cluster_nodes(args) -> list[Node]:
    """The inventory's nodes, head first, with the deploy's --data and --group-data
    (main() made the paths absolute, command.resolve, and found the checkout)."""
    root = checkout_of(args)
    specs = load_cluster(args.inventory, root, getattr(args, "data", None) or (),
                         getattr(args, "group_data", None) or ())
    return [Node(spec, root, getattr(args, "sudo_password", None)) for spec in specs]


def loaded_nodes(args) -> list[Node] | None:
    """cluster_nodes, or None after one line saying why the inventory did not load."""
    try:
        return cluster_nodes(args)
    except Exception as error:  # nothing was connected: what the inventory or --data says is wrong
        print(f"spark-cluster: cannot load inventory {args.inventory}: {error}; fix: the inventory file, "
              "its group_data or a --data KEY=VALUE", file=sys.stderr)
        return None


def on_every_node(nodes: list[Node], ask: Callable[[Node], Any]) -> list[Any]:
    """ask(node) on every node at once; results in the nodes' order."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(ask, nodes))


def last_json(text: str) -> dict | None:
    """The last line of `text` that is a JSON object (the watcher prints one)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


# --- status -------------------------------------------------------------------

def node_rails(node: Node) -> tuple[RailAddress, ...]:
    """The netdevs the deploy gave an address (the fabric verify's `links` check walks), as they are now."""
    rails = []
    for link in node_fabric(node.spec).links:
        shown = node.run(f"ip -j addr show dev {shlex.quote(link.netdev)}", timeout=20)
        if not shown.ok:
            rails.append(RailAddress(link.netdev, error=f"ip addr: {shown.brief}"))
            continue
        try:
            state = parse_ip_addr_json(shown.stdout)
        except ValueError:
            rails.append(RailAddress(link.netdev, error="ip -j addr printed no JSON"))
            continue
        rails.append(RailAddress(link.netdev, tuple(f"{ip}/{prefix}" for ip, prefix in state.ipv4), state.up))
    return tuple(rails)


def node_status(node: Node) -> NodeStatus:
    try:
        rails = node_rails(node)
        shown = node.run_root(f"{WATCH} report", timeout=60)
    except SudoRefused as error:  # it says the fix
        return NodeStatus(node.name, error=str(error), problem="sudo refused")
    except VerifyEnvironmentError as error:  # unreachable: it says the fix
        return NodeStatus(node.name, error=str(error))
    except Exception as error:  # a connection lost mid-way (paramiko, socket): still one row
        return NodeStatus(node.name, error=f"{node.name}: lost its SSH connection ({type(error).__name__}: {error}); "
                                           "fix: check the node is up, then run status again")
    report = last_json(shown.stdout) if shown.ok else None
    notes = () if report is not None else (
        f"{node.name}: no report from {serving.WATCH_PATH} ({shown.brief}); expected the serving watcher the "
        "deploy installs; fix: deploy (spark-cluster deploy), which installs it",)
    return NodeStatus(node.name, report=report, rails=rails, notes=notes)


def status(args) -> int:
    nodes = loaded_nodes(args)
    if nodes is None:
        return 2
    statuses = on_every_node(nodes, node_status)
    print(status_table(statuses))
    return status_exit(statuses)


# --- logs ---------------------------------------------------------------------

def journal_command(unit: str, lines: int, follow: bool) -> str:
    """The unit's journal: the engine's own output (the unit runs `docker run` in
    the foreground, so journald keeps it after `docker run --rm` removed the container)."""
    words = ["journalctl", "-u", unit, "--no-pager", "--no-hostname", "-o", "short-iso", "-n", str(int(lines))]
    return " ".join(shlex.quote(word) for word in words + (["-f"] if follow else []))


def logs(args) -> int:
    nodes = loaded_nodes(args)
    if nodes is None:
        return 2
    unit = serving.WATCH_UNIT_NAME if getattr(args, "watcher", False) else serving.UNIT_NAME
    lines = getattr(args, "lines", None) or LOG_LINES
    width = max(len(node.name) for node in nodes)
    if getattr(args, "follow", False):
        return follow_logs(nodes, journal_command(unit, lines, follow=True), width)
    command = journal_command(unit, lines, follow=False)

    def read(node: Node):
        # As root: the journal of a system unit is for root, adm and systemd-journal
        # (the lab's admin is in none of them; DGX OS's first user is in adm).
        try:
            return node.run_root(command, timeout=60)
        except Exception as error:  # unreachable, sudo refused, connection lost: one line, not a traceback
            return error

    failed = 0
    for node, result in zip(nodes, on_every_node(nodes, read)):
        if isinstance(result, Exception):
            print("\n".join(prefixed(node.name, f"cannot read the journal: {result}", width)))
            failed += 1
        elif not result.ok:
            print("\n".join(prefixed(node.name, f"journalctl -u {unit} failed: {result.brief}", width)))
            failed += 1
        else:
            print("\n".join(prefixed(node.name, result.stdout.rstrip("\n") or f"(no journal lines of {unit})",
                                     width)))
    return 1 if failed else 0


def follow_logs(nodes: list[Node], command: str, width: int) -> int:
    """Every node's journal, interleaved line by line behind its name, until Ctrl-C
    (or every stream ended); 1 when a node's journal could not be opened."""
    printing = threading.Lock()

    def say(name: str, line: str):
        with printing:
            print(f"{name.ljust(width)} | {line}", flush=True)

    def stream(node: Node):
        try:
            background = node.start_root(command)
        except Exception as error:
            say(node.name, f"cannot read the journal: {error}")
            unread.append(node.name)
            return
        channels.append(background.channel)
        buffer = b""
        for chunk in iter(lambda: background.channel.recv(65536), b""):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                say(node.name, line.decode(errors="replace"))
        if buffer:
            say(node.name, buffer.decode(errors="replace"))
        if stopping.is_set():
            return
        if background.channel.recv_stderr_ready():  # sudo or journalctl said why
            for line in background.channel.recv_stderr(65536).decode(errors="replace").splitlines():
                say(node.name, line)
        say(node.name, "(journal stream ended: the node went away or rebooted)")

    channels: list = []
    unread: list = []
    stopping = threading.Event()
    threads = [threading.Thread(target=stream, args=(node,), daemon=True) for node in nodes]
    # Ctrl-C only sets a flag: pyinfra's modules run under gevent's monkey patches, whose hub
    # swallows a KeyboardInterrupt raised while the main thread waits; the loop below notices.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    try:
        for thread in threads:
            thread.start()
        while not stopping.is_set() and any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    for channel in channels:
        channel.close()
    for node in nodes:  # the SSH transports end too: nothing is left to wait for at exit
        node.close()
    return 1 if unread else 0


# --- smoke --------------------------------------------------------------------

def smoke(args) -> int:
    nodes = loaded_nodes(args)
    if nodes is None:
        return 2
    head = nodes[0]
    concurrency = int(getattr(args, "concurrency", None) or SMOKE_CONCURRENCY)
    max_tokens = int(getattr(args, "max_tokens", None) or SMOKE_MAX_TOKENS)
    try:
        shown = head.run_root(f"{WATCH} smoke {concurrency} {max_tokens}", timeout=900)
    except VerifyEnvironmentError as error:
        print(f"smoke: {error}")
        return 1
    result = last_json(shown.stdout)
    if result is None:
        print(f"smoke on {head.name}: expected a JSON result from {serving.WATCH_PATH} smoke; found: {shown.brief}; "
              "fix: deploy (spark-cluster deploy) installs the watcher; `spark-cluster status` shows the node")
        return 1
    text, code = smoke_text(head.name, result)
    print(text)
    print(f"report: {write_smoke_report(checkout_of(args), head.name, result)} (JSON)")
    return code


def write_smoke_report(root: Path, head: str, result: dict[str, Any]) -> Path:
    """The figures kept beside verify's report (reports/smoke.json), to compare
    after an upgrade: the head, when, and the watcher's answer as it came."""
    path = Path(root) / REPORTS / "smoke.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path.write_text(json.dumps({"head": head, "at": at, **result}, indent=2, sort_keys=True) + "\n")
    return path
