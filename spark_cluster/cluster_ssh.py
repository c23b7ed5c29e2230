"""Names of the cluster's node-to-node SSH: the ssh role writes them, distribute's copies use them."""

# The admin's key pair for node-to-node SSH, in ~admin/.ssh/.
KEY_NAME = "id_ed25519_spark_cluster"
# Every peer's host keys, under its name and its QSFP address.
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
