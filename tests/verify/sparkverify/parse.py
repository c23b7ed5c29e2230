"""Parsers for what the checks read from a node: sysfs, env files, mountinfo,
docker inspect, systemctl, known_hosts. Pure functions, unit-tested offline."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass, field

# Linux reports RLIM_INFINITY as -1 through Python, as 2**64-1 through /proc.
_UNLIMITED = {-1, 2**64 - 1}


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as docker --env-file and systemd EnvironmentFile write them.

    Comments and blank lines are skipped; a leading `export ` and one pair of
    matching quotes around the value are tolerated (systemd style)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, value = line.split("=", 1)
        key = key.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def parse_hca_list(value: str) -> list[tuple[str, int]]:
    """NCCL_IB_HCA as NCCL reads it: optional `^`/`=` prefix, comma list,
    optional `:port` per device (port 1 when absent)."""
    value = value.strip().lstrip("^=")
    devices = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, port = item.partition(":")
        devices.append((name, int(port) if port.isdigit() else 1))
    return devices


def ipv4_mapped_gid(ip: str) -> str:
    """The GID a RoCE v2 IPv4 entry holds, in sysfs notation."""
    mapped = ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(ip)}")
    hex_digits = mapped.exploded.replace(":", "")
    return ":".join(hex_digits[i:i + 4] for i in range(0, 32, 4))


def gid_ipv4(gid: str) -> str | None:
    """The IPv4 address inside an IPv4-mapped GID, None for any other GID."""
    try:
        mapped = ipaddress.IPv6Address(gid.strip()).ipv4_mapped
    except ValueError:
        return None
    return str(mapped) if mapped else None


def parse_rlimit(text: str) -> tuple[int, int]:
    """`print(resource.getrlimit(...))` output, e.g. "(-1, -1)"."""
    value = ast.literal_eval(text.strip())
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise ValueError(f"not an rlimit pair: {text.strip()!r}")
    return value


def rlimit_unlimited(pair: tuple[int, int]) -> bool:
    return all(v in _UNLIMITED for v in pair)


def parse_systemctl_show(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def proc_limit(text: str, name: str = "Max locked memory") -> tuple[str, str] | None:
    """(soft, hard) from /proc/<pid>/limits."""
    for line in text.splitlines():
        if line.startswith(name):
            fields = line[len(name):].split()
            if len(fields) >= 2:
                return fields[0], fields[1]
    return None


def limits_conf_memlock_unlimited(text: str) -> bool:
    """True when a limits.conf-style file sets memlock unlimited (soft and hard, or `-`)."""
    kinds = set()
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) == 4 and fields[2] == "memlock" and fields[3] in ("unlimited", "infinity", "-1"):
            kinds.add(fields[1])
    return "-" in kinds or {"soft", "hard"} <= kinds


@dataclass
class LinkState:
    name: str
    flags: list[str]
    operstate: str
    mtu: int
    ipv4: list[tuple[str, int]] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return "UP" in self.flags and "LOWER_UP" in self.flags


def parse_ip_addr_json(text: str) -> LinkState:
    """`ip -j addr show dev X` for one device."""
    entries = json.loads(text)
    if not entries:
        raise ValueError("ip -j printed no device")
    entry = entries[0]
    return LinkState(
        name=entry.get("ifname", ""),
        flags=list(entry.get("flags", [])),
        operstate=entry.get("operstate", "UNKNOWN"),
        mtu=int(entry.get("mtu", 0)),
        ipv4=[
            (a["local"], int(a["prefixlen"]))
            for a in entry.get("addr_info", [])
            if a.get("family") == "inet"
        ],
    )


@dataclass(frozen=True)
class Mount:
    source: str
    destination: str
    rw: bool = True
    kind: str = "bind"


def parse_docker_mounts(text: str) -> list[Mount]:
    """`docker inspect -f '{{json .Mounts}}' NAME`."""
    return [
        Mount(m.get("Source", ""), m.get("Destination", ""), bool(m.get("RW", True)), m.get("Type", ""))
        for m in (json.loads(text) or [])
    ]


def _unescape_mountinfo(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def parse_mountinfo(text: str) -> dict[str, dict[str, str]]:
    """/proc/self/mountinfo: mount point -> {root, fstype, source, options}."""
    mounts = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        mounts[_unescape_mountinfo(fields[4])] = {
            "root": _unescape_mountinfo(fields[3]),
            "options": fields[5],
            "fstype": tail[0],
            "source": tail[1],
        }
    return mounts


def parse_pubkey(text: str) -> tuple[str, str]:
    """(key type, base64 blob) of an OpenSSH public key line."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key: {text.strip()[:40]!r}")
    return fields[0], fields[1]


def _host_matches(pattern: str, hostname: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            salt_b64, digest_b64 = pattern[3:].split("|", 1)
            digest = hmac.new(base64.b64decode(salt_b64), hostname.encode(), hashlib.sha1).digest()
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(digest, base64.b64decode(digest_b64))
    return pattern == hostname


def known_host_keys(text: str, hostname: str, key_type: str) -> list[str]:
    """Base64 keys of `key_type` that a known_hosts file holds for `hostname`
    (plain or hashed names; `[host]:port` is a different name, as in OpenSSH).
    @revoked and @cert-authority lines are not host keys."""
    keys = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):
            continue
        if len(fields) < 3 or fields[1] != key_type:
            continue
        if any(_host_matches(p, hostname) for p in fields[0].split(",")):
            keys.append(fields[2])
    return keys


def parse_gpu_total_mib(text: str) -> list[float]:
    """`nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`;
    GB10 prints "[N/A]" (unified memory), which yields no value."""
    values = []
    for line in text.splitlines():
        try:
            values.append(float(line.strip()))
        except ValueError:
            continue
    return values


def parse_ping(text: str) -> str:
    """One-word diagnosis of `ping -M do` output: ok, too_big, no_reply, error."""
    if re.search(r"message too long|frag needed|local error", text, re.I):
        return "too_big"
    match = re.search(r"(\d+) received", text)
    if match and int(match.group(1)) > 0:
        return "ok"
    if "packet loss" in text:
        return "no_reply"
    return "error"
