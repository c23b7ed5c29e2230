DEFAULTS = {
    # The admin user owns the caches: models are staged into the HF cache as
    # that user, and the engine (root in the container) can write anywhere.
    "ssh_user": None,
    "cache_dir_mode": "755",
}
