"""Take DGX Sparks (or lab VMs) to a serving cluster; a second run changes nothing.

    pyinfra inventory/spark2.py deploy.py

Roles run in dependency order; each one's docstring lists the state it guarantees.
"""

import logging

from pyinfra import config

from roles import caches, distribute, gpu, network, preflight, rdma, serving, ssh, standin
from spark_cluster.cluster_facts import read_ahead
from spark_cluster.lost_nodes import isolate_lost_nodes

# First: a node lost mid-run fails alone, and the run ends naming it (docs/design.md).
isolate_lost_nodes()

# Every role changes system state; the admin user escalates with sudo.
config.SUDO = True
# While a node reboots, paramiko logs a traceback for every reconnect attempt;
# pyinfra itself reports whether the node came back.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

# What every role will read is asked of each node in one command (a no-op run
# is then two round trips per node); a role's first read sends it.
read_ahead(preflight, gpu, network, rdma, caches, ssh, standin, distribute, serving)

preflight.apply()  # compares all nodes first: a mismatched node stops before any change
gpu.apply()        # the reboot it may need must happen before anything else starts
network.apply()
rdma.apply()       # after network: the RoCE v2 IPv4 GID appears once bond0 has its address
caches.apply()
ssh.apply()        # over the QSFP link, so after network
standin.apply()    # lab only: the stand-in engine image, where a user would pull the real one
distribute.apply() # model and image from the head to nodes that lack them, over ssh
serving.apply()    # last: runs the engine with everything above in place
