"""The ssh role's pure parts: the controller's key pair and the rendered text."""

import os
import stat

import paramiko
import pytest

from roles.ssh import keys
from roles.ssh.facts import parse_public_keys
from roles.ssh.keys import ClusterKeyError, ensure_cluster_key
from roles.ssh.render import keys_by_name, known_hosts_text, ssh_config_text
from spark_cluster.inventory import define_cluster


@pytest.fixture
def state_dir(cluster_key_store):
    return cluster_key_store


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_is_made_private_and_in_the_cluster_directory(state_dir):
    key = ensure_cluster_key("lab")
    assert key.private_path == state_dir / "lab" / "id_ed25519"
    assert mode(state_dir / "lab") == 0o700
    assert mode(key.private_path) == 0o600
    assert mode(key.public_path) == 0o644
    assert key.private_path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_public_key_is_one_openssh_line_that_matches_the_private_key(state_dir):
    key = ensure_cluster_key("lab")
    kind, blob, comment = key.public_line.split(" ")
    assert kind == "ssh-ed25519" and comment == "spark-cluster@lab"
    assert key.public_path.read_text() == key.public_line + "\n"
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key.private_path))
    assert loaded.get_base64() == blob


def test_key_is_reused_by_a_later_run(state_dir):
    first = ensure_cluster_key("lab")
    content = first.private_path.read_bytes()
    keys._ensure.cache_clear()  # a new pyinfra process
    os.chmod(first.private_path, 0o644)  # loosened by hand: tightened again
    second = ensure_cluster_key("lab")
    assert second.private_path.read_bytes() == content
    assert second.public_line == first.public_line
    assert mode(second.private_path) == 0o600


def test_each_cluster_has_its_own_key(state_dir):
    assert ensure_cluster_key("a").public_line.split()[1] != ensure_cluster_key("b").public_line.split()[1]


def test_cluster_name_cannot_escape_the_state_directory(state_dir):
    with pytest.raises(ClusterKeyError):
        ensure_cluster_key("../elsewhere")


def test_known_hosts_lists_every_member_sorted_and_deduplicated():
    text = known_hosts_text({
        "spark-2": ("10.0.0.2", ["ssh-rsa BBB", "ssh-ed25519 AAA", "ssh-rsa BBB"]),
        "spark-1": ("10.0.0.1", ["ssh-ed25519 CCC"]),
    })
    assert text == (
        "spark-1,10.0.0.1 ssh-ed25519 CCC\n"
        "spark-2,10.0.0.2 ssh-ed25519 AAA\n"
        "spark-2,10.0.0.2 ssh-rsa BBB\n"
    )


def test_known_hosts_does_not_depend_on_input_order():
    a = {"n1": ("10.0.0.1", ["ssh-ed25519 A", "ecdsa-sha2-nistp256 B"]), "n2": ("10.0.0.2", ["ssh-ed25519 C"])}
    b = {"n2": ("10.0.0.2", ["ssh-ed25519 C"]), "n1": ("10.0.0.1", ["ecdsa-sha2-nistp256 B", "ssh-ed25519 A"])}
    assert known_hosts_text(a) == known_hosts_text(b)


def test_known_hosts_block_is_read_back_by_name():
    text = known_hosts_text({"spark-1": ("10.0.0.1", ["ssh-ed25519 A", "ssh-rsa B"])})
    assert keys_by_name(text.splitlines()) == {"spark-1": ["ssh-ed25519 A", "ssh-rsa B"]}
    assert keys_by_name(None) == {}
    assert keys_by_name(["# a comment", ""]) == {}


def test_host_public_keys_drop_comments_and_sort():
    lines = [
        "ssh-rsa AAAArsa root@installer",
        "ecdsa-sha2-nistp256 AAAAecdsa root@installer",
        "ssh-ed25519 AAAAed root@installer",
        "",
    ]
    assert parse_public_keys(lines) == [
        "ecdsa-sha2-nistp256 AAAAecdsa",
        "ssh-ed25519 AAAAed",
        "ssh-rsa AAAArsa",
    ]


def test_ssh_config_pins_each_peer_to_its_qsfp_address_with_strict_host_keys():
    text = ssh_config_text(
        [{"name": "spark-3", "qsfp_ip": "10.0.0.3", "rank": 2}, {"name": "spark-2", "qsfp_ip": "10.0.0.2", "rank": 1}],
        "nvidia",
        "/home/nvidia/.ssh/id_ed25519_spark_cluster",
    )
    entries = text.split("Host ")[1:]
    assert entries[0].startswith("spark-2 10.0.0.2\n") and entries[1].startswith("spark-3 10.0.0.3\n")
    for entry in entries[:2]:
        assert "HostName 10.0.0." in entry
        assert "User nvidia" in entry
        assert "IdentityFile /home/nvidia/.ssh/id_ed25519_spark_cluster" in entry
        assert "IdentitiesOnly yes" in entry
        assert "StrictHostKeyChecking yes" in entry
    assert "StrictHostKeyChecking no" not in text and "accept-new" not in text
    # The block ends by reopening the global scope for whatever follows it.
    assert text.rstrip("\n").endswith("Host *")


def host_blocks(text):
    """{tuple of Host patterns: {keyword: [values]}} for each Host block of an ssh_config."""
    blocks, current = {}, None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "Host":
            current = blocks.setdefault(tuple(words[1:]), {})
        else:
            current.setdefault(words[0], []).append(" ".join(words[1:]))
    return blocks


def test_ssh_config_gives_every_peer_of_a_four_node_cluster_its_own_address():
    # Addresses out of name order, so no peer's address can be guessed from another's.
    cluster = define_cluster([
        {"name": f"spark-{i}", "ssh_hostname": "127.0.0.1", "ssh_port": 2200 + i, "ssh_user": "nvidia",
         "qsfp_address": address}
        for i, address in enumerate(["10.0.0.7/24", "10.0.0.12/24", "10.0.0.3/24", "10.0.0.40/24"], start=1)
    ])
    for name, data in cluster:
        text = ssh_config_text(data["peers"], "nvidia", "/home/nvidia/.ssh/id_ed25519_spark_cluster")
        blocks = host_blocks(text)
        assert list(blocks) == [*((peer["name"], peer["qsfp_ip"]) for peer in data["peers"]), ("*",)], name
        for peer in data["peers"]:
            assert blocks[(peer["name"], peer["qsfp_ip"])] == {
                "HostName": [peer["qsfp_ip"]],
                "User": ["nvidia"],
                "IdentityFile": ["/home/nvidia/.ssh/id_ed25519_spark_cluster"],
                "IdentitiesOnly": ["yes"],
                "StrictHostKeyChecking": ["yes"],
            }, (name, peer["name"])
        assert blocks[("*",)] == {}
