"""A clean restart of serving on the whole cluster (restart.py at the repo root):

    pyinfra inventory/spark2.py restart.py

Desired state afterwards: every node's engine was stopped, then started
afresh (its unit's prestart drops the page cache and checks free memory
first), the workers before the head, so the head finds them waiting at its
rendezvous; every watcher starts with a clean slate (a watcher that held
after too many restarts watches again); the run ends once the head answers a
chat completion. Use it after fixing what made a watcher hold, or to free
memory a crashed engine leaked.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from . import defaults
from .desired import serving_settings
from .ready import wait_operation


def wants(account):
    """Facts read ahead (cluster_facts.read_ahead): none; systemd's operations read their own."""
    return []


@deploy("serving: clean restart of the cluster")
def apply():
    s = serving_settings(host.data)
    # Every node stops before any starts: no engine joins a half-stopped cluster.
    systemd.service(name="Stop serving on every node", service=defaults.UNIT_NAME, running=False)
    # Both operations exist on every node (skipped where they do not apply),
    # so every node runs them in this order: the workers first.
    is_head = bool(host.data.get("is_head"))
    systemd.service(name="Start the workers' engines (page cache dropped, memory checked)",
                    service=defaults.UNIT_NAME, running=True, _if=lambda: not is_head)
    systemd.service(name="Start the head's engine, where the workers wait", service=defaults.UNIT_NAME,
                    running=True, _if=lambda: is_head)
    systemd.service(name="Restart the watchers with a clean slate", service=defaults.WATCH_UNIT_NAME,
                    running=True, restarted=True)
    wait_operation("Wait until the head answers a chat completion", s.serving_start_timeout_s, defaults.WATCH_PATH)
