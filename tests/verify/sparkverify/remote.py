"""Commands on a node over the inventory's SSH endpoint (testinfra's paramiko
backend), as the admin user or as root through sudo.

Connections open on first use, so loading the suite never touches a host. A
node that cannot be reached raises NodeUnreachable, which the suite turns into
a failed check: a verification that passes without hosts would be a lie.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import testinfra.host
from testinfra.backend.paramiko import IgnorePolicy, ParamikoBackend

from .errors import VerifyEnvironmentError
from .expect import CONTAINER
from .sudo_password import SUDO_PASSWORD_ENV
from .result import Result
from .inventory import NodeSpec

_SUDO_REFUSED = ("incorrect password", "a password is required", "no password was provided",
                 "is not in the sudoers", "may not run sudo")


class NodeUnreachable(VerifyEnvironmentError):
    pass


class SudoRefused(VerifyEnvironmentError):
    pass


def sudo_command(command: str, with_password: bool) -> str:
    """sudo around `command`; the password, if any, goes on stdin, never in argv.
    stdin is then closed for the command so it can never read the password."""
    inner = shlex.quote(f"exec </dev/null; {command}")
    if with_password:
        return f"sudo -S -p '' -- sh -c {inner}"
    return f"sudo -n -- sh -c {inner}"


def host_key_policy(value) -> str:
    """pyinfra's ssh_strict_host_key_checking -> yes | no | accept-new."""
    if value is True or str(value).lower() in ("yes", "true", "1", "on"):
        return "yes"
    if value is False or str(value).lower() in ("no", "false", "0", "off"):
        return "no"
    return "accept-new"


@dataclass(frozen=True)
class Endpoint:
    hostname: str
    port: int
    user: str
    key_filename: str | None


def ssh_config_lookup(hostname: str, config_file: str | None = None) -> dict:
    """What ~/.ssh/config (or the inventory's ssh_config_file) says for
    `hostname`, read with pyinfra's own SSHConfig (Include supported); {} without one."""
    from pyinfra.connectors.sshuserclient.config import SSHConfig

    path = Path(os.path.expanduser(config_file or "~/.ssh/config"))
    if not path.is_file():
        return {}
    config = SSHConfig()
    with open(path, encoding="utf-8") as file:
        config.parse(file)
    return dict(config.lookup(hostname))


def endpoint_of(hostname: str, user: str | None, port, key_filename: str | None, host_config: dict) -> Endpoint:
    """Where pyinfra's ssh connector connects, given the inventory's values and
    the ssh config's entry for `hostname`: HostName replaces the name; the
    inventory's ssh_user and ssh_port win over User and Port (pyinfra passes
    them to paramiko after its config's); IdentityFile is used when the
    inventory names no ssh_key."""
    if key_filename is None and host_config.get("identityfile"):
        identity = host_config["identityfile"]
        key_filename = os.path.expanduser(identity[0] if isinstance(identity, list) else identity)
    return Endpoint(
        hostname=host_config.get("hostname") or hostname,
        port=int(port or host_config.get("port") or 22),
        user=user or host_config.get("user") or os.environ.get("USER", "root"),
        key_filename=key_filename,
    )


class InventoryParamikoBackend(ParamikoBackend):
    """testinfra's paramiko backend, configured as pyinfra's ssh connector is
    (the inventory, then ~/.ssh/config: sparkverify.remote.endpoint_of) and
    checking host keys against the inventory's known_hosts file."""

    def __init__(self, hostspec: str, *, key_filename=None, known_hosts_file=None,
                 strict="accept-new", timeout: int = 15):
        super().__init__(hostspec, ssh_identity_file=key_filename, timeout=timeout)
        self.known_hosts_file = known_hosts_file
        self.strict = strict

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.known_hosts_file:
            client.load_host_keys(self.known_hosts_file)
        else:
            client.load_system_host_keys()
        policy = {"yes": paramiko.RejectPolicy, "no": IgnorePolicy}.get(self.strict, paramiko.AutoAddPolicy)
        # A known_hosts file in the inventory means: only those keys.
        if self.known_hosts_file and self.strict != "no":
            policy = paramiko.RejectPolicy
        client.set_missing_host_key_policy(policy())
        client.connect(
            hostname=self.host.name,
            port=int(self.host.port or 22),
            username=self.host.user,
            key_filename=self.ssh_identity_file,
            look_for_keys=self.ssh_identity_file is None,
            timeout=self.timeout,
            banner_timeout=self.timeout,
            auth_timeout=self.timeout,
        )
        return client


