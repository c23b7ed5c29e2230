"""Serving switched off and on across the whole cluster, by a person (stop.py,
start.py, restart.py at the repo root; `spark-cluster stop|start|restart`).

Desired state after `stop`: on every node the watcher is inactive (stopped
first, so it restarts nothing it sees go down) and then the engine, head and
workers alike; both units stay enabled, so a reboot or the next deploy brings
serving back. After `start`: the workers' engines started, then the head's
(the workers wait at the head's rendezvous; each unit's prestart drops the
page cache and checks free memory first), then the watchers, with a clean
slate (a watcher that held after too many restarts watches again); the run
ends once the head answers a chat completion. `restart` is `stop` then `start`.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from . import defaults
from .desired import serving_settings
from .ready import wait_operation

# The watcher restarts an engine it sees die: it goes first, or it would undo the stop.
STOP_ORDER = (defaults.WATCH_UNIT_NAME, defaults.UNIT_NAME)
# (unit, which nodes): the workers wait for the head; the watchers judge a cluster that is up.
START_ORDER = ((defaults.UNIT_NAME, "workers"), (defaults.UNIT_NAME, "head"), (defaults.WATCH_UNIT_NAME, "all"))
_WHY = {
    (defaults.WATCH_UNIT_NAME, "stop"): "Stop the watcher first, so it restarts nothing it sees go down",
    (defaults.UNIT_NAME, "stop"): "Stop serving on every node, head and workers",
    (defaults.UNIT_NAME, "workers"): "Start the workers' engines (page cache dropped, memory checked)",
    (defaults.UNIT_NAME, "head"): "Start the head's engine, where the workers wait",
    (defaults.WATCH_UNIT_NAME, "all"): "Start the watchers with a clean slate",
}


def wants(account):
    """Facts read ahead (cluster_facts.read_ahead): none; systemd's operations read their own."""
    return []


def applies(nodes: str, is_head: bool) -> bool:
    """Whether a START_ORDER step for `nodes` ("workers" | "head" | "all") runs on this node."""
    return {"workers": not is_head, "head": is_head, "all": True}[nodes]


def _stop():
    for unit in STOP_ORDER:
        systemd.service(name=_WHY[(unit, "stop")], service=unit, running=False)


def _start():
    is_head = bool(host.data.get("is_head"))
    # Every step exists on every node (skipped where it does not apply), so all
    # nodes run the steps in this order: pyinfra runs one operation everywhere
    # before the next.
    for unit, nodes in START_ORDER:
        systemd.service(name=_WHY[(unit, nodes)], service=unit, running=True,
                        _if=lambda nodes=nodes: applies(nodes, is_head))
    s = serving_settings(host.data)
    wait_operation("Wait until the head answers a chat completion", s.serving_start_timeout_s, defaults.WATCH_PATH)


@deploy("serving: stop on every node")
def stop():
    _stop()


@deploy("serving: start on every node")
def start():
    _start()


@deploy("serving: clean restart of the cluster")
def restart():
    # Every node stops before any starts: no engine joins a half-stopped cluster.
    _stop()
    _start()
