"""Restart serving on the whole cluster, cleanly: stop every watcher and
engine, start the workers, then the head, then the watchers, and wait until
it answers.

    pyinfra inventory/spark2.py restart.py   (or: spark-cluster restart)

(The watchers restart engines on their own when a head or worker dies; this
is for a person: after fixing what made a watcher hold, or to free memory.)
"""

from pyinfra import config

from roles.serving import restart
from spark_cluster.lost_nodes import isolate_lost_nodes

# First: a node lost mid-run fails alone, and the run ends naming it (docs/design.md).
isolate_lost_nodes()

# Stopping and starting units needs root; the admin user escalates with sudo.
config.SUDO = True

restart.apply()  # stop.py's steps, then start.py's
