"""A clean restart of serving on the whole cluster (restart.py at the repo root):

    pyinfra inventory/spark2.py restart.py

Desired state afterwards: every node's watcher and engine were stopped, then
the engines started afresh (its unit's prestart drops the page cache and
checks free memory first), the workers before the head, so the head finds
them waiting at its rendezvous; every watcher starts with a clean slate (a
watcher that held after too many restarts watches again); the run ends once
the head answers a chat completion. Use it after fixing what made a watcher
hold, or to free memory a crashed engine leaked. The steps live in control.py,
with stop and start.
"""

from .control import restart as apply, wants  # noqa: F401
