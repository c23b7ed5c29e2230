"""Other owners of the QSFP ports: found before anything is written, then refused, adopted or taken over.

Desired state: spark-cluster's netplan file is the only configuration that
claims a QSFP netdev. Netplan merges every file it reads and NetworkManager or
networkd may hold the same port, so another owner (NVIDIA's playbook writes
/etc/netplan/40-cx7.yaml; NetworkManager keyfiles; systemd-networkd files)
silently changes what our file means. The role therefore:
- stops that host before any change, naming each owner and the setting
  (`qsfp_takeover = True`) that lets spark-cluster take over (refusal);
- with the setting, moves every owner aside, backed up under
  /etc/spark-cluster/takeover/ with a restore.sh, never deleted (takeover_command);
- without the setting, still moves aside a netplan file that says exactly what
  ours will say (same netdevs, same addresses, nothing else): adoptable. Two
  files for one port must not be merged, and nothing is lost by adopting it.

A file that also configures a netdev other than the QSFP ports (a networkd
`Name=en*` also matches the management NIC) is never moved: moving it would
unconfigure that netdev too (unmovable).

The finding runs on the node (files/qsfp_owners.sh, as the QsfpOwners fact);
everything else here is pure and unit-tested.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import yaml
from pyinfra.api import FactBase

from spark_cluster.batch_fact import Want, want
from spark_cluster.fabric import QSFP_NETDEVS, Fabric
from spark_cluster.shipped import shipped_command

OWNERS = Path(__file__).parent / "files" / "qsfp_owners.sh"
TAKEOVER = Path(__file__).parent / "files" / "qsfp_takeover.sh"
TAKEOVER_DIR = "/etc/spark-cluster/takeover"
SETTING = "qsfp_takeover"

KINDS = ("netplan", "networkmanager", "networkd")
# What a netplan ethernet may say and still be adopted: what our own file says
# for a port in dual_subnet mode, or has no effect on the addresses it carries.
# Anything else (routes, nameservers, match, set-name...) would be lost by
# adopting it: that file needs the setting.
ADOPTABLE_KEYS = frozenset({"addresses", "dhcp4", "dhcp6", "mtu", "link-local", "optional", "accept-ra"})


@dataclass(frozen=True)
class Claim:
    """One configuration file that claims QSFP netdevs.

    others: netdevs present on the node, not QSFP ports, that the same file
    also configures. content: the file's text (netplan files only)."""

    kind: str
    path: str
    netdevs: tuple[str, ...]
    id: str | None = None
    content: str | None = None
    others: tuple[str, ...] = ()

    def describe(self) -> str:
        """The claim in words: which file (or profile) and which netdevs."""
        ports = ", ".join(self.netdevs)
        if self.kind == "networkmanager":
            label = f"NetworkManager profile {self.id!r} ({self.path})" if self.id else f"NetworkManager profile {self.path}"
        else:
            label = f"{self.path} ({self.kind})"
        return f"{label} claims {ports}"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.split(",") if item)


