"""The ssh role's fixed markers (its settings: spark_cluster/schema.py)."""

# Markers of the managed blocks; other lines of both files are left alone.
# pyinfra matches them as awk regexes: no regex metacharacters in them.
KNOWN_HOSTS_MARKER = "# {mark} spark-cluster host keys, managed by pyinfra"
CONFIG_MARKER = "# {mark} spark-cluster peers, managed by pyinfra"
