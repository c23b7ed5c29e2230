"""Four DGX Sparks on a QSFP switch (tensor parallel 4).

Same schema as spark2.py: only the node list differs. The first node is the head.
Run:  pyinfra inventory/spark4.py deploy.py
"""

from spark_cluster.inventory import define_cluster

spark = define_cluster(
    [
        {"name": "spark-1", "ssh_hostname": "192.0.2.11", "ssh_user": "nvidia", "qsfp_address": "192.168.100.10/24"},
        {"name": "spark-2", "ssh_hostname": "192.0.2.12", "ssh_user": "nvidia", "qsfp_address": "192.168.100.11/24"},
        {"name": "spark-3", "ssh_hostname": "192.0.2.13", "ssh_user": "nvidia", "qsfp_address": "192.168.100.12/24"},
        {"name": "spark-4", "ssh_hostname": "192.0.2.14", "ssh_user": "nvidia", "qsfp_address": "192.168.100.13/24"},
    ]
)
