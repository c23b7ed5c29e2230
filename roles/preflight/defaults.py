from spark_cluster.engine_image import IMAGE_DEFAULTS
from spark_cluster.qsfp_owners import OWNER_DEFAULTS

DEFAULTS = {
    "ssh_user": None,
    # qsfp_takeover, shared with the network role: another owner of the QSFP
    # ports stops the node here unless it is on (spark_cluster/qsfp_owners.py).
    **OWNER_DEFAULTS,
    # The same key (and default) as the network role's: "all": every rail (each
    # PCIe half of each port in qsfp_ports) needs a carrier; "any": only a node
    # with no rail up at all is stopped. The rails themselves come from
    # spark_cluster.fabric (qsfp_ports), as the network role's do.
    "qsfp_carrier_required": "all",
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
