"""Two DGX Sparks joined by a QSFP cable (bond0, 10.0.0.0/24, as a field report
of DeepSeek V4 Flash on 2 Sparks set them up).

Edit ssh_hostname to each Spark's management (LAN) address and ssh_user to
the admin account created at first boot. The first node is the head.
Run:  pyinfra inventory/spark2.py deploy.py
"""

from spark_cluster.inventory import define_cluster

spark = define_cluster(
    [
        {"name": "spark-1", "ssh_hostname": "192.0.2.11", "ssh_user": "nvidia", "qsfp_address": "10.0.0.1/24"},
        {"name": "spark-2", "ssh_hostname": "192.0.2.12", "ssh_user": "nvidia", "qsfp_address": "10.0.0.2/24"},
    ]
)
