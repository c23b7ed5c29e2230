"""The default 2-node lab (`python -m lab up --nodes 2`): two VMs, two point-to-point QSFP cables."""

from inventory.lab_common import lab_cluster

spark = lab_cluster(2)
