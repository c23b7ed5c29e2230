"""The 4-node lab (`python -m lab up --nodes 4`): four VMs on a virtual QSFP switch."""

from inventory.lab_common import lab_cluster

spark = lab_cluster(4)
