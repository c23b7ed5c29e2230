"""Start serving on the whole cluster after `stop.py`, and wait until it answers.

    pyinfra inventory/spark2.py start.py     (or: spark-cluster start)
"""

from pyinfra import config

from roles.serving import control
from spark_cluster.lost_nodes import isolate_lost_nodes

# First: a node lost mid-run fails alone, and the run ends naming it (docs/design.md).
isolate_lost_nodes()

# Starting units needs root; the admin user escalates with sudo.
config.SUDO = True

control.start()  # workers, then the head they wait for, then the watchers; ends when the head answers