class Background:
    """A command left running on a node (e.g. an RDMA server) until wait()."""

    def __init__(self, node: "Node", command: str, channel):
        self.node, self.command, self.channel = node, command, channel

    def wait(self, timeout: float) -> Result:
        return self.node._collect(self.channel, self.command, timeout)


class Node:
    def __init__(self, spec: NodeSpec, repo_root: Path, sudo_password: str | None = None):
        self.spec = spec
        # The run's password (--sudo-password-file, --ask-sudo-password), if one was given.
        self._sudo_password = sudo_password
        self.name = spec.name
        self.repo_root = Path(repo_root)
        self._unreachable: str | None = None
        self._home: str | None = None

    # --- connection ---------------------------------------------------------
    @functools.cached_property
    def connection(self) -> Endpoint:
        """Where and as whom pyinfra's ssh connector reaches this node."""
        hostname = self.spec.get("ssh_hostname") or self.name
        return endpoint_of(hostname, self.spec.get("ssh_user"), self.spec.get("ssh_port"),
                           self._path(self.spec.get("ssh_key")),
                           ssh_config_lookup(hostname, self.spec.get("ssh_config_file")))

    @property
    def endpoint(self) -> str:
        c = self.connection
        return f"{c.user}@{c.hostname}:{c.port}"

    def _path(self, value) -> str | None:
        if not value:
            return None
        path = Path(os.path.expanduser(str(value)))
        return str(path if path.is_absolute() else self.repo_root / path)

    @functools.cached_property
    def host(self) -> testinfra.host.Host:
        """The testinfra host (file/service modules); connects on first command
        (use testinfra_host(), which reports an unreachable node)."""
        backend = InventoryParamikoBackend(
            self.endpoint,
            key_filename=self.connection.key_filename,
            known_hosts_file=self._path(self.spec.get("ssh_known_hosts_file")),
            strict=host_key_policy(self.spec.get("ssh_strict_host_key_checking", "accept-new")),
        )
        return testinfra.host.Host(backend)

    def client(self) -> paramiko.SSHClient:
        if self._unreachable:
            raise NodeUnreachable(self._unreachable)
        backend = self.host.backend
        try:
            client = backend.client
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                del backend.client
                client = backend.client
        except Exception as error:  # every way of not getting in means the same to the user
            self._unreachable = (
                f"{self.name}: cannot reach its SSH endpoint {self.endpoint} "
                f"({type(error).__name__}: {str(error).strip() or 'no detail'}); "
                "fix: check the node is up and the inventory's ssh_hostname/ssh_port/ssh_user/ssh_key "
                "(and ssh_known_hosts_file if host keys changed)"
            )
            raise NodeUnreachable(self._unreachable) from None
        return client

    def testinfra_host(self) -> testinfra.host.Host:
        """The testinfra host, connected: NodeUnreachable here rather than a
        paramiko error inside a module. Its modules run as the admin user."""
        self.client()
        return self.host

    def file(self, path: str):
        """testinfra's File for `path`, read as the admin user (`stat`, `cat`):
        for world-readable files; a root-only one goes through read_root_file."""
        return self.testinfra_host().file(path)

    def unit_properties(self, unit: str) -> dict[str, str]:
        """systemd's properties of `unit` (testinfra's Service.systemd_properties:
        `systemctl show`, as the admin user), e.g. UnitFileState, ActiveState,
        MainPID; {} when systemctl cannot answer, so a check reports "unknown"."""
        try:
            return dict(self.testinfra_host().service(unit).systemd_properties)
        # AssertionError: systemctl show failed (testinfra's check_output);
        # NotImplementedError: testinfra found no systemd on the node.
        except (AssertionError, NotImplementedError):
            return {}

    # --- commands -----------------------------------------------------------
    def _open(self, command: str, stdin: bytes | None = None):
        transport = self.client().get_transport()
        channel = transport.open_session(timeout=15)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        return channel

    def _collect(self, channel, command: str, timeout: float) -> Result:
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            if channel.recv_ready():
                out += channel.recv(65536)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            elif channel.exit_status_ready():
                break
            elif time.monotonic() > deadline:
                channel.close()
                return Result(command, 124, out.decode(errors="replace"),
                              err.decode(errors="replace") + f"\n(no answer within {timeout:.0f}s)")
            else:
                time.sleep(0.02)
        rc = channel.recv_exit_status()
        channel.close()
        return Result(command, rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def run(self, command: str, timeout: float = 60, stdin: str | None = None) -> Result:
        """As the admin user; `stdin` (a secret, say) never shows in an argv."""
        return self._collect(self._open(command, stdin.encode() if stdin is not None else None), command, timeout)

    def start(self, command: str) -> Background:
        return Background(self, command, self._open(command))

    def sudo_password(self) -> str | None:
        return self._sudo_password or os.environ.get(SUDO_PASSWORD_ENV) or self.spec.get("_sudo_password")

    def run_root(self, command: str, timeout: float = 60) -> Result:
        password = self.sudo_password()
        wrapped = sudo_command(command, with_password=password is not None)
        stdin = (password + "\n").encode() if password is not None else None
        result = self._collect(self._open(wrapped, stdin), command, timeout)
        if result.rc == 1 and any(s in result.stderr for s in _SUDO_REFUSED) and "sudo:" in result.stderr:
            raise SudoRefused(
                f"{self.name}: sudo refused {self.spec.admin} ({result.brief}); fix: give the password with "
                "--ask-sudo-password or --sudo-password-file FILE (mode 600), or NOPASSWD sudo"
            )
        return result

    def start_root(self, command: str) -> Background:
        """`command` as root, left running (journalctl -f, say) until its Background is waited on or closed."""
        password = self.sudo_password()
        stdin = (password + "\n").encode() if password is not None else None
        return Background(self, command, self._open(sudo_command(command, with_password=password is not None), stdin))

    def read_root_file(self, path: str) -> str | None:
        result = self.run_root(f"cat {shlex.quote(path)}")
        return result.stdout if result.ok else None

    # --- facts the checks share ---------------------------------------------
    def admin_home(self) -> str:
        if self._home is None:
            result = self.run(f"getent passwd {shlex.quote(self.spec.admin)}")
            fields = result.stdout.strip().split(":")
            if not result.ok or len(fields) < 6:
                raise VerifyEnvironmentError(f"{self.name}: no passwd entry for admin user {self.spec.admin}")
            self._home = fields[5]
        return self._home

    def container_running(self) -> bool:
        result = self.run_root(f"docker inspect -f '{{{{.State.Running}}}}' {CONTAINER}")
        return result.ok and result.stdout.strip() == "true"

    def container_python(self, code: str, timeout: float = 60) -> Result:
        return self.run_root(f"docker exec {CONTAINER} python3 -c {shlex.quote(code)}", timeout=timeout)

    def container_env(self) -> dict[str, str] | None:
        """The engine container's environment, None when it is not running."""
        result = self.container_python("import os,json;print(json.dumps(dict(os.environ)))")
        if not result.ok:
            return None
        return json.loads(result.stdout)
