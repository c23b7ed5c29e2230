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


_UNLIMITED_WORDS = ("unlimited", "infinity", "-1")


def limits_conf_memlock_unlimited(text: str, user: str) -> bool:
    """True when a limits.conf-style file leaves `user` with memlock unlimited,
    soft and hard, as pam_limits reads it: only lines for `*` or for `user`
    apply (another user's line is not this user's limit), a line for `user`
    wins over `*`, and within one domain the last line wins; `-` sets soft and
    hard. Group lines (`@group`) are not resolved: they never count."""
    by_domain: dict[str, dict[str, str]] = {user: {}, "*": {}}
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) != 4 or fields[2] != "memlock" or fields[0] not in by_domain:
            continue
        for kind in ("soft", "hard") if fields[1] == "-" else (fields[1],):
            by_domain[fields[0]][kind] = fields[3]
    return all(by_domain[user].get(kind, by_domain["*"].get(kind)) in _UNLIMITED_WORDS
               for kind in ("soft", "hard"))


def parse_unit_file(text: str) -> dict[str, dict[str, str]]:
    """A systemd unit file or drop-in as systemd reads it: `[Section]` headers,
    comment lines starting with `#` or `;`, `Key=Value` assignments (a trailing
    backslash continues the line), the LAST assignment of a key in a section
    wins. An assignment before any section header is ignored, as systemd does."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line and line[0] in "#;":
            continue  # systemd skips comment lines inside a continuation
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if sep and current is not None:
            current[key.strip()] = value.strip()
    return sections


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


def revoked_keys(text: str, key_type: str) -> dict[str, str]:
    """Base64 keys of `key_type` on `@revoked` lines -> that line's host patterns.

    The patterns are returned for the message only: a revoked key was declared
    compromised, so a member whose current key is on such a line is wrong
    whichever name (`*`, a hashed name, an alias) the line gives."""
    revoked = {}
    for raw in text.splitlines():
        fields = raw.split()
        if len(fields) >= 4 and fields[0] == "@revoked" and fields[2] == key_type:
            revoked[fields[3]] = fields[1]
    return revoked


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


# iputils: "3 packets transmitted, 3 received, 0% packet loss";
# busybox: "3 packets transmitted, 3 packets received, 0% packet loss".
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def ping_counts(text: str) -> tuple[int, int] | None:
    """(transmitted, received) from ping's statistics line, None without one."""
    match = _PING_SUMMARY.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_ping(text: str) -> str:
    """One-word diagnosis of `ping -M do` output: ok (every packet answered),
    lossy (some answered), too_big, no_reply, error (no statistics at all).

    ping exits 0 when any reply came back, so only the counts tell a link that
    drops some frames from a good one."""
    if re.search(r"message too long|frag needed|local error", text, re.I):
        return "too_big"
    counts = ping_counts(text)
    if counts is None:
        return "error"
    transmitted, received = counts
    if transmitted > 0 and received == transmitted:
        return "ok"
    if received > 0:
        return "lossy"
    return "no_reply"


def parse_gid_table(text: str) -> dict[int, tuple[str, str]]:
    """`grep -s -H . PORT/gids/* PORT/gid_attrs/types/*` -> index -> (GID, type).

    An unset entry has no type (sysfs answers EINVAL, which grep -s hides);
    its GID reads as all zeros."""
    gids: dict[int, str] = {}
    types: dict[int, str] = {}
    for line in text.splitlines():
        path, sep, value = line.partition(":")
        directory, _, index = path.rpartition("/")
        if not sep or not index.isdigit():
            continue
        if directory.endswith("/gid_attrs/types"):
            types[int(index)] = value.strip()
        elif directory.endswith("/gids"):
            gids[int(index)] = value.strip()
    return {index: (gid, types.get(index, "")) for index, gid in sorted(gids.items())}


def roce_v2_index(table: dict[int, tuple[str, str]], ip: str) -> int | None:
    """The lowest index holding the RoCE v2 GID of IPv4 `ip` (what roce_detect and NCCL pick)."""
    want = ipv4_mapped_gid(ip)
    for index, (gid, gid_type) in sorted(table.items()):
        if gid == want and gid_type == "RoCE v2":
            return index
    return None


# "100 Gb/sec (2X HDR)", "2.5 Gb/sec (1X SDR)": what sysfs says a port runs at.
_LINK_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec")


def parse_link_rate(text: str) -> float | None:
    """Gb/s from /sys/class/infiniband/DEV/ports/N/rate, None when it says no number."""
    match = _LINK_RATE.match(text)
    return float(match.group(1)) if match else None


# perftest's units -> Gb/s (its MB is 2**20 bytes).
_BW_UNITS = {"Gb/sec": 1.0, "MB/sec": 8 * 2**20 / 1e9}


def parse_write_bw(text: str) -> float | None:
    """The average bandwidth in Gb/s of an ib_write_bw run (perftest's result
    table: `BW average[Gb/sec]` with --report_gbits, `[MB/sec]` (MiB) without),
    None when the run printed no result line."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        columns = re.split(r"\s{2,}|\t+", line.strip())
        column = next((i for i, name in enumerate(columns) if name.startswith("BW average[")), None)
        if column is None:
            continue
        unit = columns[column][len("BW average["):].rstrip("]")
        for row in lines[number + 1:]:
            fields = row.split()
            if len(fields) > column and all(re.fullmatch(r"\d+(?:\.\d+)?", f) for f in fields[:column + 1]):
                return float(fields[column]) * _BW_UNITS[unit] if unit in _BW_UNITS else None
        return None
    return None


def parse_nmcli_devices(text: str) -> dict[str, str]:
    """`nmcli -t -f DEVICE,STATE device` -> device -> state (terse mode escapes
    a ':' inside a value as '\\:')."""
    states = {}
    for line in text.splitlines():
        fields = re.split(r"(?<!\\):", line.strip())
        if len(fields) >= 2 and fields[0]:
            states[fields[0].replace("\\:", ":")] = fields[1].replace("\\:", ":")
    return states
