"""How a node reaches a peer for a bulk copy (model, image, caches): the
cluster key, the verified host keys, one cipher chosen for speed, and one SSH
connection per peer address reused by every stream (ControlMaster).

Encryption stays: the copy crosses the QSFP link as the admin with the host
keys the ssh role verified (never StrictHostKeyChecking=no).

The cipher is aes128-gcm@openssh.com. The GB10's Arm cores (Cortex-X925 and
A725) have the Armv8 AES and PMULL instructions, which OpenSSL uses for
AES-GCM: one core encrypts several GB/s. OpenSSH's default first choice,
chacha20-poly1305, has no instruction of its own and runs on plain NEON
arithmetic, several times slower per byte there. GCM also authenticates in
the same pass (no separate MAC). 128-bit keys: the same GCM speed class as
256 with fewer rounds; both are far beyond what the link exposes.
docs/benchmarks.md has the measured CPU seconds per GB of each.
"""

from __future__ import annotations

from .cluster_ssh import KEY_NAME, SYSTEM_KNOWN_HOSTS

COPY_CIPHER = "aes128-gcm@openssh.com"
# An idle shared connection stays this long after its last stream ends, so the
# next file of the same copy reuses it.
CONTROL_PERSIST_S = 60


def copy_key(home: str) -> str:
    """The admin's cluster key, which every copy logs in with."""
    return f"{home}/.ssh/{KEY_NAME}"


def copy_ssh_argv(home: str, control_dir: str | None = None, cipher: str = COPY_CIPHER) -> list[str]:
    """`ssh` and its options for a copy run as the admin whose home is `home`;
    with `control_dir`, streams to one address share one connection (its
    socket in that directory, which must be the admin's own and private)."""
    argv = [
        "ssh", "-i", copy_key(home), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={SYSTEM_KNOWN_HOSTS}",
        "-o", "Compression=no", "-c", cipher,
        # A dead peer ends the copy within a minute instead of hanging it.
        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
    ]
    if control_dir:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C",
                 "-o", f"ControlPersist={CONTROL_PERSIST_S}"]
    return argv
