"""Take DGX Sparks (or lab VMs) to a serving cluster; a second run changes nothing.

    pyinfra inventory/spark2.py deploy.py

Roles run in dependency order; each one's docstring lists the state it guarantees.
"""

from pyinfra import config

from roles import caches, gpu, network, rdma, serving

# Every role changes system state; the admin user escalates with sudo.
config.SUDO = True

gpu.apply()       # first: the reboot it may need must happen before anything else starts
network.apply()
rdma.apply()      # after network: the RoCE v2 IPv4 GID appears once bond0 has its address
caches.apply()
serving.apply()    # last: runs the engine with everything above in place
