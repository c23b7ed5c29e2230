"""Two DGX Sparks joined by one QSFP cable in port 1. qsfp_address is each
node's address on the first rail (192.168.100.0/24, as NVIDIA's playbook);
group_data/all.py derives the other rail's (192.168.101.x) and the mode.

Edit ssh_hostname to each Spark's management (LAN) address and ssh_user to
the admin account created at first boot. The first node is the head.
Run:  pyinfra inventory/spark2.py deploy.py
"""

from spark_cluster.inventory import define_cluster

spark = define_cluster(
    [
        {"name": "spark-1", "ssh_hostname": "192.0.2.11", "ssh_user": "nvidia", "qsfp_address": "192.168.100.10/24"},
        {"name": "spark-2", "ssh_hostname": "192.0.2.12", "ssh_user": "nvidia", "qsfp_address": "192.168.100.11/24"},
    ]
)
