"""Stop serving on the whole cluster; the units stay enabled, so the next
deploy, `start.py` or a reboot brings it back.

    pyinfra inventory/spark2.py stop.py      (or: spark-cluster stop)
"""

from pyinfra import config

from roles.serving import control

# Stopping units needs root; the admin user escalates with sudo.
config.SUDO = True

control.stop()  # watchers first (they would restart what stops), then every engine
