"""Where the stand-in lands on a node (its setting, serving_standin: spark_cluster/schema.py)."""

# Where the stand-in's sources and builder land on the node.
STANDIN_DIR = "/usr/local/lib/spark-cluster/standin"
STANDIN_BUILDER = "/usr/local/lib/spark-cluster/build_standin.py"
