DEFAULTS = {
    # Ships on every DGX Spark; with it CUDA sees ~62 GB of the 128 GB pool.
    "drm_override_file": "/etc/modprobe.d/zz-nvidia-drm-override.conf",
    # A real Spark can take several minutes to come back (firmware, driver load).
    "reboot_timeout_s": 900,
}
