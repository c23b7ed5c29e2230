"""The cluster's SSH key pair, made once on the controller (the machine running pyinfra).

The private key never appears in a log or on a terminal: it is written
straight to a 0600 file and only its path travels further.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

STATE_DIR_ENV = "SPARK_CLUSTER_STATE_DIR"
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ClusterKeyError(Exception):
    pass


@dataclass(frozen=True)
class ClusterKey:
    private_path: Path
    public_path: Path
    public_line: str  # "ssh-ed25519 AAAA... spark-cluster@<cluster>"


def key_comment(cluster_name: str) -> str:
    """The comment that ends the cluster key's public line: how the uninstall
    finds it in authorized_keys without needing the controller's key."""
    return f"spark-cluster@{cluster_name}"


def state_dir(cluster_name: str) -> Path:
    if not _CLUSTER_NAME.match(cluster_name or ""):
        raise ClusterKeyError(f"group_data: 'cluster_name' must be a plain name, got {cluster_name!r}")
    base = os.environ.get(STATE_DIR_ENV) or Path.home() / ".local" / "share" / "spark-cluster"
    return Path(base) / cluster_name


def _write_new_key(path: Path) -> None:
    private_pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    # O_EXCL: a key another process wrote first is kept, never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)


@functools.lru_cache(maxsize=None)
def _ensure(directory: Path, cluster_name: str) -> ClusterKey:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    private_path = directory / "id_ed25519"
    if not private_path.exists():
        try:
            _write_new_key(private_path)
        except FileExistsError:
            pass
    private_path.chmod(0o600)
    try:
        key = paramiko.Ed25519Key.from_private_key_file(str(private_path))
    except (paramiko.SSHException, ValueError) as error:
        raise ClusterKeyError(f"{private_path}: not a usable ed25519 private key ({type(error).__name__})") from None
    public_line = f"{key.get_name()} {key.get_base64()} {key_comment(cluster_name)}"
    public_path = directory / "id_ed25519.pub"
    if not public_path.exists() or public_path.read_text().strip() != public_line:
        public_path.write_text(public_line + "\n")
    public_path.chmod(0o644)
    return ClusterKey(private_path, public_path, public_line)


def ensure_cluster_key(cluster_name: str) -> ClusterKey:
    """The cluster key pair, created on first use and reused ever after.

    Cached per process: deploy.py runs the role once per host, the key is
    looked at once per run."""
    return _ensure(state_dir(cluster_name), cluster_name)
