"""The ssh role's operations, generated offline against fake nodes whose files
live in a temporary directory: the role's own shell commands (awk blocks,
appends) run there for real, ownership is recorded, facts are read back.
A first run converges, a second run yields no command at all."""

import hashlib
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from collect_ops import GROUP_DATA, changed, cluster, converge
from pyinfra.api.command import FileUploadCommand

from roles import ssh
from roles.ssh import keys
from roles.ssh.defaults import CONFIG_MARKER, KNOWN_HOSTS_MARKER
HOME = "/home/spark"
KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
PRIVATE_KEY = f"{HOME}/.ssh/id_ed25519_spark_cluster"
# Files whose edits run as real shell commands (their paths never appear in content).
EDITED_FILES = [KNOWN_HOSTS, f"{HOME}/.ssh/config", f"{HOME}/.ssh/authorized_keys"]


class FakeNode:
    def __init__(self, root: Path, name: str):
        self.root = root
        self.owners = {}  # remote path -> (user, group)
        self.host_keys = [f"ssh-ed25519 AAAA{name}ed", f"ssh-rsa AAAA{name}rsa"]
        (root / "etc/ssh").mkdir(parents=True)
        (root / "home/spark").mkdir(parents=True)
        self.owners[HOME] = ("spark", "spark")

    def local(self, path):
        return self.root / path.lstrip("/")

    def text(self, path):
        return self.local(path).read_text()

    def meta(self, path, kind):
        local = self.local(path)
        if not (local.is_file() if kind == "file" else local.is_dir()):
            return None
        user, group = self.owners.get(path, ("root", "root"))
        return {"mode": int(oct(stat.S_IMODE(local.stat().st_mode))[2:]), "user": user, "group": group}

    def block(self, path, marker):
        local = self.local(path)
        if not local.is_file():
            return None
        begin, end = marker.format(mark="BEGIN"), marker.format(mark="END")
        lines, inside, found = [], False, False
        for line in local.read_text().splitlines():
            if line == end:
                inside = False
            if inside:
                lines.append(line)
            if line == begin:
                inside = found = True
        return lines if found else []

    def fact(self, cls, kwargs):
        name = cls.__name__
        if name == "UserAccount":
            return {"home": HOME, "group": "spark"} if kwargs["user"] == "spark" else None
        if name == "HostPublicKeys":
            return sorted(self.host_keys)
        if name == "File":
            return self.meta(kwargs["path"], "file")
        if name == "Directory":
            return self.meta(kwargs["path"], "dir")
        if name == "Sha1File":
            local = self.local(kwargs["path"])
            return hashlib.sha1(local.read_bytes()).hexdigest() if local.is_file() else None
        if name == "AuthorizedKeys":
            local = self.local(kwargs["path"])
            lines = local.read_text().splitlines() if local.is_file() else []
            return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if name == "Block":
            return self.block(kwargs["path"], kwargs["marker"])
        if name == "FindInFile":
            local = self.local(kwargs["path"])
            if not local.is_file():
                return None
            return [line for line in local.read_text().splitlines() if re.search(kwargs["pattern"], line)]
        if name == "TmpDir":
            return str(self.root)
        if name in ("Md5File", "Sha256File", "FileContents", "Link"):
            return None
        raise AssertionError(f"unexpected fact {name} {kwargs}")

    def run(self, command):
        if isinstance(command, FileUploadCommand):
            src = command.src
            data = src.getvalue().encode() if hasattr(src, "getvalue") else Path(src).read_bytes()
            local = self.local(command.dest)
            local.write_bytes(data)
            return
        raw = command.get_raw_value()
        words = shlex.split(raw)
        if words[0] == "chown":
            user, _, group = words[1].partition(":")
            self.owners[words[-1]] = (user, group or user)
            return
        if words[0] == "chmod":
            self.local(words[-1]).chmod(int(words[1], 8))
            return
        if words[:2] == ["mkdir", "-p"]:
            self.local(words[2]).mkdir(parents=True, exist_ok=True)
            return
        # Run the role's command for real, with the files it edits moved under
        # root (only those: the same path inside content must stay as it is).
        moved = raw
        for path in EDITED_FILES:
            moved = re.sub(rf"(?<![\w/.]){re.escape(path)}(?![\w/.])", str(self.local(path)), moved)
        subprocess.run(["bash", "-c", moved], check=True, capture_output=True)


def deploy(hosts, nodes, monkeypatch, limit=None):
    """Prepare and 'execute' the ssh role; returns host name -> [(op name, [commands])]."""
    return converge(hosts, nodes, monkeypatch, (ssh,), limit)


@pytest.fixture
def env(tmp_path, cluster_key_store):
    return tmp_path


def make_nodes(tmp_path, hosts):
    return {name: FakeNode(tmp_path / name, name) for name, _ in hosts}


