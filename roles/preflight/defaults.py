from spark_cluster.engine_image import IMAGE_DEFAULTS

DEFAULTS = {
    "ssh_user": None,
    # Same keys as the network role reads: preflight checks the links it will bond.
    "qsfp_interfaces": ["enp1s0f0np0", "enp1s0f1np1"],
    # "any": one cable is a supported setup; "all": every listed port needs a carrier.
    "qsfp_carrier_required": "any",
    # On: nodes whose image differs get the source's (roles/distribute), so a
    # difference is no reason to stop; off: it is, like a kernel mismatch.
    # The image compared across nodes is spark_cluster.engine_image's.
    "distribute_image": IMAGE_DEFAULTS["distribute_image"],
    # Free space the model cache needs on the filesystem of the admin's home
    # (DeepSeek-V4-Flash weights are 149-168 GB).
    "model_disk_gib": 200,
    # False: nodes that disagree (kernel, driver, image) only warn; a node's
    # own problems (link down, low disk) still fail it.
    "preflight_strict": True,
}
