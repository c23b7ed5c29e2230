DEFAULTS = {
    "ssh_user": None,
    # Names the controller's key directory: one key pair per cluster.
    "cluster_name": "spark",
}

# Markers of the managed blocks; other lines of both files are left alone.
# pyinfra matches them as awk regexes: no regex metacharacters in them.
KNOWN_HOSTS_MARKER = "# {mark} spark-cluster host keys, managed by pyinfra"
CONFIG_MARKER = "# {mark} spark-cluster peers, managed by pyinfra"
