DEFAULTS = {
    "ssh_user": None,
    "serving_model": None,
    "serving_image": None,
    "serving_standin": False,
    # The node that already holds the model and the engine image; None = the head.
    "distribute_source": None,
    "distribute_model": True,
    "distribute_image": True,
}