@pytest.mark.parametrize("count", [2, 4])
def test_converges_then_a_second_run_changes_nothing(count, env, monkeypatch):
    hosts = cluster(count)
    nodes = make_nodes(env, hosts)
    first = deploy(hosts, nodes, monkeypatch)
    key = keys.ensure_cluster_key("spark")
    for name, node in nodes.items():
        assert changed(first[name])
        assert node.local(PRIVATE_KEY).read_bytes() == key.private_path.read_bytes()
        assert node.meta(PRIVATE_KEY, "file") == {"mode": 600, "user": "spark", "group": "spark"}
        assert node.meta(PRIVATE_KEY + ".pub", "file") == {"mode": 644, "user": "spark", "group": "spark"}
        assert node.meta(f"{HOME}/.ssh", "dir") == {"mode": 700, "user": "spark", "group": "spark"}
        # (pyinfra's files.line leaves a blank first line in a new file; sshd skips it)
        assert node.text(f"{HOME}/.ssh/authorized_keys").split() == key.public_line.split()
        assert node.meta(f"{HOME}/.ssh/config", "file") == {"mode": 600, "user": "spark", "group": "spark"}
        config = node.text(f"{HOME}/.ssh/config")
        peers = [n for n in nodes if n != name]
        assert [line.split()[1] for line in config.splitlines() if line.startswith("Host spark-")] == peers
        assert config.count("StrictHostKeyChecking yes") == count - 1
        assert node.meta(KNOWN_HOSTS, "file") == {"mode": 644, "user": "root", "group": "root"}
        known = node.block(KNOWN_HOSTS, KNOWN_HOSTS_MARKER)
        assert len(known) == 2 * count
        for i, member in enumerate(nodes, start=1):
            assert f"{member},10.0.0.{i} ssh-ed25519 AAAA{member}ed" in known
    second = deploy(hosts, nodes, monkeypatch)
    for name in nodes:
        assert changed(second[name]) == [], name


def test_existing_keys_and_config_are_kept(env, monkeypatch):
    hosts = cluster(2)
    nodes = make_nodes(env, hosts)
    node = nodes["spark-1"]
    (node.local(f"{HOME}/.ssh")).mkdir(mode=0o700)
    node.local(f"{HOME}/.ssh/authorized_keys").write_text("ssh-ed25519 AAAAother me@laptop\n")
    node.local(f"{HOME}/.ssh/config").write_text("ServerAliveInterval 30\nHost github.com\n  User git\n")
    node.local(KNOWN_HOSTS).write_text("gitlab.example ssh-ed25519 AAAAgitlab\n")
    deploy(hosts, nodes, monkeypatch)
    authorized = node.text(f"{HOME}/.ssh/authorized_keys").splitlines()
    assert authorized == ["ssh-ed25519 AAAAother me@laptop", keys.ensure_cluster_key("spark").public_line]
    config = node.text(f"{HOME}/.ssh/config")
    # Our block comes first (its values win) and ends with "Host *".
    assert config.startswith(CONFIG_MARKER.format(mark="BEGIN"))
    assert config.endswith("ServerAliveInterval 30\nHost github.com\n  User git\n")
    assert "Host *\n" + CONFIG_MARKER.format(mark="END") in config
    assert node.text(KNOWN_HOSTS).startswith("gitlab.example ssh-ed25519 AAAAgitlab\n")
    assert changed(deploy(hosts, nodes, monkeypatch)["spark-1"]) == []


def test_reinstalled_node_replaces_its_old_host_keys_everywhere(env, monkeypatch):
    hosts = cluster(4)
    nodes = make_nodes(env, hosts)
    deploy(hosts, nodes, monkeypatch)
    nodes["spark-3"].host_keys = ["ssh-ed25519 AAAAreinstalled"]
    deploy(hosts, nodes, monkeypatch)
    for node in nodes.values():
        known = node.block(KNOWN_HOSTS, KNOWN_HOSTS_MARKER)
        assert "spark-3,10.0.0.3 ssh-ed25519 AAAAreinstalled" in known
        assert not any("AAAAspark-3" in line for line in known)


def test_limited_run_keeps_what_it_knows_about_peers_outside_the_limit(env, monkeypatch):
    hosts = cluster(2)
    nodes = make_nodes(env, hosts)
    deploy(hosts, nodes, monkeypatch)
    before = nodes["spark-1"].text(KNOWN_HOSTS)
    # spark-2 is outside --limit: pyinfra never connects to it, its keys come
    # from what spark-1's known_hosts already says.
    limited = deploy(hosts, nodes, monkeypatch, limit={"spark-1"})
    assert changed(limited["spark-1"]) == []
    assert nodes["spark-1"].text(KNOWN_HOSTS) == before


def test_first_limited_run_lists_only_the_members_it_can_read(env, monkeypatch):
    hosts = cluster(2)
    nodes = make_nodes(env, hosts)
    deploy(hosts, nodes, monkeypatch, limit={"spark-1"})
    known = nodes["spark-1"].block(KNOWN_HOSTS, KNOWN_HOSTS_MARKER)
    assert known and all(line.startswith("spark-1,10.0.0.1 ") for line in known)
    # The next full run completes the list.
    deploy(hosts, nodes, monkeypatch)
    assert any(line.startswith("spark-2,10.0.0.2 ") for line in nodes["spark-1"].block(KNOWN_HOSTS, KNOWN_HOSTS_MARKER))


def test_private_key_never_appears_in_a_command(env, monkeypatch):
    hosts = cluster(2)
    nodes = make_nodes(env, hosts)
    result = deploy(hosts, nodes, monkeypatch)
    secret = keys.ensure_cluster_key("spark").private_path.read_text().splitlines()[1]
    for ops in result.values():
        for _, commands in ops:
            for command in commands:
                if not isinstance(command, FileUploadCommand):
                    assert secret not in command.get_raw_value()
