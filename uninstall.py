"""Take spark-cluster off DGX Sparks (or lab VMs): what the deploy installed
goes, the owner's own network configuration comes back; a second run changes
nothing, and deploy.py converges again afterwards.

    pyinfra inventory/spark2.py uninstall.py
    pyinfra inventory/spark2.py uninstall.py --data uninstall_remove_model=True --data uninstall_remove_images=True

The model and the engine image stay unless asked (they are data, slow to
fetch again). Roles are undone in the reverse of deploy.py's order; each
module's docstring lists the state it leaves.
"""

import logging

from pyinfra import config

from roles import leftovers
from roles.distribute import uninstall as distribute
from roles.network import uninstall as network
from roles.rdma import uninstall as rdma
from roles.serving import uninstall as serving
from roles.ssh import uninstall as ssh
from roles.standin import uninstall as standin
from spark_cluster.cluster_facts import read_ahead
from spark_cluster.lost_nodes import isolate_lost_nodes

# First: a node lost mid-run fails alone, and the run ends naming it (docs/design.md).
isolate_lost_nodes()

# Every step changes system state; the admin user escalates with sudo.
config.SUDO = True
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

# What every step will read is asked of each node in one command.
read_ahead(serving, distribute, standin, ssh, rdma, network, leftovers)

serving.apply()     # first: its watcher would start the engine again while the rest goes
distribute.apply()  # the model and the image, only when asked: they are data, slow to fetch again
standin.apply()     # lab only: the stand-in's sources (its image is distribute's to remove)
ssh.apply()         # after distribute: nothing copies over the cluster key any more
# caches: nothing: the engine caches and the Hugging Face cache hold data (compiled kernels, the model)
rdma.apply()        # after serving: its unit ran the detector; dockerd is not restarted
network.apply()     # late: the QSFP ports go back to the owner's configuration, restored from the backups
# gpu: nothing, on purpose: the DRM override stays removed. Putting it back would
# halve the memory CUDA sees and cost a reboot, and the next deploy would remove it
# again with another reboot; absent, a later deploy finds nothing to do there.
# preflight: nothing: it only reads.
leftovers.check()   # last: fails, naming them, when a unit, file or netplan of ours remains
