from spark_cluster.engine_image import IMAGE_DEFAULTS

DEFAULTS = {
    "ssh_user": None,
    "serving_model": None,
    "distribute_model": True,
    # Which image, and from which node (distribute_source), is decided in
    # spark_cluster.engine_image: the other roles need the same answer.
    "distribute_image": IMAGE_DEFAULTS["distribute_image"],
}
