"""Take DGX Sparks (or lab VMs) to a serving cluster; a second run changes nothing.

    pyinfra inventory/spark2.py deploy.py
"""

from pyinfra import config

from roles import gpu

# Every role changes system state; the admin user escalates with sudo.
config.SUDO = True

gpu.apply()
