DEFAULTS = {
    # Set by the lab inventories; on real Sparks the engine image is the user's.
    "serving_standin": False,
}
