"""The ssh role's uninstall against the fake nodes of test_ssh_ops, whose
files live in a temporary directory and whose edits run for real: a deploy,
then the owner adds lines of their own, then the uninstall takes exactly what
the deploy wrote, a second uninstall changes nothing, and a deploy converges
as on a fresh node."""

import re
import subprocess

import pytest
from collect_ops import changed, cluster, converge
from pyinfra.api.command import FileUploadCommand
from test_ssh_ops import HOME, KNOWN_HOSTS, PRIVATE_KEY, FakeNode

from roles import ssh
from roles.ssh import keys
from roles.ssh import uninstall as ssh_uninstall
from roles.ssh.defaults import CONFIG_MARKER, KNOWN_HOSTS_MARKER

OWNER_KEY = "ssh-ed25519 AAAAowner owner@laptop"
OWNER_CONFIG = "Host github.com\n  User git\n"
OWNER_KNOWN = "github.com ssh-ed25519 AAAAgithub"


class UninstallNode(FakeNode):
    """FakeNode that also runs removals (rm -f) of its files under its root."""

    def run(self, command):
        if not isinstance(command, FileUploadCommand):
            raw = command.get_raw_value()
            if raw.startswith("rm -f ") and raw.count(" ") == 2:
                path = raw.split()[2].strip("'")
                subprocess.run(["rm", "-f", str(self.local(path))], check=True)
                return
        super().run(command)


@pytest.fixture
def env(tmp_path, cluster_key_store):
    return tmp_path


def deployed(env, monkeypatch):
    hosts = cluster(2)
    nodes = {name: UninstallNode(env / name, name) for name, _ in hosts}
    converge(hosts, nodes, monkeypatch, (ssh,))
    for node in nodes.values():
        # The owner's own lines, written after the deploy.
        with node.local(f"{HOME}/.ssh/authorized_keys").open("a") as handle:
            handle.write(OWNER_KEY + "\n")
        with node.local(f"{HOME}/.ssh/config").open("a") as handle:
            handle.write(OWNER_CONFIG)
        with node.local(KNOWN_HOSTS).open("a") as handle:
            handle.write(OWNER_KNOWN + "\n")
    return hosts, nodes


def test_uninstall_takes_what_the_deploy_wrote_and_keeps_the_owners_lines(env, monkeypatch):
    hosts, nodes = deployed(env, monkeypatch)
    first = converge(hosts, nodes, monkeypatch, (ssh_uninstall,))
    for name, node in nodes.items():
        assert changed(first[name]), name
        assert not node.local(PRIVATE_KEY).exists() and not node.local(PRIVATE_KEY + ".pub").exists()
        authorized = [line for line in node.text(f"{HOME}/.ssh/authorized_keys").splitlines() if line.strip()]
        assert authorized == [OWNER_KEY]
        config = node.text(f"{HOME}/.ssh/config")
        assert config.strip() == OWNER_CONFIG.strip()
        assert node.block(f"{HOME}/.ssh/config", CONFIG_MARKER) == []
        assert node.block(KNOWN_HOSTS, KNOWN_HOSTS_MARKER) == []
        assert [line for line in node.text(KNOWN_HOSTS).splitlines() if line.strip()] == [OWNER_KNOWN]

    second = converge(hosts, nodes, monkeypatch, (ssh_uninstall,))
    assert {name: changed(ops) for name, ops in second.items()} == {name: [] for name in nodes}

    # A deploy after it puts everything back, and the next one changes nothing.
    again = converge(hosts, nodes, monkeypatch, (ssh,))
    key = keys.ensure_cluster_key("spark")
    for name, node in nodes.items():
        assert changed(again[name])
        assert node.local(PRIVATE_KEY).read_bytes() == key.private_path.read_bytes()
        assert key.public_line in node.text(f"{HOME}/.ssh/authorized_keys").splitlines()
    settled = converge(hosts, nodes, monkeypatch, (ssh,))
    assert {name: changed(ops) for name, ops in settled.items()} == {name: [] for name in nodes}


def test_the_authorized_keys_pattern_matches_only_the_cluster_key():
    pattern = re.compile(ssh_uninstall.authorized_line_pattern("lab.2"))
    assert pattern.search(f"ssh-ed25519 AAAAx {keys.key_comment('lab.2')}")
    assert not pattern.search(f"ssh-ed25519 AAAAx {keys.key_comment('lab.2')}-old")
    assert not pattern.search("ssh-ed25519 AAAAx spark-cluster@labx2")  # the dot is a dot
    assert not pattern.search(OWNER_KEY)
