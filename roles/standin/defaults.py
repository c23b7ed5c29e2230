from spark_cluster.engine_image import IMAGE_DEFAULTS

DEFAULTS = {
    # Set by the lab inventories; on real Sparks the engine image is the user's.
    "serving_standin": IMAGE_DEFAULTS["serving_standin"],
}

# Where the stand-in's sources and builder land on the node.
STANDIN_DIR = "/usr/local/lib/spark-cluster/standin"
STANDIN_BUILDER = "/usr/local/lib/spark-cluster/build_standin.py"
