"""Stop serving on the whole cluster; the units stay enabled, so the next
deploy, `start.py` or a reboot brings it back.

    pyinfra inventory/spark2.py stop.py      (or: spark-cluster stop)
"""

from pyinfra import config

from roles.serving import control
from spark_cluster.lost_nodes import isolate_lost_nodes

# First: a node lost mid-run fails alone, and the run ends naming it (docs/design.md).
isolate_lost_nodes()

# Stopping units needs root; the admin user escalates with sudo.
config.SUDO = True

control.stop()  # watchers first (they would restart what stops), then every engine