def parse_owners(lines) -> list[Claim]:
    """The claims qsfp_owners.sh printed, in its order; lines it did not print
    in its format (no kind, an unknown kind, no path) are ignored."""
    claims = []
    for line in lines:
        fields = {key: unquote(value) for key, sep, value in (part.partition("=") for part in line.split()) if sep}
        if fields.get("kind") not in KINDS or not fields.get("path"):
            continue
        content = None
        if "content" in fields:
            try:
                content = base64.b64decode(fields["content"], validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                content = None
        claims.append(Claim(
            kind=fields["kind"],
            path=fields["path"],
            netdevs=_csv(fields.get("netdevs", "")),
            id=fields.get("id") or None,
            content=content,
            others=_csv(fields.get("others", "")),
        ))
    return claims


def _ethernets(content: str | None) -> dict | None:
    """The `network: ethernets:` mapping of a netplan file, or None when the
    file is not a netplan mapping we can read."""
    try:
        plan = yaml.safe_load(content or "")
    except yaml.YAMLError:
        return None
    network = plan.get("network") if isinstance(plan, dict) else None
    if not isinstance(network, dict):
        return None
    ethernets = network.get("ethernets") or {}
    return ethernets if isinstance(ethernets, dict) else None


def _address_text(entry) -> str:
    # netplan also allows `- 10.0.0.1/24: {label: x}` (an address with options)
    if isinstance(entry, dict) and len(entry) == 1:
        return str(next(iter(entry)))
    return str(entry)


def netplan_addresses(content: str | None) -> dict[str, list[str]]:
    """{netdev: [address/prefix, ...]} for every ethernet the netplan text
    defines (by its key), in file order; {} for text that is not netplan YAML."""
    ethernets = _ethernets(content) or {}
    result: dict[str, list[str]] = {}
    for name, definition in ethernets.items():
        addresses = definition.get("addresses") if isinstance(definition, dict) else None
        result[str(name)] = [_address_text(entry) for entry in addresses or []]
    return result


def _adoptable_claim(claim: Claim, expected: dict[str, list[str]]) -> bool:
    if claim.kind != "netplan" or claim.others or claim.content is None:
        return False
    try:
        network = yaml.safe_load(claim.content).get("network")
    except (yaml.YAMLError, AttributeError):
        return False
    # Only ethernets (plus the version and renderer every file carries): a
    # bond, bridge or vlan in it would be lost.
    if not isinstance(network, dict) or set(network) - {"version", "renderer", "ethernets"}:
        return False
    ethernets = _ethernets(claim.content)
    if not ethernets or set(ethernets) - set(expected) or set(claim.netdevs) != set(ethernets):
        return False
    addresses = netplan_addresses(claim.content)
    for name, definition in ethernets.items():
        if not isinstance(definition, dict) or set(definition) - ADOPTABLE_KEYS:
            return False
        # dhcp on our port would add an address ours does not have
        if definition.get("dhcp4") is True or definition.get("dhcp6") is True:
            return False
        if sorted(addresses[name]) != sorted(expected[name]):
            return False
    return True


def adoptable(claims: list[Claim], expected: dict[str, list[str]]) -> bool:
    """Whether every claim is a netplan file that says what ours will say:
    only ethernets among `expected`'s netdevs, each with exactly the expected
    addresses (order aside), no DHCP, nothing but ADOPTABLE_KEYS, no other
    netdev. False for no claims at all (there is nothing to adopt)."""
    return bool(claims) and all(_adoptable_claim(claim, expected) for claim in claims)


def unmovable(claims: list[Claim]) -> list[Claim]:
    """The claims that also configure a netdev other than the QSFP ports:
    even with the setting they are not moved aside (the management NIC could
    go with them); the owner narrows them by hand."""
    return [claim for claim in claims if claim.others]


def refusal(host_name: str, claims: list[Claim], setting: str = SETTING) -> str:
    """Why this host stops before any change: one line naming each claim and
    what to do about it."""
    parts = [claim.describe() for claim in claims if not claim.others]
    stuck = unmovable(claims)
    message = f"{host_name}: other configuration claims the QSFP ports: " + "; ".join(
        [*parts, *(f"{claim.describe()} and also {', '.join(claim.others)}" for claim in stuck)])
    if parts:
        message += (f"; set {setting} = True in group_data/all.py to move them aside "
                    f"(backed up under {TAKEOVER_DIR}/)")
    if stuck:
        files = ", ".join(claim.path for claim in stuck)
        message += (f"; {files} also configure{'s' if len(stuck) == 1 else ''} other netdevs and "
                    f"{'is' if len(stuck) == 1 else 'are'} never moved: narrow "
                    f"{'it' if len(stuck) == 1 else 'them'} to those netdevs by hand")
    return message


def takeover_command(claims: list[Claim], backup_dir: str = TAKEOVER_DIR) -> str:
    """The command that moves every claim's file aside into backup_dir (each
    path once, in order); it prints one line per file moved, none on a rerun."""
    paths = list(dict.fromkeys(claim.path for claim in claims))
    return shipped_command(TAKEOVER, backup_dir, *paths)


class QsfpOwners(FactBase):
    """Every configuration other than own_file that claims one of netdevs
    (netplan, NetworkManager keyfiles, networkd), as a list of Claim. Reads
    0600 files: run it with sudo, as every fact of this project is."""

    default = list

    def command(self, own_file, netdevs):
        return shipped_command(OWNERS, own_file, *netdevs)

    def process(self, output):
        return parse_owners(output)


# spark-cluster's own netplan file: the one configuration that is not "other".
OWN_NETPLAN_FILE = "/etc/netplan/40-spark-cluster.yaml"


def owners_want() -> Want:
    """The fact both roles read: who else claims any QSFP netdev."""
    return want(QsfpOwners, own_file=OWN_NETPLAN_FILE, netdevs=list(QSFP_NETDEVS))


def expected_addresses(fab: Fabric) -> dict[str, list[str]]:
    """{QSFP netdev: [address]} our file gives the ports themselves (none in a bond)."""
    return {link.netdev: [link.address] for link in fab.links if link.netdev in QSFP_NETDEVS}


def verdict(claims: list[Claim], fab: Fabric, takeover: bool) -> str:
    """"none" (nobody else), "refuse" (stop this host), "adopt" (a netplan file
    saying exactly what ours will) or "takeover" (the setting is on)."""
    if not claims:
        return "none"
    if unmovable(claims):
        return "refuse"  # a file that also configures another NIC is never moved
    if adoptable(claims, expected_addresses(fab)):
        return "adopt"
    return "takeover" if takeover else "refuse"

