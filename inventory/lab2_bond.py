"""The 2-node lab in bond mode: the one line that switches a cluster from the
default dual_subnet layout to bond0 over the rails (on real Sparks it goes in
group_data/all.py). The lab tier converges, re-runs and verifies it."""

from inventory.lab_common import lab_cluster

spark = lab_cluster(2, network_mode="bond")
