DEFAULTS = {
    "ssh_user": None,
    # Names the controller's key directory: one key pair per cluster.
    "cluster_name": "spark",
}

KEY_NAME = "id_ed25519_spark_cluster"
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# Markers of the managed blocks; other lines of both files are left alone.
# pyinfra matches them as awk regexes: no regex metacharacters in them.
KNOWN_HOSTS_MARKER = "# {mark} spark-cluster host keys, managed by pyinfra"
CONFIG_MARKER = "# {mark} spark-cluster peers, managed by pyinfra"
